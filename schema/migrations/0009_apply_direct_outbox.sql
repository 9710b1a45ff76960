-- 0009: a partition's batch of entry sets writes its change events straight into the outbox
-- (bench/README.md, "Apply"; docs/worker.md, "The outbox, staged or direct").
--
-- The set-based path stages every change event of a partition's batch in the session's
-- temporary table diary_stage, and diary_apply_flush then copies them to the outbox in log
-- order (offset, index), because one batch may take several calls (one per event type and
-- round) whose events interleave in the log. On batches of ~750 entry sets (make bench's
-- apply), staging the rows, reading and sorting them, sorting what the flush returns and
-- emptying the table took ~20 of the ~94 us of statement time an event.
--
-- When a partition's batch is entry sets only, in one round, one call holds all its events in
-- log order: diary_apply_entries_direct does what diary_apply_entries does, but inserts the
-- change events into the outbox itself, in offset order (so their seq follows the log), as
-- the flush would have written them (the same bytes: diary_apply_flush's text with index 0
-- and table daily_meals), and returns them after the events' outcomes: rows with idx NULL
-- whose ch_* columns are what the flush returns. Any other batch is staged as before.
--
-- Its body is diary_apply_entries' (0007, with 0008's diary.changes test) but for the
-- changes CTE and the final SELECT, restated in full so that it reads in one place: a later
-- change to how an entry set applies must be made to both (tests/e2e/test_worker_paths.sh
-- compares the two functions' change events byte for byte, and the set path, which uses
-- both, against the per-event path).
--
-- Its parameters are diary_apply_entries' with the flush's topic and source after the
-- partition. Deploy with the worker of the same commit, which calls it; an older worker keeps
-- calling diary_apply_entries and the flush, which are unchanged.

CREATE FUNCTION diary_apply_entries_direct(p_partition integer, p_topic text, p_source text,
                                           p_i text[], p_event_id text[], p_user_id text[],
                                           p_type text[], p_offset text[], p_hash text[],
                                           p_time text[], p_ifmatch text[],
                                           p_request_id text[], p_request_hash text[],
                                           p_entry_id text[], p_date text[],
                                           p_meal_type text[], p_food_id text[],
                                           p_amount text[])
RETURNS TABLE (idx integer, status text, reason text, resource uuid, ch_seq bigint,
               ch_user_id text, ch_event text, ch_type text, ch_request_id text)
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
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
    ), changes AS (
        INSERT INTO outbox ("partition", user_id, change_id, type, event, request_id)
        SELECT p_partition, d.user_id, d.event_id::text || '.0', 'diary.change.daily_meals.v1',
               '{"specversion" : "1.0", "id" : "' || d.event_id::text || '.0' || v_source
               || 'daily_meals.v1", "subject" : "' || d.user_id::text || v_time
               || CASE d.action WHEN 'update' THEN 'u' ELSE 'c' END
               || '", "table" : "daily_meals", "key" : {"id" : "'
               || coalesce(d.prev_id, d.entry_id)::text || '"}, "before" : '
               || CASE d.action WHEN 'update' THEN
                      diary_change_meal_text(d.prev_id, d.user_id, d.date, d.meal_type,
                                             d.food_id, d.prev_amount, d.prev_version)
                  ELSE 'null' END
               || ', "after" : '
               || diary_change_meal_text(coalesce(d.prev_id, d.entry_id), d.user_id, d.date,
                                         d.meal_type, d.food_id, d.amount,
                                         coalesce(d.prev_version + 1, 1))
               || ', "version" : ' || coalesce(d.prev_version + 1, 1)::text
               || ', "source" : {"event_id" : "' || d.event_id::text || v_topic
               || d."offset"::text || '}}}',
               d.request_id
          FROM dec d WHERE d.action IN ('insert', 'update')
           AND current_setting('diary.changes', true) IS DISTINCT FROM 'off'
         ORDER BY d."offset"
        RETURNING outbox.seq, outbox.user_id, outbox.event, outbox.type, outbox.request_id
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
           o.reason, o.resource, NULL::bigint, NULL::text, NULL::text, NULL::text, NULL::text
      FROM outcome o
    UNION ALL
    SELECT NULL::integer, NULL::text, NULL::text, NULL::uuid, c.seq, c.user_id::text, c.event,
           c.type, coalesce(c.request_id, '')
      FROM changes c;
END
$$;
