-- Sent notifications whose callbacks never brought a final status get their status fetched
-- from the provider after a deadline: when it was last asked, and how often (bounded).
ALTER TABLE notifications ADD COLUMN status_checked_at timestamptz;
ALTER TABLE notifications ADD COLUMN status_checks integer NOT NULL DEFAULT 0;
CREATE INDEX notifications_sent ON notifications (updated_at) WHERE state = 'sent';
