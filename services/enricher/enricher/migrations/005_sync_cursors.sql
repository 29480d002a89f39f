-- Reconciliation reads sales invoices, sales orders and purchase orders through Exact's sync
-- APIs (`Timestamp gt N`): each stream keeps the highest row version it read. Exact's
-- Timestamp is a row version (an Int64 counter, no time, no zone), hence bigint. A stream read
-- by Modified keeps modified_through; a synced one keeps both (modified_through: the newest
-- Modified it read, where a Modified read would go on from). Rows written before this
-- version keep their modified_through: the first sync read of such a stream starts at
-- SyncTimestamp of that time, so the change of method skips nothing.
ALTER TABLE watermarks
    ADD COLUMN timestamp_through bigint,
    ALTER COLUMN modified_through DROP NOT NULL,
    ADD CONSTRAINT watermarks_marked
        CHECK (modified_through IS NOT NULL OR timestamp_through IS NOT NULL);
