-- One row per Exact Online connection (a company's app authorisation). Secrets are sealed
-- with MLC_SECRET_KEY (Fernet); nothing here is readable without the key.
CREATE TABLE connections (
    id                      text PRIMARY KEY,
    base_url                text NOT NULL,
    client_id               text NOT NULL,
    client_secret_sealed    bytea NOT NULL,
    webhook_secret_sealed   bytea NOT NULL,
    division                integer NOT NULL,
    refresh_token_sealed    bytea NOT NULL,
    access_token_sealed     bytea,
    access_fingerprint      text,
    access_expires_at       timestamptz,
    refreshed_at            timestamptz,
    refresh_count           bigint NOT NULL DEFAULT 0,
    status                  text NOT NULL DEFAULT 'active'
                            CHECK (status IN ('active', 'needs_reconnect')),
    status_reason           text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
