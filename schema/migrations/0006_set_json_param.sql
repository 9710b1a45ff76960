-- 0006: the set-based functions take their batch as json, not jsonb.
--
-- The worker sends each batch as one JSON document that the function reads once, row by
-- row (jsonb_to_recordset). As jsonb, PostgreSQL first parsed it into a tree, sorting the
-- keys of every object, only to walk it once: ~12% of the database's CPU in the apply
-- (bench/README.md). As json, json_to_recordset reads the text as it goes. The functions are
-- otherwise the same: their bodies are edited in place, as in 0005, and the migration fails
-- if one does not read p_events the expected way. The worker of this commit calls them with
-- $2::json: deploy the two together.

DO $$
DECLARE
    fn regprocedure;
    def text;
    edited text;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure
          FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
           AND p.proname IN ('diary_apply_users', 'diary_apply_foods', 'diary_apply_entries',
                             'diary_apply_sessions', 'diary_apply_food_updates',
                             'diary_apply_food_deletes', 'diary_apply_entry_removals',
                             'diary_apply_weights', 'diary_apply_weight_removals',
                             'diary_apply_settings')
           AND p.proargtypes[1] = 'jsonb'::regtype
    LOOP
        def := pg_get_functiondef(fn);
        IF strpos(def, 'p_events jsonb') = 0 OR strpos(def, 'jsonb_to_recordset(p_events)') = 0 THEN
            RAISE EXCEPTION '0006: % does not read p_events with jsonb_to_recordset', fn;
        END IF;
        edited := replace(replace(def, 'p_events jsonb', 'p_events json'),
                          'jsonb_to_recordset(p_events)', 'json_to_recordset(p_events)');
        EXECUTE format('DROP FUNCTION %s', fn);
        EXECUTE edited;
    END LOOP;
    IF (SELECT count(*) FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'diary_apply_%'
           AND p.proargtypes[1] = 'json'::regtype) <> 10 THEN
        RAISE EXCEPTION '0006: expected 10 set-based functions taking json';
    END IF;
END
$$;
