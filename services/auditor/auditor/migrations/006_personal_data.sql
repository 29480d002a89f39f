-- Personal data minimised at rest, retention and erasure (see auditor.personal):
--   notifications.recipient_hash    HMAC-SHA256 of the normalised address under the auditor's
--                                   data key (MLC_AUDITOR_DATA_KEY): finds a person's rows for
--                                   erasure; useless without the key, unlike a plain hash
--   notifications.recipient_masked  what an operator sees (+*********78, f***@example.com)
--   notifications.content_sealed    the message text, Fernet-sealed under the data key, opened
--                                   only for an authorised reveal
--   notifications.contact_id        the Exact contact it went to (erasure by contact)
--   notifications.erased_at         when an erasure request (privacy.forget) emptied the row
--   status_events.connection_id     the connection whose account signed the callback (NULL:
--                                   the install's shared account); a status is kept only for a
--                                   notification of that connection
--   inbound.sender_hash             the sender's keyed hash (erasing what a person texted)
--   privacy_log                     every purge and erasure: what, when, by whom, how many
-- The clear notifications.recipient and .content columns stay until their rows are converted:
-- hashing and sealing need the key, which SQL does not have. The auditor converts them at
-- start-up (auditor.schema, recorded as version 006_personal_data.py), strips the provider
-- forms already stored, and then drops both columns.
ALTER TABLE notifications
    ADD COLUMN recipient_hash text,
    ADD COLUMN recipient_masked text,
    ADD COLUMN content_sealed bytea,
    ADD COLUMN contact_id uuid,
    ADD COLUMN erased_at timestamptz;
CREATE INDEX notifications_recipient ON notifications (recipient_hash)
    WHERE recipient_hash IS NOT NULL;
CREATE INDEX notifications_contact ON notifications (contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX notifications_updated ON notifications (updated_at);

ALTER TABLE status_events ADD COLUMN connection_id text;
CREATE INDEX status_events_received ON status_events (received_at);
CREATE INDEX statuses_updated ON statuses (updated_at);

ALTER TABLE inbound ADD COLUMN sender_hash text;
CREATE INDEX inbound_sender ON inbound (sender_hash) WHERE sender_hash IS NOT NULL;
CREATE INDEX inbound_received ON inbound (received_at);

-- action: 'purge' (retention, or `mlc audit purge`) or 'forget' (privacy.forget, once per
-- request_id). Addresses only masked; counts per table, as {"notifications": 3, ...}.
CREATE TABLE privacy_log (
    id                bigserial PRIMARY KEY,
    action            text NOT NULL CHECK (action IN ('purge', 'forget')),
    request_id        uuid UNIQUE,
    connection_id     text,
    contact_id        uuid,
    addresses_masked  text[] NOT NULL DEFAULT '{}',
    older_than        timestamptz,
    requested_by      text NOT NULL,
    requested_at      timestamptz NOT NULL DEFAULT now(),
    counts            jsonb NOT NULL DEFAULT '{}',
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX privacy_log_recent ON privacy_log (recorded_at DESC);
