#!/usr/bin/env bash
# Load shedding (DIARY_INGEST_MAX_LAG, ingest/shed.c) over a whole stack: with the worker
# stopped, one user's writes are taken until their partition's apply lag passes the bound,
# then answered 503 apply-behind with Retry-After (single writes and batches alike); a user on
# another partition still writes; /metrics counts it; with the positions unreadable (primary
# stopped) writes are taken again (fails open); once the primary and the worker run again the
# partition drains and the same user's write is taken; every write answered 202 is applied,
# the refused ones are not.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/e2e/lib.sh"

MAX_LAG=6
stack_test_env shed
export DIARY_INGEST_MAX_LAG=$MAX_LAG
trap stack_test_cleanup EXIT

"$top/scripts/stack.sh" up 2>"$RUN_DIR/up.err" || { cat "$RUN_DIR/up.err"; bail "stack up"; }
ok "stack up"
. "$RUN_DIR/stack.env"

metric() { curl -sf "$DIARY_URL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
partition_of() { grep -i '^diary-position:' <<<"$HEADERS" | cut -d' ' -f2 | cut -d: -f1; }

# Users, registered and applied (so their partitions are at rest), with their partitions.
declare -a TOK PART
for i in 0 1 2 3 4 5 6 7; do
  http POST /v1/users "{\"email\":\"u$i@example.org\",\"name\":\"U$i\",\"password\":\"Str0ng!pass$i\"}" -H 'Prefer: wait=15'
  [ "$STATUS" = 201 ] || bail "register u$i: $STATUS $BODY"
  PART[i]=$(partition_of)
  http POST /v1/sessions "{\"email\":\"u$i@example.org\",\"password\":\"Str0ng!pass$i\"}"
  [ "$STATUS" = 201 ] || bail "log in u$i: $STATUS $BODY"
  TOK[i]=$(jq -r .token <<<"$BODY")
done
A=0 B=
for i in 1 2 3 4 5 6 7; do [ "${PART[i]}" != "${PART[A]}" ] && { B=$i; break; }; done
[ -n "$B" ] || bail "eight users on one partition"
ok "users on partitions ${PART[*]}"
wait_for 10 "load shedding reads the apply's positions" \
  bash -c "[ \"\$(curl -sf $DIARY_URL/metrics | awk '\$1 == \"diary_ingest_apply_lag_fresh\" {print \$2}')\" = 1 ]" ||
  bail "diary_ingest_apply_lag_fresh never 1"
check "nothing refused while the apply keeps up" test "$(metric diary_ingest_shed_total)" = 0

# --- the apply stops: A's partition fills up ---------------------------------------------
stop_worker() {
  local pid; pid=$(cat "$RUN_DIR/pids/worker-1.pid")
  kill -TERM "$pid"
  wait_for 30 "the worker stops" bash -c "! kill -0 $pid 2>/dev/null"
  rm -f "$RUN_DIR/pids/worker-1.pid"
}
stop_worker || bail "stop the worker"
# Positions read after the stop (the worker's last batch is in them).
sleep 0.5

AUTH_A=(-H "Authorization: Bearer ${TOK[A]}")
accepted=0 refused=0 day=0
while [ $day -lt $((MAX_LAG + 10)) ]; do
  day=$((day + 1))
  http PUT "/v1/weights/2026-01-$(printf %02d $day)" "{\"weight\":$((60 + day))}" "${AUTH_A[@]}"
  if [ "$STATUS" = 202 ]; then
    accepted=$((accepted + 1))
  else
    refused=$day
    break
  fi
done
# The bound lets the lag reach MAX_LAG + 1: the write that passes it was still taken.
check "A's partition takes $((MAX_LAG + 1)) writes, then refuses (took $accepted)" test "$accepted" = $((MAX_LAG + 1))
expect_status "the next write of A" 503
expect_problem "apply-behind"
expect_json "its type" '.type' '"https://diary.example/problems/apply-behind"'
check "it says the partition and the lag" grep -q "$((MAX_LAG + 1)) events behind on partition ${PART[A]} " <<<"$(jq -r .detail <<<"$BODY")"
check "Retry-After: 1" grep -qi '^retry-after: 1$' <<<"$HEADERS"

http POST /v1/diary/batch '{"items":[{"op":"set","date":"2026-02-01","meal_type":"lunch","food_id":"00000000-0000-4000-8000-000000000001","amount":10}]}' "${AUTH_A[@]}"
expect_status "A's batch" 503
expect_json "A's batch is apply-behind" '.type' '"https://diary.example/problems/apply-behind"'

http PUT /v1/weights/2026-01-01 '{"weight":80}' -H "Authorization: Bearer ${TOK[B]}"
expect_status "B, on partition ${PART[B]}, still writes" 202

check "diary_ingest_shed_total counts both" test "$(metric diary_ingest_shed_total)" = 2
check "diary_ingest_apply_lag_max is A's lag" test "$(metric diary_ingest_apply_lag_max)" = $((MAX_LAG + 1))

# --- the positions cannot be read: the guard cannot tell, and lets writes through ---------
runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$RUN_DIR/pg/primary" -m fast -w -t 60 stop >/dev/null ||
  bail "stop the primary"
stale() { [ "$(metric diary_ingest_apply_lag_fresh)" = 0 ]; }
check "diary_ingest_apply_lag_fresh is 0 once the primary is gone for 5 s" wait_for 20 "stale positions" stale
http PUT /v1/weights/2026-01-20 '{"weight":90}' "${AUTH_A[@]}"
expect_status "with the positions unknown A's write is taken (the guard fails open)" 202
[ "$STATUS" = 202 ] && accepted=$((accepted + 1))

# --- the apply resumes: the partition drains and takes writes again ------------------------
"$top/scripts/stack.sh" up 2>"$RUN_DIR/up2.err" || { cat "$RUN_DIR/up2.err"; bail "restart the worker"; }
taken() {
  http PUT "/v1/weights/2026-01-$(printf %02d $refused)" "{\"weight\":$((60 + refused))}" "${AUTH_A[@]}" -H 'Prefer: wait=10'
  [ "$STATUS" = 201 ] || [ "$STATUS" = 200 ]
}
if wait_for 30 "A's write taken again" taken; then ok "A writes again once the apply caught up"; else notok "A still refused: $STATUS $BODY"; fi
accepted=$((accepted + 1))

http GET "/v1/weights?from=2026-01-01&to=2026-01-31" "${AUTH_A[@]}"
expect_status "A's weights" 200
check "every taken write of A is applied, no refused one ($accepted)" test "$(jq '.items | length' <<<"$BODY")" = "$accepted"
lag_zero() { [ "$(metric diary_ingest_apply_lag_max)" = 0 ]; }
check "the lag is back to 0" wait_for 5 "lag 0" lag_zero

finish shed
