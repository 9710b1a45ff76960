#!/usr/bin/env bash
# Integration test of the event types of schema/migrations/0003_api.sql (docs/events.md):
# user updated / password changed / deleted, session revoked, food updated / deleted, entry
# removed, weight set / removed, settings updated; and requesthash for every type. Events are
# produced with kcat as ingest would; two workers apply the same log at the same time, one
# with DIARY_APPLY_MODE=set into database byset (group types-set) and one with
# DIARY_APPLY_MODE=event into byevent (group types-event). Each database is checked on its own
# (rows, versions, processed_events status / problem / request_hash, If-Match mismatches, the
# cascade of a user's deletion), then the two are compared, and each run's change events on
# diary.changes are checked by id, op, before/after and per-user order.
# Prints TAP-like lines and "# worker-types: N passed, M failed".
#
# Env: BIN_DIR (default build/san/bin), PGBIN (default /usr/lib/postgresql/15/bin),
# KEEP_TMP=1 keeps the scratch folder.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/e2e/worklib.sh"
WORKERS=()
kill_workers() {
    local p
    for p in "${WORKERS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for p in "${WORKERS[@]}"; do wait "$p" 2>/dev/null; done
}
worklib_init worker-types diary-worker-types
worklib_require kcat psql python3
worklib_require_bin diary-worker diary-devbroker

# ---- PostgreSQL with two databases ----
worklib_pg_start
DBS=(byset byevent)
worklib_pg_db "${DBS[@]}"
ok "PostgreSQL on port $PGPORT, databases ${DBS[*]}, $NMIGRATIONS migrations"
q() { psql -qAtX -d "$1" -c "$2" 2>>"$TMP/psql.err"; } # q DB SQL

# ---- broker ----
worklib_broker_start
ok "diary-devbroker at $KAFKA"

# ---- the workers: one per mode and database, each its own group ----
RUN=0
start_workers() {
    RUN=$((RUN + 1))
    WORKERS=()
    for mode in set event; do
        KAFKA_BOOTSTRAP=$KAFKA PG_PRIMARY_URL="postgresql://postgres@127.0.0.1:$PGPORT/by$mode" \
            DIARY_GROUP=types-$mode DIARY_APPLY_MODE=$mode DIARY_WORKER_PORT=0 \
            DIARY_SESSION_TIMEOUT_MS=6000 DIARY_WORKER_ID=types-$mode-$RUN DIARY_LOG_LEVEL=debug \
            "$BIN_DIR/diary-worker" >"$TMP/worker.$mode.$RUN.log" 2>&1 &
        WORKERS+=($!)
    done
}
stop_workers() {
    local rc all=0
    for p in "${WORKERS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${WORKERS[@]}"; do
        wait "$p"
        rc=$?
        [ "$rc" = 0 ] || all=$rc
    done
    WORKERS=()
    return $all
}
PRODUCED=0
applied_all() { # every database has applied the PRODUCED messages and drained its outbox
    local db
    for db in "${DBS[@]}"; do
        [ "$(q $db 'SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets')" = "$PRODUCED" ] || return 1
        [ "$(q $db 'SELECT count(*) FROM outbox')" = 0 ] || return 1
    done
}

# ---- events ----
A=0b6f3c9e-1d2a-7c4e-8a10-00000000000a # Ann, deleted in phase 2
B=0b6f3c9e-1d2a-7c4e-8a10-00000000000b # Bob
C=0b6f3c9e-1d2a-7c4e-8a10-00000000000c # Cleo, registers with Ann's freed email
NOBODY=0b6f3c9e-1d2a-7c4e-8a10-0000000000ff
F1=5d1e7a20-3b4c-8d5e-9f60-0000000000f1
F2=5d1e7a20-3b4c-8d5e-9f60-0000000000f2
F3=5d1e7a20-3b4c-8d5e-9f60-0000000000f3
NOFOOD=5d1e7a20-3b4c-8d5e-9f60-00000000dead
S1=9a8b7c6d-0000-4000-8000-0000000000a1
S2=9a8b7c6d-0000-4000-8000-0000000000a2
S3=9a8b7c6d-0000-4000-8000-0000000000a3
W1=77777777-0000-8000-8000-000000000001
W2=77777777-0000-8000-8000-000000000002
W3=77777777-0000-8000-8000-000000000003
EVT=c0ffee00-0000-7000-8000 # event id prefix: $EVT-<12 digits>
HASH7=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
ev() { printf '%s-%012d' "$EVT" "$1"; }
evtime() { printf '2026-11-24T16:%02d:%02d.000Z' "$(($1 / 60))" "$(($1 % 60))"; }

# line N TYPE SUBJECT DATA_JSON [EXTRA_MEMBERS]: one "key<TAB>envelope" line for kcat -K.
# Every event carries requesthash ab<N> (4 digits) unless EXTRA says otherwise ("none": no
# extension at all). Only one partition's order is defined, and these events depend on each
# other across users (an email taken or freed, Bob's settings after his registration): they
# all go with Ann's key, into one partition.
line() {
    local extra=${5-}
    [ -z "$extra" ] && extra="\"requesthash\":\"$(printf 'ab%04d' "$1")\""
    [ "$extra" = none ] && extra=
    printf '%s\t{"specversion":"1.0","id":"%s","source":"test","type":"%s","subject":"%s","time":"%s","datacontenttype":"application/json","requestid":"req-%d"%s,"data":%s}\n' \
        "$A" "$(ev "$1")" "$2" "$3" "$(evtime "$1")" "$1" "${extra:+,$extra}" "$4"
}
register() { line "$1" diary.user.registered.v1 "$2" "{\"user_id\":\"$2\",\"email\":\"$3\",\"name\":\"Test\",\"password_hash\":\"\$argon2id\$v=19\$old\"}"; }
food_body() { printf '{"food_id":"%s","name":"%s","calories_per_100g":%s,"protein_per_100g":0.5,"carbs_per_100g":14,"fat_per_100g":0.25}' "$1" "$2" "$3"; }

{
    register 1 $A ann@example.org
    register 2 $B bob@example.org
    line 3 diary.user.updated.v1 $A '{"name":"Ann B."}' '"ifmatch":1,"requesthash":"ab0003"'
    line 4 diary.user.updated.v1 $A '{"email":"BOB@example.org"}'             # email_taken
    line 5 diary.user.updated.v1 $A '{"name":"Nope"}' '"ifmatch":1,"requesthash":"ab0005"'   # 412
    line 6 diary.user.updated.v1 $A '{"email":"ann.b@example.org"}'
    line 7 diary.user.password_changed.v1 $A '{"password_hash":"$argon2id$v=19$new","revoke":true}' "\"requesthash\":\"$HASH7\""
    line 8 diary.user.password_changed.v1 $A '{"password_hash":"$argon2id$v=19$rehash","revoke":false}' none
    line 9 diary.user.updated.v1 $NOBODY '{"name":"Ghost"}'                      # unknown_user
    line 10 diary.session.revoked.v1 $A "{\"session_id\":\"$S1\",\"expires_at\":\"2026-11-25T16:00:00.250Z\"}"
    line 11 diary.session.revoked.v1 $A "{\"session_id\":\"$S1\",\"expires_at\":\"2026-11-25T16:00:00.250Z\"}"
    line 12 diary.food.created.v1 $A "$(food_body $F1 Apple 52)"
    line 13 diary.food.updated.v1 $A "$(food_body $F1 Pear 57.126)" '"ifmatch":1,"requesthash":"ab0013"'
    line 13 diary.food.updated.v1 $A "$(food_body $F1 Pear 57.126)" '"ifmatch":1,"requesthash":"ab0013"' # copy
    line 14 diary.food.updated.v1 $A "$(food_body $F1 Quince 60)" '"ifmatch":1,"requesthash":"ab0014"'  # 412
    line 15 diary.food.updated.v1 $A "$(food_body $NOFOOD Plum 46)"             # unknown_food
    line 16 diary.food.updated.v1 $B "$(food_body $F1 Stolen 1)"                 # not Bob's food
    line 17 diary.entry.set.v1 $A "{\"entry_id\":\"6e2f8b31-4c5d-8e6f-a071-000000000017\",\"date\":\"2026-11-24\",\"meal_type\":\"lunch\",\"food_id\":\"$F1\",\"amount\":150}"
    line 18 diary.entry.set.v1 $A "{\"entry_id\":\"6e2f8b31-4c5d-8e6f-a071-000000000018\",\"date\":\"2026-11-24\",\"meal_type\":\"dinner\",\"food_id\":\"$F1\",\"amount\":100}"
    line 19 diary.entry.removed.v1 $A "{\"date\":\"2026-11-24\",\"meal_type\":\"lunch\",\"food_id\":\"$F1\"}" '"ifmatch":2,"requesthash":"ab0019"'
    line 20 diary.entry.removed.v1 $A "{\"date\":\"2026-11-24\",\"meal_type\":\"lunch\",\"food_id\":\"$F1\"}" '"ifmatch":1,"requesthash":"ab0020"'
    line 21 diary.entry.removed.v1 $A "{\"date\":\"2026-11-24\",\"meal_type\":\"lunch\",\"food_id\":\"$F1\"}" # gone
    line 22 diary.weight.set.v1 $A "{\"weight_id\":\"$W1\",\"date\":\"2026-11-24\",\"weight\":70.5}"
    line 23 diary.weight.set.v1 $A "{\"weight_id\":\"$W2\",\"date\":\"2026-11-24\",\"weight\":71.004}" '"ifmatch":1,"requesthash":"ab0023"'
    line 24 diary.weight.set.v1 $A "{\"weight_id\":\"$W2\",\"date\":\"2026-11-25\",\"weight\":72}" '"ifmatch":1,"requesthash":"ab0024"'
    line 25 diary.weight.removed.v1 $A '{"date":"2026-11-26"}'                    # unknown_weight
    line 26 diary.weight.removed.v1 $A '{"date":"2026-11-24"}' '"ifmatch":2,"requesthash":"ab0026"'
    line 27 diary.settings.updated.v1 $A '{"fat_percentage":20}'
    line 28 diary.settings.updated.v1 $A '{"protein_percentage":85}'            # 85 + 20 > 100
    line 29 diary.settings.updated.v1 $A '{"protein_percentage":80,"unit_system":"imperial"}' '"ifmatch":1,"requesthash":"ab0029"'
    line 30 diary.settings.updated.v1 $A '{"daily_calorie_goal":1800}' '"ifmatch":1,"requesthash":"ab0030"'
    line 31 diary.settings.updated.v1 $B '{"protein_percentage":60,"fat_percentage":50}' # on insert
    line 32 diary.food.created.v1 $A "$(food_body $F2 Bread 265)"
    line 33 diary.entry.set.v1 $A "{\"entry_id\":\"6e2f8b31-4c5d-8e6f-a071-000000000033\",\"date\":\"2026-11-24\",\"meal_type\":\"breakfast\",\"food_id\":\"$F2\",\"amount\":60}"
    line 34 diary.food.deleted.v1 $A "{\"food_id\":\"$F2\"}" '"ifmatch":1,"requesthash":"ab0034"'
    line 35 diary.entry.set.v1 $A "{\"entry_id\":\"6e2f8b31-4c5d-8e6f-a071-000000000035\",\"date\":\"2026-11-25\",\"meal_type\":\"breakfast\",\"food_id\":\"$F2\",\"amount\":60}"
    line 36 diary.weight.set.v1 $A "{\"weight_id\":\"$W3\",\"date\":\"2026-11-27\",\"weight\":69}"
    line 37 diary.session.revoked.v1 $A "{\"session_id\":\"$S2\",\"expires_at\":\"2026-11-26T00:00:00Z\"}"
    line 38 diary.settings.updated.v1 $B '{"unit_system":"imperial"}'
    line 39 diary.food.deleted.v1 $A "{\"food_id\":\"$NOFOOD\"}"                 # unknown_food
} >"$TMP/phase1.tsv"
N1=$(wc -l <"$TMP/phase1.tsv")
kcat -P -b "$KAFKA" -t diary.events -K '\t' -l "$TMP/phase1.tsv" 2>>"$TMP/kcat.log" || bail "kcat produce phase 1"
PRODUCED=$((PRODUCED + N1))
ok "phase 1: produced $N1 events of every new type"

start_workers
check "both workers apply phase 1 and drain their outboxes" wait_for 60 "both databases" applied_all
stop_workers
check "both workers exit 0 on SIGTERM" [ $? = 0 ]

# status DB N: "status[:type:http]" of event N.
status() { q "$1" "SELECT status || coalesce(':' || (problem->>'type') || ':' || (problem->>'status'), '') FROM processed_events WHERE event_id = '$(ev "$2")'"; }
# expect_statuses DESCRIPTION: EXPECT (N WANT [N WANT ...]) holds in both databases; a failure
# lists the events that differ.
expect_statuses() {
    local what=$1 db got bad=
    for db in "${DBS[@]}"; do
        set -- "${EXPECT[@]}"
        while [ $# -gt 0 ]; do
            got=$(status $db "$1")
            [ "$got" = "$2" ] || bad="$bad $db:event $1 is '$got' not '$2';"
            shift 2
        done
    done
    if [ -z "$bad" ]; then ok "$what"; else notok "$what:$bad"; fi
}
# in_both DESCRIPTION SQL WANT: the query gives WANT in both databases.
in_both() {
    local what=$1 sql=$2 want=$3 db got bad=
    for db in "${DBS[@]}"; do
        got=$(q $db "$sql")
        [ "$got" = "$want" ] || bad="$bad $db: '$got';"
    done
    if [ -z "$bad" ]; then ok "$what"; else notok "$what: want '$want', got$bad"; fi
}

EXPECT=(1 applied 2 applied 3 applied 4 rejected:email_taken:409 5 rejected:version_mismatch:412
    6 applied 7 applied 8 applied 9 rejected:unknown_user:404 10 applied 11 applied 12 applied
    13 applied 14 rejected:version_mismatch:412 15 rejected:unknown_food:404
    16 rejected:unknown_food:404 17 applied 18 applied 19 rejected:version_mismatch:412
    20 applied 21 rejected:unknown_entry:404 22 applied 23 applied
    24 rejected:version_mismatch:412 25 rejected:unknown_weight:404 26 applied 27 applied
    28 rejected:invalid_settings:422 29 applied 30 rejected:version_mismatch:412
    31 rejected:invalid_settings:422 32 applied 33 applied 34 applied
    35 rejected:unknown_food:422 36 applied 37 applied 38 applied 39 rejected:unknown_food:404)
expect_statuses "phase 1: every event's status and problem (type, HTTP status) in both databases"
in_both "one processed_events row per event id (the copy of 13 absorbed)" \
    "SELECT count(*) || ' ' || count(DISTINCT event_id) FROM processed_events" "39 39"
in_both "problem titles and details" \
    "SELECT string_agg(problem->>'title' || '|' || (problem->>'detail'), ';' ORDER BY event_id) FROM processed_events WHERE event_id IN ('$(ev 4)', '$(ev 21)', '$(ev 28)', '$(ev 30)')" \
    "Email already registered|The email address is already registered.;Unknown diary entry|There is no lunch entry of food $F1 on 2026-11-24.;Invalid settings|Protein (85 %) and fat (20 %) together exceed 100 %.;Version mismatch|The settings are at version 2, not 1."
in_both "reason is the problem's detail" \
    "SELECT count(*) FROM processed_events WHERE status = 'rejected' AND reason IS DISTINCT FROM problem->>'detail'" 0
in_both "request_hash from the envelope's requesthash (NULL when absent)" \
    "SELECT (SELECT request_hash FROM processed_events WHERE event_id = '$(ev 7)') || ' ' || (SELECT request_hash FROM processed_events WHERE event_id = '$(ev 1)') || ' ' || (SELECT request_hash FROM processed_events WHERE event_id = '$(ev 14)') || ' ' || (SELECT count(*) FROM processed_events WHERE request_hash IS NULL)" \
    "$HASH7 ab0001 ab0014 1"
in_both "resource_id of applied events and of a version mismatch" \
    "SELECT string_agg(coalesce(resource_id::text, '-'), ' ' ORDER BY event_id) FROM processed_events WHERE event_id IN ('$(ev 3)', '$(ev 10)', '$(ev 14)', '$(ev 20)', '$(ev 23)', '$(ev 29)', '$(ev 28)')" \
    "$A $S1 $F1 6e2f8b31-4c5d-8e6f-a071-000000000017 $W1 - $A"
in_both "user updated: name, email, version 5 after two updates and two password changes" \
    "SELECT name || ' ' || email || ' ' || version || ' ' || (created_at = '$(evtime 1)') || ' ' || (updated_at = '$(evtime 8)') FROM users WHERE id = '$A'" \
    "Ann B. ann.b@example.org 5 true true"
in_both "password changed: the re-hash kept the revocation time of the revoking change" \
    "SELECT password_hash || ' ' || (tokens_valid_after = '$(evtime 7)') FROM users WHERE id = '$A'" \
    "\$argon2id\$v=19\$rehash true"
in_both "Bob untouched by the rejected events (version 1, no tokens_valid_after)" \
    "SELECT email || ' ' || version || ' ' || (tokens_valid_after IS NULL) FROM users WHERE id = '$B'" \
    "bob@example.org 1 true"
in_both "revoked_sessions: two sessions, revoked_at = the event's time, the repeat changed nothing" \
    "SELECT string_agg(session_id || ' ' || user_id || ' ' || (revoked_at = CASE session_id WHEN '$S1' THEN '$(evtime 10)'::timestamptz ELSE '$(evtime 37)'::timestamptz END), ',' ORDER BY session_id) FROM revoked_sessions" \
    "$S1 $A true,$S2 $A true"
in_both "food updated: every field, numbers rounded, version 2" \
    "SELECT name || ' ' || calories_per_100g || ' ' || protein_per_100g || ' ' || fat_per_100g || ' ' || version || ' ' || (updated_at = '$(evtime 13)') FROM foods WHERE id = '$F1'" \
    "Pear 57.13 0.50 0.25 2 true"
in_both "entry removed: the lunch row gone, the dinner row kept" \
    "SELECT string_agg(meal_type || ' ' || amount, ',' ORDER BY meal_type) FROM daily_meals WHERE user_id = '$A'" \
    "dinner 100.00"
in_both "food deleted: it and (by cascade) its entry are gone" \
    "SELECT count(*) FROM foods WHERE id = '$F2'" 0
in_both "weight set twice on one date then removed; another date kept with its own id" \
    "SELECT string_agg(id || ' ' || date || ' ' || weight || ' ' || version, ',') FROM weight_entries WHERE user_id = '$A'" \
    "$W3 2026-11-27 69.00 1"
in_both "settings: defaults merged on insert, updated to version 2, the failing updates left no trace" \
    "SELECT unit_system || ' ' || daily_calorie_goal || ' ' || protein_percentage || ' ' || fat_percentage || ' ' || version || ' ' || (created_at = '$(evtime 27)') || ' ' || (updated_at = '$(evtime 29)') FROM user_settings WHERE user_id = '$A'" \
    "imperial 2000 80.00 20.00 2 true true"
in_both "settings of Bob: the invalid insert left nothing, the next one inserted with defaults" \
    "SELECT unit_system || ' ' || daily_calorie_goal || ' ' || protein_percentage || ' ' || fat_percentage || ' ' || version FROM user_settings WHERE user_id = '$B'" \
    "imperial 2000 25.00 30.00 1"

# ---- phase 2: Ann deletes her account ----
{
    line 40 diary.user.deleted.v1 $A '{}' '"ifmatch":4,"requesthash":"ab0040"'  # she is at 5: 412
    line 41 diary.user.deleted.v1 $A '{}' '"ifmatch":5,"requesthash":"ab0041"'
    line 42 diary.food.created.v1 $A "$(food_body $F3 Cake 400)"                 # unknown_user
    line 43 diary.weight.set.v1 $A "{\"weight_id\":\"$W2\",\"date\":\"2026-12-01\",\"weight\":68}"
    line 44 diary.settings.updated.v1 $A '{"fat_percentage":10}'
    line 45 diary.session.revoked.v1 $A "{\"session_id\":\"$S3\",\"expires_at\":\"2026-11-26T00:00:00Z\"}"
    line 46 diary.user.deleted.v1 $A '{}'                                          # unknown_user
    line 47 diary.user.password_changed.v1 $A '{"password_hash":"x","revoke":true}' # unknown_user
    line 48 diary.entry.removed.v1 $A "{\"date\":\"2026-11-24\",\"meal_type\":\"dinner\",\"food_id\":\"$F1\"}"
    line 49 diary.user.updated.v1 $B '{"name":"Robert"}' '"ifmatch":9,"requesthash":"ab0049"'
    register 50 $C ANN.B@example.org # Ann's email is free again
    line 51 diary.weight.set.v1 $B "{\"weight_id\":\"$W1\",\"date\":\"2026-11-24\",\"weight\":\"heavy\"}" '"requesthash":"ab0051"'
    line 52 diary.user.password_changed.v1 $B '{"password_hash":"$argon2id$v=19$bob2","revoke":true}' '"ifmatch":1,"requesthash":"ab0052"'
} >"$TMP/phase2.tsv"
N2=$(wc -l <"$TMP/phase2.tsv")
kcat -P -b "$KAFKA" -t diary.events -K '\t' -l "$TMP/phase2.tsv" 2>>"$TMP/kcat.log" || bail "kcat produce phase 2"
PRODUCED=$((PRODUCED + N2))
start_workers
check "phase 2: both workers (restarted) apply $N2 more events" wait_for 60 "both databases" applied_all
stop_workers
check "both workers exit 0 on SIGTERM again" [ $? = 0 ]

EXPECT=(40 rejected:version_mismatch:412 41 applied 42 rejected:unknown_user:404
    43 rejected:unknown_user:404 44 rejected:unknown_user:404 45 applied
    46 rejected:unknown_user:404 47 rejected:unknown_user:404 48 rejected:unknown_entry:404
    49 rejected:version_mismatch:412 50 applied 51 rejected:invalid_event:422 52 applied)
expect_statuses "phase 2: every event's status and problem in both databases"
in_both "user deleted: every row of hers went with her (cascade)" \
    "SELECT (SELECT count(*) FROM users WHERE id = '$A') + (SELECT count(*) FROM foods WHERE user_id = '$A') + (SELECT count(*) FROM daily_meals WHERE user_id = '$A') + (SELECT count(*) FROM weight_entries WHERE user_id = '$A') + (SELECT count(*) FROM user_settings WHERE user_id = '$A') + (SELECT count(*) FROM revoked_sessions WHERE user_id = '$A')" 0
in_both "... her event records stay (43 of hers)" \
    "SELECT count(*) FROM processed_events WHERE user_id = '$A'" 43
in_both "Cleo registered with Ann's freed email" \
    "SELECT email || ' ' || version FROM users WHERE id = '$C'" "ANN.B@example.org 1"
in_both "the dead-lettered event kept its request_hash" \
    "SELECT request_hash FROM processed_events WHERE event_id = '$(ev 51)'" "ab0051"
in_both "Bob: password changed with If-Match 1 (version 2, tokens cut)" \
    "SELECT version || ' ' || (tokens_valid_after = '$(evtime 52)') || ' ' || password_hash FROM users WHERE id = '$B'" \
    "2 true \$argon2id\$v=19\$bob2"
check "the set path ran batches of several rounds" \
    grep -Eq 'set-based batch of [0-9]+ events in ([2-9]|[1-9][0-9]+) rounds' "$TMP/worker.set.1.log"

# ---- the two databases agree ----
dump() { # DB
    psql -qAtX -d "$1" <<'SQL'
SELECT 'users', id, email, name, password_hash, version, created_at, updated_at, tokens_valid_after FROM users ORDER BY id;
SELECT 'foods', id, user_id, name, calories_per_100g, protein_per_100g, carbs_per_100g, fat_per_100g, version, created_at, updated_at FROM foods ORDER BY id;
SELECT 'meals', id, user_id, date, meal_type, food_id, amount, version, created_at, updated_at FROM daily_meals ORDER BY id;
SELECT 'weights', id, user_id, date, weight, version, created_at, updated_at FROM weight_entries ORDER BY id;
SELECT 'settings', user_id, unit_system, daily_calorie_goal, protein_percentage, fat_percentage, version, created_at, updated_at FROM user_settings ORDER BY user_id;
SELECT 'sessions', session_id, user_id, expires_at, revoked_at FROM revoked_sessions ORDER BY session_id;
SELECT 'events', event_id, user_id, type, status, reason, problem, "partition", "offset", payload_hash, resource_id, request_hash FROM processed_events ORDER BY event_id;
SELECT 'offsets', topic, "partition", next_offset FROM consumer_offsets ORDER BY 2, 3;
SQL
}
dump byset >"$TMP/byset.dump"
dump byevent >"$TMP/byevent.dump"
check "set and event paths: identical tables, processed_events and offsets ($(wc -l <"$TMP/byset.dump") rows)" \
    cmp -s "$TMP/byset.dump" "$TMP/byevent.dump"
cmp -s "$TMP/byset.dump" "$TMP/byevent.dump" || diff "$TMP/byset.dump" "$TMP/byevent.dump" | head -20

# ---- the change stream ----
kcat -C -b "$KAFKA" -t diary.changes -e -q -f '%k\t%s\n' 2>/dev/null >"$TMP/changes"
python3 - "$TMP/changes" "$EVT" "$A" "$B" "$C" "$F1" "$F2" "$S1" "$S2" "$W1" "$W3" >"$TMP/changes.check" <<'PY'
import json, sys
path, evt, A, B, C, F1, F2, S1, S2, W1, W3 = sys.argv[1:]
def ev(n): return "%s-%012d.0" % (evt, n)
runs = {"set": [], "event": []}
for line in open(path):
    if not line.strip():
        continue
    key, value = line.rstrip("\n").split("\t", 1)
    e = json.loads(value)
    run = e["source"].rsplit("-", 1)[1]       # diary-worker/types-<mode>
    runs[run].append((key, e))
# id -> (subject, table, op, version, before check, after check)
E17 = "6e2f8b31-4c5d-8e6f-a071-000000000017"
E33 = "6e2f8b31-4c5d-8e6f-a071-000000000033"
want = [
    (1, A, "users", "c", 1, A, None, {"email": "ann@example.org", "version": 1}),
    (2, B, "users", "c", 1, B, None, {"email": "bob@example.org"}),
    (3, A, "users", "u", 2, A, {"name": "Test", "version": 1}, {"name": "Ann B.", "version": 2}),
    (6, A, "users", "u", 3, A, {"email": "ann@example.org"}, {"email": "ann.b@example.org"}),
    (7, A, "users", "u", 4, A, {"version": 3}, {"version": 4}),
    (8, A, "users", "u", 5, A, {"version": 4}, {"version": 5}),
    (10, A, "revoked_sessions", "c", 1, S1, None,
     {"session_id": S1, "user_id": A, "expires_at": "2026-11-25T16:00:00.250Z",
      "revoked_at": "2026-11-24T16:00:10.000Z"}),
    (12, A, "foods", "c", 1, F1, None, {"name": "Apple", "fat_per_100g": 0.25}),
    (13, A, "foods", "u", 2, F1, {"name": "Apple", "calories_per_100g": 52, "version": 1},
     {"name": "Pear", "calories_per_100g": 57.13, "protein_per_100g": 0.5, "version": 2}),
    (17, A, "daily_meals", "c", 1, E17, None, {"amount": 150, "meal_type": "lunch"}),
    (18, A, "daily_meals", "c", 1, None, None, {"amount": 100, "meal_type": "dinner"}),
    (20, A, "daily_meals", "d", 1, E17, {"id": E17, "amount": 150, "version": 1}, "null"),
    (22, A, "weight_entries", "c", 1, W1, None, {"weight": 70.5, "date": "2026-11-24"}),
    (23, A, "weight_entries", "u", 2, W1, {"weight": 70.5, "version": 1}, {"id": W1, "weight": 71, "version": 2}),
    (26, A, "weight_entries", "d", 2, W1, {"weight": 71, "version": 2}, "null"),
    (27, A, "user_settings", "c", 1, A, None,
     {"user_id": A, "unit_system": "metric", "daily_calorie_goal": 2000,
      "protein_percentage": 25, "fat_percentage": 20, "version": 1}),
    (29, A, "user_settings", "u", 2, A, {"protein_percentage": 25, "version": 1},
     {"unit_system": "imperial", "protein_percentage": 80, "fat_percentage": 20, "version": 2}),
    (32, A, "foods", "c", 1, F2, None, {"name": "Bread"}),
    (33, A, "daily_meals", "c", 1, E33, None, {"food_id": F2}),
    (34, A, "foods", "d", 1, F2, {"id": F2, "name": "Bread", "version": 1}, "null"),
    (36, A, "weight_entries", "c", 1, W3, None, {"weight": 69}),
    (37, A, "revoked_sessions", "c", 1, S2, None, {"session_id": S2}),
    (38, B, "user_settings", "c", 1, B, None, {"unit_system": "imperial", "fat_percentage": 30}),
    (41, A, "users", "d", 5, A, {"id": A, "email": "ann.b@example.org", "name": "Ann B.", "version": 5}, "null"),
    (50, C, "users", "c", 1, C, None, {"email": "ANN.B@example.org"}),
    (52, B, "users", "u", 2, B, {"version": 1}, {"version": 2}),
]
problems = []
for run, msgs in runs.items():
    byid = {}
    for key, e in msgs:
        byid.setdefault(e["id"], []).append((key, e))
    ids = [e["id"] for _, e in msgs]
    wanted = [ev(w[0]) for w in want]
    if sorted(set(ids)) != sorted(wanted):
        problems.append("%s: change ids %s extra, %s missing" % (
            run, sorted(set(ids) - set(wanted)), sorted(set(wanted) - set(ids))))
    for n, subj, table, op, version, key, before, after in want:
        got = byid.get(ev(n))
        if not got:
            continue
        k, e = got[0]
        d = e["data"]
        def bad(what):
            problems.append("%s %s: %s: %s" % (run, ev(n), what, json.dumps(d)[:300]))
        if k != subj or e["subject"] != subj: bad("key/subject")
        if e["type"] != "diary.change.%s.v1" % table or d["table"] != table: bad("table")
        if d["op"] != op or d["version"] != version: bad("op/version")
        if key and d["key"] != {"id": key}: bad("key")
        if d["source"]["event_id"] != ev(n)[:-2] or d["source"]["topic"] != "diary.events": bad("source")
        if "password_hash" in json.dumps(e): bad("password_hash")
        for name, exp in (("before", before), ("after", after)):
            v = d[name]
            if exp is None and op in ("c",) and name == "before":
                if v is not None: bad("before of a create")
            elif exp == "null":
                if v is not None: bad(name + " must be null")
            elif exp is not None:
                if not isinstance(v, dict) or any(v.get(f) != x for f, x in exp.items()): bad(name)
    # Per user, the changes come in log order.
    for subj in (A, B, C):
        seq = [e["id"] for k, e in msgs if k == subj]
        exp = [ev(w[0]) for w in want if w[1] == subj]
        if seq != exp:
            problems.append("%s: order of %s's changes %s" % (run, subj[-2:], seq))
print(len(runs["set"]), len(runs["event"]), len(problems))
for p in problems[:10]:
    print(p)
PY
read -r NSET NEVENT NBAD <"$TMP/changes.check"
check "diary.changes: each run ($NSET and $NEVENT changes) has the expected ids, ops, keys, before/after, versions, per-user order, no password_hash" \
    [ "$NBAD" = 0 ]
[ "$NBAD" != 0 ] && tail -n +2 "$TMP/changes.check"
worklib_check_sanitizers "no sanitizer report"
finish worker-types
