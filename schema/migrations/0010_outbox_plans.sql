-- 0010: the relay reads and deletes the outbox through functions whose plans never scan it
-- whole (docs/worker.md, "The relay's plans").
--
-- The outbox is a queue: rows come in at one end and are deleted at the other, so it is
-- mostly dead rows between two autovacuums (~40,000 pages a minute at 5,000 change events a
-- second). The relay's statements used to be prepared at the top level, and PostgreSQL
-- keeps a prepared statement's generic plan, made once, until something invalidates it. A
-- worker that starts on an empty outbox gets a sequential scan for
--   DELETE FROM outbox WHERE seq = ANY($2) AND ($1 < 0 OR "partition" = $1)
-- (the cheapest plan of a table of a few pages) and keeps it while the table bloats: each
-- delete then reads every page, live or dead (shown by hand: 12,501 pages read to delete 2
-- rows of a 200,000-row table, 64 ms; make bench saw such deletes take 1.1 s a call at
-- 10,000 writes/s, the apply fell 170,000 events behind and the devbroker dropped them).
-- With a partition given, the planner could also take idx_outbox_partition on the partition
-- alone and filter seq, reading every dead index entry of the partition.
--
-- These two functions run with sequential and bitmap scans off, as the apply functions do
-- (0002), so any plan they cache reads the outbox by its primary key (delete) or in
-- ("partition", seq) order up to the limit (fetch), however large or small the table was
-- when the plan was made.

-- The relay's read: the oldest p_limit change events of a partition, in seq order.
CREATE FUNCTION diary_outbox_fetch(p_partition integer, p_limit bigint)
RETURNS TABLE (seq bigint, user_id text, event text, type text, request_id text)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
BEGIN
    RETURN QUERY
    SELECT o.seq, o.user_id::text, o.event, coalesce(o.type, o.event::json->>'type'),
           coalesce(o.request_id, '')
      FROM outbox o
     WHERE o."partition" = p_partition
     ORDER BY o.seq
     LIMIT p_limit;
END
$$;

-- The relay's delete of published change events: seq is the primary key; the partition,
-- when >= 0, is a guard. Returns how many rows went.
CREATE FUNCTION diary_outbox_delete(p_partition integer, p_seqs bigint[]) RETURNS bigint
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM outbox o
     WHERE o.seq = ANY(p_seqs)
       AND (p_partition < 0 OR o."partition" = p_partition);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
