#!/usr/bin/env bash
# The whole HTTP API end to end, over real HTTP, Kafka (devbroker) and PostgreSQL, on a stack of
# its own: every route's happy path and errors (problem+json with a stable type), the batch
# route with valid and invalid items mixed, idempotent retries (100 retries of one keyed write
# leave one row and one change event), optimistic locking (stale If-Match with Prefer: wait is
# 412), read-your-writes (a write then at once a read with its position sees it, 50 times),
# token revocation (log-out, password change, deletion, legacy re-hash), and isolation between
# users (another user's ids answer 404, never their data).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/e2e/lib.sh"

stack_test_env api
NODE2_PID=
stop_node2() {
  [ -n "$NODE2_PID" ] || return 0
  kill -TERM "$NODE2_PID" 2>/dev/null
  wait "$NODE2_PID" 2>/dev/null
  NODE2_PID=
}
cleanup() {
  stop_node2
  stack_test_cleanup
}
trap cleanup EXIT

"$top/scripts/stack.sh" up 2>"$RUN_DIR/up.err" || { cat "$RUN_DIR/up.err"; bail "stack up"; }
ok "stack up"
. "$RUN_DIR/stack.env"

WAIT=(-H 'Prefer: wait=15')
header() { grep -i "^$1:" <<<"$HEADERS" | head -1 | cut -d' ' -f2- | tr -d '\r'; }
field() { jq -r "$1" <<<"$BODY"; }
primary() { psql -tAX "$PG_PRIMARY_URL" -c "$1"; }
replica() { psql -tAX "$PG_REPLICA_URL" -c "$1"; }
# expect_error DESCRIPTION STATUS SLUG: the last answer is that problem.
expect_error() {
  expect_status "$1" "$2"
  expect_problem "$1"
  expect_json "$1: type" '.type' "\"https://diary.example/problems/$3\""
}
# expect_field_error DESCRIPTION FIELD: 422 validation naming FIELD.
expect_field_error() {
  expect_error "$1" 422 validation
  expect_json "$1: names $2" "[.errors[].field] | index(\"$2\") != null" true
}
register() { # EMAIL NAME: registers with Prefer: wait, prints the id
  http POST /v1/users "{\"email\":\"$1\",\"name\":\"$2\",\"password\":\"Str0ng!pass\"}" "${WAIT[@]}"
  field .id
}
login() { # EMAIL [PASSWORD]: prints a token
  http POST /v1/sessions "{\"email\":\"$1\",\"password\":\"${2:-Str0ng!pass}\"}"
  field .token
}
food_body() { echo "{\"name\":\"$1\",\"calories_per_100g\":$2,\"protein_per_100g\":$3,\"carbs_per_100g\":$4,\"fat_per_100g\":$5}"; }

# --- accounts --------------------------------------------------------------------------------
ADA=$(register ada@example.org Ada)
check "register answers the new user id" grep -Eq '^[0-9a-f-]{36}$' <<<"$ADA"
http POST /v1/users '{"email":"ADA@example.org","name":"Ada 2","password":"Str0ng!pass"}' "${WAIT[@]}"
expect_error "registering a taken email (another case) is a conflict" 409 email_taken
http POST /v1/users '{"email":"nope","name":"","password":"weak","extra":1}'
expect_field_error "invalid registration" email
expect_json "each bad field is named" '[.errors[].field] | sort' '["email","extra","name","password"]'
http POST /v1/sessions '{"email":"ada@example.org","password":"Wr0ng!pass"}'
expect_error "wrong password" 401 unauthorized
ADA_T=$(login ada@example.org)
A=(-H "Authorization: Bearer $ADA_T")
BOB=$(register bob@example.org Bob)
BOB_T=$(login bob@example.org)
B=(-H "Authorization: Bearer $BOB_T")

http GET /v1/me "${A[@]}"
expect_status "GET /v1/me" 200
expect_json "me: email and version" '[.email, .version]' '["ada@example.org", 1]'
check "me: ETag is the version" test "$(header ETag)" = '"1"'
http PATCH /v1/me '{"name":"Ada L."}' "${A[@]}" "${WAIT[@]}" -H 'If-Match: "1"'
expect_status "PATCH /v1/me name" 200
expect_json "name changed, version 2" '[.name, .version]' '["Ada L.", 2]'
http PATCH /v1/me '{"name":"Ada X"}' "${A[@]}" "${WAIT[@]}" -H 'If-Match: "1"'
expect_error "PATCH /v1/me with a stale If-Match" 412 version_mismatch
http PATCH /v1/me '{"email":"bob@example.org"}' "${A[@]}" "${WAIT[@]}"
expect_error "PATCH /v1/me to a taken email" 409 email_taken
http PATCH /v1/me '{}' "${A[@]}"
expect_field_error "PATCH /v1/me with nothing" ""
http PATCH /v1/me '{"name":"A","password":"N3w!passw0rd"}' "${A[@]}"
expect_field_error "PATCH /v1/me password with a name" password
http PATCH /v1/me '{"nickname":"A"}' "${A[@]}"
expect_field_error "PATCH /v1/me unknown field" nickname
http PATCH /v1/me '{"password":"short"}' "${A[@]}"
expect_field_error "PATCH /v1/me weak password" password

# Password change: every earlier token of the account stops at once on this node.
ADA_T2=$(login ada@example.org)
http PATCH /v1/me '{"password":"N3w!passw0rd"}' "${A[@]}" "${WAIT[@]}"
expect_status "password change" 200
http GET /v1/me "${A[@]}"
expect_error "the token used for the change is revoked" 401 unauthorized
http GET /v1/me -H "Authorization: Bearer $ADA_T2"
expect_error "another earlier token is revoked" 401 unauthorized
http POST /v1/sessions '{"email":"ada@example.org","password":"Str0ng!pass"}'
expect_error "the old password no longer logs in" 401 unauthorized
ADA_T=$(login ada@example.org 'N3w!passw0rd')
A=(-H "Authorization: Bearer $ADA_T")
http GET /v1/me "${A[@]}"
expect_status "a token issued right after the change works" 200
check "the log holds no plaintext password" bash -c "! kcat -C -b $KAFKA_BOOTSTRAP -t diary.events -e -q 2>/dev/null | grep -q 'N3w!passw0rd'"

# Log-out: that token stops, another session of the same user goes on.
ADA_T3=$(login ada@example.org 'N3w!passw0rd')
http DELETE /v1/sessions/current -H "Authorization: Bearer $ADA_T3" "${WAIT[@]}"
expect_status "log out" 204
http GET /v1/me -H "Authorization: Bearer $ADA_T3"
expect_error "a logged-out token" 401 unauthorized
check "the revocation reached the replica" test "$(replica 'SELECT count(*) FROM revoked_sessions')" = 1
http GET /v1/me "${A[@]}"
expect_status "another session still works" 200
S1=$(login bob@example.org)
S2=$(login bob@example.org)
http DELETE /v1/sessions/current -H "Authorization: Bearer $S1" -H 'Idempotency-Key: bye' "${WAIT[@]}"
expect_status "log out with a key" 204
http DELETE /v1/sessions/current -H "Authorization: Bearer $S2" -H 'Idempotency-Key: bye' "${WAIT[@]}"
expect_error "the same key from another session is not the same log-out" 422 idempotency-key-reused
http GET /v1/me -H "Authorization: Bearer $S2"
expect_status "so that session still works" 200

# Log-in right after registering without Prefer: wait, with the registration's position.
http POST /v1/users '{"email":"erin@example.org","name":"Erin","password":"Str0ng!pass"}'
expect_status "register without waiting" 202
http POST /v1/sessions '{"email":"erin@example.org","password":"Str0ng!pass"}' -H "Diary-Min-Position: $(header Diary-Position)"
expect_status "log in with the registration's position" 201

# Legacy (bcrypt) hash: a log-in verifies it and replaces it with argon2id, sessions intact.
CAROL=$(register carol@example.org Carol)
primary "UPDATE users SET password_hash = '\$2b\$04\$b6K5fca0b1CA5Xqr/fc45unaJi7pMS6rVvAfHG7sKZ5AdZpwTohra' WHERE id = '$CAROL'" >/dev/null
wait_for 10 "the bcrypt hash on the replica" bash -c "psql -tAX '$PG_REPLICA_URL' -c \"SELECT password_hash FROM users WHERE id = '$CAROL'\" | grep -q '^\\\$2b'"
CAROL_T=$(login carol@example.org 'Leg4cy!pass')
check "log-in with a legacy bcrypt hash" grep -Eq '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' <<<"$CAROL_T"
check "the legacy hash is replaced by argon2id" wait_for 10 "re-hash" bash -c \
  "psql -tAX '$PG_REPLICA_URL' -c \"SELECT password_hash FROM users WHERE id = '$CAROL'\" | grep -q '^\\\$argon2id'"
http GET /v1/me -H "Authorization: Bearer $CAROL_T"
expect_status "the re-hash does not end the session" 200

# Deletion: the account and its rows go, its tokens stop.
DAVE=$(register dave@example.org Dave)
DAVE_T=$(login dave@example.org)
http POST /v1/foods "$(food_body Dates 282 2.5 75 0.4)" -H "Authorization: Bearer $DAVE_T" "${WAIT[@]}"
http DELETE /v1/me -H "Authorization: Bearer $DAVE_T" "${WAIT[@]}"
expect_status "delete the account" 204
http GET /v1/me -H "Authorization: Bearer $DAVE_T"
expect_error "a deleted account's token" 401 unauthorized
check "the user and their foods are gone" test "$(primary "SELECT (SELECT count(*) FROM users WHERE id = '$DAVE') + (SELECT count(*) FROM foods WHERE user_id = '$DAVE')")" = 0

# --- revocation on another node: the delta query, and the load at start ----------------------
# A second ingest node on the same stack learns revocations from the replica only.
start_node2() {
  rm -f "$RUN_DIR/node2.port"
  DIARY_TOKEN_KEY=$(cat "$RUN_DIR/secrets/token.key") DIARY_HTTP_PORT=0 \
    DIARY_HTTP_PORT_FILE="$RUN_DIR/node2.port" "$BIN_DIR/diary-ingest" >>"$RUN_DIR/logs/ingest-2.log" 2>&1 &
  NODE2_PID=$!
  wait_for 30 "the second node's port" test -s "$RUN_DIR/node2.port" &&
    N2=http://127.0.0.1:$(cat "$RUN_DIR/node2.port") &&
    wait_for 30 "the second node's readiness" curl -sf "$N2/readyz"
}
BIN_DIR=${BIN_DIR:-$top/build/bin}
check "a second ingest node starts and is ready" start_node2
# until_refused TOKEN: seconds (tenths) until node 2 answers 401 to the token, at most 5 s.
until_refused() {
  local t0=$SECONDS i
  for i in $(seq 1 50); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$N2/v1/me" -H "Authorization: Bearer $1")" = 401 ] && { echo "$i"; return 0; }
    sleep 0.1
  done
  echo never
  return 1
}
FRANK=$(register frank@example.org Frank)
F1=$(login frank@example.org)
F2=$(login frank@example.org)
check "node 2 accepts a fresh token" test "$(curl -s -o /dev/null -w '%{http_code}' "$N2/v1/me" -H "Authorization: Bearer $F1")" = 200
http DELETE /v1/sessions/current -H "Authorization: Bearer $F1"
t=$(until_refused "$F1")
check "node 2 refuses a token logged out on node 1 within 3 s (after ${t}/10 s)" test "$t" != never -a "${t:-99}" -le 30
check "node 2 still accepts the user's other session" test "$(curl -s -o /dev/null -w '%{http_code}' "$N2/v1/me" -H "Authorization: Bearer $F2")" = 200
http PATCH /v1/me '{"password":"N3w!passw0rd"}' -H "Authorization: Bearer $F2"
t=$(until_refused "$F2")
check "node 2 refuses a token from before a password change within 3 s (after ${t}/10 s)" test "$t" != never -a "${t:-99}" -le 30
GINA=$(register gina@example.org Gina)
G1=$(login gina@example.org)
http DELETE /v1/me -H "Authorization: Bearer $G1"
t=$(until_refused "$G1")
check "node 2 refuses a deleted account's token within 3 s (after ${t}/10 s)" test "$t" != never -a "${t:-99}" -le 30
stop_node2
check "a restarted node loads the revocations before it is ready" start_node2
for tok in "$F1" "$F2" "$G1"; do
  check "the restarted node refuses a revoked token at once" test "$(curl -s -o /dev/null -w '%{http_code}' "$N2/v1/me" -H "Authorization: Bearer $tok")" = 401
done
F3=$(login frank@example.org 'N3w!passw0rd')
check "the restarted node accepts a token from after the change" test "$(curl -s -o /dev/null -w '%{http_code}' "$N2/v1/me" -H "Authorization: Bearer $F3")" = 200
stop_node2

# --- settings ----------------------------------------------------------------------------------
http GET /v1/me/settings "${A[@]}"
expect_status "settings default" 200
expect_json "the seed's defaults" '[.unit_system, .daily_calorie_goal, .protein_percentage, .fat_percentage, .version]' '["metric", 2000, 25, 30, 0]'
http PUT /v1/me/settings '{"daily_calorie_goal":2500,"protein_percentage":30}' "${A[@]}" "${WAIT[@]}"
expect_status "PUT settings" 200
expect_json "settings merged with the defaults" '[.daily_calorie_goal, .protein_percentage, .fat_percentage, .version]' '[2500, 30, 30, 1]'
http GET /v1/me/settings "${A[@]}"
check "settings ETag" test "$(header ETag)" = '"1"'
http PUT /v1/me/settings '{"protein_percentage":60,"fat_percentage":50}' "${A[@]}"
expect_field_error "protein + fat over 100" fat_percentage
http PUT /v1/me/settings '{"fat_percentage":75}' "${A[@]}" "${WAIT[@]}"
expect_error "fat over 100 with the stored protein (the worker decides)" 422 invalid_settings
http PUT /v1/me/settings '{"unit_system":"stone","daily_calorie_goal":2.5}' "${A[@]}"
expect_field_error "unknown unit system" unit_system
expect_json "non-integer goal named" '[.errors[].field] | index("daily_calorie_goal") != null' true
http PUT /v1/me/settings '{}' "${A[@]}"
expect_field_error "empty settings" ""
http PUT /v1/me/settings '{"unit_system":"imperial"}' "${A[@]}" "${WAIT[@]}" -H 'If-Match: "7"'
expect_error "settings with a stale If-Match" 412 version_mismatch

# --- foods ---------------------------------------------------------------------------------------
http POST /v1/foods "$(food_body Oats 389 16.9 66.3 6.9)" "${A[@]}" "${WAIT[@]}"
expect_status "create a food" 201
OATS=$(field .id)
http POST /v1/foods "$(food_body 'oat milk' 46 1 6.5 1.5)" "${A[@]}" "${WAIT[@]}"
MILK=$(field .id)
http POST /v1/foods "$(food_body Banana 89 1.1 22.8 0.3)" "${A[@]}" "${WAIT[@]}"
BANANA=$(field .id)
http POST /v1/foods "$(food_body 'Sugar_free 100%' 5 0 1 0)" "${A[@]}" "${WAIT[@]}"
http POST /v1/foods "$(food_body Bad 10 20 20 20)" "${A[@]}"
expect_field_error "implausible calories" calories_per_100g
http POST /v1/foods "$(food_body Bad -1 0 0 0)" "${A[@]}"
expect_field_error "negative calories" calories_per_100g
http POST /v1/foods "$(food_body Bad 500 60 60 0)" "${A[@]}"
expect_field_error "macros over 100 g" protein_per_100g
http GET "/v1/foods/$OATS" "${A[@]}"
expect_status "GET a food" 200
expect_json "the food" '[.name, .calories_per_100g, .version]' '["Oats", 389, 1]'
check "food ETag" test "$(header ETag)" = '"1"'
http GET "/v1/foods?q=OA" "${A[@]}"
expect_status "search by prefix" 200
expect_json "case-insensitive prefix, ordered by name" '[.items[].name]' '["oat milk", "Oats"]'
http GET "/v1/foods?q=sugar_" "${A[@]}"
expect_json "LIKE characters in q are literal" '[.items[].name]' '["Sugar_free 100%"]'
http GET "/v1/foods?q=su%25" "${A[@]}"
expect_json "% in q matches only a %" '.items | length' 0
names=() cursor="" pages=0
while :; do
  http GET "/v1/foods?limit=1${cursor:+&cursor=$cursor}" "${A[@]}"
  [ "$STATUS" = 200 ] || break
  names+=("$(field '.items[0].name')")
  pages=$((pages + 1))
  cursor=$(field '.next_cursor // empty')
  [ -n "$cursor" ] && [ $pages -lt 10 ] || break
done
check "a cursor walks every food once, in order (${names[*]})" test "${names[*]}" = "Banana oat milk Oats Sugar_free 100%"
http GET "/v1/foods?limit=0" "${A[@]}"
expect_field_error "limit 0" limit
http GET "/v1/foods?limit=101" "${A[@]}"
expect_field_error "limit 101" limit
http GET "/v1/foods?limit=ten" "${A[@]}"
expect_field_error "limit not a number" limit
http GET "/v1/foods?cursor=bm90IGEgY3Vyc29y" "${A[@]}"
expect_field_error "a cursor we never gave" cursor
http GET "/v1/foods?color=red" "${A[@]}"
expect_field_error "unknown query parameter" color
http PUT "/v1/foods/$OATS" "$(food_body 'Rolled oats' 379 13.2 67.7 6.5)" "${A[@]}" "${WAIT[@]}" -H 'If-Match: "1"'
expect_status "replace a food" 200
expect_json "replaced, version 2" '[.name, .version]' '["Rolled oats", 2]'
http PUT "/v1/foods/$OATS" "$(food_body 'Oats again' 379 13.2 67.7 6.5)" "${A[@]}" "${WAIT[@]}" -H 'If-Match: "1"'
expect_error "stale If-Match on a food" 412 version_mismatch
http PUT "/v1/foods/$OATS" '{"name":"Only a name"}' "${A[@]}"
expect_field_error "a replace needs every field" calories_per_100g
http DELETE "/v1/foods/$MILK" "${A[@]}" "${WAIT[@]}"
expect_status "delete a food" 204
http GET "/v1/foods/$MILK" "${A[@]}"
expect_error "a deleted food" 404 not-found
http DELETE "/v1/foods/$MILK" "${A[@]}" "${WAIT[@]}"
expect_error "delete it again" 404 unknown_food
http GET "/v1/foods/not-a-uuid" "${A[@]}"
expect_field_error "a bad id" id

# --- diary ---------------------------------------------------------------------------------------
D=2026-11-24
http PUT "/v1/diary/$D/breakfast/$OATS" '{"amount":150}' "${A[@]}" "${WAIT[@]}"
expect_status "set an entry" 201
expect_json "the entry" '[.amount, .version, .meal_type]' '[150, 1, "breakfast"]'
http PUT "/v1/diary/$D/lunch/$BANANA" '{"amount":120}' "${A[@]}" "${WAIT[@]}"
http PUT "/v1/diary/$D/breakfast/$OATS" '{"amount":100}' "${A[@]}" "${WAIT[@]}" -H 'If-Match: "5"'
expect_error "stale If-Match on an entry" 412 version_mismatch
http GET "/v1/diary/$D" "${A[@]}"
expect_status "read the day" 200
expect_json "entries per meal" '[.meals.breakfast[0].name, .meals.lunch[0].name, (.meals.dinner | length)]' '["Rolled oats", "Banana", 0]'
expect_json "per-meal totals" '[.meal_totals.breakfast.calories, .meal_totals.lunch.calories, .meal_totals.dinner.calories]' '[568.5, 106.8, 0]'
expect_json "day totals" '.totals.calories' 675.3
expect_json "goals in grams from the settings" '.goals' '{"calories":2500,"protein_g":187.5,"fat_g":83.3,"carbs_g":250}'
expect_json "progress: percent of each goal" '.progress.calories' 27
http DELETE "/v1/diary/$D/lunch/$BANANA" "${A[@]}" "${WAIT[@]}"
expect_status "remove an entry" 204
http DELETE "/v1/diary/$D/lunch/$BANANA" "${A[@]}" "${WAIT[@]}"
expect_error "remove it again" 404 unknown_entry
http PUT "/v1/diary/$D/breakfast/$MILK" '{"amount":10}' "${A[@]}" "${WAIT[@]}"
expect_error "an entry of a deleted food" 422 unknown_food
http PUT "/v1/diary/2026-02-30/brunch/$OATS" '{"amount":0}' "${A[@]}"
expect_field_error "bad date, meal and amount" date
expect_json "all three named" '[.errors[].field] | sort' '["amount","date","meal"]'
http PUT "/v1/diary/2026-11-25/dinner/$BANANA" '{"amount":200}' "${A[@]}" "${WAIT[@]}"
http GET "/v1/diary?from=2026-11-23&to=2026-11-25" "${A[@]}"
expect_status "daily summaries" 200
expect_json "one summary per day" '[.days[] | [.date, .entries, .calories]]' '[["2026-11-23",0,0],["2026-11-24",1,568.5],["2026-11-25",1,178]]'
http GET "/v1/diary?from=2026-01-01&to=2027-01-02" "${A[@]}"
expect_field_error "a range over 366 days" to
http GET "/v1/diary?from=2026-11-25&to=2026-11-24" "${A[@]}"
expect_field_error "a range ending before it starts" to
http GET "/v1/diary?to=2026-11-24" "${A[@]}"
expect_field_error "a range without from" from

# --- batch -------------------------------------------------------------------------------------
item() { # OP DATE MEAL FOOD [AMOUNT] [KEY]
  local a="" k=""
  [ -n "${5:-}" ] && a=",\"amount\":$5"
  [ -n "${6:-}" ] && k=",\"idempotency_key\":\"$6\""
  echo "{\"op\":\"$1\",\"date\":\"$2\",\"meal_type\":\"$3\",\"food_id\":\"$4\"$a$k}"
}
batch="{\"items\":[$(item set 2026-12-01 breakfast "$OATS" 50),$(item set 2026-12-01 brunch "$OATS" 50),$(item set 2026-12-01 lunch "$BANANA"),$(item set 2026-12-01 dinner "$BANANA" 100 bk-1),$(item remove "$D" breakfast "$OATS" 5),$(item remove "$D" breakfast "$OATS"),\"not an object\"]}"
http POST /v1/diary/batch "$batch" "${A[@]}"
expect_status "a batch with valid and invalid items" 200
expect_json "one result per item, in order" '[.results[] | .index]' '[0,1,2,3,4,5,6]'
expect_json "valid items accepted, invalid ones refused" '[.results[] | .status]' '[202,422,422,202,422,202,422]'
expect_json "an invalid item names its field" '.results[1].errors[0].field' '"meal_type"'
expect_json "set without amount" '.results[2].errors[0].field' '"amount"'
expect_json "remove with amount" '.results[4].errors[0].field' '"amount"'
expect_json "accepted items carry event id and position" '[.results[0], .results[3], .results[5]] | map(.event_id != null and .position != null) | all' true
pos=$(header Diary-Position)
http GET /v1/diary/2026-12-01 "${A[@]}" -H "Diary-Min-Position: $pos"
expect_json "the valid items were applied" '[.meals.breakfast[0].amount, .meals.dinner[0].amount]' '[50, 100]'
http GET "/v1/diary/$D" "${A[@]}" -H "Diary-Min-Position: $pos"
expect_json "the valid remove was applied" '.meals.breakfast | length' 0
http POST /v1/diary/batch "{\"items\":[$(item set 2026-12-01 dinner "$BANANA" 100 bk-1),$(item set 2026-12-01 dinner "$BANANA" 999 bk-1),$(item remove 2026-12-02 snack "$OATS"),$(item set 2026-12-02 snack "$MILK" 10)]}" "${A[@]}" "${WAIT[@]}"
expect_status "a batch with Prefer: wait" 200
expect_json "final outcomes: replay, reused key, unknown entry, unknown food" '[.results[] | .status]' '[201,422,404,422]'
expect_json "rejections carry the worker's problem" '[.results[2].problem.type, .results[3].problem.type]' '["https://diary.example/problems/unknown_entry","https://diary.example/problems/unknown_food"]'
expect_json "the reused key is named" '.results[1].errors[0].field' '"idempotency_key"'
items=$(for i in $(seq 1 501); do printf '%s,' "$(item set 2026-12-03 snack "$OATS" 1)"; done)
http POST /v1/diary/batch "{\"items\":[${items%,}]}" "${A[@]}"
expect_field_error "501 items" items
http POST /v1/diary/batch '{"items":[]}' "${A[@]}"
expect_field_error "no items" items
items=$(for i in $(seq 1 500); do printf '%s,' "$(item set 2026-12-03 snack "$OATS" "$i")"; done)
http POST /v1/diary/batch "{\"items\":[${items%,}]}" "${A[@]}" "${WAIT[@]}"
expect_status "500 items" 200
expect_json "500 items all applied" '[.results[] | .status] | unique' '[201]'
http GET /v1/diary/2026-12-03 "${A[@]}"
expect_json "the last write of the batch wins" '.meals.snack[0].amount' 500

# --- weights -----------------------------------------------------------------------------------
http PUT /v1/weights/2026-11-24 '{"weight":72.5}' "${A[@]}" "${WAIT[@]}"
expect_status "record a weight" 201
expect_json "the weight" '[.weight, .version]' '[72.5, 1]'
http PUT /v1/weights/2026-11-24 '{"weight":72.1}' "${A[@]}" "${WAIT[@]}"
expect_json "one per day: changed, version 2" '[.weight, .version]' '[72.1, 2]'
http PUT /v1/weights/2026-11-26 '{"weight":71.9}' "${A[@]}" "${WAIT[@]}"
http GET "/v1/weights?from=2026-11-01&to=2026-11-30" "${A[@]}"
expect_status "list weights" 200
expect_json "weights by date" '[.items[] | [.date, .weight]]' '[["2026-11-24",72.1],["2026-11-26",71.9]]'
http DELETE /v1/weights/2026-11-26 "${A[@]}" "${WAIT[@]}"
expect_status "remove a weight" 204
http DELETE /v1/weights/2026-11-26 "${A[@]}" "${WAIT[@]}"
expect_error "remove it again" 404 unknown_weight
http PUT /v1/weights/2026-11-24 '{"weight":0}' "${A[@]}"
expect_field_error "weight 0" weight
http PUT /v1/weights/2026-11-24 '{"weight":1000}' "${A[@]}"
expect_field_error "weight 1000" weight
http GET "/v1/weights?from=2026-11-01" "${A[@]}"
expect_field_error "a range without to" to

# --- idempotency: 100 retries of one keyed write ----------------------------------------------
ids=()
for i in $(seq 1 100); do
  if [ "$i" -eq 60 ]; then http PUT "/v1/diary/2026-12-10/lunch/$OATS" '{"amount":77}' "${A[@]}" -H 'Idempotency-Key: retry-me' "${WAIT[@]}"
  else http PUT "/v1/diary/2026-12-10/lunch/$OATS" '{"amount":77}' "${A[@]}" -H 'Idempotency-Key: retry-me'; fi
  ids+=("$STATUS:$(field .event_id)")
done
EV=$(field .event_id)
check "every retry answered 2xx with the same event id" test "$(printf '%s\n' "${ids[@]}" | sed 's/^2[0-9][0-9]:/ok:/' | sort -u)" = "ok:$EV"
check "retries after it was applied are replays" grep -qi '^idempotent-replayed: true' <<<"$HEADERS"
check "one row" test "$(primary "SELECT count(*) FROM daily_meals WHERE user_id = '$ADA' AND date = '2026-12-10'")" = 1
check "the row was set once (version 1)" test "$(primary "SELECT version FROM daily_meals WHERE user_id = '$ADA' AND date = '2026-12-10'")" = 1
count_changes() { kcat -C -b "$KAFKA_BOOTSTRAP" -t diary.changes -e -q 2>/dev/null | jq -c "select(.data.source.event_id == \"$1\")" | wc -l; }
wait_for 20 "the change event" bash -c "[ \$(kcat -C -b $KAFKA_BOOTSTRAP -t diary.changes -e -q 2>/dev/null | grep -c '$EV') -ge 1 ]"
check "one change event on diary.changes for the event id" test "$(count_changes "$EV")" = 1
http PUT "/v1/diary/2026-12-10/lunch/$OATS" '{"amount":78}' "${A[@]}" -H 'Idempotency-Key: retry-me'
expect_error "the same key with another body" 422 idempotency-key-reused
http PUT "/v1/diary/2026-12-10/dinner/$OATS" '{"amount":77}' "${A[@]}" -H 'Idempotency-Key: retry-me'
expect_error "the same key on another path" 422 idempotency-key-reused
# The usual body of an entry is read without a JSON tree (validate_numbers); its canonical
# form, and so the key's check, is the general path's.
fast0=$(curl -s "$DIARY_URL/metrics" | awk '$1 == "diary_ingest_numbers_bodies_total" {print $2}')
http PUT "/v1/diary/2026-12-10/lunch/$OATS" ' { "amount" : 77 } ' "${A[@]}" -H 'Idempotency-Key: retry-me'
expect_json "the same amount written with spaces is the same write" '.event_id' "\"$EV\""
http PUT "/v1/diary/2026-12-10/lunch/$OATS" '{"amount":7.7e1}' "${A[@]}" -H 'Idempotency-Key: retry-me'
expect_error "77 written as a real is another body, as JSON types it" 422 idempotency-key-reused
fast1=$(curl -s "$DIARY_URL/metrics" | awk '$1 == "diary_ingest_numbers_bodies_total" {print $2}')
check "both were read by the numbers path (the metrics count them)" test "$((fast1 - fast0))" -ge 2
http PUT "/v1/diary/2026-12-10/lunch/$OATS" '{"amount":77,"amount":77}' "${A[@]}"
expect_error "a repeated member still takes the general path and is refused" 400 malformed-json
http PUT "/v1/diary/2026-12-10/lunch/$OATS" '{"amount":null}' "${A[@]}"
expect_field_error "a null amount is still named" amount
http PUT "/v1/diary/2026-12-10/lunch/$OATS" '{"amount":77}' "${B[@]}" -H 'Idempotency-Key: retry-me' "${WAIT[@]}"
expect_error "another user's key is another event" 422 unknown_food
http PUT "/v1/diary/2026-12-10/lunch/$OATS" '{"amount":77}' "${A[@]}" -H "Idempotency-Key: $(printf 'k%.0s' $(seq 1 256))"
expect_field_error "an Idempotency-Key over 255 characters" Idempotency-Key

# --- read your writes ----------------------------------------------------------------------------
seen=0
for i in $(seq 1 50); do
  http PUT "/v1/diary/2026-12-20/snack/$BANANA" "{\"amount\":$i}" "${A[@]}"
  p=$(header Diary-Position)
  http GET /v1/diary/2026-12-20 "${A[@]}" -H "Diary-Min-Position: $p"
  [ "$STATUS" = 200 ] && [ "$(field '.meals.snack[0].amount')" = "$i" ] && seen=$((seen + 1))
done
check "a read with the write's position sees it ($seen of 50)" test "$seen" = 50
http GET /v1/diary/2026-12-20 "${A[@]}" -H "Diary-Min-Position: 1:x"
expect_field_error "a malformed position" Diary-Min-Position

# A replica that stops replaying: the read falls back to the primary once that has the write.
replica "SELECT pg_wal_replay_pause()" >/dev/null
http PUT "/v1/diary/2026-12-21/snack/$BANANA" '{"amount":33}' "${A[@]}"
p=$(header Diary-Position)
t0=$(date +%s%N)
http GET /v1/diary/2026-12-21 "${A[@]}" -H "Diary-Min-Position: $p"
ms=$((($(date +%s%N) - t0) / 1000000))
replica "SELECT pg_wal_replay_resume()" >/dev/null
expect_status "a read while the replica is paused" 200
expect_json "it sees the write (from the primary)" '.meals.snack[0].amount' 33
check "after about a second of waiting for the replica (${ms} ms)" test "$ms" -ge 900 -a "$ms" -lt 3000
check "the metrics count the primary read" bash -c "curl -s $DIARY_URL/metrics | grep -Eq '^diary_ingest_primary_reads_total [1-9]'"

# --- events ------------------------------------------------------------------------------------
http GET "/v1/events/$EV" "${A[@]}"
expect_status "the event of a write" 200
expect_json "applied, with its position" '[.status, (.position | test("^[0-9]+:[0-9]+$"))]' '["applied", true]'
http GET "/v1/events/$EV" "${B[@]}"
expect_error "someone else's event" 404 not-found

# --- isolation ---------------------------------------------------------------------------------
http GET "/v1/foods/$OATS" "${B[@]}"
expect_error "someone else's food" 404 not-found
http GET "/v1/foods?q=" "${B[@]}"
expect_json "someone else's foods are not listed" '.items | length' 0
http PUT "/v1/foods/$OATS" "$(food_body Stolen 389 16.9 66.3 6.9)" "${B[@]}" "${WAIT[@]}"
expect_error "replacing someone else's food" 404 unknown_food
http DELETE "/v1/foods/$OATS" "${B[@]}" "${WAIT[@]}"
expect_error "deleting someone else's food" 404 unknown_food
http GET "/v1/diary/$D" "${B[@]}"
expect_json "someone else's day is empty" '[.meals[] | length] | add' 0
http GET "/v1/diary?from=2026-12-01&to=2026-12-31" "${B[@]}"
expect_json "someone else's summaries are empty" '[.days[].entries] | add' 0
http GET "/v1/weights?from=2026-11-01&to=2026-11-30" "${B[@]}"
expect_json "someone else's weights are not listed" '.items | length' 0
http DELETE "/v1/diary/2026-12-01/breakfast/$OATS" "${B[@]}" "${WAIT[@]}"
expect_error "removing someone else's entry" 404 unknown_entry
http GET "/v1/foods/$OATS" "${A[@]}"
expect_json "the owner's food is untouched" '.name' '"Rolled oats"'

# --- protocol errors ---------------------------------------------------------------------------
http GET /v1/nowhere "${A[@]}"
expect_error "unknown route" 404 not-found
http POST /v1/me '{}' "${A[@]}"
expect_error "wrong method" 405 method-not-allowed
check "405 lists the methods in Allow" test "$(header Allow)" = "GET, PATCH, DELETE"
printf '{"weight":72,"pad":"%s"}' "$(head -c 1100000 /dev/zero | tr '\0' 'x')" >"$RUN_DIR/big.json"
http PUT /v1/weights/2026-11-24 --data-binary @"$RUN_DIR/big.json" -H 'Content-Type: application/json' -H 'Expect:' "${A[@]}"
expect_error "a body over DIARY_MAX_BODY" 413 payload-too-large
http PUT /v1/weights/2026-11-24 '{"weight":' "${A[@]}"
expect_error "malformed JSON" 400 malformed-json
http PUT /v1/weights/2026-11-24 '{"weight":70,"weight":71}' "${A[@]}"
expect_error "duplicate keys" 400 malformed-json
http PUT /v1/weights/2026-11-24 --data-binary '{"weight":70}' -H 'Content-Type: text/plain' "${A[@]}"
expect_error "not JSON" 415 unsupported-media-type
http PUT /v1/weights/2026-11-24 '{"weight":70}' "${A[@]}" -H 'If-Match: 3'
expect_field_error "a malformed If-Match" If-Match
http GET "/v1/me?x=1" "${A[@]}"
expect_field_error "a query string where none is taken" query
http GET /v1/me
expect_error "no token" 401 unauthorized
check "401 says Bearer" grep -qi '^www-authenticate: Bearer' <<<"$HEADERS"

finish api
