-- What the enricher decided per document and rule: one row each, so that an edit of a document
-- already notified sends nothing new, and timed notices (reminders, messages held for quiet
-- hours) survive restarts.
--
--   pending ──due──▶ sent        message: the command, re-published as it was on redelivery
--      │       └───▶ skipped     nobody reachable / opted out (re-evaluated on the next event)
--      └─payment, credit, opt-out, document gone──▶ cancelled   (final)
CREATE TABLE notices (
    connection_id   text        NOT NULL,
    division        integer     NOT NULL,
    entity          text        NOT NULL,
    document_id     uuid        NOT NULL,
    rule            text        NOT NULL,
    document_number text,
    state           text        NOT NULL CHECK (state IN ('pending', 'sent', 'skipped', 'cancelled')),
    due_at          timestamptz NOT NULL,
    message_type    text,
    message         jsonb,
    detail          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_id, division, entity, document_id, rule)
);
CREATE INDEX notices_due ON notices (due_at) WHERE state = 'pending';
CREATE INDEX notices_by_number ON notices (connection_id, division, document_number)
    WHERE state = 'pending';

-- A contact's own channel preference (Exact has no such field): set with
-- `mlc contacts prefer CONTACT --channel email|sms|voice`.
CREATE TABLE contact_preferences (
    connection_id text        NOT NULL,
    contact_id    uuid        NOT NULL,
    channel       text        NOT NULL CHECK (channel IN ('sms', 'email', 'voice')),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_id, contact_id)
);

-- Cached accounts and contacts were read without the fields the rules now need (IsAnonymised,
-- JobTitleDescription, InvoicingMethod, ...): drop them, so no anonymised contact is messaged
-- from an entry read before this version. Raising the generation stops a fill in flight.
UPDATE accounts SET record = NULL, fetched_at = NULL, invalidated_at = now(),
                    generation = generation + 1;
DELETE FROM contacts;
