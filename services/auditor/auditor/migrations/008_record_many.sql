-- Many records in one round trip: audit.record_many takes a JSON array of items, each
-- {"k": "requested" | "outcome" | "status", "a": [the arguments of audit.record_<k>, in order]},
-- applies them in array order with the functions of migration 007 (in the caller's
-- transaction), and returns one JSON object per item, in the same order: the named function's
-- row (its o_* columns). Values that JSON has no type for come as text: uuids, timestamps
-- (ISO 8601), bytea (hex). The auditor queues the records of concurrent deliveries together
-- (common.groupcommit.Merged); a record alone is an array of one.
--
-- A send command or outcome that found statuses signed for another connection
-- (o_foreign_statuses) is the last item applied: the caller drops those statuses before the
-- items after it (a status of the right connection among them must not meet them), and calls
-- again with the rest.

CREATE FUNCTION audit.record_many(p_items jsonb)
RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_item jsonb;
    v_a jsonb;
    v_row jsonb;
BEGIN
    FOR v_item IN
        SELECT e.value FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(value, ord)
        ORDER BY e.ord
    LOOP
        v_a := v_item->'a';
        CASE v_item->>'k'
        WHEN 'status' THEN
            SELECT to_jsonb(r) INTO v_row FROM audit.record_status(
                v_a->>0, v_a->>1, (v_a->>2)::integer, v_a->>3, v_a->4,
                (v_a->>5)::timestamptz, v_a->>6, (v_a->>7)::integer) r;
        WHEN 'outcome' THEN
            SELECT to_jsonb(r) INTO v_row FROM audit.record_outcome(
                v_a->>0, (v_a->>1)::uuid, v_a->>2, (v_a->>3)::integer, v_a->>4, v_a->>5,
                v_a->>6, v_a->>7, (v_a->>8)::timestamptz, v_a->>9, v_a->>10, v_a->>11,
                (v_a->>12)::integer, v_a->>13) r;
        WHEN 'requested' THEN
            SELECT to_jsonb(r) INTO v_row FROM audit.record_requested(
                (v_a->>0)::uuid, v_a->>1, v_a->>2, v_a->>3, (v_a->>4)::integer, v_a->>5,
                (v_a->>6)::uuid, v_a->>7, v_a->>8, v_a->>9, v_a->>10, (v_a->>11)::uuid,
                v_a->>12, decode(v_a->>13, 'hex')) r;
        ELSE
            RAISE EXCEPTION 'audit.record_many: no record kind %', v_item->>'k';
        END CASE;
        RETURN NEXT v_row;
        IF coalesce((v_row->>'o_foreign_statuses')::boolean, false) THEN
            RETURN;
        END IF;
    END LOOP;
END $$;
