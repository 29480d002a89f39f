-- Claims and settles in one round trip: dispatch.claim_many takes a JSON array of items,
-- each {"k": "claim" | "settle", "a": [arguments, in order]}, applies them in array order (in
-- the caller's transaction) and returns one JSON object per item, in the same order. The
-- dispatcher queues the claims and settles of concurrent deliveries together
-- (common.groupcommit.Merged); one alone is an array of one. The statements are those
-- adapters/claims.py ran one by one:
--
--   claim  [key, notification_id, channel, command (JSON text), stale seconds]
--          -> {"claimed": true, "attempts", "budget_from"} for a new or released key, else
--             the holder's row read under its lock: {"claimed": false, "state", "attempts",
--             "budget_from", "provider_id", "stale", "wait"}
--   settle [key, state, provider_id, error_code, reason, retry_at (ISO 8601), message_type,
--           body (JSON text), correlation_id]
--          -> {}: the claim's change and its event in the outbox

CREATE FUNCTION dispatch.claim_many(p_items jsonb)
RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_item jsonb;
    v_a jsonb;
    v_row record;
BEGIN
    FOR v_item IN
        SELECT e.value FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(value, ord)
        ORDER BY e.ord
    LOOP
        v_a := v_item->'a';
        CASE v_item->>'k'
        WHEN 'claim' THEN
            INSERT INTO dispatch.claims AS c (idempotency_key, notification_id, channel, state,
                command)
            VALUES (v_a->>0, (v_a->>1)::uuid, v_a->>2, 'sending', (v_a->>3)::jsonb)
            ON CONFLICT (idempotency_key) DO UPDATE
                SET state = 'sending', attempts = c.attempts + 1,
                    claimed_at = now(), updated_at = now(), retry_at = NULL,
                    command = EXCLUDED.command
                WHERE c.state = 'released' AND (c.retry_at IS NULL OR c.retry_at <= now())
            RETURNING c.attempts, c.budget_from INTO v_row;
            IF FOUND THEN
                RETURN NEXT jsonb_build_object('claimed', true, 'attempts', v_row.attempts,
                    'budget_from', v_row.budget_from);
            ELSE
                -- Why it could not be claimed: its holder's state, under the row lock.
                SELECT c.state, c.attempts, c.budget_from, c.provider_id,
                       now() - c.claimed_at > make_interval(secs => (v_a->>4)::float8) AS stale,
                       extract(epoch FROM c.retry_at - now())::float8 AS wait
                INTO v_row
                FROM dispatch.claims c WHERE c.idempotency_key = v_a->>0 FOR UPDATE;
                RETURN NEXT jsonb_build_object('claimed', false, 'state', v_row.state,
                    'attempts', v_row.attempts, 'budget_from', v_row.budget_from,
                    'provider_id', v_row.provider_id, 'stale', v_row.stale,
                    'wait', v_row.wait);
            END IF;
        WHEN 'settle' THEN
            UPDATE dispatch.claims SET state = v_a->>1,
                provider_id = coalesce(v_a->>2, provider_id), error_code = v_a->>3,
                reason = v_a->>4, retry_at = (v_a->>5)::timestamptz, updated_at = now()
            WHERE idempotency_key = v_a->>0;
            INSERT INTO dispatch.outbox (message_type, body, correlation_id)
            VALUES (v_a->>6, (v_a->>7)::jsonb, v_a->>8);
            RETURN NEXT '{}'::jsonb;
        ELSE
            RAISE EXCEPTION 'dispatch.claim_many: no item kind %', v_item->>'k';
        END CASE;
    END LOOP;
END $$;
