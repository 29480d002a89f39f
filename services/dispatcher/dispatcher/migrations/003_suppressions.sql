-- Addresses that are never sent to, per connection ('*': learnt on the install's own accounts,
-- so held for every connection) and channel. The address is kept only as its key (SHA-256 of
-- the normalised address, common.contracts.address_key) and a masked form for operators.
-- A lift deletes the row; every change is an outbox event (suppression.added / .lifted) that
-- the audit trail keeps.
CREATE TABLE suppressions (
    connection_id   text        NOT NULL,
    channel         text        NOT NULL CHECK (channel IN ('sms', 'voice', 'email')),
    address_key     text        NOT NULL,
    address_masked  text        NOT NULL,
    reason          text        NOT NULL,
    source          text        NOT NULL,
    notification_id uuid,
    created_by      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (address_key, channel, connection_id)
);

-- A claim whose address was suppressed when its turn came: settled, nothing sent.
ALTER TABLE claims DROP CONSTRAINT claims_state_check;
ALTER TABLE claims ADD CONSTRAINT claims_state_check
    CHECK (state IN ('sending', 'sent', 'released', 'failed', 'ambiguous', 'skipped'));
