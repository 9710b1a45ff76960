#!/usr/bin/env bash
# diaryctl against a real stack: replay of the live log into a fresh database that verify
# finds equal; a replay killed with -9 and resumed, still equal; verify finding a planted
# difference; replays with explicit --jobs (two jobs: whole, killed with -9 and resumed,
# --follow applying a new write then interrupted with SIGINT; one job), each equal; a legacy
# data set with good and bad records imported twice (the second run changes nothing), and a
# legacy user logging in with the old password; a dead letter redriven; lag, tail, audit and
# topics describe.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/e2e/lib.sh"

stack_test_env ops
CTL="$BIN_DIR/diaryctl"
trap stack_test_cleanup EXIT

"$top/scripts/stack.sh" up 2>"$RUN_DIR/up.err" || { cat "$RUN_DIR/up.err"; bail "stack up"; }
. "$RUN_DIR/stack.env"
pg_admin() { psql -qtAX "postgresql://postgres@127.0.0.1:$PG_PRIMARY_PORT/postgres" -c "$1"; }
db_url() { echo "postgresql://postgres@127.0.0.1:$PG_PRIMARY_PORT/$1"; }
fresh_db() {
  pg_admin "DROP DATABASE IF EXISTS $1" && pg_admin "CREATE DATABASE $1" &&
    "$CTL" migrate --url "$(db_url "$1")" --dir "$top/schema/migrations" >/dev/null
}
wait_lag_zero() { wait_for 60 "lag 0" bash -c "\"$CTL\" lag --json | jq -s -e 'map(.lag) | add == 0'"; }

# --- a live log: users, foods, entries, a rejection --------------------------------------
register() {
  http POST /v1/users "{\"email\":\"$1\",\"name\":\"$2\",\"password\":\"Str0ng!pass\"}" -H 'Prefer: wait=15'
  http POST /v1/sessions "{\"email\":\"$1\",\"password\":\"Str0ng!pass\"}"
  jq -r .token <<<"$BODY"
}
for u in 1 2 3 4 5; do
  tok=$(register "user$u@example.org" "User $u")
  for f in 1 2 3; do
    http POST /v1/foods "{\"name\":\"Food $u.$f\",\"calories_per_100g\":100,\"protein_per_100g\":5,\"carbs_per_100g\":10,\"fat_per_100g\":4}" -H "Authorization: Bearer $tok"
    fid=$(jq -r .id <<<"$BODY")
    for d in 01 02; do
      http PUT "/v1/diary/2026-11-$d/lunch/$fid" "{\"amount\":$((u * 10 + f))}" -H "Authorization: Bearer $tok"
    done
  done
  # A rejection: an unknown food.
  http PUT "/v1/diary/2026-11-01/dinner/00000000-0000-8000-8000-000000000000" '{"amount":5}' -H "Authorization: Bearer $tok"
  [ "$u" = 1 ] && { TOKEN1=$tok; USER1=$(psql -tAX "$PG_PRIMARY_URL" -c "SELECT id FROM users WHERE email='user1@example.org'"); }
done
# Bulk: 2000 more events produced straight to the log, so a replay takes long enough to be
# killed in the middle; spread over the users, keyed by the user, so that both jobs of a
# --jobs 2 replay have bulk to apply: job j owns the partitions p with p % 2 == j, so more
# users register until the users' partitions include an odd and an even one.
users() { psql -tAX "$PG_PRIMARY_URL" -c "SELECT id FROM users WHERE email LIKE 'user%@example.org' ORDER BY email"; }
user_parities() {
  kcat -C -b "$KAFKA_BOOTSTRAP" -t diary.events -e -q -f '%p %k\n' | grep -F -f <(users) |
    awk '{print $1 % 2}' | sort -u | wc -l
}
n_users=5
while [ "$(user_parities)" -lt 2 ] && [ $n_users -lt 20 ]; do
  n_users=$((n_users + 1))
  register "user$n_users@example.org" "User $n_users" >/dev/null
done
USERS=$(users)
echo "# $n_users users, on partitions of both parities: $([ "$(user_parities)" = 2 ] && echo yes || echo no)"
/usr/bin/python3 - $USERS >"$RUN_DIR/bulk.tsv" <<'PY'
import json, sys, uuid
for i in range(2000):
    user = sys.argv[1 + i % (len(sys.argv) - 1)]
    ev = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "test/bulk",
          "type": "diary.food.created.v1", "subject": user, "time": "2026-11-24T00:00:00.000Z",
          "requestid": "bulk-%d" % i,
          "data": {"food_id": str(uuid.uuid4()), "name": "Bulk %d" % i, "calories_per_100g": 100,
                   "protein_per_100g": 5, "carbs_per_100g": 10, "fat_per_100g": 4}}
    print(user + "\t" + json.dumps(ev))
PY
kcat -P -b "$KAFKA_BOOTSTRAP" -t diary.events -K '\t' -l "$RUN_DIR/bulk.tsv"
check "the live log is applied (lag 0)" wait_lag_zero
check "diaryctl lag prints a table" bash -c "\"$CTL\" lag | grep -q '^total lag 0'"
check "topics describe finds the devbroker in step" "$CTL" topics describe --dir "$top/topics"

# --- replay into a fresh database; verify -------------------------------------------------
fresh_db replay1
check "replay --dry-run counts without writing" bash -c \
  "\"$CTL\" replay --url '$(db_url replay1)' --group r1 --dry-run --json | jq -e 'select(.level==\"summary\") | .done > 0' && [ \$(psql -tAX '$(db_url replay1)' -c 'SELECT count(*) FROM processed_events') = 0 ]"
check "replay of the whole log" "$CTL" replay --url "$(db_url replay1)" --group r1 --json
check "verify: live and replayed databases are equal" "$CTL" verify "$PG_PRIMARY_URL" "$(db_url replay1)"
check "replay again is a no-op" bash -c "\"$CTL\" replay --url '$(db_url replay1)' --group r1 --json | jq -e 'select(.level==\"summary\") | .done == 0'"
check "replay into the live group is refused" bash -c "! \"$CTL\" replay --url '$(db_url replay1)' --group diary-apply 2>/dev/null"

# --- verify finds a planted difference ----------------------------------------------------
psql -qX "$(db_url replay1)" -c "UPDATE daily_meals SET amount = amount + 1 WHERE id = (SELECT id FROM daily_meals ORDER BY id LIMIT 1)"
check "verify finds a planted difference (exit 1)" bash -c "\"$CTL\" verify '$PG_PRIMARY_URL' '$(db_url replay1)' >'$RUN_DIR/verify.out'; [ \$? = 1 ]"
check "verify names the table" grep -q 'daily_meals.*DIFFERENT' "$RUN_DIR/verify.out"

# --- a replay killed with -9 and resumed --------------------------------------------------
fresh_db replay2
"$CTL" replay --url "$(db_url replay2)" --group r2 --batch 1 --json >/dev/null 2>&1 &
rp=$!
wait_for 30 "the replay to start" bash -c "[ \$(psql -tAX '$(db_url replay2)' -c 'SELECT count(*) FROM processed_events' 2>/dev/null || echo 0) -gt 100 ]"
kill -9 $rp 2>/dev/null; wait $rp 2>/dev/null
partial=$(psql -tAX "$(db_url replay2)" -c "SELECT count(*) FROM processed_events")
total=$(psql -tAX "$PG_PRIMARY_URL" -c "SELECT count(*) FROM processed_events")
echo "# replay killed after $partial of $total events"
check "the replay was killed in the middle" test "$partial" -lt "$total"
check "resumed replay completes" "$CTL" replay --url "$(db_url replay2)" --group r2 --json
check "verify: the resumed replay is equal" "$CTL" verify "$PG_PRIMARY_URL" "$(db_url replay2)"

# --- parallel jobs: partitions applied by two threads, each with its own connection -------
# Their stderr goes to the logs folder, which the clean-up checks for sanitizer reports.
RLOG=$RUN_DIR/logs/replay-jobs.log
log_events=$("$CTL" lag --json | jq -s 'map(.log_end - .log_start) | add')
summary_is() { jq -s -e "map(select(.level==\"summary\")) | length == 1 and (.[0] | $2)" "$1"; }
check "replay --jobs 0 is refused (exit 2)" bash -c "\"$CTL\" replay --url '$(db_url replay1)' --group r1 --jobs 0 2>/dev/null; [ \$? = 2 ]"
fresh_db replay3
"$CTL" replay --url "$(db_url replay3)" --group r3 --jobs 2 --json >"$RUN_DIR/replay3.out" 2>>"$RLOG"
check "replay --jobs 2 of the whole log" test $? -eq 0
check "its summary: two jobs, each of the $log_events events counted once" summary_is "$RUN_DIR/replay3.out" \
  ".jobs == 2 and .done == $log_events and .total == $log_events and .applied + .rejected + .duplicates + .dead_letters == .done"
check "verify: the --jobs 2 replay is equal" "$CTL" verify "$PG_PRIMARY_URL" "$(db_url replay3)"

fresh_db replay4
"$CTL" replay --url "$(db_url replay4)" --group r4 --jobs 2 --batch 1 --json >/dev/null 2>&1 &
rp=$!
# Killed once both jobs have applied something (when the users' partitions allow it).
both=$([ "$(user_parities)" = 2 ] && echo 2 || echo 1)
wait_for 30 "both jobs of the replay to apply" bash -c "[ \$(psql -tAX '$(db_url replay4)' -c \"SELECT count(DISTINCT \\\"partition\\\" % 2) FROM consumer_offsets WHERE group_id = 'r4' AND next_offset > 0\" 2>/dev/null || echo 0) -ge $both ] && [ \$(psql -tAX '$(db_url replay4)' -c 'SELECT count(*) FROM processed_events' 2>/dev/null || echo 0) -gt 100 ]"
kill -9 $rp 2>/dev/null; wait $rp 2>/dev/null
partial=$(psql -tAX "$(db_url replay4)" -c "SELECT count(*) FROM processed_events")
moving=$(psql -tAX "$(db_url replay4)" -c "SELECT string_agg(\"partition\" || ':' || next_offset, ' ' ORDER BY \"partition\") FROM consumer_offsets WHERE group_id = 'r4' AND next_offset > 0")
echo "# --jobs 2 replay killed after $partial of $total events; partition:offset $moving"
check "the --jobs 2 replay was killed in the middle" test "$partial" -lt "$total"
"$CTL" replay --url "$(db_url replay4)" --group r4 --jobs 2 --json >"$RUN_DIR/replay4.out" 2>>"$RLOG"
check "resumed --jobs 2 replay completes" test $? -eq 0
check "it resumed: only the rest to do, all of it done" summary_is "$RUN_DIR/replay4.out" \
  ".total < $log_events and .done == .total"
check "verify: the resumed --jobs 2 replay is equal" "$CTL" verify "$PG_PRIMARY_URL" "$(db_url replay4)"

fresh_db replay5
"$CTL" replay --url "$(db_url replay5)" --group r5 --jobs 1 --json >"$RUN_DIR/replay5.out" 2>>"$RLOG"
check "replay --jobs 1 (one thread) of the whole log" test $? -eq 0
check "verify: the --jobs 1 replay is equal" "$CTL" verify "$PG_PRIMARY_URL" "$(db_url replay5)"

# --follow with two jobs: catches up, applies writes while they keep coming, applies a write
# made through the API, stops on SIGINT with exit 1 and a summary, and the database is equal
# to the live one. The trickle sends one event every 20-40 ms: replay used to apply only after
# 100 ms without any message, so a steady trickle kept everything waiting.
fresh_db replay6
"$CTL" replay --url "$(db_url replay6)" --group r6 --jobs 2 --follow --json >"$RUN_DIR/replay6.out" 2>>"$RLOG" &
rp=$!
check "replay --follow catches up (lag 0)" wait_for 60 "lag 0 of r6" bash -c "\"$CTL\" lag --group r6 --url '$(db_url replay6)' --json | jq -s -e 'map(.lag) | add == 0'"
/usr/bin/python3 - "$USER1" >"$RUN_DIR/trickle.tsv" <<'PY'
import json, sys, uuid
user = sys.argv[1]
for i in range(150):
    ev = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "test/trickle",
          "type": "diary.food.created.v1", "subject": user, "time": "2026-11-24T00:00:00.000Z",
          "requestid": "trickle-%d" % i,
          "data": {"food_id": str(uuid.uuid4()), "name": "Trickle %d" % i, "calories_per_100g": 100,
                   "protein_per_100g": 5, "carbs_per_100g": 10, "fat_per_100g": 4}}
    print(user + "\t" + json.dumps(ev))
PY
while IFS= read -r line; do
  printf '%s\n' "$line" | kcat -P -b "$KAFKA_BOOTSTRAP" -t diary.events -K '\t'
  sleep 0.02
done <"$RUN_DIR/trickle.tsv" &
tp=$!
check "replay --follow applies writes while they keep coming (it used to wait for a pause)" \
  wait_for 20 "trickled writes in replay6" bash -c "[ \$(psql -tAX '$(db_url replay6)' -c \"SELECT count(*) FROM foods WHERE name LIKE 'Trickle %'\") -ge 10 ] && kill -0 $tp"
wait $tp
http POST /v1/foods '{"name":"Followed","calories_per_100g":10,"protein_per_100g":1,"carbs_per_100g":1,"fat_per_100g":1}' -H "Authorization: Bearer $TOKEN1" -H 'Prefer: wait=15'
followed=$(jq -r .id <<<"$BODY")
check "replay --follow applies a new write" wait_for 30 "the followed write" bash -c "[ \$(psql -tAX '$(db_url replay6)' -c \"SELECT count(*) FROM foods WHERE id = '$followed'\") = 1 ]"
kill -INT $rp 2>/dev/null; wait $rp
check "an interrupted replay exits 1" test $? -eq 1
check "it says how to resume" grep -q 'interrupted; run it again to resume' "$RLOG"
check "and prints its summary" summary_is "$RUN_DIR/replay6.out" ".jobs == 2 and .done == $log_events + 151"
check "the trickle is applied live too (lag 0)" wait_lag_zero
check "verify: the followed database is equal" "$CTL" verify "$PG_PRIMARY_URL" "$(db_url replay6)"

# A range: --from-offset beyond the end of the shorter partitions starts those at their end
# (it used to store the offset past the end and refuse the replay, now and on every rerun).
fresh_db replay7
from_100=$("$CTL" lag --json | jq -s 'map(.log_end - ([.log_start, 100] | max) | [., 0] | max) | add')
"$CTL" replay --url "$(db_url replay7)" --group r7 --from-offset 100 --json >"$RUN_DIR/replay7.out" 2>>"$RLOG"
check "replay --from-offset 100 past short partitions' ends" test $? -eq 0
check "it applied the $from_100 events at offsets 100 and up" summary_is "$RUN_DIR/replay7.out" ".total == $from_100 and .done == $from_100"

# --- import-legacy ------------------------------------------------------------------------
legacy=$RUN_DIR/legacy
mkdir -p "$legacy/meals/u1" "$legacy/meals/u2" "$legacy/meals/ghost"
hash=$(python3 -c "import crypt; print(crypt.crypt('Legacy#Pass1', '\$2b\$04\$abcdefghijklmnopqrstuu'))" 2>/dev/null)
cat >"$legacy/users.json" <<EOF
[{"id":"u1","email":"old.one@example.org","name":"Old One","passwordHash":"$hash","createdAt":"2020-01-01T00:00:00Z"},
 {"id":"u2","email":"old.two@example.org","name":"Old Two","passwordHash":"$hash","createdAt":"2020-01-02T00:00:00Z"},
 {"id":"u3","email":"not-an-email","name":"Bad Email","passwordHash":"$hash"},
 {"id":"u4","email":"old.four@example.org","name":"Plain","passwordHash":"plaintext"}]
EOF
cat >"$legacy/foods.json" <<'EOF'
[{"id":"f1","userId":"u1","name":"Porridge","caloriesPer100g":68,"proteinPer100g":2.4,"carbsPer100g":12,"fatPer100g":1.4},
 {"id":"f2","userId":"u2","name":"Apple","caloriesPer100g":52,"proteinPer100g":0.3,"carbsPer100g":14,"fatPer100g":0.2},
 {"id":"f3","userId":"u3","name":"Orphan","caloriesPer100g":52,"proteinPer100g":0.3,"carbsPer100g":14,"fatPer100g":0.2},
 {"id":"f4","userId":"u1","name":"Negative","caloriesPer100g":-5,"proteinPer100g":0,"carbsPer100g":0,"fatPer100g":0}]
EOF
echo '{"u1":{"unitSystem":"metric","dailyCalorieGoal":1800,"proteinPercentage":30,"fatPercentage":30},"u2":{"unitSystem":"furlongs"}}' >"$legacy/settings.json"
echo '{"u1":[{"date":"2024-01-01","weight":80.5},{"date":"2024-13-01","weight":80}]}' >"$legacy/weights.json"
echo '{"breakfast":[{"foodId":"f1","amount":250}],"lunch":[{"foodId":"f2","amount":100}]}' >"$legacy/meals/u1/2024-01-01.json"
echo '{"snack":[{"foodId":"f2","amount":120}]}' >"$legacy/meals/u2/2024-01-01.json"
echo '{}' >"$legacy/meals/ghost/2024-01-01.json"

"$CTL" import-legacy --json "$legacy" >"$RUN_DIR/import1.out" 2>"$RUN_DIR/import1.err"
check "import-legacy ran" test $? -eq 0
check "bad email reported" grep -q '"record":"record 2 (id u3)".*email' "$RUN_DIR/import1.err"
check "non-bcrypt hash reported" grep -q 'id u4.*bcrypt' "$RUN_DIR/import1.err"
check "food of a rejected user reported" grep -q 'id f3.*userId' "$RUN_DIR/import1.err"
check "negative calories reported" grep -q 'id f4.*calories_per_100g' "$RUN_DIR/import1.err"
check "meal naming a rejected food reported" grep -q 'meals/u1/2024-01-01.json.*f2' "$RUN_DIR/import1.err"
check "unknown user folder reported" grep -q 'meals/ghost' "$RUN_DIR/import1.err"
check "summary counts two users imported" jq -e 'select(.level=="summary") | .users.imported == 2 and .users.rejected == 2' "$RUN_DIR/import1.out"
check "imports applied (lag 0)" wait_lag_zero
check "imported users are in the database" bash -c "[ \$(psql -tAX '$PG_PRIMARY_URL' -c \"SELECT count(*) FROM users WHERE email LIKE 'old.%'\") = 2 ]"
snap() { psql -tAX "$PG_PRIMARY_URL" -c "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM foods), (SELECT count(*) FROM daily_meals), (SELECT count(*) FROM processed_events)"; }
before=$(snap)
"$CTL" import-legacy --json "$legacy" >"$RUN_DIR/import2.out" 2>/dev/null
check "second import sends nothing" jq -e 'select(.level=="summary") | .sent == 0 and .users.skipped == 2' "$RUN_DIR/import2.out"
sleep 1
check "second import changes nothing" test "$before" = "$(snap)"
http POST /v1/sessions '{"email":"old.one@example.org","password":"Legacy#Pass1"}'
expect_status "a legacy user logs in with the old password" 201
http POST /v1/sessions '{"email":"old.one@example.org","password":"Wrong#Pass1"}'
expect_status "a legacy user with a wrong password" 401

# --- audit and tail -----------------------------------------------------------------------
n_user1=$(psql -tAX "$PG_PRIMARY_URL" -c "SELECT count(*) FROM processed_events WHERE user_id = '$USER1'")
check "audit lists every write of the user ($n_user1)" bash -c "\"$CTL\" audit --user $USER1 --json | jq -s -e 'length == $n_user1 and all(.request_id != null)'"
check "audit never prints a password hash" bash -c "! \"$CTL\" audit --user $USER1 --json | grep -q password_hash"
check "tail --changes --exit reads the change stream" bash -c "\"$CTL\" tail --changes --from-beginning --exit --json | jq -s -e 'length > 0'"

# --- a dead letter, redriven after its cause is fixed -------------------------------------
# A poison event (unknown type) produced straight to the topic is dead-lettered.
poison='{"specversion":"1.0","id":"0192f0a4-6b1e-7c3a-9a4e-000000000001","source":"test","type":"diary.unknown.v1","subject":"'$USER1'","time":"2026-11-24T00:00:00Z","data":{}}'
printf '%s' "$poison" | kcat -P -b "$KAFKA_BOOTSTRAP" -t diary.events -k "$USER1" -H request-id=poison-1
check "poison event is dead-lettered" wait_for 20 dlq bash -c "\"$CTL\" dlq list --json | grep -q 0192f0a4-6b1e-7c3a-9a4e-000000000001"
check "dlq list shows it" bash -c "\"$CTL\" dlq list | grep -q 'diary.unknown.v1'"
# A good write the database refuses for a reason the worker did not foresee (here a broken
# trigger, as a bad deployment would leave): dead-lettered; the operator fixes the database
# and redrives it; it applies.
psql -qX "$PG_PRIMARY_URL" -c "CREATE FUNCTION refuse_food() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN IF NEW.name = 'Refused' THEN RAISE EXCEPTION 'refused by a broken trigger'; END IF; RETURN NEW; END \$\$; CREATE TRIGGER refuse_food BEFORE INSERT ON foods FOR EACH ROW EXECUTE FUNCTION refuse_food()"
http POST /v1/foods '{"name":"Refused","calories_per_100g":100,"protein_per_100g":5,"carbs_per_100g":10,"fat_per_100g":4}' -H "Authorization: Bearer $TOKEN1"
refused_event=$(jq -r .event_id <<<"$BODY")
check "the refused write is dead-lettered" wait_for 20 dlq bash -c "\"$CTL\" dlq list --json | grep -q $refused_event"
dl=$("$CTL" dlq list --json | jq -r "select(.original.id==\"$refused_event\") | \"\\(.partition):\\(.offset)\"" | head -1)
check "dlq show prints the original" bash -c "\"$CTL\" dlq show $dl | grep -q $refused_event"
check "redrive --dry-run sends nothing" bash -c "\"$CTL\" dlq redrive $dl --dry-run | grep -q 'would redrive'"
psql -qX "$PG_PRIMARY_URL" -c "DROP TRIGGER refuse_food ON foods; DROP FUNCTION refuse_food()"
check "redrive sends it back" "$CTL" dlq redrive "$dl"
check "the redriven write applies" wait_for 20 redrive bash -c "[ \$(psql -tAX '$PG_PRIMARY_URL' -c \"SELECT count(*) FROM foods WHERE name = 'Refused'\") = 1 ]"
http GET "/v1/events/$refused_event" -H "Authorization: Bearer $TOKEN1"
expect_json "its event now reads applied" '.status' '"applied"'
check "bad redrive arguments are refused" bash -c "! \"$CTL\" dlq redrive nonsense 2>/dev/null"

finish operator
