-- The trail's three busiest records as one round trip each, instead of one per statement:
-- a send command (record_requested), an attempt's outcome (record_outcome) and a provider
-- status (record_status). Each runs the statements auditor.adapters.trail ran one by one, in
-- the caller's transaction; what needs the data key (hashing, sealing, stripping forms) or the
-- status ranks (auditor.status) stays in Python and comes in as arguments.
--
-- Provider ids are locked with pg_advisory_xact_lock(6006, hashtext(provider_id)) (a two-key
-- lock: it never meets db.migrate's; only these functions take it) before a status is checked against its notification's connection or a
-- notification learns its message, so the two cannot interleave. Where statuses signed for
-- another connection are waiting for a message (foreign_statuses), the caller drops them
-- (trail._drop_foreign_statuses) in the same transaction: a rare path, kept in Python.

CREATE FUNCTION audit.foreign_statuses(p_notification_id uuid, p_provider_id text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF p_provider_id IS NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(6006, hashtext(p_provider_id));
    RETURN EXISTS (
        SELECT 1 FROM audit.status_events e JOIN audit.notifications n
            ON e.provider_id = n.provider_id
        WHERE n.notification_id = p_notification_id
          AND e.connection_id IS NOT NULL AND n.connection_id IS NOT NULL
          AND e.connection_id <> n.connection_id);
END $$;

CREATE FUNCTION audit.record_requested(
    p_notification_id uuid, p_idempotency_key text, p_channel text, p_connection_id text,
    p_division integer, p_entity text, p_document_id uuid, p_document_number text,
    p_fact text, p_recipient_hash text, p_recipient_masked text, p_contact_id uuid,
    p_template text, p_content_sealed bytea)
RETURNS TABLE (o_created boolean, o_provider_id text, o_foreign_statuses boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_previous uuid;
BEGIN
    -- An erased row stays erased whatever copy of its command comes later.
    INSERT INTO audit.notifications AS n (notification_id, idempotency_key, channel,
        connection_id, division, entity, document_id, document_number, fact, recipient_hash,
        recipient_masked, contact_id, template, content_sealed, requested_at)
    VALUES (p_notification_id, p_idempotency_key, p_channel, p_connection_id, p_division,
        p_entity, p_document_id, p_document_number, p_fact, p_recipient_hash,
        p_recipient_masked, p_contact_id, p_template, p_content_sealed, now())
    ON CONFLICT (notification_id) DO UPDATE SET
        idempotency_key = EXCLUDED.idempotency_key, channel = EXCLUDED.channel,
        connection_id = EXCLUDED.connection_id, division = EXCLUDED.division,
        entity = EXCLUDED.entity, document_id = EXCLUDED.document_id,
        document_number = EXCLUDED.document_number, fact = EXCLUDED.fact,
        template = EXCLUDED.template,
        recipient_hash = CASE WHEN n.erased_at IS NULL THEN EXCLUDED.recipient_hash END,
        recipient_masked = CASE WHEN n.erased_at IS NULL
            THEN EXCLUDED.recipient_masked ELSE n.recipient_masked END,
        contact_id = CASE WHEN n.erased_at IS NULL THEN EXCLUDED.contact_id END,
        content_sealed = CASE WHEN n.erased_at IS NULL THEN EXCLUDED.content_sealed END,
        requested_at = coalesce(n.requested_at, now())
    RETURNING (n.xmax = 0), n.provider_id INTO o_created, o_provider_id;

    IF o_created THEN
        -- A new notification for a document whose earlier one an operator released replaces
        -- it (a skip names no channel).
        SELECT old.notification_id INTO v_previous FROM audit.notifications old
        WHERE old.connection_id = p_connection_id AND old.division = p_division
          AND old.entity = p_entity AND old.document_id = p_document_id
          AND old.fact = p_fact AND (old.channel = p_channel OR old.channel IS NULL)
          AND old.state = 'released' AND old.notification_id <> p_notification_id
        ORDER BY old.updated_at DESC LIMIT 1;
        IF v_previous IS NOT NULL THEN
            UPDATE audit.notifications SET retry_of = v_previous
            WHERE notification_id = p_notification_id;
            UPDATE audit.notifications SET state = 'replaced', updated_at = now()
            WHERE notification_id = v_previous;
        END IF;
    END IF;

    o_foreign_statuses := audit.foreign_statuses(p_notification_id, o_provider_id);
    RETURN NEXT;
END $$;

CREATE FUNCTION audit.record_outcome(
    p_message_id text, p_notification_id uuid, p_outcome text, p_attempt integer,
    p_provider_id text, p_error_class text, p_error_code text, p_error text,
    p_retry_at timestamptz, p_requested_by text, p_channel text, p_state text,
    p_state_rank integer, p_failure_reason text)
RETURNS TABLE (o_recorded boolean, o_channel text, o_foreign_statuses boolean)
LANGUAGE plpgsql AS $$
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

    INSERT INTO audit.notifications AS n (notification_id, channel)
    VALUES (p_notification_id, p_channel)
    ON CONFLICT (notification_id) DO UPDATE SET
        provider_id = coalesce(p_provider_id, n.provider_id),
        channel = coalesce(n.channel, p_channel),
        updated_at = now()
    RETURNING n.channel INTO o_channel;

    o_foreign_statuses := false;
    IF p_provider_id IS NOT NULL THEN
        UPDATE audit.notifications SET provider_id = p_provider_id
        WHERE notification_id = p_notification_id;
        o_foreign_statuses := audit.foreign_statuses(p_notification_id, p_provider_id);
    END IF;

    -- Forward only: by attempt, then by outcome rank within the attempt.
    UPDATE audit.notifications SET state = p_state, state_rank = p_state_rank,
        last_attempt = p_attempt, failure_reason = p_failure_reason,
        error_code = coalesce(p_error_code, error_code), updated_at = now()
    WHERE notification_id = p_notification_id
      AND (last_attempt, state_rank) < (p_attempt, p_state_rank);
    RETURN NEXT;
END $$;

CREATE FUNCTION audit.record_status(
    p_provider_id text, p_status text, p_rank integer, p_error_code text, p_raw jsonb,
    p_received_at timestamptz, p_claimed text, p_final_rank integer)
RETURNS TABLE (o_owner text, o_moved_to integer, o_channel text)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(6006, hashtext(p_provider_id));
    -- Signed for one connection, about another connection's message: refused, nothing kept.
    IF p_claimed IS NOT NULL THEN
        SELECT n.connection_id INTO o_owner FROM audit.notifications n
        WHERE n.provider_id = p_provider_id AND n.connection_id IS NOT NULL
          AND n.connection_id <> p_claimed
        LIMIT 1;
        IF o_owner IS NOT NULL THEN
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;

    INSERT INTO audit.status_events AS e (provider_id, status, error_code, raw, received_at,
        connection_id)
    VALUES (p_provider_id, p_status, p_error_code, p_raw, p_received_at, p_claimed)
    ON CONFLICT (provider_id, status) DO UPDATE SET repeats = e.repeats + 1;

    INSERT INTO audit.statuses AS s (provider_id, status, rank, error_code)
    VALUES (p_provider_id, p_status, p_rank, p_error_code)
    ON CONFLICT (provider_id) DO UPDATE SET status = EXCLUDED.status, rank = EXCLUDED.rank,
        error_code = EXCLUDED.error_code, updated_at = now()
    WHERE s.rank < EXCLUDED.rank
    RETURNING s.rank INTO o_moved_to;

    IF o_moved_to >= p_final_rank THEN
        -- The channel of its notification, for the counter (NULL: not heard of the send yet).
        SELECT n.channel INTO o_channel FROM audit.notifications n
        WHERE n.provider_id = p_provider_id
        ORDER BY n.updated_at DESC LIMIT 1;
    END IF;
    RETURN NEXT;
END $$;
