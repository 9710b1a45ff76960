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

-- The table diary_stage_open creates, and the flush's last statement: edited in place, as in
-- 0005 and 0006 (the migration fails if either does not read as expected).
DO $$
DECLARE
    open_fn regprocedure := 'diary_stage_open()'::regprocedure;
    flush_fn regprocedure := 'diary_apply_flush(integer, text, text)'::regprocedure;
    open_def text := pg_get_functiondef(open_fn);
    flush_def text := pg_get_functiondef(flush_fn);
BEGIN
    IF strpos(open_def, ') ON COMMIT DELETE ROWS;') = 0 THEN
        RAISE EXCEPTION '0008: % does not create the table ON COMMIT DELETE ROWS', open_fn;
    END IF;
    IF strpos(flush_def, E'    DELETE FROM diary_stage;\nEND') = 0 THEN
        RAISE EXCEPTION '0008: % does not end by deleting the staged rows', flush_fn;
    END IF;
    EXECUTE replace(open_def, ') ON COMMIT DELETE ROWS;', ') ON COMMIT PRESERVE ROWS;');
    EXECUTE replace(flush_def, E'    DELETE FROM diary_stage;\nEND',
                    E'    PERFORM diary_stage_clear();\nEND');
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
