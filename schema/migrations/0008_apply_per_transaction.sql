-- 0008: less database work per applied batch and per applied event (bench/README.md, "Apply").
--
-- 1. The staging table is truncated once every few small batches instead of at every
--    COMMIT. diary_stage (0002) was ON COMMIT DELETE ROWS: every COMMIT of the apply
--    truncated it, its TOAST table and the TOAST table's index (an index build), whatever
--    the batch held. For the small batches of a steady load (a few events a transaction)
--    that was ~14% of the database's CPU per transaction (perf, 3-event batches: ~0.27 of
--    ~1.9 ms). The table now preserves rows at COMMIT, and diary_stage_clear, called by
--    diary_apply_flush (or by a session that discards its changes), deletes the staged rows
--    while the table is small and truncates it once it has grown past 128 KiB: deleted rows
--    keep their pages until then, and every flush reads those pages, so the table must stay
--    small. A batch of a few hundred events outgrows that at once and is truncated as
--    before. A transaction still never sees another's staged rows: the flush (or the clear)
--    ends every transaction that staged any, and a failed one rolls its rows back.
-- 2. idx_processed_events_user (user_id, applied_at), from 0001, goes: no statement reads it
--    (processed_events is read by event id, the primary key; the revocation cache has its
--    own partial index from 0003; `diaryctl verify` reads the whole table), and every
--    applied event paid one more B-tree insertion at a random place and its WAL for it.
--
-- A worker session opened before this migration keeps its ON COMMIT DELETE ROWS table until
-- it reconnects; both kinds work with these functions. Deploy with the diaryctl of the same
-- commit: an older `diaryctl replay` discards its changes by never flushing, counting on the
-- COMMIT to empty the table, and its session's table would only grow.

DROP INDEX IF EXISTS idx_processed_events_user;

CREATE OR REPLACE FUNCTION diary_stage_open() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('pg_temp.diary_stage') IS NOT NULL THEN
        DROP TABLE pg_temp.diary_stage;
    END IF;
    CREATE TEMP TABLE diary_stage (
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
    ) ON COMMIT PRESERVE ROWS;
END
$$;

-- Empties the staging table: deletes its rows, or truncates it once it holds more than
-- 128 KiB (16 pages), live or dead.
CREATE FUNCTION diary_stage_clear() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_relation_size('pg_temp.diary_stage') > 131072 THEN
        TRUNCATE pg_temp.diary_stage;
    ELSE
        DELETE FROM pg_temp.diary_stage;
    END IF;
END
$$;

-- As in 0007, the staged rows cleared by diary_stage_clear.
CREATE OR REPLACE FUNCTION diary_apply_flush(p_partition integer, p_topic text, p_source text)
RETURNS TABLE (seq bigint, user_id text, event text, type text, request_id text)
LANGUAGE plpgsql
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
    PERFORM diary_stage_clear();
END
$$;

-- 3. A session that discards its change events (`diaryctl replay`: the stream already carried
--    them) says so with diary.changes = off, and diary_apply_entries, the bulk of a replay,
--    then does not build and stage its rows' change events at all. Its body is edited in
--    place, as in 0005 and 0006; the migration fails if the body does not read as expected.
DO $$
DECLARE
    fn regprocedure := 'diary_apply_entries(integer, text[], text[], text[], text[], text[],
                        text[], text[], text[], text[], text[], text[], text[], text[], text[],
                        text[])'::regprocedure;
    def text := pg_get_functiondef(fn);
    anchor text := E'FROM dec d WHERE d.action IN (''insert'', ''update'')\n    ), outcome AS (';
BEGIN
    IF strpos(def, anchor) = 0 THEN
        RAISE EXCEPTION '0008: % does not stage its changes as expected', fn;
    END IF;
    EXECUTE replace(def, anchor,
                    E'FROM dec d WHERE d.action IN (''insert'', ''update'')\n'
                    || E'           AND current_setting(''diary.changes'', true) IS DISTINCT FROM ''off''\n'
                    || E'    ), outcome AS (');
END
$$;
