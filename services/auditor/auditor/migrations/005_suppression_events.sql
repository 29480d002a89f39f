-- The history of the dispatcher's suppression list: every address added to or lifted from it
-- (suppression.added / suppression.lifted), once per message id. The address itself is never
-- stored: address_key is the SHA-256 of the normalised address (to match an address's events),
-- address_masked what an operator may see. connection_id is '*' for an install-wide suppression.
-- notification_id names the notification whose outcome taught it, when one did; its trail
-- shows the suppression.
CREATE TABLE suppression_events (
    id                bigserial PRIMARY KEY,
    message_id        text NOT NULL UNIQUE,
    connection_id     text NOT NULL,
    channel           text NOT NULL,
    address_key       text NOT NULL,
    address_masked    text NOT NULL,
    action            text NOT NULL CHECK (action IN ('added', 'lifted')),
    reason            text NOT NULL,
    source            text NOT NULL,
    notification_id   uuid,
    requested_by      text,
    note              text,
    occurred_at       timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX suppression_events_recent ON suppression_events (occurred_at DESC, id DESC);
CREATE INDEX suppression_events_connection ON suppression_events (connection_id, occurred_at DESC);
CREATE INDEX suppression_events_address ON suppression_events (address_key);
CREATE INDEX suppression_events_notification ON suppression_events (notification_id)
    WHERE notification_id IS NOT NULL;
