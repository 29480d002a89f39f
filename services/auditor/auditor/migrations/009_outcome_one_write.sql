-- An attempt's outcome writes its notification once. audit.record_outcome (migration 007) wrote
-- the row three times (the upsert, the provider id, then the forward-only state), each a new
-- row version and index entries; the upsert now sets all of it, with the same rules:
-- the provider id when the outcome has one, the channel when the row has none, and the state
-- only forward (by attempt, then by outcome rank within the attempt; a new row starts at
-- attempt 0, rank 0, 'requested').
CREATE OR REPLACE FUNCTION audit.record_outcome(
    p_message_id text, p_notification_id uuid, p_outcome text, p_attempt integer,
    p_provider_id text, p_error_class text, p_error_code text, p_error text,
    p_retry_at timestamptz, p_requested_by text, p_channel text, p_state text,
    p_state_rank integer, p_failure_reason text)
RETURNS TABLE (o_recorded boolean, o_channel text, o_foreign_statuses boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_new_forward boolean := (0, 0) < (p_attempt, p_state_rank);
BEGIN
    INSERT INTO audit.attempts (message_id, notification_id, outcome, attempt, provider_id,
        error_class, error_code, error, retry_at, requested_by)
    VALUES (p_message_id, p_notification_id, p_outcome, p_attempt, p_provider_id,
        p_error_class, p_error_code, p_error, p_retry_at, p_requested_by)
    ON CONFLICT (message_id) DO NOTHING;
    IF NOT FOUND THEN
        o_recorded := false;  -- a redelivered event: recorded already
        o_foreign_statuses := false;
        RETURN NEXT;
        RETURN;
    END IF;
    o_recorded := true;

    INSERT INTO audit.notifications AS n (notification_id, channel, provider_id, state,
        state_rank, last_attempt, failure_reason, error_code)
    VALUES (p_notification_id, p_channel, p_provider_id,
        CASE WHEN v_new_forward THEN p_state ELSE 'requested' END,
        CASE WHEN v_new_forward THEN p_state_rank ELSE 0 END,
        CASE WHEN v_new_forward THEN p_attempt ELSE 0 END,
        CASE WHEN v_new_forward THEN p_failure_reason END,
        CASE WHEN v_new_forward THEN p_error_code END)
    ON CONFLICT (notification_id) DO UPDATE SET
        provider_id = coalesce(p_provider_id, n.provider_id),
        channel = coalesce(n.channel, p_channel),
        state = CASE WHEN (n.last_attempt, n.state_rank) < (p_attempt, p_state_rank)
            THEN p_state ELSE n.state END,
        state_rank = CASE WHEN (n.last_attempt, n.state_rank) < (p_attempt, p_state_rank)
            THEN p_state_rank ELSE n.state_rank END,
        last_attempt = CASE WHEN (n.last_attempt, n.state_rank) < (p_attempt, p_state_rank)
            THEN p_attempt ELSE n.last_attempt END,
        failure_reason = CASE WHEN (n.last_attempt, n.state_rank) < (p_attempt, p_state_rank)
            THEN p_failure_reason ELSE n.failure_reason END,
        error_code = CASE WHEN (n.last_attempt, n.state_rank) < (p_attempt, p_state_rank)
            THEN coalesce(p_error_code, n.error_code) ELSE n.error_code END,
        updated_at = now()
    RETURNING n.channel INTO o_channel;

    o_foreign_statuses := audit.foreign_statuses(p_notification_id, p_provider_id);
    RETURN NEXT;
END $$;
