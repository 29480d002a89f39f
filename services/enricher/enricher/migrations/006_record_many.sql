-- Decisions in one round trip: enricher.record_many takes a JSON array of items
-- {"k": "notice", "a": [connection_id, division, entity, document_id, rule, document_number,
-- state, due_at (ISO 8601), message_type, message (JSON or null), detail]} and stores each in
-- array order as adapters/notices.py stored one (never over a cancelled decision), in the
-- caller's transaction; one empty JSON object per item. The enricher queues the decisions of
-- concurrent deliveries together (common.groupcommit.Merged); one alone is an array of one.

CREATE FUNCTION enricher.record_many(p_items jsonb)
RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_item jsonb;
    v_a jsonb;
BEGIN
    FOR v_item IN
        SELECT e.value FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(value, ord)
        ORDER BY e.ord
    LOOP
        IF v_item->>'k' IS DISTINCT FROM 'notice' THEN
            RAISE EXCEPTION 'enricher.record_many: no item kind %', v_item->>'k';
        END IF;
        v_a := v_item->'a';
        INSERT INTO enricher.notices AS notices (connection_id, division, entity, document_id,
            rule, document_number, state, due_at, message_type, message, detail)
        VALUES (v_a->>0, (v_a->>1)::integer, v_a->>2, (v_a->>3)::uuid, v_a->>4, v_a->>5,
            v_a->>6, (v_a->>7)::timestamptz, v_a->>8, nullif(v_a->9, 'null'::jsonb), v_a->>10)
        ON CONFLICT (connection_id, division, entity, document_id, rule) DO UPDATE
            SET state = excluded.state, due_at = excluded.due_at,
                document_number = coalesce(excluded.document_number, notices.document_number),
                message_type = excluded.message_type, message = excluded.message,
                detail = excluded.detail, updated_at = now()
            WHERE notices.state <> 'cancelled';
        RETURN NEXT '{}'::jsonb;
    END LOOP;
END $$;
