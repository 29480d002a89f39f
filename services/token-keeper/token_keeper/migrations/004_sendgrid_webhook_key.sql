-- The key that verifies a connection's own SendGrid account's signed event webhooks. Public:
-- stored as given, not sealed. NULL: the install's key (MLC_SENDGRID_WEBHOOK_PUBLIC_KEY).
ALTER TABLE connections ADD COLUMN sendgrid_webhook_public_key text;
