-- The outbox holds only events still to be relayed: the relay deletes a row in the transaction
-- in which the broker's confirm of its event arrived, where it used to mark it (relayed_at)
-- and delete it a week later. Marking wrote a second version of every row and an index entry
-- for it, on the hot path of every send; the events themselves stay in the audit trail.
-- A row relayed_at set (by a replica of the version before, during an upgrade) is still
-- skipped by the relay and deleted after a week.
DELETE FROM outbox WHERE relayed_at IS NOT NULL;
-- Every row is pending now: the primary key orders them, a second index on id is only cost.
DROP INDEX outbox_pending;
