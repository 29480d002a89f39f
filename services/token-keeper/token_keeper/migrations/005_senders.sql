-- Who a company's messages come from, when it brings its own accounts: the caller id of its
-- calls, and the From address, From name and Reply-To of its email. Not secrets. NULL: the
-- install's MLC_TWILIO_VOICE_FROM / MLC_EMAIL_FROM / MLC_EMAIL_FROM_NAME / MLC_EMAIL_REPLY_TO.
ALTER TABLE connections ADD COLUMN twilio_voice_from text;
ALTER TABLE connections ADD COLUMN email_from text;
ALTER TABLE connections ADD COLUMN email_from_name text;
ALTER TABLE connections ADD COLUMN email_reply_to text;
