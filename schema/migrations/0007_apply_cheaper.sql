-- 0007: less database work per applied diary entry (bench/README.md, "Apply").
--
-- Measured on a backend applying batches of 800 entry sets (perf): the two foreign-key
-- checks of every daily_meals row were ~15% of its CPU, building the change events with
-- json_build_object ~13%, reading the batch's json ~14% and building the change rows with
-- jsonb_build_object ~7%. This migration:
--
-- 1. Checks a meal's food and user with one foreign key instead of two, and keeps one index
--    fewer on daily_meals (see below). A meal's food is a
--    food of the same user (the apply functions have always required it: unknown_food
--    otherwise), so (user_id, food_id) references foods (user_id, id): one lookup and one row
--    lock per inserted row instead of two, and the database now enforces that rule too. The
--    user's rows still go when the user goes (users -> foods -> daily_meals, both ON DELETE
--    CASCADE). foods (user_id, id) gets a unique index, which also serves every lookup of a
--    user's foods that idx_foods_user_id served.
-- 2. Writes the change events as text. diary_apply_flush concatenates each event from the
--    staged parts instead of calling json_build_object (which looks up the output function
--    of every argument of every row): the same bytes, ~3x cheaper. The outbox keeps the
--    event as text (the relay publishes it as it is); the staging table's before/after rows
--    are text, so a set-based function can write a row's JSON directly (the entry sets do,
--    below) while the others still give jsonb, which is printed when it is staged, as the
--    flush printed it before.
-- 3. diary_apply_entries, the entry sets (the bulk of the traffic), takes its batch as one
--    text[] per column instead of one json array of objects.
-- 4. Plans the set-based functions' statements once per session (below).
--
-- The change stream's bytes do not change. Deploy with the worker of the same commit (it
-- calls diary_apply_entries with the columns, and its outbox read no longer treats the event
-- as json). On a large database the new constraint and
-- index are built under locks that block writes to foods and daily_meals while they are
-- checked and built.

-- ---------------------------------------------------------------------------------------
-- 1. One foreign key for a meal's user and food.

CREATE UNIQUE INDEX foods_user_id_id_key ON foods (user_id, id);
DROP INDEX idx_foods_user_id;

-- idx_daily_meals_user_date (user_id, date) repeats the first two columns of the unique
-- constraint (user_id, date, meal_type, food_id), whose index serves the same lookups (a
-- user's day, a user's dates); one index fewer to update on every insert.
DROP INDEX idx_daily_meals_user_date;

ALTER TABLE daily_meals
    DROP CONSTRAINT daily_meals_user_id_fkey,
    DROP CONSTRAINT daily_meals_food_id_fkey,
    ADD CONSTRAINT daily_meals_user_food_fkey FOREIGN KEY (user_id, food_id)
        REFERENCES foods (user_id, id) ON DELETE CASCADE;

-- ---------------------------------------------------------------------------------------
-- 2. Change events as text.

ALTER TABLE outbox ALTER COLUMN event TYPE text;

-- The staging table's rows are text now. A connection that still has the jsonb table of an
-- older migration (it was opened before this one) gets the new one at its next open.
CREATE OR REPLACE FUNCTION diary_stage_open() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute
                WHERE attrelid = to_regclass('pg_temp.diary_stage')
                  AND attname = 'after' AND atttypid = 'jsonb'::regtype) THEN
        DROP TABLE pg_temp.diary_stage;
    END IF;
    CREATE TEMP TABLE IF NOT EXISTS diary_stage (
        "offset"   bigint NOT NULL,
        idx        integer NOT NULL,
        event_id   uuid NOT NULL,
        user_id    uuid NOT NULL,
        tbl        text NOT NULL,
        op         text NOT NULL,
        key        uuid NOT NULL,
        before     text,
        after      text,
        version    bigint NOT NULL,
        request_id text
    ) ON COMMIT DELETE ROWS;
END
$$;

-- A daily_meals row as the change stream shows it: the text diary_change_meal's jsonb prints
-- as (keys by length, then bytes; ": " and ", "), written directly. meal_type is written
-- without escaping: a staged row's meal_type is one the table's CHECK allows (an insert) or
-- that of the existing row it matched (an update).
CREATE FUNCTION diary_change_meal_text(p_id uuid, p_user_id uuid, p_date date, p_meal_type text,
                                       p_food_id uuid, p_amount numeric, p_version bigint)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT '{"id": "' || p_id::text || '", "date": "' || to_char(p_date, 'YYYY-MM-DD')
           || '", "amount": ' || trim_scale(p_amount)::text || ', "food_id": "'
           || p_food_id::text || '", "user_id": "' || p_user_id::text || '", "version": '
           || p_version::text || ', "meal_type": "' || p_meal_type || '"}';
$$;

-- As in 0003 with the plans of 0005, but the batch comes as one text[] per column (the
-- worker sends them in binary format: nothing to lex, no member names to look up per row;
-- reading the json batch was ~14% of the backend's CPU), and the change rows are written by
-- diary_change_meal_text. The json version goes: the worker of this commit calls this one.
DROP FUNCTION diary_apply_entries(integer, json);
CREATE FUNCTION diary_apply_entries(p_partition integer, p_i text[], p_event_id text[],
                                    p_user_id text[], p_type text[], p_offset text[],
                                    p_hash text[], p_time text[], p_ifmatch text[],
                                    p_request_id text[], p_request_hash text[],
                                    p_entry_id text[], p_date text[], p_meal_type text[],
                                    p_food_id text[], p_amount text[])
RETURNS TABLE (idx integer, status text, reason text, resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    RETURN QUERY
    WITH ev AS (
        SELECT c.i::integer AS i, c.event_id::uuid AS event_id, c.user_id::uuid AS user_id,
               c.type, c."offset"::bigint AS "offset", c.hash, c.request_hash,
               c."time"::timestamptz AS "time", c.ifmatch::bigint AS ifmatch, c.request_id,
               c.entry_id::uuid AS entry_id, c.date::date AS date,
               c.meal_type::varchar(50) AS meal_type, c.food_id::uuid AS food_id,
               c.amount::numeric(8, 2) AS amount
          FROM unnest(p_i, p_event_id, p_user_id, p_type, p_offset, p_hash, p_time, p_ifmatch,
                      p_request_id, p_request_hash, p_entry_id, p_date, p_meal_type,
                      p_food_id, p_amount)
               AS c(i, event_id, user_id, type, "offset", hash, "time", ifmatch, request_id,
                    request_hash, entry_id, date, meal_type, food_id, amount)
    ), dec AS (
        SELECT ev.*, m.id AS prev_id, m.amount AS prev_amount, m.version AS prev_version,
               CASE WHEN EXISTS (SELECT 1 FROM processed_events p
                                  WHERE p.event_id = ev.event_id OFFSET 0) THEN 'duplicate'
                    WHEN NOT EXISTS (SELECT 1 FROM foods f
                                      WHERE f.id = ev.food_id AND f.user_id = ev.user_id OFFSET 0)
                         THEN 'unknown_food'
                    WHEN m.id IS NOT NULL AND ev.ifmatch IS NOT NULL
                         AND ev.ifmatch <> m.version THEN 'version_mismatch'
                    WHEN m.id IS NULL AND ev.ifmatch IS NOT NULL THEN 'no_version'
                    WHEN m.id IS NOT NULL THEN 'update'
                    ELSE 'insert' END AS action
          FROM ev LEFT JOIN daily_meals m
            ON m.user_id = ev.user_id AND m.date = ev.date AND m.meal_type = ev.meal_type
           AND m.food_id = ev.food_id
    ), upd AS (
        UPDATE daily_meals m
           SET amount = d.amount, version = m.version + 1, updated_at = d."time"
          FROM dec d
         WHERE d.action = 'update' AND m.id = d.prev_id
    ), ins AS (
        INSERT INTO daily_meals (id, user_id, date, meal_type, food_id, amount, version,
                                 created_at, updated_at)
        SELECT d.entry_id, d.user_id, d.date, d.meal_type, d.food_id, d.amount, 1, d."time",
               d."time"
          FROM dec d WHERE d.action = 'insert'
    ), stage AS (
        INSERT INTO diary_stage
        SELECT d."offset", 0, d.event_id, d.user_id, 'daily_meals',
               CASE d.action WHEN 'update' THEN 'u' ELSE 'c' END,
               coalesce(d.prev_id, d.entry_id),
               CASE d.action WHEN 'update' THEN
                   diary_change_meal_text(d.prev_id, d.user_id, d.date, d.meal_type, d.food_id,
                                          d.prev_amount, d.prev_version) END,
               diary_change_meal_text(coalesce(d.prev_id, d.entry_id), d.user_id, d.date,
                                      d.meal_type, d.food_id, d.amount,
                                      coalesce(d.prev_version + 1, 1)),
               coalesce(d.prev_version + 1, 1), d.request_id
          FROM dec d WHERE d.action IN ('insert', 'update')
    ), outcome AS (
        SELECT d.i, d.event_id, d.user_id, d.type, d."offset", d.hash, d.request_hash,
               d.action,
               CASE d.action
                    WHEN 'unknown_food' THEN format('There is no food %s of this user.', d.food_id)
                    WHEN 'version_mismatch' THEN format('The entry is at version %s, not %s.',
                                                       d.prev_version, d.ifmatch)
                    WHEN 'no_version' THEN format('There is no entry at version %s.', d.ifmatch)
               END AS reason,
               CASE WHEN d.action IN ('update', 'version_mismatch') THEN d.prev_id
                    WHEN d.action = 'insert' THEN d.entry_id END AS resource
          FROM dec d
    ), rec AS (
        INSERT INTO processed_events (event_id, user_id, type, status, reason, problem,
                                      "partition", "offset", payload_hash, resource_id,
                                      request_hash)
        SELECT o.event_id, o.user_id, o.type,
               CASE WHEN o.action IN ('insert', 'update') THEN 'applied' ELSE 'rejected' END,
               o.reason,
               CASE o.action
                    WHEN 'unknown_food' THEN diary_problem('unknown_food', 422, o.reason)
                    WHEN 'version_mismatch' THEN diary_problem('version_mismatch', 412, o.reason)
                    WHEN 'no_version' THEN diary_problem('version_mismatch', 412, o.reason)
               END,
               p_partition, o."offset", decode(o.hash, 'hex'), o.resource, o.request_hash
          FROM outcome o WHERE o.action <> 'duplicate'
    )
    SELECT o.i,
           CASE WHEN o.action IN ('insert', 'update') THEN 'applied'
                WHEN o.action = 'duplicate' THEN 'duplicate' ELSE 'rejected' END,
           o.reason, o.resource
      FROM outcome o;
END
$$;

-- As in 0004, the event concatenated instead of built by json_build_object, in the very
-- format json_build_object wrote ("key" : value, ", " between members): the same bytes.
-- Only the source and the topic can hold characters JSON must escape: to_json writes them.
CREATE OR REPLACE FUNCTION diary_apply_flush(p_partition integer, p_topic text, p_source text)
RETURNS TABLE (seq bigint, user_id text, event text, type text, request_id text)
LANGUAGE plpgsql AS $$
DECLARE
    v_source text := '", "source" : ' || to_json(p_source)::text
                     || ', "type" : "diary.change.';
    v_time text := '", "time" : "'
                   || to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
                   || '", "datacontenttype" : "application/json", "data" : {"op" : "';
    v_topic text := '", "topic" : ' || to_json(p_topic)::text || ', "partition" : '
                    || p_partition::text || ', "offset" : ';
BEGIN
    RETURN QUERY
    WITH ins AS (
        INSERT INTO outbox ("partition", user_id, change_id, type, event, request_id)
        SELECT p_partition, s.user_id, s.event_id::text || '.' || s.idx::text,
               'diary.change.' || s.tbl || '.v1',
               '{"specversion" : "1.0", "id" : "' || s.event_id::text || '.' || s.idx::text
               || v_source || s.tbl || '.v1", "subject" : "' || s.user_id::text || v_time
               || s.op || '", "table" : "' || s.tbl || '", "key" : {"id" : "' || s.key::text
               || '"}, "before" : ' || coalesce(s.before, 'null') || ', "after" : '
               || coalesce(s.after, 'null') || ', "version" : ' || s.version::text
               || ', "source" : {"event_id" : "' || s.event_id::text || v_topic
               || s."offset"::text || '}}}',
               s.request_id
          FROM diary_stage s
         ORDER BY s."offset", s.idx
        RETURNING outbox.seq, outbox.user_id, outbox.type, outbox.event, outbox.request_id
    )
    SELECT ins.seq, ins.user_id::text, ins.event, ins.type, coalesce(ins.request_id, '')
      FROM ins
     ORDER BY ins.seq;
    DELETE FROM diary_stage;
END
$$;

-- ---------------------------------------------------------------------------------------
-- 4. One plan per session for the set-based functions and the flush.
--
-- PL/pgSQL plans its statements through the plan cache, which by default plans a statement
-- with parameters anew for its first five runs and then keeps doing so whenever a plan for
-- the parameters' values looks cheaper than a generic one: for these CTE statements it kept
-- planning, ~1 ms of every call (a third of a small batch's cost in the database). Their
-- plans do not depend on the values (index probes per event, 0005), so a generic plan, made
-- once per session, is the plan they would get anyway. The per-event functions keep the
-- default: a generic plan made while a table is young could keep a sequential scan.
DO $$
DECLARE
    fn regprocedure;
    n integer := 0;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure
          FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'diary\_apply\_%'
           AND p.proargtypes[0] = 'integer'::regtype
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET plan_cache_mode = force_generic_plan', fn);
        n := n + 1;
    END LOOP;
    IF n <> 11 THEN
        RAISE EXCEPTION '0007: expected the 10 set-based functions and the flush, found %', n;
    END IF;
END
$$;
