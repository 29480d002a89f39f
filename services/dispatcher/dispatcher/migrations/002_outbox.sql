-- What a crash must not lose.
--   claims.command    the command as received, so that an unresolved claim can be sent again
--                     by the resolver after Twilio proved it never saw the request
--   claims.retry_at   not before this time (Twilio's Retry-After), whichever copy comes next
--   claims.reason     why a failed claim failed (invalid_number, opted_out, provider_error,
--                     exhausted)
--   claims.budget_from attempts used before the last operator release: the attempt bound
--                     counts from here
-- outbox: the outcome event of every claim change, written in the same transaction as the
-- change and relayed to the broker afterwards (relayed_at set once the broker confirmed).
ALTER TABLE claims ADD COLUMN command jsonb;
ALTER TABLE claims ADD COLUMN retry_at timestamptz;
ALTER TABLE claims ADD COLUMN reason text;
ALTER TABLE claims ADD COLUMN budget_from integer NOT NULL DEFAULT 0;
CREATE INDEX claims_notification ON claims (notification_id);
CREATE INDEX claims_unsettled ON claims (updated_at) WHERE state IN ('sending', 'ambiguous');

CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    message_type    text NOT NULL,
    body            jsonb NOT NULL,
    correlation_id  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    relayed_at      timestamptz
);
CREATE INDEX outbox_pending ON outbox (id) WHERE relayed_at IS NULL;
