-- One row per idempotency key: the claim taken before any send. States:
--   sending   -> a sender holds it and is calling the provider
--   sent      -> the provider accepted it (provider_id set); never sent again
--   released  -> the call failed before reaching the provider; the next attempt may claim it
--   failed    -> permanently refused (e.g. invalid number); never retried
--   ambiguous -> may have been sent (timeout after the request left); resolved, never resent
CREATE TABLE claims (
    idempotency_key   text PRIMARY KEY,
    notification_id   uuid NOT NULL,
    channel           text NOT NULL,
    state             text NOT NULL
                      CHECK (state IN ('sending', 'sent', 'released', 'failed', 'ambiguous')),
    attempts          integer NOT NULL DEFAULT 1,
    provider_id       text,
    error_code        text,
    claimed_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX claims_provider_id ON claims (provider_id);
