-- 0005: plans of the set-based functions that stay per row as the tables grow.
--
-- Each set-based function (0003) looks up every event of its batch: "already processed?"
-- (EXISTS on processed_events), "does the user / food / row exist?" (EXISTS, or a LEFT JOIN on
-- the row it changes). The planner, which sees jsonb_to_recordset as 100 rows and a table as
-- small as its last statistics say, was free to answer those by reading the whole table once
-- per call: a hashed subplan over every processed_events (or foods, users) row, a hash join
-- over every daily_meals row. Fine for a table of a thousand rows; per batch it grows with
-- the table (bench/README.md measured ~18 ms a call at 50,000 rows, about a third of the
-- call), and the plan PL/pgSQL caches stays that way until the next ANALYZE.
--
-- So, in every set-based function:
--   - each EXISTS (SELECT 1 FROM ...) gets OFFSET 0, which keeps PostgreSQL from turning it
--     into a hashed subplan (simplify_EXISTS_query gives up on an OFFSET): it stays one index
--     probe per event;
--   - hash and merge joins are off (as sequential scans already were): a join to the table
--     an event changes is a nested loop over the batch with an index probe per event.
-- The bodies are otherwise unchanged: they are edited in place from pg_get_functiondef
-- rather than copied here, and the migration fails if a function has no EXISTS to edit.

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
    LOOP
        def := pg_get_functiondef(fn);
        -- EXISTS (SELECT 1 FROM <anything with at most one level of parentheses>)
        edited := regexp_replace(def,
                                 'EXISTS \(SELECT 1 FROM ((?:[^()]|\([^()]*\))*?)\)',
                                 'EXISTS (SELECT 1 FROM \1 OFFSET 0)', 'g');
        IF edited = def THEN
            RAISE EXCEPTION '0005: % has no EXISTS (SELECT 1 FROM ...) to edit', fn;
        END IF;
        EXECUTE edited;
        EXECUTE format('ALTER FUNCTION %s SET enable_hashjoin = off', fn);
        EXECUTE format('ALTER FUNCTION %s SET enable_mergejoin = off', fn);
    END LOOP;
END
$$;
