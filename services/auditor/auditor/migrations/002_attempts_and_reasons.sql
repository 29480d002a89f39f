-- Every attempt in the trail, and what an operator needs to act on a failure.
--   notifications.failure_reason  no_contact / invalid_number / opted_out / provider_error /
--                                 exhausted (null unless failed or skipped)
--   notifications.last_attempt, state_rank: the state moves only forward, by attempt and then
--                                 by outcome rank, so a late or repeated event never undoes a
--                                 newer one (a resolved ambiguous send stays sent)
--   notifications.retry_of        the notification an operator's retry replaced (a corrected
--                                 recipient gives a new notification)
--   attempts.retry_at, requested_by: when a deferred attempt may run again; who released
ALTER TABLE notifications ADD COLUMN failure_reason text;
ALTER TABLE notifications ADD COLUMN error_code text;
ALTER TABLE notifications ADD COLUMN last_attempt integer NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN state_rank integer NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN retry_of uuid;
ALTER TABLE attempts ADD COLUMN retry_at timestamptz;
ALTER TABLE attempts ADD COLUMN requested_by text;
CREATE INDEX notifications_failed ON notifications (updated_at) WHERE state IN ('failed', 'skipped');
