-- A connection may serve several divisions (companies) of the same Exact user; `division`
-- stays the default one. Connections made with `mlc connect` record when consent was given.
ALTER TABLE connections ADD COLUMN divisions integer[] NOT NULL DEFAULT '{}';
ALTER TABLE connections ADD COLUMN connected_at timestamptz;
UPDATE connections SET divisions = ARRAY[division] WHERE divisions = '{}';
