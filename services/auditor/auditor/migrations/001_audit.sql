-- The audit trail. notifications: one row per notification, linked to its source document.
-- attempts: every outcome reported for it. statuses: the current provider status per message
-- (forward-only). status_events: every callback as received, exact repeats stored once.
CREATE TABLE notifications (
    notification_id   uuid PRIMARY KEY,
    idempotency_key   text,
    channel           text,
    connection_id     text,
    division          integer,
    entity            text,
    document_id       uuid,
    document_number   text,
    fact              text,
    recipient         text,
    template          text,
    content           text,
    state             text NOT NULL DEFAULT 'requested',
    provider_id       text,
    requested_at      timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_document ON notifications (connection_id, division, entity, document_id);
CREATE INDEX notifications_number ON notifications (document_number);
CREATE INDEX notifications_provider ON notifications (provider_id);

CREATE TABLE attempts (
    id                bigserial PRIMARY KEY,
    message_id        text UNIQUE,
    notification_id   uuid NOT NULL,
    outcome           text NOT NULL,
    attempt           integer,
    provider_id       text,
    error_class       text,
    error_code        text,
    error             text,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attempts_notification ON attempts (notification_id);

CREATE TABLE statuses (
    provider_id       text PRIMARY KEY,
    status            text NOT NULL,
    rank              integer NOT NULL,
    error_code        text,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE status_events (
    id                bigserial PRIMARY KEY,
    provider_id       text NOT NULL,
    status            text NOT NULL,
    error_code        text,
    raw               jsonb NOT NULL,
    received_at       timestamptz NOT NULL,
    repeats           integer NOT NULL DEFAULT 0,
    UNIQUE (provider_id, status)
);
