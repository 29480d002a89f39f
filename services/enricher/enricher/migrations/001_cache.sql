-- The enricher's copy of Exact accounts and their contacts, so that a burst of invoices to the
-- same customers does not read them again (Exact allows 60 calls a minute per company).
--
-- One row per account ever cached or invalidated. record IS NULL: nothing usable (never
-- filled, or dropped by an Accounts/Contacts webhook). Every invalidation raises generation;
-- a fill stores only if the generation it saw before reading Exact is still current, so data
-- read before a change can never overwrite the change's invalidation.
CREATE TABLE accounts (
    connection_id  text        NOT NULL,
    division       integer     NOT NULL,
    account_id     uuid        NOT NULL,
    record         jsonb,
    generation     bigint      NOT NULL DEFAULT 0,
    fetched_at     timestamptz,
    invalidated_at timestamptz,
    PRIMARY KEY (connection_id, division, account_id)
);

-- The contacts of each cached account, with the account they were read under: a Contacts
-- webhook names only the contact, and this is how it finds the account entry to drop.
CREATE TABLE contacts (
    connection_id text    NOT NULL,
    division      integer NOT NULL,
    contact_id    uuid    NOT NULL,
    account_id    uuid    NOT NULL,
    record        jsonb   NOT NULL,
    PRIMARY KEY (connection_id, division, contact_id)
);
CREATE INDEX contacts_by_account ON contacts (connection_id, division, account_id);
