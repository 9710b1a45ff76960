-- What the apply path (shared/apply.c, linked by diary-worker and `diaryctl replay`) calls.
--
-- One function per event type decides and applies one event inside the caller's transaction:
-- it skips an event id already in processed_events (duplicate copies in the log, replays),
-- decides the business rejections by explicit checks (never by catching errors), writes the
-- effect with the event's time as created_at/updated_at (a replay yields identical rows),
-- adds the change events to the outbox and records the outcome in processed_events. It
-- returns (out_status, out_reason, out_resource): 'applied', 'rejected' or 'duplicate'.
-- Anything else (a constraint violation, a bad value) raises, and the caller retries the
-- batch one event per transaction to find and dead-letter the event at fault.
--
-- The diary_apply_* functions run with enable_seqscan off: PL/pgSQL caches their plans per
-- session, and a plan made while a table was nearly empty (a new database, a replay) would
-- keep scanning it whole once it is large. Every lookup they make has an index.
--
-- The common leading parameters of every diary_apply_* function, in order:
--   p_event_id, p_user_id (the subject), p_type, p_partition, p_offset, p_hash (of the raw
--   message), p_time (the event's time), p_ifmatch (NULL when none), p_request_id, p_topic
--   (the source topic) and p_source (the change events' CloudEvents source).

-- The request id travels with each change event to the diary.changes header `request-id`.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS request_id text;

-- The compare-and-set on the partition's position. The caller runs it first in the batch's
-- transaction: the row lock it takes makes a second worker that still believes it owns the
-- partition wait for this transaction and then fail its own compare-and-set, so two workers
-- can never both commit the same offsets. The distinct SQLSTATE DY001 tells the caller that
-- the position moved (another worker owns the partition now).
CREATE OR REPLACE FUNCTION diary_offsets_advance(p_group text, p_topic text, p_partition integer,
                                                 p_from bigint, p_to bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE consumer_offsets
       SET next_offset = p_to, updated_at = now()
     WHERE group_id = p_group AND topic = p_topic AND "partition" = p_partition
       AND next_offset = p_from;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'consumer_offsets (%, %, %) is no longer at offset %',
                        p_group, p_topic, p_partition, p_from
              USING ERRCODE = 'DY001';
    END IF;
END
$$;

-- The outcome row of an event. problem follows RFC 9457 with the slug as type.
CREATE OR REPLACE FUNCTION diary_event_record(p_event_id uuid, p_user_id uuid, p_type text,
                                              p_partition integer, p_offset bigint, p_hash bytea,
                                              p_status text, p_slug text, p_http integer,
                                              p_title text, p_detail text, p_resource uuid)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO processed_events (event_id, user_id, type, status, reason, problem, "partition",
                                  "offset", payload_hash, resource_id)
    VALUES (p_event_id, p_user_id, p_type, p_status, p_detail,
            CASE WHEN p_slug IS NULL THEN NULL
                 ELSE jsonb_build_object('type', p_slug, 'title', p_title, 'status', p_http,
                                         'detail', p_detail) END,
            p_partition, p_offset, p_hash, p_resource);
END
$$;

-- Records an event that can never apply (malformed, unknown type, refused by the database)
-- as rejected. Returns false when the id is already recorded: then it is a duplicate and is
-- not dead-lettered again.
CREATE OR REPLACE FUNCTION diary_event_dead(p_event_id uuid, p_user_id uuid, p_type text,
                                            p_partition integer, p_offset bigint, p_hash bytea,
                                            p_detail text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO processed_events (event_id, user_id, type, status, reason, problem, "partition",
                                  "offset", payload_hash)
    VALUES (p_event_id, p_user_id, p_type, 'rejected', p_detail,
            jsonb_build_object('type', 'invalid_event', 'title', 'Event could not be applied',
                               'status', 422, 'detail', p_detail),
            p_partition, p_offset, p_hash)
    ON CONFLICT (event_id) DO NOTHING;
    RETURN FOUND;
END
$$;

-- Adds one change event (docs/events.md, "diary.changes") to the outbox. Its id is the event
-- id, a dot and the index of the change within the event, stable across replays.
CREATE OR REPLACE FUNCTION diary_change_emit(p_event_id uuid, p_index integer, p_user_id uuid,
                                             p_partition integer, p_offset bigint, p_topic text,
                                             p_source text, p_request_id text, p_table text,
                                             p_op text, p_key uuid, p_before jsonb,
                                             p_after jsonb, p_version bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox ("partition", user_id, change_id, event, request_id)
    VALUES (p_partition, p_user_id, p_event_id::text || '.' || p_index,
            jsonb_build_object(
                'specversion', '1.0',
                'id', p_event_id::text || '.' || p_index,
                'source', p_source,
                'type', 'diary.change.' || p_table || '.v1',
                'subject', p_user_id,
                'time', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                'datacontenttype', 'application/json',
                'data', jsonb_build_object(
                    'op', p_op, 'table', p_table, 'key', jsonb_build_object('id', p_key),
                    'before', p_before, 'after', p_after, 'version', p_version,
                    'source', jsonb_build_object('event_id', p_event_id, 'topic', p_topic,
                                                 'partition', p_partition,
                                                 'offset', p_offset))),
            p_request_id);
END
$$;

-- Rows as the change stream shows them: the entity's fields and version, without timestamps,
-- numbers without trailing zeros, and never a user's password_hash.
CREATE OR REPLACE FUNCTION diary_change_user(p_id uuid, p_email text, p_name text,
                                             p_version bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', p_id, 'email', p_email, 'name', p_name,
                              'version', p_version);
$$;

CREATE OR REPLACE FUNCTION diary_change_food(p_id uuid, p_user_id uuid, p_name text,
                                             p_calories numeric, p_protein numeric,
                                             p_carbs numeric, p_fat numeric, p_version bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', p_id, 'user_id', p_user_id, 'name', p_name,
                              'calories_per_100g', trim_scale(p_calories),
                              'protein_per_100g', trim_scale(p_protein),
                              'carbs_per_100g', trim_scale(p_carbs),
                              'fat_per_100g', trim_scale(p_fat),
                              'version', p_version);
$$;

CREATE OR REPLACE FUNCTION diary_change_meal(p_id uuid, p_user_id uuid, p_date date,
                                             p_meal_type text, p_food_id uuid,
                                             p_amount numeric, p_version bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', p_id, 'user_id', p_user_id, 'date', p_date,
                              'meal_type', p_meal_type, 'food_id', p_food_id,
                              'amount', trim_scale(p_amount), 'version', p_version);
$$;

-- diary.user.registered.v1: insert users; rejected with email_taken (409).
CREATE OR REPLACE FUNCTION diary_apply_user_registered(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text,
    p_email text, p_name text, p_password_hash text,
    OUT out_status text, OUT out_reason text, OUT out_resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    u users;
BEGIN
    PERFORM 1 FROM processed_events WHERE event_id = p_event_id;
    IF FOUND THEN
        out_status := 'duplicate';
        RETURN;
    END IF;
    PERFORM 1 FROM users WHERE lower(email) = lower(p_email);
    IF FOUND THEN
        out_status := 'rejected';
        out_reason := 'The email address is already registered.';
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   'rejected', 'email_taken', 409, 'Email already registered',
                                   out_reason, NULL);
        RETURN;
    END IF;
    INSERT INTO users (id, email, name, password_hash, version, created_at, updated_at)
    VALUES (p_user_id, p_email, p_name, p_password_hash, 1, p_time, p_time)
    RETURNING * INTO u;
    PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic, p_source,
                              p_request_id, 'users', 'c', u.id, NULL, diary_change_user(u.id, u.email, u.name, u.version),
                              u.version);
    PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                               'applied', NULL, NULL, NULL, NULL, u.id);
    out_status := 'applied';
    out_resource := u.id;
END
$$;

-- diary.food.created.v1: insert foods; rejected with unknown_user (404).
CREATE OR REPLACE FUNCTION diary_apply_food_created(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text,
    p_food_id uuid, p_name text, p_calories numeric, p_protein numeric, p_carbs numeric,
    p_fat numeric,
    OUT out_status text, OUT out_reason text, OUT out_resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    f foods;
BEGIN
    PERFORM 1 FROM processed_events WHERE event_id = p_event_id;
    IF FOUND THEN
        out_status := 'duplicate';
        RETURN;
    END IF;
    PERFORM 1 FROM users WHERE id = p_user_id;
    IF NOT FOUND THEN
        out_status := 'rejected';
        out_reason := format('There is no user %s.', p_user_id);
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   'rejected', 'unknown_user', 404, 'Unknown user', out_reason,
                                   NULL);
        RETURN;
    END IF;
    INSERT INTO foods (id, user_id, name, calories_per_100g, protein_per_100g, carbs_per_100g,
                       fat_per_100g, version, created_at, updated_at)
    VALUES (p_food_id, p_user_id, p_name, p_calories, p_protein, p_carbs, p_fat, 1, p_time,
            p_time)
    RETURNING * INTO f;
    PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic, p_source,
                              p_request_id, 'foods', 'c', f.id, NULL, diary_change_food(f.id, f.user_id, f.name, f.calories_per_100g,
                                                f.protein_per_100g, f.carbs_per_100g,
                                                f.fat_per_100g, f.version),
                              f.version);
    PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                               'applied', NULL, NULL, NULL, NULL, f.id);
    out_status := 'applied';
    out_resource := f.id;
END
$$;

-- diary.entry.set.v1: upsert daily_meals on (user, date, meal, food): insert with the event's
-- entry_id and version 1, or set the amount and bump the version. Rejected with unknown_food
-- (422) when the food is not this user's, version_mismatch (412) when ifmatch names another
-- version than the row's (or a row that does not exist).
CREATE OR REPLACE FUNCTION diary_apply_entry_set(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text,
    p_entry_id uuid, p_date date, p_meal_type text, p_food_id uuid, p_amount numeric,
    OUT out_status text, OUT out_reason text, OUT out_resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    prev daily_meals;
    cur daily_meals;
BEGIN
    PERFORM 1 FROM processed_events WHERE event_id = p_event_id;
    IF FOUND THEN
        out_status := 'duplicate';
        RETURN;
    END IF;
    PERFORM 1 FROM foods WHERE id = p_food_id AND user_id = p_user_id;
    IF NOT FOUND THEN
        out_status := 'rejected';
        out_reason := format('There is no food %s of this user.', p_food_id);
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   'rejected', 'unknown_food', 422, 'Unknown food', out_reason,
                                   NULL);
        RETURN;
    END IF;
    SELECT * INTO prev FROM daily_meals
     WHERE user_id = p_user_id AND date = p_date AND meal_type = p_meal_type
       AND food_id = p_food_id
       FOR UPDATE;
    IF FOUND THEN
        IF p_ifmatch IS NOT NULL AND p_ifmatch <> prev.version THEN
            out_status := 'rejected';
            out_reason := format('The entry is at version %s, not %s.', prev.version, p_ifmatch);
            PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset,
                                       p_hash, 'rejected', 'version_mismatch', 412,
                                       'Version mismatch', out_reason, prev.id);
            out_resource := prev.id;
            RETURN;
        END IF;
        UPDATE daily_meals
           SET amount = p_amount, version = prev.version + 1, updated_at = p_time
         WHERE id = prev.id
        RETURNING * INTO cur;
        PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic,
                                  p_source, p_request_id, 'daily_meals', 'u', cur.id,
                                  diary_change_meal(prev.id, prev.user_id, prev.date,
                                                    prev.meal_type, prev.food_id, prev.amount,
                                                    prev.version),
                                  diary_change_meal(cur.id, cur.user_id, cur.date, cur.meal_type,
                                                    cur.food_id, cur.amount, cur.version),
                                  cur.version);
    ELSE
        IF p_ifmatch IS NOT NULL THEN
            out_status := 'rejected';
            out_reason := format('There is no entry at version %s.', p_ifmatch);
            PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset,
                                       p_hash, 'rejected', 'version_mismatch', 412,
                                       'Version mismatch', out_reason, NULL);
            RETURN;
        END IF;
        INSERT INTO daily_meals (id, user_id, date, meal_type, food_id, amount, version,
                                 created_at, updated_at)
        VALUES (p_entry_id, p_user_id, p_date, p_meal_type, p_food_id, p_amount, 1, p_time,
                p_time)
        RETURNING * INTO cur;
        PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic,
                                  p_source, p_request_id, 'daily_meals', 'c', cur.id, NULL,
                                  diary_change_meal(cur.id, cur.user_id, cur.date, cur.meal_type,
                                                    cur.food_id, cur.amount, cur.version),
                                  cur.version);
    END IF;
    PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                               'applied', NULL, NULL, NULL, NULL, cur.id);
    out_status := 'applied';
    out_resource := cur.id;
END
$$;

-- ---------------------------------------------------------------------------------------
-- The set-based fast path: one statement applies many events of one type at once. The
-- caller splits a batch into rounds so that no two events of a round touch the same row or
-- depend on each other (shared/apply_event.c, apply_sched_*), and runs the rounds in order,
-- each type's statement after the other; the outcome is what applying the events one by one
-- in log order gives. Each function takes the events as a JSON array of objects with
--   i (the index in the batch), event_id, user_id, type, offset, hash (hex), time, ifmatch,
--   request_id and the type's data fields,
-- records them in processed_events, stages their change events in the session's
-- diary_stage table, and returns (idx, status, reason, resource) per event.
-- diary_apply_flush then moves the staged change events to the outbox in log order.
-- Anything unexpected raises, and the caller falls back to the functions above, one event
-- per transaction.

-- The session's staging table for change events (temporary: private to the connection,
-- emptied at each commit). The apply code calls this once per connection.
CREATE OR REPLACE FUNCTION diary_stage_open() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS diary_stage (
        "offset"   bigint NOT NULL,
        idx        integer NOT NULL,
        event_id   uuid NOT NULL,
        user_id    uuid NOT NULL,
        tbl        text NOT NULL,
        op         text NOT NULL,
        key        uuid NOT NULL,
        before     jsonb,
        after      jsonb,
        version    bigint NOT NULL,
        request_id text
    ) ON COMMIT DELETE ROWS;
END
$$;

CREATE OR REPLACE FUNCTION diary_apply_flush(p_partition integer, p_topic text, p_source text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox ("partition", user_id, change_id, event, request_id)
    SELECT p_partition, s.user_id, s.event_id::text || '.' || s.idx,
           jsonb_build_object(
               'specversion', '1.0',
               'id', s.event_id::text || '.' || s.idx,
               'source', p_source,
               'type', 'diary.change.' || s.tbl || '.v1',
               'subject', s.user_id,
               'time', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
               'datacontenttype', 'application/json',
               'data', jsonb_build_object(
                   'op', s.op, 'table', s.tbl, 'key', jsonb_build_object('id', s.key),
                   'before', s.before, 'after', s.after, 'version', s.version,
                   'source', jsonb_build_object('event_id', s.event_id, 'topic', p_topic,
                                                'partition', p_partition,
                                                'offset', s."offset"))),
           s.request_id
      FROM diary_stage s
     ORDER BY s."offset", s.idx;
    DELETE FROM diary_stage;
END
$$;

CREATE OR REPLACE FUNCTION diary_apply_users(p_partition integer, p_events jsonb)
RETURNS TABLE (idx integer, status text, reason text, resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH ev AS (
        SELECT * FROM jsonb_to_recordset(p_events) AS e(
            i integer, event_id uuid, user_id uuid, type text, "offset" bigint, hash text,
            "time" timestamptz, request_id text, email varchar(255), name varchar(255),
            password_hash varchar(255))
    ), dec AS (
        SELECT ev.*,
               CASE WHEN EXISTS (SELECT 1 FROM processed_events p
                                  WHERE p.event_id = ev.event_id) THEN 'duplicate'
                    WHEN EXISTS (SELECT 1 FROM users u
                                  WHERE lower(u.email) = lower(ev.email)) THEN 'email_taken'
                    ELSE 'insert' END AS action
          FROM ev
    ), ins AS (
        INSERT INTO users (id, email, name, password_hash, version, created_at, updated_at)
        SELECT d.user_id, d.email, d.name, d.password_hash, 1, d."time", d."time"
          FROM dec d WHERE d.action = 'insert'
    ), stage AS (
        INSERT INTO diary_stage
        SELECT d."offset", 0, d.event_id, d.user_id, 'users', 'c', d.user_id, NULL,
               diary_change_user(d.user_id, d.email, d.name, 1), 1, d.request_id
          FROM dec d WHERE d.action = 'insert'
    ), rec AS (
        INSERT INTO processed_events (event_id, user_id, type, status, reason, problem,
                                      "partition", "offset", payload_hash, resource_id)
        SELECT d.event_id, d.user_id, d.type,
               CASE d.action WHEN 'insert' THEN 'applied' ELSE 'rejected' END,
               CASE d.action WHEN 'insert' THEN NULL
                    ELSE 'The email address is already registered.' END,
               CASE d.action WHEN 'insert' THEN NULL
                    ELSE jsonb_build_object('type', 'email_taken',
                                            'title', 'Email already registered', 'status', 409,
                                            'detail', 'The email address is already registered.')
               END,
               p_partition, d."offset", decode(d.hash, 'hex'),
               CASE d.action WHEN 'insert' THEN d.user_id END
          FROM dec d WHERE d.action <> 'duplicate'
    )
    SELECT d.i,
           CASE d.action WHEN 'insert' THEN 'applied' WHEN 'duplicate' THEN 'duplicate'
                ELSE 'rejected' END,
           CASE d.action WHEN 'email_taken' THEN 'The email address is already registered.' END,
           CASE d.action WHEN 'insert' THEN d.user_id END
      FROM dec d;
END
$$;

CREATE OR REPLACE FUNCTION diary_apply_foods(p_partition integer, p_events jsonb)
RETURNS TABLE (idx integer, status text, reason text, resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH ev AS (
        SELECT * FROM jsonb_to_recordset(p_events) AS e(
            i integer, event_id uuid, user_id uuid, type text, "offset" bigint, hash text,
            "time" timestamptz, request_id text, food_id uuid, name varchar(255),
            calories_per_100g numeric(8, 2), protein_per_100g numeric(8, 2),
            carbs_per_100g numeric(8, 2), fat_per_100g numeric(8, 2))
    ), dec AS (
        SELECT ev.*,
               CASE WHEN EXISTS (SELECT 1 FROM processed_events p
                                  WHERE p.event_id = ev.event_id) THEN 'duplicate'
                    WHEN NOT EXISTS (SELECT 1 FROM users u WHERE u.id = ev.user_id)
                         THEN 'unknown_user'
                    ELSE 'insert' END AS action
          FROM ev
    ), ins AS (
        INSERT INTO foods (id, user_id, name, calories_per_100g, protein_per_100g,
                           carbs_per_100g, fat_per_100g, version, created_at, updated_at)
        SELECT d.food_id, d.user_id, d.name, d.calories_per_100g, d.protein_per_100g,
               d.carbs_per_100g, d.fat_per_100g, 1, d."time", d."time"
          FROM dec d WHERE d.action = 'insert'
    ), stage AS (
        INSERT INTO diary_stage
        SELECT d."offset", 0, d.event_id, d.user_id, 'foods', 'c', d.food_id, NULL,
               diary_change_food(d.food_id, d.user_id, d.name, d.calories_per_100g,
                                 d.protein_per_100g, d.carbs_per_100g, d.fat_per_100g, 1),
               1, d.request_id
          FROM dec d WHERE d.action = 'insert'
    ), rec AS (
        INSERT INTO processed_events (event_id, user_id, type, status, reason, problem,
                                      "partition", "offset", payload_hash, resource_id)
        SELECT d.event_id, d.user_id, d.type,
               CASE d.action WHEN 'insert' THEN 'applied' ELSE 'rejected' END,
               CASE d.action WHEN 'insert' THEN NULL
                    ELSE format('There is no user %s.', d.user_id) END,
               CASE d.action WHEN 'insert' THEN NULL
                    ELSE jsonb_build_object('type', 'unknown_user', 'title', 'Unknown user',
                                            'status', 404,
                                            'detail', format('There is no user %s.', d.user_id))
               END,
               p_partition, d."offset", decode(d.hash, 'hex'),
               CASE d.action WHEN 'insert' THEN d.food_id END
          FROM dec d WHERE d.action <> 'duplicate'
    )
    SELECT d.i,
           CASE d.action WHEN 'insert' THEN 'applied' WHEN 'duplicate' THEN 'duplicate'
                ELSE 'rejected' END,
           CASE d.action WHEN 'unknown_user' THEN format('There is no user %s.', d.user_id) END,
           CASE d.action WHEN 'insert' THEN d.food_id END
      FROM dec d;
END
$$;

CREATE OR REPLACE FUNCTION diary_apply_entries(p_partition integer, p_events jsonb)
RETURNS TABLE (idx integer, status text, reason text, resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH ev AS (
        SELECT * FROM jsonb_to_recordset(p_events) AS e(
            i integer, event_id uuid, user_id uuid, type text, "offset" bigint, hash text,
            "time" timestamptz, ifmatch bigint, request_id text, entry_id uuid, date date,
            meal_type varchar(50), food_id uuid, amount numeric(8, 2))
    ), dec AS (
        SELECT ev.*, m.id AS prev_id, m.amount AS prev_amount, m.version AS prev_version,
               CASE WHEN EXISTS (SELECT 1 FROM processed_events p
                                  WHERE p.event_id = ev.event_id) THEN 'duplicate'
                    WHEN NOT EXISTS (SELECT 1 FROM foods f
                                      WHERE f.id = ev.food_id AND f.user_id = ev.user_id)
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
                   diary_change_meal(d.prev_id, d.user_id, d.date, d.meal_type, d.food_id,
                                     d.prev_amount, d.prev_version) END,
               diary_change_meal(coalesce(d.prev_id, d.entry_id), d.user_id, d.date,
                                 d.meal_type, d.food_id, d.amount,
                                 coalesce(d.prev_version + 1, 1)),
               coalesce(d.prev_version + 1, 1), d.request_id
          FROM dec d WHERE d.action IN ('insert', 'update')
    ), outcome AS (
        SELECT d.i, d.event_id, d.user_id, d.type, d."offset", d.hash, d.action,
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
                                      "partition", "offset", payload_hash, resource_id)
        SELECT o.event_id, o.user_id, o.type,
               CASE WHEN o.action IN ('insert', 'update') THEN 'applied' ELSE 'rejected' END,
               o.reason,
               CASE o.action
                    WHEN 'unknown_food' THEN jsonb_build_object('type', 'unknown_food',
                         'title', 'Unknown food', 'status', 422, 'detail', o.reason)
                    WHEN 'version_mismatch' THEN jsonb_build_object('type', 'version_mismatch',
                         'title', 'Version mismatch', 'status', 412, 'detail', o.reason)
                    WHEN 'no_version' THEN jsonb_build_object('type', 'version_mismatch',
                         'title', 'Version mismatch', 'status', 412, 'detail', o.reason)
               END,
               p_partition, o."offset", decode(o.hash, 'hex'), o.resource
          FROM outcome o WHERE o.action <> 'duplicate'
    )
    SELECT o.i,
           CASE WHEN o.action IN ('insert', 'update') THEN 'applied'
                WHEN o.action = 'duplicate' THEN 'duplicate' ELSE 'rejected' END,
           o.reason, o.resource
      FROM outcome o;
END
$$;

-- A dead letter sent back to the log by `diaryctl dlq redrive` (header diary-redrive): its id
-- is recorded as rejected because it could not be applied; forget that record so that the
-- event is applied (or dead-lettered) afresh. Any other record (applied, or a business
-- rejection) stays, and the redriven copy is then a duplicate: redriving twice is harmless.
CREATE OR REPLACE FUNCTION diary_event_redrive(p_event_id uuid)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM processed_events
     WHERE event_id = p_event_id AND status = 'rejected'
       AND problem->>'type' = 'invalid_event';
END
$$;
