#!/usr/bin/env bash
# The spine, end to end, over real HTTP, Kafka (devbroker) and PostgreSQL: a whole stack on
# free loopback ports; register, log in, create a food, log a meal with Prefer: wait, read
# the day back from the replica, find the change event with kcat; bad input answers
# problem+json and changes nothing; the stack survives down/up with its data and its log;
# down leaves no process behind.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/e2e/lib.sh"

stack_test_env slice
# Debug logs: the worker logs each applied event (with its request id) at debug level only.
export DIARY_LOG_LEVEL=debug
trap stack_test_cleanup EXIT

"$top/scripts/stack.sh" up 2>"$RUN_DIR/up.err" || { cat "$RUN_DIR/up.err"; bail "stack up"; }
ok "stack up"
. "$RUN_DIR/stack.env"
for v in DIARY_URL KAFKA_BOOTSTRAP PG_PRIMARY_URL PG_REPLICA_URL; do
  check "stack.env has $v" test -n "${!v:-}"
done
for p in pg-primary pg-replica devbroker worker-1 ingest; do
  check "pid file for $p" pid_alive "$RUN_DIR/pids/$p.pid"
done

# --- health -------------------------------------------------------------------------------
http GET /healthz
expect_status "ingest /healthz" 200
http GET /readyz
expect_status "ingest /readyz" 200
expect_json "readyz says kafka ok" '.kafka.ok' true
w=$(echo "$WORKER_URLS" | cut -d' ' -f1)
check "worker /readyz 200" curl -sf "$w/readyz"
check "worker /metrics is Prometheus text" bash -c "curl -sf $w/metrics | grep -q '^# TYPE'"

# --- register, log in ----------------------------------------------------------------------
http POST /v1/users '{"email":"ada@example.org","name":"Ada","password":"Str0ng!pass"}' -H 'Prefer: wait=15'
expect_status "register with Prefer: wait" 201
expect_json "register returns the user's email" '.email' '"ada@example.org"'
user_id=$(jq -r '.id' <<<"$BODY")
check "no plaintext password in the log" bash -c "! kcat -C -b $KAFKA_BOOTSTRAP -t diary.events -e -q 2>/dev/null | grep -q 'Str0ng!pass'"
check "argon2id hash in the log" bash -c "kcat -C -b $KAFKA_BOOTSTRAP -t diary.events -e -q 2>/dev/null | grep -q 'argon2id'"

http POST /v1/users '{"email":"ada@example.org","name":"Ada 2","password":"Str0ng!pass"}' -H 'Prefer: wait=15'
expect_status "second registration with the same email is a conflict" 409
expect_problem "duplicate email problem"

http POST /v1/sessions '{"email":"ada@example.org","password":"wrong-Passw0rd!"}'
expect_status "wrong password" 401
expect_problem "wrong password problem"
http POST /v1/sessions '{"email":"ada@example.org","password":"Str0ng!pass"}'
expect_status "log in" 201
TOKEN=$(jq -r '.token' <<<"$BODY")
check "token returned" test -n "$TOKEN" -a "$TOKEN" != null

# A second user, for isolation.
http POST /v1/users '{"email":"bob@example.org","name":"Bob","password":"An0ther!pass"}' -H 'Prefer: wait=15'
expect_status "register second user" 201
http POST /v1/sessions '{"email":"bob@example.org","password":"An0ther!pass"}'
BOB=$(jq -r '.token' <<<"$BODY")

# --- one food, one meal ---------------------------------------------------------------------
AUTH=(-H "Authorization: Bearer $TOKEN")
http POST /v1/foods '{"name":"Oats","calories_per_100g":389,"protein_per_100g":16.9,"carbs_per_100g":66.3,"fat_per_100g":6.9}' "${AUTH[@]}" -H 'Prefer: wait=15'
expect_status "create food" 201
food_id=$(jq -r '.id' <<<"$BODY")
check "food id is a UUID" grep -Eq '^[0-9a-f-]{36}$' <<<"$food_id"

http PUT "/v1/diary/2026-11-24/breakfast/$food_id" '{"amount":50}' "${AUTH[@]}"
expect_status "PUT entry without wait answers 202" 202
expect_json "202 says pending" '.status' '"pending"'
check "202 carries Location" grep -qi '^location: /v1/events/' <<<"$HEADERS"
check "202 carries Diary-Position" grep -qi '^diary-position: [0-9]*:[0-9]*' <<<"$HEADERS"

http PUT "/v1/diary/2026-11-24/breakfast/$food_id" '{"amount":150}' "${AUTH[@]}" \
  -H 'Prefer: wait=15' -H 'X-Request-Id: slice-request-0001'
expect_status "PUT entry with Prefer: wait answers 201" 201
event_id=$(jq -r '.event_id' <<<"$BODY")
position=$(grep -i '^diary-position:' <<<"$HEADERS" | cut -d' ' -f2 | tr -d '\r')
expect_json "entry amount" '.amount' 150
expect_json "entry version bumped by the update" '.version' 2

http GET /v1/diary/2026-11-24 "${AUTH[@]}" -H "Diary-Min-Position: $position"
expect_status "read the day" 200
expect_json "one breakfast entry" '.meals.breakfast | length' 1
expect_json "entry food name" '.meals.breakfast[0].name' '"Oats"'
expect_json "entry amount read back" '.meals.breakfast[0].amount' 150
expect_json "calories for 150 g" '.meals.breakfast[0].calories' 583.5
expect_json "day total calories" '.totals.calories' 583.5
expect_json "lunch empty" '.meals.lunch | length' 0

http GET "/v1/events/$event_id" "${AUTH[@]}"
expect_status "event status" 200
expect_json "event applied" '.status' '"applied"'

# The change event for that event id, on diary.changes, read with kcat.
check "change event on diary.changes" wait_for 20 "change event" bash -c \
  "kcat -C -b $KAFKA_BOOTSTRAP -t diary.changes -e -q 2>/dev/null | jq -e 'select(.data.source.event_id == \"$event_id\" and .data.table == \"daily_meals\" and .data.op == \"u\")' >/dev/null"
check "outbox drained" wait_for 10 "outbox" bash -c "[ \$(psql -tAX '$PG_PRIMARY_URL' -c 'SELECT count(*) FROM outbox') = 0 ]"
check "request id reached the worker's log" grep -q '"request_id":"slice-request-0001"' "$RUN_DIR/logs/worker-1.log"

# --- bad input: a problem+json each, and nothing changes ------------------------------------
snapshot() { psql -tAX "$PG_PRIMARY_URL" -c "SELECT count(*), coalesce(sum(amount),0) FROM daily_meals; SELECT count(*) FROM foods; SELECT count(*) FROM users"; }
before=$(snapshot)
http PUT "/v1/diary/2026-11-24/lunch/$food_id" '{"amount":' "${AUTH[@]}"
expect_status "malformed JSON" 400
expect_problem "malformed JSON problem"
http PUT "/v1/diary/2026-11-24/lunch/$food_id" '{}' "${AUTH[@]}"
expect_status "missing field" 422
expect_json "missing field named" '.errors[0].field' '"amount"'
http PUT "/v1/diary/2026-11-24/lunch/$food_id" '{"amount":"lots"}' "${AUTH[@]}"
expect_status "wrong type" 422
expect_problem "wrong type problem"
http PUT "/v1/diary/2026-11-24/brunch/$food_id" '{"amount":10}' "${AUTH[@]}"
expect_status "unknown meal type" 422
expect_problem "unknown meal type problem"
http PUT "/v1/diary/2026-11-24/lunch/$food_id" '{"amount":10}'
expect_status "no token" 401
expect_problem "no token problem"
http PUT "/v1/diary/2026-11-24/lunch/$food_id" '{"amount":10}' -H "Authorization: Bearer ${TOKEN%?}x"
expect_status "tampered token" 401
http GET "/v1/foods/$food_id" -H "Authorization: Bearer $BOB"
expect_status "someone else's food is not found" 404
expect_problem "someone else's food problem"
http PUT "/v1/diary/2026-11-24/lunch/$food_id" '{"amount":10}' -H "Authorization: Bearer $BOB" -H 'Prefer: wait=15' \
  -H 'X-Request-Id: slice-request-0002'
expect_status "logging someone else's food is rejected" 422
check "the rejection's request id is in the worker's log" bash -c "grep '\"request_id\":\"slice-request-0002\"' '$RUN_DIR/logs/worker-1.log' | grep -q rejected"
expect_problem "someone else's food rejection problem"
http GET /v1/diary/2026-11-24 -H "Authorization: Bearer $BOB"
expect_json "bob's day is empty" '.meals.breakfast | length' 0
http GET /v1/nowhere "${AUTH[@]}"
expect_status "unknown route" 404
http DELETE /v1/users "${AUTH[@]}"
expect_status "wrong method" 405
check "405 has Allow" grep -qi '^allow:' <<<"$HEADERS"
sleep 1
after=$(snapshot)
check "bad input changed nothing" test "$before" = "$after"

# --- down / up keeps the data and the log ---------------------------------------------------
pids=$(stack_pids "$RUN_DIR")
"$top/scripts/stack.sh" down 2>/dev/null
check "down leaves no stack process" none_alive "$RUN_DIR" $pids
"$top/scripts/stack.sh" up 2>"$RUN_DIR/up2.err" || { cat "$RUN_DIR/up2.err"; bail "stack up again"; }
. "$RUN_DIR/stack.env"
http GET /v1/diary/2026-11-24 "${AUTH[@]}"
expect_json "the day survived down/up" '.meals.breakfast[0].amount' 150
http PUT "/v1/diary/2026-11-24/dinner/$food_id" '{"amount":200}' "${AUTH[@]}" -H 'Prefer: wait=15'
expect_status "a write after restart applies (offsets line up with the restored log)" 201
check "worker still running after restart" pid_alive "$RUN_DIR/pids/worker-1.pid"

pids=$(stack_pids "$RUN_DIR")
"$top/scripts/stack.sh" down 2>/dev/null
check "final down leaves no stack process" none_alive "$RUN_DIR" $pids
finish slice
