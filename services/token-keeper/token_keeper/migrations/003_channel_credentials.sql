-- A company may bring its own Twilio and SendGrid accounts. NULL: the install's default account.
-- Secrets are sealed like the Exact ones.
ALTER TABLE connections ADD COLUMN twilio_account_sid text;
ALTER TABLE connections ADD COLUMN twilio_auth_token_sealed bytea;
ALTER TABLE connections ADD COLUMN twilio_messaging_service_sid text;
ALTER TABLE connections ADD COLUMN sendgrid_api_key_sealed bytea;
