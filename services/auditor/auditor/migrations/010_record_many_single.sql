-- audit.record_many gains p_single: the call is the whole transaction (a batch sent without
-- BEGIN and COMMIT, common.groupcommit's single_statement units). Such a call cannot stop
-- early for the repair of statuses another connection signed for (the repair must run in
-- the same transaction, before the items after it): it raises instead, everything it did is
-- rolled back, and the batch runs again in a transaction, where the call stops for the
-- repair as before. A cross-tenant status is rare; every other batch
-- saves the two round trips of BEGIN and COMMIT. Called with one argument, as before.

DROP FUNCTION audit.record_many(jsonb);

CREATE FUNCTION audit.record_many(p_items jsonb, p_single boolean DEFAULT false)
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
        IF coalesce((v_row->>'o_foreign_statuses')::boolean, false) THEN
            IF p_single THEN
                RAISE EXCEPTION 'audit.record_many: statuses signed for another connection '
                    'need their repair in a transaction';
            END IF;
            RETURN NEXT v_row;
            RETURN;
        END IF;
        RETURN NEXT v_row;
    END LOOP;
END $$;
