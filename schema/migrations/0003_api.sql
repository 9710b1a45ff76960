-- The rest of the API's event types (docs/events.md, "Event types"): what the tables need for
-- them, and the functions of the apply path (shared/apply.c) that decide and apply them.
--
-- The conventions of 0002_apply.sql hold: one per-event function per type
-- (diary_apply_<type>, used by DIARY_APPLY_MODE=event and by the one-event-per-transaction
-- fallback), and a set-based function per frequent type (one statement per round of a batch).
-- Every function skips an event id already in processed_events, decides the business
-- rejections by explicit checks, writes rows with created_at/updated_at = the event's time and
-- ids from the event's data, bumps the version by one on each update, adds the change events
-- (a delete: op d, before = the row, after = null, version = the row's version) and records the
-- outcome with its problem. An If-Match (p_ifmatch) on a type that targets an existing row is
-- checked against that row's version; a create (registration, food, revoked session) has no row
-- to compare and ignores it.
--
-- New in this migration for every type, the three of 0002 included: processed_events keeps the
-- envelope's requesthash (request_hash), so the per-event functions take a twelfth common
-- parameter, p_request_hash, after p_source. Functions cannot change their parameters with
-- CREATE OR REPLACE, so the per-event functions of 0002 (and the two recording helpers) are
-- dropped and created again here with it; the set-based functions keep their signature and
-- read request_hash from the events' JSON.
--
-- The user types (updated, password_changed, deleted) are rare and have no set-based function:
-- the set-based path calls their per-event function inside its round. So that their change
-- events still reach the outbox in log order, the set-based path sets diary.stage = on for the
-- transaction, and diary_change_emit then stages the change in diary_stage like the set-based
-- functions do, for diary_apply_flush to move in (offset, index) order.

-- ---------------------------------------------------------------------------------------
-- Tables

-- Tokens issued before this time stop working (set by a password change with revoke = true);
-- NULL: no such cut. Ingest polls users.updated_at > $1 for the changes.
ALTER TABLE users ADD COLUMN tokens_valid_after timestamptz NULL;
CREATE INDEX idx_users_updated_at ON users (updated_at);

-- Sessions logged out before they expired (diary.session.revoked.v1). revoked_at is the
-- event's time, so a replay yields the same rows; ingest polls revoked_at > $1 for the deltas.
-- A deleted user's rows go with the user.
CREATE TABLE revoked_sessions (
    session_id uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL
);
CREATE INDEX idx_revoked_sessions_revoked_at ON revoked_sessions (revoked_at);
CREATE INDEX idx_revoked_sessions_user ON revoked_sessions (user_id);

-- The envelope's requesthash (hex), NULL when the event carried none.
ALTER TABLE processed_events ADD COLUMN request_hash text NULL;

-- Ingest's revocation cache reads the applied revocations since its last look
-- (type IN (...) AND status = 'applied' AND applied_at > $1). A partial index keeps that an
-- index scan on a large processed_events while costing the frequent types nothing.
CREATE INDEX idx_processed_events_revocations ON processed_events (applied_at)
    WHERE status = 'applied' AND type IN ('diary.session.revoked.v1',
                                          'diary.user.password_changed.v1',
                                          'diary.user.deleted.v1');

-- ---------------------------------------------------------------------------------------
-- Helpers

DROP FUNCTION diary_event_record(uuid, uuid, text, integer, bigint, bytea, text, text, integer,
                                 text, text, uuid);
DROP FUNCTION diary_event_dead(uuid, uuid, text, integer, bigint, bytea, text);

-- The RFC 9457 object of a rejection: the slug as type, its title, the HTTP status and the
-- detail sentence.
CREATE OR REPLACE FUNCTION diary_problem(p_slug text, p_http integer, p_detail text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'type', p_slug,
        'title', CASE p_slug
                      WHEN 'email_taken' THEN 'Email already registered'
                      WHEN 'unknown_user' THEN 'Unknown user'
                      WHEN 'unknown_food' THEN 'Unknown food'
                      WHEN 'unknown_entry' THEN 'Unknown diary entry'
                      WHEN 'unknown_weight' THEN 'Unknown weight entry'
                      WHEN 'version_mismatch' THEN 'Version mismatch'
                      WHEN 'invalid_settings' THEN 'Invalid settings'
                      WHEN 'invalid_event' THEN 'Event could not be applied'
                      ELSE p_slug END,
        'status', p_http, 'detail', p_detail);
$$;

-- The outcome row of an event (p_slug NULL: applied, no problem).
CREATE FUNCTION diary_event_record(p_event_id uuid, p_user_id uuid, p_type text,
                                   p_partition integer, p_offset bigint, p_hash bytea,
                                   p_request_hash text, p_status text, p_slug text,
                                   p_http integer, p_detail text, p_resource uuid)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO processed_events (event_id, user_id, type, status, reason, problem, "partition",
                                  "offset", payload_hash, resource_id, request_hash)
    VALUES (p_event_id, p_user_id, p_type, p_status, p_detail,
            CASE WHEN p_slug IS NULL THEN NULL ELSE diary_problem(p_slug, p_http, p_detail) END,
            p_partition, p_offset, p_hash, p_resource, p_request_hash);
END
$$;

-- Records an event that can never apply as rejected (invalid_event). Returns false when the id
-- is already recorded: then it is a duplicate and is not dead-lettered again.
CREATE FUNCTION diary_event_dead(p_event_id uuid, p_user_id uuid, p_type text,
                                 p_partition integer, p_offset bigint, p_hash bytea,
                                 p_detail text, p_request_hash text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO processed_events (event_id, user_id, type, status, reason, problem, "partition",
                                  "offset", payload_hash, request_hash)
    VALUES (p_event_id, p_user_id, p_type, 'rejected', p_detail,
            diary_problem('invalid_event', 422, p_detail), p_partition, p_offset, p_hash,
            p_request_hash)
    ON CONFLICT (event_id) DO NOTHING;
    RETURN FOUND;
END
$$;

-- As in 0002, plus: with diary.stage = on (set by the set-based path for its transaction) the
-- change is staged in diary_stage, so that diary_apply_flush puts it in log order with the
-- set-based functions' changes.
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

-- Rows as the change stream shows them (see 0002): the entity's fields and version, numbers
-- without trailing zeros, timestamps in UTC whatever the session's TimeZone.
CREATE OR REPLACE FUNCTION diary_change_weight(p_id uuid, p_user_id uuid, p_date date,
                                               p_weight numeric, p_version bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', p_id, 'user_id', p_user_id, 'date', p_date,
                              'weight', trim_scale(p_weight), 'version', p_version);
$$;

-- user_settings has no id of its own: its key is the user id.
CREATE OR REPLACE FUNCTION diary_change_settings(p_user_id uuid, p_unit_system text,
                                                 p_daily_calorie_goal integer,
                                                 p_protein numeric, p_fat numeric,
                                                 p_version bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('user_id', p_user_id, 'unit_system', p_unit_system,
                              'daily_calorie_goal', p_daily_calorie_goal,
                              'protein_percentage', trim_scale(p_protein),
                              'fat_percentage', trim_scale(p_fat), 'version', p_version);
$$;

CREATE OR REPLACE FUNCTION diary_utc(p_time timestamptz)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(p_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
$$;

-- revoked_sessions rows have no version; their changes carry version 1.
CREATE OR REPLACE FUNCTION diary_change_session(p_session_id uuid, p_user_id uuid,
                                                p_expires_at timestamptz,
                                                p_revoked_at timestamptz)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('session_id', p_session_id, 'user_id', p_user_id,
                              'expires_at', diary_utc(p_expires_at),
                              'revoked_at', diary_utc(p_revoked_at));
$$;

-- ---------------------------------------------------------------------------------------
-- Per-event functions. Common leading parameters (0002) plus p_request_hash:
--   p_event_id, p_user_id (the subject), p_type, p_partition, p_offset, p_hash, p_time,
--   p_ifmatch, p_request_id, p_topic, p_source, p_request_hash.

DROP FUNCTION diary_apply_user_registered(uuid, uuid, text, integer, bigint, bytea, timestamptz,
                                          bigint, text, text, text, text, text, text);
DROP FUNCTION diary_apply_food_created(uuid, uuid, text, integer, bigint, bytea, timestamptz,
                                       bigint, text, text, text, uuid, text, numeric, numeric,
                                       numeric, numeric);
DROP FUNCTION diary_apply_entry_set(uuid, uuid, text, integer, bigint, bytea, timestamptz,
                                    bigint, text, text, text, uuid, date, text, uuid, numeric);

-- diary.user.registered.v1: insert users; rejected with email_taken (409).
CREATE FUNCTION diary_apply_user_registered(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text, p_request_hash text,
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
                                   p_request_hash, 'rejected', 'email_taken', 409, out_reason,
                                   NULL);
        RETURN;
    END IF;
    INSERT INTO users (id, email, name, password_hash, version, created_at, updated_at)
    VALUES (p_user_id, p_email, p_name, p_password_hash, 1, p_time, p_time)
    RETURNING * INTO u;
    PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic, p_source,
                              p_request_id, 'users', 'c', u.id, NULL,
                              diary_change_user(u.id, u.email, u.name, u.version), u.version);
    PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                               p_request_hash, 'applied', NULL, NULL, NULL, u.id);
    out_status := 'applied';
    out_resource := u.id;
END
$$;

-- diary.user.updated.v1: name and/or email (NULL: keep), version + 1. Rejected with
-- unknown_user (404), version_mismatch (412), email_taken (409: another user has it, case
-- folded).
CREATE FUNCTION diary_apply_user_updated(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text, p_request_hash text,
    p_name text, p_email text,
    OUT out_status text, OUT out_reason text, OUT out_resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    prev users;
    cur users;
BEGIN
    PERFORM 1 FROM processed_events WHERE event_id = p_event_id;
    IF FOUND THEN
        out_status := 'duplicate';
        RETURN;
    END IF;
    out_status := 'rejected';
    SELECT * INTO prev FROM users WHERE id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        out_reason := format('There is no user %s.', p_user_id);
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'unknown_user', 404, out_reason,
                                   NULL);
        RETURN;
    END IF;
    IF p_ifmatch IS NOT NULL AND p_ifmatch <> prev.version THEN
        out_reason := format('The user is at version %s, not %s.', prev.version, p_ifmatch);
        out_resource := prev.id;
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'version_mismatch', 412,
                                   out_reason, prev.id);
        RETURN;
    END IF;
    IF p_email IS NOT NULL THEN
        PERFORM 1 FROM users WHERE lower(email) = lower(p_email) AND id <> p_user_id;
        IF FOUND THEN
            out_reason := 'The email address is already registered.';
            PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset,
                                       p_hash, p_request_hash, 'rejected', 'email_taken', 409,
                                       out_reason, NULL);
            RETURN;
        END IF;
    END IF;
    UPDATE users
       SET name = coalesce(p_name, name), email = coalesce(p_email, email),
           version = prev.version + 1, updated_at = p_time
     WHERE id = prev.id
    RETURNING * INTO cur;
    PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic, p_source,
                              p_request_id, 'users', 'u', cur.id,
                              diary_change_user(prev.id, prev.email, prev.name, prev.version),
                              diary_change_user(cur.id, cur.email, cur.name, cur.version),
                              cur.version);
    PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                               p_request_hash, 'applied', NULL, NULL, NULL, cur.id);
    out_status := 'applied';
    out_resource := cur.id;
END
$$;

-- diary.user.password_changed.v1: the new hash, version + 1, and with p_revoke the cut for
-- tokens (tokens_valid_after = the event's time). Rejected with unknown_user (404),
-- version_mismatch (412). The change shows the row without password_hash.
CREATE FUNCTION diary_apply_user_password_changed(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text, p_request_hash text,
    p_password_hash text, p_revoke boolean,
    OUT out_status text, OUT out_reason text, OUT out_resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    prev users;
    cur users;
BEGIN
    PERFORM 1 FROM processed_events WHERE event_id = p_event_id;
    IF FOUND THEN
        out_status := 'duplicate';
        RETURN;
    END IF;
    out_status := 'rejected';
    SELECT * INTO prev FROM users WHERE id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        out_reason := format('There is no user %s.', p_user_id);
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'unknown_user', 404, out_reason,
                                   NULL);
        RETURN;
    END IF;
    IF p_ifmatch IS NOT NULL AND p_ifmatch <> prev.version THEN
        out_reason := format('The user is at version %s, not %s.', prev.version, p_ifmatch);
        out_resource := prev.id;
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'version_mismatch', 412,
                                   out_reason, prev.id);
        RETURN;
    END IF;
    UPDATE users
       SET password_hash = p_password_hash,
           tokens_valid_after = CASE WHEN p_revoke THEN p_time ELSE tokens_valid_after END,
           version = prev.version + 1, updated_at = p_time
     WHERE id = prev.id
    RETURNING * INTO cur;
    PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic, p_source,
                              p_request_id, 'users', 'u', cur.id,
                              diary_change_user(prev.id, prev.email, prev.name, prev.version),
                              diary_change_user(cur.id, cur.email, cur.name, cur.version),
                              cur.version);
    PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                               p_request_hash, 'applied', NULL, NULL, NULL, cur.id);
    out_status := 'applied';
    out_resource := cur.id;
END
$$;

-- diary.user.deleted.v1: deletes the user; the foreign keys' ON DELETE CASCADE removes their
-- foods, entries, settings, weights and revoked sessions (processed_events and the outbox keep
-- theirs). One d change for the users row. Rejected with unknown_user (404),
-- version_mismatch (412).
CREATE FUNCTION diary_apply_user_deleted(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text, p_request_hash text,
    OUT out_status text, OUT out_reason text, OUT out_resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    prev users;
BEGIN
    PERFORM 1 FROM processed_events WHERE event_id = p_event_id;
    IF FOUND THEN
        out_status := 'duplicate';
        RETURN;
    END IF;
    out_status := 'rejected';
    SELECT * INTO prev FROM users WHERE id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        out_reason := format('There is no user %s.', p_user_id);
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'unknown_user', 404, out_reason,
                                   NULL);
        RETURN;
    END IF;
    IF p_ifmatch IS NOT NULL AND p_ifmatch <> prev.version THEN
        out_reason := format('The user is at version %s, not %s.', prev.version, p_ifmatch);
        out_resource := prev.id;
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'version_mismatch', 412,
                                   out_reason, prev.id);
        RETURN;
    END IF;
    DELETE FROM users WHERE id = prev.id;
    PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic, p_source,
                              p_request_id, 'users', 'd', prev.id,
                              diary_change_user(prev.id, prev.email, prev.name, prev.version),
                              NULL, prev.version);
    PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                               p_request_hash, 'applied', NULL, NULL, NULL, prev.id);
    out_status := 'applied';
    out_resource := prev.id;
END
$$;

-- diary.session.revoked.v1: inserts revoked_sessions (revoked_at = the event's time). Never
-- rejected: a session revoked again, or one of a user that no longer exists (whose tokens
-- are useless anyway), is applied without a row or a change.
CREATE FUNCTION diary_apply_session_revoked(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text, p_request_hash text,
    p_session_id uuid, p_expires_at timestamptz,
    OUT out_status text, OUT out_reason text, OUT out_resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    s revoked_sessions;
BEGIN
    PERFORM 1 FROM processed_events WHERE event_id = p_event_id;
    IF FOUND THEN
        out_status := 'duplicate';
        RETURN;
    END IF;
    INSERT INTO revoked_sessions (session_id, user_id, expires_at, revoked_at)
    SELECT p_session_id, p_user_id, p_expires_at, p_time
     WHERE EXISTS (SELECT 1 FROM users WHERE id = p_user_id)
    ON CONFLICT (session_id) DO NOTHING
    RETURNING * INTO s;
    IF FOUND THEN
        PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic,
                                  p_source, p_request_id, 'revoked_sessions', 'c', s.session_id,
                                  NULL,
                                  diary_change_session(s.session_id, s.user_id, s.expires_at,
                                                       s.revoked_at),
                                  1);
    END IF;
    PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                               p_request_hash, 'applied', NULL, NULL, NULL, p_session_id);
    out_status := 'applied';
    out_resource := p_session_id;
END
$$;

-- diary.food.created.v1: insert foods; rejected with unknown_user (404).
CREATE FUNCTION diary_apply_food_created(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text, p_request_hash text,
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
                                   p_request_hash, 'rejected', 'unknown_user', 404, out_reason,
                                   NULL);
        RETURN;
    END IF;
    INSERT INTO foods (id, user_id, name, calories_per_100g, protein_per_100g, carbs_per_100g,
                       fat_per_100g, version, created_at, updated_at)
    VALUES (p_food_id, p_user_id, p_name, p_calories, p_protein, p_carbs, p_fat, 1, p_time,
            p_time)
    RETURNING * INTO f;
    PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic, p_source,
                              p_request_id, 'foods', 'c', f.id, NULL,
                              diary_change_food(f.id, f.user_id, f.name, f.calories_per_100g,
                                                f.protein_per_100g, f.carbs_per_100g,
                                                f.fat_per_100g, f.version),
                              f.version);
    PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                               p_request_hash, 'applied', NULL, NULL, NULL, f.id);
    out_status := 'applied';
    out_resource := f.id;
END
$$;

-- diary.food.updated.v1: every field of one of the user's foods, version + 1. Rejected with
-- unknown_food (404: no such food of this user), version_mismatch (412).
CREATE FUNCTION diary_apply_food_updated(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text, p_request_hash text,
    p_food_id uuid, p_name text, p_calories numeric, p_protein numeric, p_carbs numeric,
    p_fat numeric,
    OUT out_status text, OUT out_reason text, OUT out_resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    prev foods;
    cur foods;
BEGIN
    PERFORM 1 FROM processed_events WHERE event_id = p_event_id;
    IF FOUND THEN
        out_status := 'duplicate';
        RETURN;
    END IF;
    out_status := 'rejected';
    SELECT * INTO prev FROM foods WHERE id = p_food_id AND user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        out_reason := format('There is no food %s of this user.', p_food_id);
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'unknown_food', 404, out_reason,
                                   NULL);
        RETURN;
    END IF;
    IF p_ifmatch IS NOT NULL AND p_ifmatch <> prev.version THEN
        out_reason := format('The food is at version %s, not %s.', prev.version, p_ifmatch);
        out_resource := prev.id;
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'version_mismatch', 412,
                                   out_reason, prev.id);
        RETURN;
    END IF;
    UPDATE foods
       SET name = p_name, calories_per_100g = p_calories, protein_per_100g = p_protein,
           carbs_per_100g = p_carbs, fat_per_100g = p_fat, version = prev.version + 1,
           updated_at = p_time
     WHERE id = prev.id
    RETURNING * INTO cur;
    PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic, p_source,
                              p_request_id, 'foods', 'u', cur.id,
                              diary_change_food(prev.id, prev.user_id, prev.name,
                                                prev.calories_per_100g, prev.protein_per_100g,
                                                prev.carbs_per_100g, prev.fat_per_100g,
                                                prev.version),
                              diary_change_food(cur.id, cur.user_id, cur.name,
                                                cur.calories_per_100g, cur.protein_per_100g,
                                                cur.carbs_per_100g, cur.fat_per_100g,
                                                cur.version),
                              cur.version);
    PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                               p_request_hash, 'applied', NULL, NULL, NULL, cur.id);
    out_status := 'applied';
    out_resource := cur.id;
END
$$;

-- diary.food.deleted.v1: deletes one of the user's foods; ON DELETE CASCADE removes its
-- diary entries (implied by the one d change for the food). Rejected with unknown_food (404),
-- version_mismatch (412).
CREATE FUNCTION diary_apply_food_deleted(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text, p_request_hash text,
    p_food_id uuid,
    OUT out_status text, OUT out_reason text, OUT out_resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    prev foods;
BEGIN
    PERFORM 1 FROM processed_events WHERE event_id = p_event_id;
    IF FOUND THEN
        out_status := 'duplicate';
        RETURN;
    END IF;
    out_status := 'rejected';
    SELECT * INTO prev FROM foods WHERE id = p_food_id AND user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        out_reason := format('There is no food %s of this user.', p_food_id);
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'unknown_food', 404, out_reason,
                                   NULL);
        RETURN;
    END IF;
    IF p_ifmatch IS NOT NULL AND p_ifmatch <> prev.version THEN
        out_reason := format('The food is at version %s, not %s.', prev.version, p_ifmatch);
        out_resource := prev.id;
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'version_mismatch', 412,
                                   out_reason, prev.id);
        RETURN;
    END IF;
    DELETE FROM foods WHERE id = prev.id;
    PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic, p_source,
                              p_request_id, 'foods', 'd', prev.id,
                              diary_change_food(prev.id, prev.user_id, prev.name,
                                                prev.calories_per_100g, prev.protein_per_100g,
                                                prev.carbs_per_100g, prev.fat_per_100g,
                                                prev.version),
                              NULL, prev.version);
    PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                               p_request_hash, 'applied', NULL, NULL, NULL, prev.id);
    out_status := 'applied';
    out_resource := prev.id;
END
$$;

-- diary.entry.set.v1: upsert daily_meals on (user, date, meal, food): insert with the event's
-- entry_id and version 1, or set the amount and bump the version. Rejected with unknown_food
-- (422) when the food is not this user's, version_mismatch (412) when ifmatch names another
-- version than the row's (or a row that does not exist).
CREATE FUNCTION diary_apply_entry_set(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text, p_request_hash text,
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
                                   p_request_hash, 'rejected', 'unknown_food', 422, out_reason,
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
                                       p_hash, p_request_hash, 'rejected', 'version_mismatch',
                                       412, out_reason, prev.id);
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
                                       p_hash, p_request_hash, 'rejected', 'version_mismatch',
                                       412, out_reason, NULL);
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
                               p_request_hash, 'applied', NULL, NULL, NULL, cur.id);
    out_status := 'applied';
    out_resource := cur.id;
END
$$;

-- diary.entry.removed.v1: deletes the (user, date, meal, food) row. Rejected with
-- unknown_entry (404), version_mismatch (412).
CREATE FUNCTION diary_apply_entry_removed(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text, p_request_hash text,
    p_date date, p_meal_type text, p_food_id uuid,
    OUT out_status text, OUT out_reason text, OUT out_resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    prev daily_meals;
BEGIN
    PERFORM 1 FROM processed_events WHERE event_id = p_event_id;
    IF FOUND THEN
        out_status := 'duplicate';
        RETURN;
    END IF;
    out_status := 'rejected';
    SELECT * INTO prev FROM daily_meals
     WHERE user_id = p_user_id AND date = p_date AND meal_type = p_meal_type
       AND food_id = p_food_id
       FOR UPDATE;
    IF NOT FOUND THEN
        out_reason := format('There is no %s entry of food %s on %s.', p_meal_type, p_food_id,
                             p_date);
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'unknown_entry', 404, out_reason,
                                   NULL);
        RETURN;
    END IF;
    IF p_ifmatch IS NOT NULL AND p_ifmatch <> prev.version THEN
        out_reason := format('The entry is at version %s, not %s.', prev.version, p_ifmatch);
        out_resource := prev.id;
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'version_mismatch', 412,
                                   out_reason, prev.id);
        RETURN;
    END IF;
    DELETE FROM daily_meals WHERE id = prev.id;
    PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic, p_source,
                              p_request_id, 'daily_meals', 'd', prev.id,
                              diary_change_meal(prev.id, prev.user_id, prev.date, prev.meal_type,
                                                prev.food_id, prev.amount, prev.version),
                              NULL, prev.version);
    PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                               p_request_hash, 'applied', NULL, NULL, NULL, prev.id);
    out_status := 'applied';
    out_resource := prev.id;
END
$$;

-- diary.weight.set.v1: upsert weight_entries on (user, date): insert with the event's
-- weight_id and version 1, or set the weight and bump the version. Rejected with
-- unknown_user (404), version_mismatch (412: another version, or no row).
CREATE FUNCTION diary_apply_weight_set(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text, p_request_hash text,
    p_weight_id uuid, p_date date, p_weight numeric,
    OUT out_status text, OUT out_reason text, OUT out_resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    prev weight_entries;
    cur weight_entries;
BEGIN
    PERFORM 1 FROM processed_events WHERE event_id = p_event_id;
    IF FOUND THEN
        out_status := 'duplicate';
        RETURN;
    END IF;
    out_status := 'rejected';
    PERFORM 1 FROM users WHERE id = p_user_id;
    IF NOT FOUND THEN
        out_reason := format('There is no user %s.', p_user_id);
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'unknown_user', 404, out_reason,
                                   NULL);
        RETURN;
    END IF;
    SELECT * INTO prev FROM weight_entries
     WHERE user_id = p_user_id AND date = p_date
       FOR UPDATE;
    IF FOUND THEN
        IF p_ifmatch IS NOT NULL AND p_ifmatch <> prev.version THEN
            out_reason := format('The weight entry is at version %s, not %s.', prev.version,
                                 p_ifmatch);
            out_resource := prev.id;
            PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset,
                                       p_hash, p_request_hash, 'rejected', 'version_mismatch',
                                       412, out_reason, prev.id);
            RETURN;
        END IF;
        UPDATE weight_entries
           SET weight = p_weight, version = prev.version + 1, updated_at = p_time
         WHERE id = prev.id
        RETURNING * INTO cur;
        PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic,
                                  p_source, p_request_id, 'weight_entries', 'u', cur.id,
                                  diary_change_weight(prev.id, prev.user_id, prev.date,
                                                      prev.weight, prev.version),
                                  diary_change_weight(cur.id, cur.user_id, cur.date, cur.weight,
                                                      cur.version),
                                  cur.version);
    ELSE
        IF p_ifmatch IS NOT NULL THEN
            out_reason := format('There is no weight entry at version %s.', p_ifmatch);
            PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset,
                                       p_hash, p_request_hash, 'rejected', 'version_mismatch',
                                       412, out_reason, NULL);
            RETURN;
        END IF;
        INSERT INTO weight_entries (id, user_id, weight, date, version, created_at, updated_at)
        VALUES (p_weight_id, p_user_id, p_weight, p_date, 1, p_time, p_time)
        RETURNING * INTO cur;
        PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic,
                                  p_source, p_request_id, 'weight_entries', 'c', cur.id, NULL,
                                  diary_change_weight(cur.id, cur.user_id, cur.date, cur.weight,
                                                      cur.version),
                                  cur.version);
    END IF;
    PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                               p_request_hash, 'applied', NULL, NULL, NULL, cur.id);
    out_status := 'applied';
    out_resource := cur.id;
END
$$;

-- diary.weight.removed.v1: deletes the (user, date) row. Rejected with unknown_weight (404),
-- version_mismatch (412).
CREATE FUNCTION diary_apply_weight_removed(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text, p_request_hash text,
    p_date date,
    OUT out_status text, OUT out_reason text, OUT out_resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    prev weight_entries;
BEGIN
    PERFORM 1 FROM processed_events WHERE event_id = p_event_id;
    IF FOUND THEN
        out_status := 'duplicate';
        RETURN;
    END IF;
    out_status := 'rejected';
    SELECT * INTO prev FROM weight_entries
     WHERE user_id = p_user_id AND date = p_date
       FOR UPDATE;
    IF NOT FOUND THEN
        out_reason := format('There is no weight entry on %s.', p_date);
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'unknown_weight', 404, out_reason,
                                   NULL);
        RETURN;
    END IF;
    IF p_ifmatch IS NOT NULL AND p_ifmatch <> prev.version THEN
        out_reason := format('The weight entry is at version %s, not %s.', prev.version,
                             p_ifmatch);
        out_resource := prev.id;
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'version_mismatch', 412,
                                   out_reason, prev.id);
        RETURN;
    END IF;
    DELETE FROM weight_entries WHERE id = prev.id;
    PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic, p_source,
                              p_request_id, 'weight_entries', 'd', prev.id,
                              diary_change_weight(prev.id, prev.user_id, prev.date, prev.weight,
                                                  prev.version),
                              NULL, prev.version);
    PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                               p_request_hash, 'applied', NULL, NULL, NULL, prev.id);
    out_status := 'applied';
    out_resource := prev.id;
END
$$;

-- diary.settings.updated.v1: upsert user_settings; an absent field (NULL) keeps the stored
-- value, or on insert takes the column's default (0001: metric, 2000, 25, 30). Rejected with
-- unknown_user (404), version_mismatch (412: another version, or no row), invalid_settings
-- (422: protein + fat over 100 after merging, the values rounded as the columns store them).
CREATE FUNCTION diary_apply_settings_updated(
    p_event_id uuid, p_user_id uuid, p_type text, p_partition integer, p_offset bigint,
    p_hash bytea, p_time timestamptz, p_ifmatch bigint, p_request_id text, p_topic text,
    p_source text, p_request_hash text,
    p_unit_system text, p_daily_calorie_goal integer, p_protein numeric, p_fat numeric,
    OUT out_status text, OUT out_reason text, OUT out_resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    prev user_settings;
    cur user_settings;
    v_unit text;
    v_goal integer;
    v_protein numeric;
    v_fat numeric;
BEGIN
    PERFORM 1 FROM processed_events WHERE event_id = p_event_id;
    IF FOUND THEN
        out_status := 'duplicate';
        RETURN;
    END IF;
    out_status := 'rejected';
    PERFORM 1 FROM users WHERE id = p_user_id;
    IF NOT FOUND THEN
        out_reason := format('There is no user %s.', p_user_id);
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'unknown_user', 404, out_reason,
                                   NULL);
        RETURN;
    END IF;
    SELECT * INTO prev FROM user_settings WHERE user_id = p_user_id FOR UPDATE;
    IF FOUND AND p_ifmatch IS NOT NULL AND p_ifmatch <> prev.version THEN
        out_reason := format('The settings are at version %s, not %s.', prev.version, p_ifmatch);
        out_resource := p_user_id;
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'version_mismatch', 412,
                                   out_reason, p_user_id);
        RETURN;
    END IF;
    IF NOT FOUND AND p_ifmatch IS NOT NULL THEN
        out_reason := format('There are no settings at version %s.', p_ifmatch);
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'version_mismatch', 412,
                                   out_reason, NULL);
        RETURN;
    END IF;
    v_unit := coalesce(p_unit_system, prev.unit_system, 'metric');
    v_goal := coalesce(p_daily_calorie_goal, prev.daily_calorie_goal, 2000);
    v_protein := coalesce(p_protein::numeric(5, 2), prev.protein_percentage, 25.00);
    v_fat := coalesce(p_fat::numeric(5, 2), prev.fat_percentage, 30.00);
    IF v_protein + v_fat > 100 THEN
        out_reason := format('Protein (%s %%) and fat (%s %%) together exceed 100 %%.',
                             trim_scale(v_protein), trim_scale(v_fat));
        PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                                   p_request_hash, 'rejected', 'invalid_settings', 422,
                                   out_reason, NULL);
        RETURN;
    END IF;
    IF prev.user_id IS NOT NULL THEN
        UPDATE user_settings
           SET unit_system = v_unit, daily_calorie_goal = v_goal, protein_percentage = v_protein,
               fat_percentage = v_fat, version = prev.version + 1, updated_at = p_time
         WHERE user_id = p_user_id
        RETURNING * INTO cur;
        PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic,
                                  p_source, p_request_id, 'user_settings', 'u', p_user_id,
                                  diary_change_settings(prev.user_id, prev.unit_system,
                                                        prev.daily_calorie_goal,
                                                        prev.protein_percentage,
                                                        prev.fat_percentage, prev.version),
                                  diary_change_settings(cur.user_id, cur.unit_system,
                                                        cur.daily_calorie_goal,
                                                        cur.protein_percentage,
                                                        cur.fat_percentage, cur.version),
                                  cur.version);
    ELSE
        INSERT INTO user_settings (user_id, unit_system, daily_calorie_goal, protein_percentage,
                                   fat_percentage, version, created_at, updated_at)
        VALUES (p_user_id, v_unit, v_goal, v_protein, v_fat, 1, p_time, p_time)
        RETURNING * INTO cur;
        PERFORM diary_change_emit(p_event_id, 0, p_user_id, p_partition, p_offset, p_topic,
                                  p_source, p_request_id, 'user_settings', 'c', p_user_id, NULL,
                                  diary_change_settings(cur.user_id, cur.unit_system,
                                                        cur.daily_calorie_goal,
                                                        cur.protein_percentage,
                                                        cur.fat_percentage, cur.version),
                                  cur.version);
    END IF;
    PERFORM diary_event_record(p_event_id, p_user_id, p_type, p_partition, p_offset, p_hash,
                               p_request_hash, 'applied', NULL, NULL, NULL, p_user_id);
    out_status := 'applied';
    out_resource := p_user_id;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Set-based functions (see 0002): the events of one round and one type as a JSON array of
-- objects with i, event_id, user_id, type, offset, hash (hex), request_hash, time, ifmatch,
-- request_id and the type's data fields; they return (idx, status, reason, resource) per
-- event. The three of 0002 now also record request_hash.

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
            request_hash text, "time" timestamptz, request_id text, email varchar(255),
            name varchar(255), password_hash varchar(255))
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
                                      "partition", "offset", payload_hash, resource_id,
                                      request_hash)
        SELECT d.event_id, d.user_id, d.type,
               CASE d.action WHEN 'insert' THEN 'applied' ELSE 'rejected' END,
               CASE d.action WHEN 'insert' THEN NULL
                    ELSE 'The email address is already registered.' END,
               CASE d.action WHEN 'insert' THEN NULL
                    ELSE diary_problem('email_taken', 409,
                                       'The email address is already registered.') END,
               p_partition, d."offset", decode(d.hash, 'hex'),
               CASE d.action WHEN 'insert' THEN d.user_id END, d.request_hash
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
            request_hash text, "time" timestamptz, request_id text, food_id uuid,
            name varchar(255), calories_per_100g numeric(8, 2), protein_per_100g numeric(8, 2),
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
                                      "partition", "offset", payload_hash, resource_id,
                                      request_hash)
        SELECT d.event_id, d.user_id, d.type,
               CASE d.action WHEN 'insert' THEN 'applied' ELSE 'rejected' END,
               CASE d.action WHEN 'insert' THEN NULL
                    ELSE format('There is no user %s.', d.user_id) END,
               CASE d.action WHEN 'insert' THEN NULL
                    ELSE diary_problem('unknown_user', 404,
                                       format('There is no user %s.', d.user_id)) END,
               p_partition, d."offset", decode(d.hash, 'hex'),
               CASE d.action WHEN 'insert' THEN d.food_id END, d.request_hash
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
            request_hash text, "time" timestamptz, ifmatch bigint, request_id text,
            entry_id uuid, date date, meal_type varchar(50), food_id uuid, amount numeric(8, 2))
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

-- diary.session.revoked.v1, set-based.
CREATE OR REPLACE FUNCTION diary_apply_sessions(p_partition integer, p_events jsonb)
RETURNS TABLE (idx integer, status text, reason text, resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH ev AS (
        SELECT * FROM jsonb_to_recordset(p_events) AS e(
            i integer, event_id uuid, user_id uuid, type text, "offset" bigint, hash text,
            request_hash text, "time" timestamptz, request_id text, session_id uuid,
            expires_at timestamptz)
    ), dec AS (
        SELECT ev.*,
               CASE WHEN EXISTS (SELECT 1 FROM processed_events p
                                  WHERE p.event_id = ev.event_id) THEN 'duplicate'
                    WHEN NOT EXISTS (SELECT 1 FROM users u WHERE u.id = ev.user_id)
                      OR EXISTS (SELECT 1 FROM revoked_sessions r
                                  WHERE r.session_id = ev.session_id) THEN 'nothing'
                    ELSE 'insert' END AS action
          FROM ev
    ), ins AS (
        INSERT INTO revoked_sessions (session_id, user_id, expires_at, revoked_at)
        SELECT d.session_id, d.user_id, d.expires_at, d."time"
          FROM dec d WHERE d.action = 'insert'
    ), stage AS (
        INSERT INTO diary_stage
        SELECT d."offset", 0, d.event_id, d.user_id, 'revoked_sessions', 'c', d.session_id,
               NULL, diary_change_session(d.session_id, d.user_id, d.expires_at, d."time"), 1,
               d.request_id
          FROM dec d WHERE d.action = 'insert'
    ), rec AS (
        INSERT INTO processed_events (event_id, user_id, type, status, reason, problem,
                                      "partition", "offset", payload_hash, resource_id,
                                      request_hash)
        SELECT d.event_id, d.user_id, d.type, 'applied', NULL, NULL, p_partition, d."offset",
               decode(d.hash, 'hex'), d.session_id, d.request_hash
          FROM dec d WHERE d.action <> 'duplicate'
    )
    SELECT d.i, CASE d.action WHEN 'duplicate' THEN 'duplicate' ELSE 'applied' END,
           NULL::text, d.session_id
      FROM dec d;
END
$$;

-- diary.food.updated.v1, set-based.
CREATE OR REPLACE FUNCTION diary_apply_food_updates(p_partition integer, p_events jsonb)
RETURNS TABLE (idx integer, status text, reason text, resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH ev AS (
        SELECT * FROM jsonb_to_recordset(p_events) AS e(
            i integer, event_id uuid, user_id uuid, type text, "offset" bigint, hash text,
            request_hash text, "time" timestamptz, ifmatch bigint, request_id text,
            food_id uuid, name varchar(255), calories_per_100g numeric(8, 2),
            protein_per_100g numeric(8, 2), carbs_per_100g numeric(8, 2),
            fat_per_100g numeric(8, 2))
    ), dec AS (
        SELECT ev.*, f.id AS prev_id, f.name AS prev_name, f.calories_per_100g AS prev_cal,
               f.protein_per_100g AS prev_protein, f.carbs_per_100g AS prev_carbs,
               f.fat_per_100g AS prev_fat, f.version AS prev_version,
               CASE WHEN EXISTS (SELECT 1 FROM processed_events p
                                  WHERE p.event_id = ev.event_id) THEN 'duplicate'
                    WHEN f.id IS NULL THEN 'unknown_food'
                    WHEN ev.ifmatch IS NOT NULL AND ev.ifmatch <> f.version
                         THEN 'version_mismatch'
                    ELSE 'update' END AS action
          FROM ev LEFT JOIN foods f ON f.id = ev.food_id AND f.user_id = ev.user_id
    ), upd AS (
        UPDATE foods f
           SET name = d.name, calories_per_100g = d.calories_per_100g,
               protein_per_100g = d.protein_per_100g, carbs_per_100g = d.carbs_per_100g,
               fat_per_100g = d.fat_per_100g, version = f.version + 1, updated_at = d."time"
          FROM dec d
         WHERE d.action = 'update' AND f.id = d.prev_id
    ), stage AS (
        INSERT INTO diary_stage
        SELECT d."offset", 0, d.event_id, d.user_id, 'foods', 'u', d.prev_id,
               diary_change_food(d.prev_id, d.user_id, d.prev_name, d.prev_cal,
                                 d.prev_protein, d.prev_carbs, d.prev_fat, d.prev_version),
               diary_change_food(d.prev_id, d.user_id, d.name, d.calories_per_100g,
                                 d.protein_per_100g, d.carbs_per_100g, d.fat_per_100g,
                                 d.prev_version + 1),
               d.prev_version + 1, d.request_id
          FROM dec d WHERE d.action = 'update'
    ), outcome AS (
        SELECT d.i, d.event_id, d.user_id, d.type, d."offset", d.hash, d.request_hash,
               d.action,
               CASE d.action
                    WHEN 'unknown_food' THEN format('There is no food %s of this user.', d.food_id)
                    WHEN 'version_mismatch' THEN format('The food is at version %s, not %s.',
                                                       d.prev_version, d.ifmatch)
               END AS reason,
               d.prev_id AS resource
          FROM dec d
    ), rec AS (
        INSERT INTO processed_events (event_id, user_id, type, status, reason, problem,
                                      "partition", "offset", payload_hash, resource_id,
                                      request_hash)
        SELECT o.event_id, o.user_id, o.type,
               CASE o.action WHEN 'update' THEN 'applied' ELSE 'rejected' END, o.reason,
               CASE o.action
                    WHEN 'unknown_food' THEN diary_problem('unknown_food', 404, o.reason)
                    WHEN 'version_mismatch' THEN diary_problem('version_mismatch', 412, o.reason)
               END,
               p_partition, o."offset", decode(o.hash, 'hex'), o.resource, o.request_hash
          FROM outcome o WHERE o.action <> 'duplicate'
    )
    SELECT o.i,
           CASE o.action WHEN 'update' THEN 'applied' WHEN 'duplicate' THEN 'duplicate'
                ELSE 'rejected' END,
           o.reason, o.resource
      FROM outcome o;
END
$$;

-- diary.food.deleted.v1, set-based (the cascade removes the foods' entries).
CREATE OR REPLACE FUNCTION diary_apply_food_deletes(p_partition integer, p_events jsonb)
RETURNS TABLE (idx integer, status text, reason text, resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH ev AS (
        SELECT * FROM jsonb_to_recordset(p_events) AS e(
            i integer, event_id uuid, user_id uuid, type text, "offset" bigint, hash text,
            request_hash text, "time" timestamptz, ifmatch bigint, request_id text,
            food_id uuid)
    ), dec AS (
        SELECT ev.*, f.id AS prev_id, f.name AS prev_name, f.calories_per_100g AS prev_cal,
               f.protein_per_100g AS prev_protein, f.carbs_per_100g AS prev_carbs,
               f.fat_per_100g AS prev_fat, f.version AS prev_version,
               CASE WHEN EXISTS (SELECT 1 FROM processed_events p
                                  WHERE p.event_id = ev.event_id) THEN 'duplicate'
                    WHEN f.id IS NULL THEN 'unknown_food'
                    WHEN ev.ifmatch IS NOT NULL AND ev.ifmatch <> f.version
                         THEN 'version_mismatch'
                    ELSE 'delete' END AS action
          FROM ev LEFT JOIN foods f ON f.id = ev.food_id AND f.user_id = ev.user_id
    ), del AS (
        DELETE FROM foods f USING dec d WHERE d.action = 'delete' AND f.id = d.prev_id
    ), stage AS (
        INSERT INTO diary_stage
        SELECT d."offset", 0, d.event_id, d.user_id, 'foods', 'd', d.prev_id,
               diary_change_food(d.prev_id, d.user_id, d.prev_name, d.prev_cal,
                                 d.prev_protein, d.prev_carbs, d.prev_fat, d.prev_version),
               NULL, d.prev_version, d.request_id
          FROM dec d WHERE d.action = 'delete'
    ), outcome AS (
        SELECT d.i, d.event_id, d.user_id, d.type, d."offset", d.hash, d.request_hash,
               d.action,
               CASE d.action
                    WHEN 'unknown_food' THEN format('There is no food %s of this user.', d.food_id)
                    WHEN 'version_mismatch' THEN format('The food is at version %s, not %s.',
                                                       d.prev_version, d.ifmatch)
               END AS reason,
               d.prev_id AS resource
          FROM dec d
    ), rec AS (
        INSERT INTO processed_events (event_id, user_id, type, status, reason, problem,
                                      "partition", "offset", payload_hash, resource_id,
                                      request_hash)
        SELECT o.event_id, o.user_id, o.type,
               CASE o.action WHEN 'delete' THEN 'applied' ELSE 'rejected' END, o.reason,
               CASE o.action
                    WHEN 'unknown_food' THEN diary_problem('unknown_food', 404, o.reason)
                    WHEN 'version_mismatch' THEN diary_problem('version_mismatch', 412, o.reason)
               END,
               p_partition, o."offset", decode(o.hash, 'hex'), o.resource, o.request_hash
          FROM outcome o WHERE o.action <> 'duplicate'
    )
    SELECT o.i,
           CASE o.action WHEN 'delete' THEN 'applied' WHEN 'duplicate' THEN 'duplicate'
                ELSE 'rejected' END,
           o.reason, o.resource
      FROM outcome o;
END
$$;

-- diary.entry.removed.v1, set-based.
CREATE OR REPLACE FUNCTION diary_apply_entry_removals(p_partition integer, p_events jsonb)
RETURNS TABLE (idx integer, status text, reason text, resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH ev AS (
        SELECT * FROM jsonb_to_recordset(p_events) AS e(
            i integer, event_id uuid, user_id uuid, type text, "offset" bigint, hash text,
            request_hash text, "time" timestamptz, ifmatch bigint, request_id text,
            date date, meal_type varchar(50), food_id uuid)
    ), dec AS (
        SELECT ev.*, m.id AS prev_id, m.amount AS prev_amount, m.version AS prev_version,
               CASE WHEN EXISTS (SELECT 1 FROM processed_events p
                                  WHERE p.event_id = ev.event_id) THEN 'duplicate'
                    WHEN m.id IS NULL THEN 'unknown_entry'
                    WHEN ev.ifmatch IS NOT NULL AND ev.ifmatch <> m.version
                         THEN 'version_mismatch'
                    ELSE 'delete' END AS action
          FROM ev LEFT JOIN daily_meals m
            ON m.user_id = ev.user_id AND m.date = ev.date AND m.meal_type = ev.meal_type
           AND m.food_id = ev.food_id
    ), del AS (
        DELETE FROM daily_meals m USING dec d WHERE d.action = 'delete' AND m.id = d.prev_id
    ), stage AS (
        INSERT INTO diary_stage
        SELECT d."offset", 0, d.event_id, d.user_id, 'daily_meals', 'd', d.prev_id,
               diary_change_meal(d.prev_id, d.user_id, d.date, d.meal_type, d.food_id,
                                 d.prev_amount, d.prev_version),
               NULL, d.prev_version, d.request_id
          FROM dec d WHERE d.action = 'delete'
    ), outcome AS (
        SELECT d.i, d.event_id, d.user_id, d.type, d."offset", d.hash, d.request_hash,
               d.action,
               CASE d.action
                    WHEN 'unknown_entry' THEN format('There is no %s entry of food %s on %s.',
                                                     d.meal_type, d.food_id, d.date)
                    WHEN 'version_mismatch' THEN format('The entry is at version %s, not %s.',
                                                       d.prev_version, d.ifmatch)
               END AS reason,
               d.prev_id AS resource
          FROM dec d
    ), rec AS (
        INSERT INTO processed_events (event_id, user_id, type, status, reason, problem,
                                      "partition", "offset", payload_hash, resource_id,
                                      request_hash)
        SELECT o.event_id, o.user_id, o.type,
               CASE o.action WHEN 'delete' THEN 'applied' ELSE 'rejected' END, o.reason,
               CASE o.action
                    WHEN 'unknown_entry' THEN diary_problem('unknown_entry', 404, o.reason)
                    WHEN 'version_mismatch' THEN diary_problem('version_mismatch', 412, o.reason)
               END,
               p_partition, o."offset", decode(o.hash, 'hex'), o.resource, o.request_hash
          FROM outcome o WHERE o.action <> 'duplicate'
    )
    SELECT o.i,
           CASE o.action WHEN 'delete' THEN 'applied' WHEN 'duplicate' THEN 'duplicate'
                ELSE 'rejected' END,
           o.reason, o.resource
      FROM outcome o;
END
$$;

-- diary.weight.set.v1, set-based.
CREATE OR REPLACE FUNCTION diary_apply_weights(p_partition integer, p_events jsonb)
RETURNS TABLE (idx integer, status text, reason text, resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH ev AS (
        SELECT * FROM jsonb_to_recordset(p_events) AS e(
            i integer, event_id uuid, user_id uuid, type text, "offset" bigint, hash text,
            request_hash text, "time" timestamptz, ifmatch bigint, request_id text,
            weight_id uuid, date date, weight numeric(5, 2))
    ), dec AS (
        SELECT ev.*, w.id AS prev_id, w.weight AS prev_weight, w.version AS prev_version,
               CASE WHEN EXISTS (SELECT 1 FROM processed_events p
                                  WHERE p.event_id = ev.event_id) THEN 'duplicate'
                    WHEN NOT EXISTS (SELECT 1 FROM users u WHERE u.id = ev.user_id)
                         THEN 'unknown_user'
                    WHEN w.id IS NOT NULL AND ev.ifmatch IS NOT NULL
                         AND ev.ifmatch <> w.version THEN 'version_mismatch'
                    WHEN w.id IS NULL AND ev.ifmatch IS NOT NULL THEN 'no_version'
                    WHEN w.id IS NOT NULL THEN 'update'
                    ELSE 'insert' END AS action
          FROM ev LEFT JOIN weight_entries w ON w.user_id = ev.user_id AND w.date = ev.date
    ), upd AS (
        UPDATE weight_entries w
           SET weight = d.weight, version = w.version + 1, updated_at = d."time"
          FROM dec d
         WHERE d.action = 'update' AND w.id = d.prev_id
    ), ins AS (
        INSERT INTO weight_entries (id, user_id, weight, date, version, created_at, updated_at)
        SELECT d.weight_id, d.user_id, d.weight, d.date, 1, d."time", d."time"
          FROM dec d WHERE d.action = 'insert'
    ), stage AS (
        INSERT INTO diary_stage
        SELECT d."offset", 0, d.event_id, d.user_id, 'weight_entries',
               CASE d.action WHEN 'update' THEN 'u' ELSE 'c' END,
               coalesce(d.prev_id, d.weight_id),
               CASE d.action WHEN 'update' THEN
                   diary_change_weight(d.prev_id, d.user_id, d.date, d.prev_weight,
                                       d.prev_version) END,
               diary_change_weight(coalesce(d.prev_id, d.weight_id), d.user_id, d.date,
                                   d.weight, coalesce(d.prev_version + 1, 1)),
               coalesce(d.prev_version + 1, 1), d.request_id
          FROM dec d WHERE d.action IN ('insert', 'update')
    ), outcome AS (
        SELECT d.i, d.event_id, d.user_id, d.type, d."offset", d.hash, d.request_hash,
               d.action,
               CASE d.action
                    WHEN 'unknown_user' THEN format('There is no user %s.', d.user_id)
                    WHEN 'version_mismatch' THEN format(
                        'The weight entry is at version %s, not %s.', d.prev_version, d.ifmatch)
                    WHEN 'no_version' THEN format('There is no weight entry at version %s.',
                                                  d.ifmatch)
               END AS reason,
               CASE WHEN d.action IN ('update', 'version_mismatch') THEN d.prev_id
                    WHEN d.action = 'insert' THEN d.weight_id END AS resource
          FROM dec d
    ), rec AS (
        INSERT INTO processed_events (event_id, user_id, type, status, reason, problem,
                                      "partition", "offset", payload_hash, resource_id,
                                      request_hash)
        SELECT o.event_id, o.user_id, o.type,
               CASE WHEN o.action IN ('insert', 'update') THEN 'applied' ELSE 'rejected' END,
               o.reason,
               CASE o.action
                    WHEN 'unknown_user' THEN diary_problem('unknown_user', 404, o.reason)
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

-- diary.weight.removed.v1, set-based.
CREATE OR REPLACE FUNCTION diary_apply_weight_removals(p_partition integer, p_events jsonb)
RETURNS TABLE (idx integer, status text, reason text, resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH ev AS (
        SELECT * FROM jsonb_to_recordset(p_events) AS e(
            i integer, event_id uuid, user_id uuid, type text, "offset" bigint, hash text,
            request_hash text, "time" timestamptz, ifmatch bigint, request_id text, date date)
    ), dec AS (
        SELECT ev.*, w.id AS prev_id, w.weight AS prev_weight, w.version AS prev_version,
               CASE WHEN EXISTS (SELECT 1 FROM processed_events p
                                  WHERE p.event_id = ev.event_id) THEN 'duplicate'
                    WHEN w.id IS NULL THEN 'unknown_weight'
                    WHEN ev.ifmatch IS NOT NULL AND ev.ifmatch <> w.version
                         THEN 'version_mismatch'
                    ELSE 'delete' END AS action
          FROM ev LEFT JOIN weight_entries w ON w.user_id = ev.user_id AND w.date = ev.date
    ), del AS (
        DELETE FROM weight_entries w USING dec d WHERE d.action = 'delete' AND w.id = d.prev_id
    ), stage AS (
        INSERT INTO diary_stage
        SELECT d."offset", 0, d.event_id, d.user_id, 'weight_entries', 'd', d.prev_id,
               diary_change_weight(d.prev_id, d.user_id, d.date, d.prev_weight,
                                   d.prev_version),
               NULL, d.prev_version, d.request_id
          FROM dec d WHERE d.action = 'delete'
    ), outcome AS (
        SELECT d.i, d.event_id, d.user_id, d.type, d."offset", d.hash, d.request_hash,
               d.action,
               CASE d.action
                    WHEN 'unknown_weight' THEN format('There is no weight entry on %s.', d.date)
                    WHEN 'version_mismatch' THEN format(
                        'The weight entry is at version %s, not %s.', d.prev_version, d.ifmatch)
               END AS reason,
               d.prev_id AS resource
          FROM dec d
    ), rec AS (
        INSERT INTO processed_events (event_id, user_id, type, status, reason, problem,
                                      "partition", "offset", payload_hash, resource_id,
                                      request_hash)
        SELECT o.event_id, o.user_id, o.type,
               CASE o.action WHEN 'delete' THEN 'applied' ELSE 'rejected' END, o.reason,
               CASE o.action
                    WHEN 'unknown_weight' THEN diary_problem('unknown_weight', 404, o.reason)
                    WHEN 'version_mismatch' THEN diary_problem('version_mismatch', 412, o.reason)
               END,
               p_partition, o."offset", decode(o.hash, 'hex'), o.resource, o.request_hash
          FROM outcome o WHERE o.action <> 'duplicate'
    )
    SELECT o.i,
           CASE o.action WHEN 'delete' THEN 'applied' WHEN 'duplicate' THEN 'duplicate'
                ELSE 'rejected' END,
           o.reason, o.resource
      FROM outcome o;
END
$$;

-- diary.settings.updated.v1, set-based: the stored values (else the defaults) merged under
-- the event's, then checked.
CREATE OR REPLACE FUNCTION diary_apply_settings(p_partition integer, p_events jsonb)
RETURNS TABLE (idx integer, status text, reason text, resource uuid)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH ev AS (
        SELECT * FROM jsonb_to_recordset(p_events) AS e(
            i integer, event_id uuid, user_id uuid, type text, "offset" bigint, hash text,
            request_hash text, "time" timestamptz, ifmatch bigint, request_id text,
            unit_system varchar(20), daily_calorie_goal integer,
            protein_percentage numeric(5, 2), fat_percentage numeric(5, 2))
    ), merged AS (
        SELECT ev.*, s.user_id AS prev_user, s.unit_system AS prev_unit,
               s.daily_calorie_goal AS prev_goal, s.protein_percentage AS prev_protein,
               s.fat_percentage AS prev_fat, s.version AS prev_version,
               coalesce(ev.unit_system, s.unit_system, 'metric') AS m_unit,
               coalesce(ev.daily_calorie_goal, s.daily_calorie_goal, 2000) AS m_goal,
               coalesce(ev.protein_percentage, s.protein_percentage, 25.00) AS m_protein,
               coalesce(ev.fat_percentage, s.fat_percentage, 30.00) AS m_fat
          FROM ev LEFT JOIN user_settings s ON s.user_id = ev.user_id
    ), dec AS (
        SELECT m.*,
               CASE WHEN EXISTS (SELECT 1 FROM processed_events p
                                  WHERE p.event_id = m.event_id) THEN 'duplicate'
                    WHEN NOT EXISTS (SELECT 1 FROM users u WHERE u.id = m.user_id)
                         THEN 'unknown_user'
                    WHEN m.prev_user IS NOT NULL AND m.ifmatch IS NOT NULL
                         AND m.ifmatch <> m.prev_version THEN 'version_mismatch'
                    WHEN m.prev_user IS NULL AND m.ifmatch IS NOT NULL THEN 'no_version'
                    WHEN m.m_protein + m.m_fat > 100 THEN 'invalid_settings'
                    WHEN m.prev_user IS NOT NULL THEN 'update'
                    ELSE 'insert' END AS action
          FROM merged m
    ), upd AS (
        UPDATE user_settings s
           SET unit_system = d.m_unit, daily_calorie_goal = d.m_goal,
               protein_percentage = d.m_protein, fat_percentage = d.m_fat,
               version = s.version + 1, updated_at = d."time"
          FROM dec d
         WHERE d.action = 'update' AND s.user_id = d.user_id
    ), ins AS (
        INSERT INTO user_settings (user_id, unit_system, daily_calorie_goal, protein_percentage,
                                   fat_percentage, version, created_at, updated_at)
        SELECT d.user_id, d.m_unit, d.m_goal, d.m_protein, d.m_fat, 1, d."time", d."time"
          FROM dec d WHERE d.action = 'insert'
    ), stage AS (
        INSERT INTO diary_stage
        SELECT d."offset", 0, d.event_id, d.user_id, 'user_settings',
               CASE d.action WHEN 'update' THEN 'u' ELSE 'c' END, d.user_id,
               CASE d.action WHEN 'update' THEN
                   diary_change_settings(d.user_id, d.prev_unit, d.prev_goal, d.prev_protein,
                                         d.prev_fat, d.prev_version) END,
               diary_change_settings(d.user_id, d.m_unit, d.m_goal, d.m_protein, d.m_fat,
                                     coalesce(d.prev_version + 1, 1)),
               coalesce(d.prev_version + 1, 1), d.request_id
          FROM dec d WHERE d.action IN ('insert', 'update')
    ), outcome AS (
        SELECT d.i, d.event_id, d.user_id, d.type, d."offset", d.hash, d.request_hash,
               d.action,
               CASE d.action
                    WHEN 'unknown_user' THEN format('There is no user %s.', d.user_id)
                    WHEN 'version_mismatch' THEN format(
                        'The settings are at version %s, not %s.', d.prev_version, d.ifmatch)
                    WHEN 'no_version' THEN format('There are no settings at version %s.',
                                                  d.ifmatch)
                    WHEN 'invalid_settings' THEN format(
                        'Protein (%s %%) and fat (%s %%) together exceed 100 %%.',
                        trim_scale(d.m_protein), trim_scale(d.m_fat))
               END AS reason,
               CASE WHEN d.action IN ('update', 'insert', 'version_mismatch') THEN d.user_id
               END AS resource
          FROM dec d
    ), rec AS (
        INSERT INTO processed_events (event_id, user_id, type, status, reason, problem,
                                      "partition", "offset", payload_hash, resource_id,
                                      request_hash)
        SELECT o.event_id, o.user_id, o.type,
               CASE WHEN o.action IN ('insert', 'update') THEN 'applied' ELSE 'rejected' END,
               o.reason,
               CASE o.action
                    WHEN 'unknown_user' THEN diary_problem('unknown_user', 404, o.reason)
                    WHEN 'version_mismatch' THEN diary_problem('version_mismatch', 412, o.reason)
                    WHEN 'no_version' THEN diary_problem('version_mismatch', 412, o.reason)
                    WHEN 'invalid_settings' THEN diary_problem('invalid_settings', 422,
                                                               o.reason)
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
