-- 0004: cheaper change events (bench/README.md, "Apply").
--
-- The outbox keeps each change event as the JSON text it is published as (json, not jsonb):
-- the event is built once by json_build_object, which writes text, instead of being built as
-- jsonb (a tree, copied again for every level of nesting), stored, and printed back to text
-- by the relay. The change stream carries the same objects; only the spacing and the order
-- of the keys differ (json_build_object keeps the order it is given: specversion, id, source,
-- type, ...), which JSON does not give a meaning to (docs/events.md).
--
-- diary_apply_flush now returns the rows it put in the outbox, so the worker can publish a
-- batch's change events without reading them back (it still reads the outbox after a
-- restart, a failure, or a batch that did not go through the set-based path).
--
-- Deploy this migration together with the worker binary of the same commit: the worker reads
-- the flush's rows (SELECT * FROM diary_apply_flush(...)).

ALTER TABLE outbox ALTER COLUMN event TYPE json USING event::json;
-- The event's CloudEvents type (the ce_type header), so that nobody parses the text for it.
-- NULL in rows written before this migration.
ALTER TABLE outbox ADD COLUMN type text;

DROP FUNCTION diary_apply_flush(integer, text, text);

CREATE FUNCTION diary_apply_flush(p_partition integer, p_topic text, p_source text)
RETURNS TABLE (seq bigint, user_id text, event text, type text, request_id text)
LANGUAGE plpgsql AS $$
DECLARE
    v_time text := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
BEGIN
    RETURN QUERY
    WITH ins AS (
        INSERT INTO outbox ("partition", user_id, change_id, type, event, request_id)
        SELECT p_partition, s.user_id, s.event_id::text || '.' || s.idx,
               'diary.change.' || s.tbl || '.v1',
               json_build_object(
                   'specversion', '1.0',
                   'id', s.event_id::text || '.' || s.idx,
                   'source', p_source,
                   'type', 'diary.change.' || s.tbl || '.v1',
                   'subject', s.user_id,
                   'time', v_time,
                   'datacontenttype', 'application/json',
                   'data', json_build_object(
                       'op', s.op, 'table', s.tbl, 'key', json_build_object('id', s.key),
                       'before', s.before, 'after', s.after, 'version', s.version,
                       'source', json_build_object('event_id', s.event_id, 'topic', p_topic,
                                                   'partition', p_partition,
                                                   'offset', s."offset"))),
               s.request_id
          FROM diary_stage s
         ORDER BY s."offset", s.idx
        RETURNING outbox.seq, outbox.user_id, outbox.type, outbox.event, outbox.request_id
    )
    SELECT ins.seq, ins.user_id::text, ins.event::text, ins.type, coalesce(ins.request_id, '')
      FROM ins
     ORDER BY ins.seq;
    DELETE FROM diary_stage;
END
$$;

-- The per-event path writes the same text.
CREATE OR REPLACE FUNCTION diary_change_emit(p_event_id uuid, p_index integer, p_user_id uuid,
                                             p_partition integer, p_offset bigint, p_topic text,
                                             p_source text, p_request_id text, p_table text,
                                             p_op text, p_key uuid, p_before jsonb,
                                             p_after jsonb, p_version bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('diary.stage', true) = 'on' THEN
        INSERT INTO diary_stage ("offset", idx, event_id, user_id, tbl, op, key, before, after,
                                 version, request_id)
        VALUES (p_offset, p_index, p_event_id, p_user_id, p_table, p_op, p_key, p_before,
                p_after, p_version, p_request_id);
        RETURN;
    END IF;
    INSERT INTO outbox ("partition", user_id, change_id, type, event, request_id)
    VALUES (p_partition, p_user_id, p_event_id::text || '.' || p_index,
            'diary.change.' || p_table || '.v1',
            json_build_object(
                'specversion', '1.0',
                'id', p_event_id::text || '.' || p_index,
                'source', p_source,
                'type', 'diary.change.' || p_table || '.v1',
                'subject', p_user_id,
                'time', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                'datacontenttype', 'application/json',
                'data', json_build_object(
                    'op', p_op, 'table', p_table, 'key', json_build_object('id', p_key),
                    'before', p_before, 'after', p_after, 'version', p_version,
                    'source', json_build_object('event_id', p_event_id, 'topic', p_topic,
                                                'partition', p_partition,
                                                'offset', p_offset))),
            p_request_id);
END
$$;
