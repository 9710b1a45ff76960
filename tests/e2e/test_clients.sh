#!/usr/bin/env bash
# Real Kafka clients that no one here wrote read the change stream from the devbroker: kcat
# (-G balanced consumer), confluent-kafka (Debian's python3-confluent-kafka) and kafkajs (npm)
# each consume diary.changes in their own consumer group, from the earliest offset, and must
# see every change, each user's changes in offset order on one partition (docs/consumers.md).
#
#   1. the snippets of docs/consumers.md are the scripts' code;
#   2. a whole stack on free loopback ports (scripts/stack.sh up); changes are made through the
#      HTTP API (users, foods, diary entries, plus writes the worker rejects);
#   3. the expected change ids are "<event_id>.0" of every applied event in processed_events
#      (docs/events.md: each applied event changes one row); diary.changes, dumped with kcat,
#      must hold exactly those;
#   4. the clients' own checks catch what they are meant to (self-test on a scratch topic: a
#      key on two partitions, a missing id, a duplicate, a devbroker filler, a non-JSON value);
#   5. the three clients run concurrently, each in its own group, and see every id, in order,
#      at the offsets kcat's dump shows; two confluent-kafka members of one group share the
#      partitions and together see every id;
#   6. more writes; each client, restarted in its group, resumes at its committed offsets:
#      it sees the new changes and nothing of the first round again.
#
# Env: BIN_DIR (default build/san/bin). CLIENTS_MODE=synthetic is a development aid only: a
# bare devbroker and change events produced with kcat instead of the stack (for when ingest or
# the worker do not work); the test is the default mode, which fails if the stack cannot come
# up. Needs node and npm (kafkajs is installed from the npm registry into tests/clients/
# node_modules with `npm ci`), kcat, jq, curl, psql and /usr/bin/python3 with confluent_kafka.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/e2e/lib.sh"
TEST_NAME=clients
# lib.sh's bail, plus the closing count.
bail() { notok "$*"; echo "# bailing out"; echo "# $TEST_NAME: $PASS passed, $FAIL failed"; exit 1; }

CL=$top/tests/clients
PY=/usr/bin/python3
MODE=${CLIENTS_MODE:-stack}
USERS=6
export BIN_DIR=${BIN_DIR:-$top/build/san/bin}
case $BIN_DIR in /*) ;; *) BIN_DIR=$top/$BIN_DIR ;; esac

RUN_DIR=$(mktemp -d /tmp/diary-clients.XXXXXX)
export RUN_DIR
chmod 755 "$RUN_DIR"
W=$RUN_DIR/clients
# Every consumer group (and so every client's command line) carries this run's token.
GP=clients-${RUN_DIR##*.}
mkdir -p "$W"
DIARY_HTTP_PORT=$(free_port) PG_PRIMARY_PORT=$(free_port) PG_REPLICA_PORT=$(free_port)
DIARY_WORKER_PORT=$(free_port)
export DIARY_HTTP_PORT PG_PRIMARY_PORT PG_REPLICA_PORT DIARY_WORKER_PORT
# Cheap argon2id for tests: the same code path, minimal cost.
export DIARY_PWHASH_OPSLIMIT=1 DIARY_PWHASH_MEMLIMIT=8192

CLIENT_PIDS=()
DEVBROKER_PID=""
WATCHDOG_PID=""
cleanup() {
  local p
  for p in "${CLIENT_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${CLIENT_PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  [ -n "$WATCHDOG_PID" ] && kill -TERM "$WATCHDOG_PID" 2>/dev/null
  if [ "$MODE" = stack ]; then
    "$top/scripts/stack.sh" down >/dev/null 2>&1
    sanitizer_check "$RUN_DIR/logs"
  elif [ -n "$DEVBROKER_PID" ]; then
    kill -TERM "$DEVBROKER_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$DEVBROKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DEVBROKER_PID" 2>/dev/null
    sanitizer_check "$RUN_DIR"
  fi
  if [ -n "${KEEP_TMP:-}" ]; then echo "# kept $RUN_DIR"; else rm -rf "$RUN_DIR"; fi
}
trap cleanup EXIT
# Bounded: whatever hangs, the test ends within two minutes (cleanup included).
trap 'notok "the test did not finish within 100 s"; echo "# $TEST_NAME: $PASS passed, $FAIL failed"; exit 1' USR1
watchdog() {
  sleep 100 &
  local s=$!
  trap 'kill $s 2>/dev/null; exit 0' TERM
  wait $s && kill -USR1 $$
}
watchdog &
WATCHDOG_PID=$!

# --- 1. the documentation shows the scripts' code -------------------------------------------
# Every "<!-- snippet: PATH NAME -->" of docs/consumers.md is followed by a fenced block equal
# to the lines between "[docs:NAME]" and "[/docs:NAME]" in PATH, less their common indent.
docs_snippets_match() {
  "$PY" - "$top" <<'EOF'
import re, sys, textwrap
top = sys.argv[1]
doc = open(f"{top}/docs/consumers.md", encoding="utf-8").read().split("\n")
n = 0
for i, line in enumerate(doc):
    m = re.match(r"<!-- snippet: (\S+) (\S+) -->", line)
    if not m:
        continue
    path, name = m.groups()
    src = open(f"{top}/{path}", encoding="utf-8").read().split("\n")
    begin = [j for j, s in enumerate(src) if s.strip().endswith(f"[docs:{name}]")]
    end = [j for j, s in enumerate(src) if s.strip().endswith(f"[/docs:{name}]")]
    if len(begin) != 1 or len(end) != 1:
        sys.exit(f"{path} has no single region {name}")
    want = textwrap.dedent("\n".join(src[begin[0] + 1:end[0]]))
    j = i + 1
    if not doc[j].startswith("```"):
        sys.exit(f"docs/consumers.md line {j + 1}: no code block after the {name} marker")
    k = doc.index("```", j + 1)
    got = "\n".join(doc[j + 1:k])
    if got != want:
        sys.exit(f"docs/consumers.md: the {name} block differs from {path}")
    n += 1
if n < 3:
    sys.exit(f"only {n} snippets")
print(n)
EOF
}
if out=$(docs_snippets_match 2>&1); then ok "docs/consumers.md shows the scripts' own code ($out snippets)"
else notok "docs/consumers.md snippets: $out"; fi

# --- the clients' tools ---------------------------------------------------------------------
"$PY" -c 'import confluent_kafka' 2>/dev/null || bail "$PY has no confluent_kafka (python3-confluent-kafka)"
command -v kcat >/dev/null || bail "kcat is not installed"
command -v node >/dev/null && command -v npm >/dev/null || bail "node and npm are needed for kafkajs"
want_kafkajs=$(jq -r '.packages["node_modules/kafkajs"].version' "$CL/package-lock.json")
have_kafkajs() { [ "$(jq -r .version "$CL/node_modules/kafkajs/package.json" 2>/dev/null)" = "$want_kafkajs" ]; }
if ! have_kafkajs; then
  (cd "$CL" && timeout 60 npm ci --no-audit --no-fund --loglevel=error) >"$W/npm.log" 2>&1
fi
if have_kafkajs; then ok "kafkajs $want_kafkajs installed from the lock file"
else cat "$W/npm.log"; bail "npm ci in tests/clients"; fi

# --- 2. the stack (or, as a development aid only, a bare devbroker) --------------------------
if [ "$MODE" = stack ]; then
  "$top/scripts/stack.sh" up 2>"$RUN_DIR/up.err" || { cat "$RUN_DIR/up.err"; bail "stack up"; }
  ok "stack up"
  . "$RUN_DIR/stack.env"
elif [ "$MODE" = synthetic ]; then
  echo "# CLIENTS_MODE=synthetic: a development aid with synthetic change events, not the test"
  mkdir -p "$RUN_DIR/devbroker"
  "$BIN_DIR/diary-devbroker" --topics "$top/topics" --state "$RUN_DIR/devbroker" \
    --bootstrap-file "$RUN_DIR/devbroker/bootstrap" >"$RUN_DIR/devbroker.log" 2>&1 </dev/null &
  DEVBROKER_PID=$!
  wait_for 30 "the devbroker" test -s "$RUN_DIR/devbroker/bootstrap" || bail "devbroker up"
  KAFKA_BOOTSTRAP=$(cat "$RUN_DIR/devbroker/bootstrap")
  ok "bare devbroker up"
else
  bail "unknown CLIENTS_MODE $MODE"
fi
B=$KAFKA_BOOTSTRAP

# --- making changes -------------------------------------------------------------------------
# want STATUS WHAT: one result line for the last answer; an event id it carries is kept.
want() {
  if [ "$STATUS" = "$1" ]; then echo "ok $2"; else echo "bad $2: status $STATUS, want $1: ${BODY:0:300}"; fi
  local e; e=$(jq -r '.event_id // empty' <<<"$BODY" 2>/dev/null)
  [ -n "$e" ] && echo "event $e"
}

# user_round1 I: user I registers, logs in, creates two foods, sets diary entries (with and
# without Prefer: wait, one of them twice), and makes two writes the worker rejects.
user_round1() {
  local i=$1 email pw token a b auth
  email="user$i.$RANDOM$RANDOM@example.org" pw="Str0ng!pass$i"
  http POST /v1/users "{\"email\":\"$email\",\"name\":\"User $i\",\"password\":\"$pw\"}" -H 'Prefer: wait=15'
  want 201 "register user $i"
  http POST /v1/sessions "{\"email\":\"$email\",\"password\":\"$pw\"}"
  token=$(jq -r '.token // empty' <<<"$BODY")
  want 201 "log in user $i"
  echo "token $token"
  auth=(-H "Authorization: Bearer $token")
  http POST /v1/foods '{"name":"Oats","calories_per_100g":389,"protein_per_100g":16.9,"carbs_per_100g":66.3,"fat_per_100g":6.9}' "${auth[@]}" -H 'Prefer: wait=15'
  want 201 "user $i creates a food"
  a=$(jq -r '.id // empty' <<<"$BODY")
  http POST /v1/foods '{"name":"Apple","calories_per_100g":52,"protein_per_100g":0.3,"carbs_per_100g":13.8,"fat_per_100g":0.2}' "${auth[@]}" -H 'Prefer: wait=15'
  want 201 "user $i creates another food"
  b=$(jq -r '.id // empty' <<<"$BODY")
  echo "foods $a $b"
  http PUT "/v1/diary/2026-11-24/breakfast/$a" '{"amount":50}' "${auth[@]}"
  want 202 "user $i sets breakfast (no wait)"
  http PUT "/v1/diary/2026-11-24/breakfast/$a" '{"amount":75}' "${auth[@]}" -H 'Prefer: wait=15'
  want 201 "user $i updates breakfast"
  http PUT "/v1/diary/2026-11-24/lunch/$b" '{"amount":120}' "${auth[@]}"
  want 202 "user $i sets lunch (no wait)"
  http PUT "/v1/diary/2026-11-25/dinner/$a" '{"amount":200}' "${auth[@]}" -H 'Prefer: wait=15'
  want 201 "user $i sets dinner"
  http PUT "/v1/diary/2026-11-24/breakfast/$a" '{"amount":80}' "${auth[@]}" -H 'If-Match: "99"' -H 'Prefer: wait=15'
  want 412 "user $i: a stale If-Match is rejected"
  http PUT "/v1/diary/2026-11-25/snack/$(cat /proc/sys/kernel/random/uuid)" '{"amount":10}' "${auth[@]}" -H 'Prefer: wait=15'
  want 422 "user $i: an unknown food is rejected"
}

# user_round2 I: two more entries of user I (its token and foods from round 1).
user_round2() {
  local i=$1 token a b auth
  token=$(awk '$1 == "token" {print $2}' "$W/user$i.r1")
  read -r a b < <(awk '$1 == "foods" {print $2, $3}' "$W/user$i.r1")
  auth=(-H "Authorization: Bearer $token")
  http PUT "/v1/diary/2026-11-26/snack/$b" '{"amount":30}' "${auth[@]}"
  want 202 "user $i sets a snack (no wait)"
  http PUT "/v1/diary/2026-11-24/lunch/$b" '{"amount":140}' "${auth[@]}" -H 'Prefer: wait=15'
  want 201 "user $i updates lunch"
}

# run_round N: every user's round N at once; one ok line if every answer was the expected one.
run_round() {
  local n=$1 i pids=() bad
  for i in $(seq 1 $USERS); do
    "user_round$n" "$i" >"$W/user$i.r$n" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
  bad=$(cat "$W"/user*.r"$n" | grep -v -E '^(ok|event|token|foods) ')
  if [ -z "$bad" ]; then ok "round $n: $(cat "$W"/user*.r"$n" | grep -c '^ok ') writes answered as expected"
  else notok "round $n writes: $(head -c 1500 <<<"$bad")"; fi
  cat "$W"/user*.r"$n" | awk '$1 == "event" {print $2}' | sort -u >"$W/events.r$n"
}

psql_q() { psql -X -tA -v ON_ERROR_STOP=1 "$PG_PRIMARY_URL" "$@"; }

# The events of a round are all decided (in processed_events) and published (outbox empty).
round_settled() {
  local ids n
  ids="{$(paste -sd, "$W/events.r$1")}"
  n=$(psql_q -v ids="$ids" <<<"SELECT count(*) FROM processed_events WHERE event_id = ANY(:'ids'::uuid[])")
  [ "$n" = "$(wc -l <"$W/events.r$1")" ] && [ "$(psql_q -c 'SELECT count(*) FROM outbox')" = 0 ]
}

# dump_changes FILE: diary.changes from the beginning to the end, as "id partition offset key".
dump_changes() {
  timeout 30 kcat -C -b "$B" -t diary.changes -e -q -J -X fetch.wait.max.ms=10 |
    jq -r -c 'select((.headers // []) | if type == "array" then index("devbroker-filler") == null
                                         else has("devbroker-filler") | not end)
              | [(.payload | fromjson | .id), .partition, .offset, .key] | @tsv' >"$1"
}

# synthetic_changes N ROUND: a development aid: N change events per synthetic user, made up
# like docs/events.md shows, produced with kcat keyed by the user id.
synthetic_changes() {
  local n=$1 round=$2 i j u e
  for i in $(seq 1 $USERS); do
    u=$(cat "$W/synthetic-user$i" 2>/dev/null || { cat /proc/sys/kernel/random/uuid | tee "$W/synthetic-user$i"; })
    for j in $(seq 1 "$n"); do
      e=$(cat /proc/sys/kernel/random/uuid)
      printf '%s\t{"specversion":"1.0","id":"%s.0","source":"synthetic/test_clients","type":"diary.change.daily_meals.v1","subject":"%s","time":"2026-11-24T16:00:00.000Z","datacontenttype":"application/json","data":{"op":"c","table":"daily_meals","key":{"id":"%s"},"before":null,"after":{},"version":1,"source":{"event_id":"%s","topic":"diary.events","partition":0,"offset":%d}}}\n' \
        "$u" "$e" "$u" "$(cat /proc/sys/kernel/random/uuid)" "$e" "$j"
      echo "$e.0" >>"$W/expected.r$round"
    done
  done >"$W/synthetic.r$round"
  kcat -P -b "$B" -t diary.changes -K $'\t' -H ce_type=diary.change.daily_meals.v1 "$W/synthetic.r$round" -l
  sort -u -o "$W/expected.r$round" "$W/expected.r$round"
}

# --- 4 (started early). the clients' checks catch what they should: a scratch topic ----------
# key-a: sa.0, sa.1, sa.0 again on partition 0 (a duplicate); key-b: sb.0 on partition 1 and
# sb.1 on partition 2 (a key on two partitions); partition 3: a devbroker filler and a value
# that is not JSON. Round "order" expects sa.0 sa.1 sb.0 sb.1 (all there, key-b out of order:
# exit 3); round "missing" also expects zz.0, never produced (exit 1 at its deadline).
ST=clients.selftest
ce() { printf '{"specversion":"1.0","id":"%s","data":{"source":{"event_id":"%s"}}}\n' "$1" "${1%.*}"; }
{ ce sa.0; ce sa.1; ce sa.0; } | kcat -P -b "$B" -t $ST -p 0 -k key-a &&
  ce sb.0 | kcat -P -b "$B" -t $ST -p 1 -k key-b &&
  ce sb.1 | kcat -P -b "$B" -t $ST -p 2 -k key-b &&
  echo filler | kcat -P -b "$B" -t $ST -p 3 -H devbroker-filler=1 &&
  echo 'not json' | kcat -P -b "$B" -t $ST -p 3 -k key-c ||
  notok "producing the self-test messages"
printf 'sa.0\nsa.1\nsb.0\nsb.1\n' >"$W/st-order.ids"
printf 'sa.0\nzz.0\n' >"$W/st-missing.ids"

declare -A PID_OF=()
# start_client CLIENT NAME GROUP EXPECTED DEADLINE [TOPIC]: runs CLIENT (kcat, python, kafkajs)
# in the background; its lines go to $W/NAME.out, its summary to $W/NAME.rep.
start_client() {
  local client=$1 name=$2 group=$3 expected=$4 deadline=$5 topic=${6:-diary.changes} cmd
  case $client in
    kcat) cmd=("$CL/consume_changes_kcat.sh") ;;
    python) cmd=("$PY" "$CL/consume_changes.py") ;;
    kafkajs) cmd=(node "$CL/consume_changes.js") ;;
  esac
  local args=(--bootstrap "$B" --group "$group" --topic "$topic" --deadline "$deadline"
              --out "$W/$name.out" --report "$W/$name.rep")
  [ -n "$expected" ] && args+=(--expected "$expected")
  "${cmd[@]}" "${args[@]}" >/dev/null 2>"$W/$name.err" </dev/null &
  PID_OF[$name]=$!
  CLIENT_PIDS+=($!)
}
# finish_client NAME: waits for it; RC is its exit status, REP its summary.
finish_client() {
  wait "${PID_OF[$1]}"
  RC=$?
  REP=$(cat "$W/$1.rep" 2>/dev/null || echo '{}')
}
show_err() { echo "#   $1: $(tail -c 600 "$W/$1.err" | tr '\n' ' ')"; }

CLIENTS=(kcat python kafkajs)
for c in "${CLIENTS[@]}"; do
  start_client "$c" "st-order-$c" "$GP-st-order-$c" "$W/st-order.ids" 30 $ST
  start_client "$c" "st-missing-$c" "$GP-st-missing-$c" "$W/st-missing.ids" 8 $ST
done

# --- 2b/3. changes and the expected ids -----------------------------------------------------
if [ "$MODE" = stack ]; then
  run_round 1
  check "round 1: every event decided and published" wait_for 30 "round 1 settled" round_settled 1
  psql_q -c "SELECT event_id || '.0' FROM processed_events WHERE status = 'applied' ORDER BY 1" >"$W/expected.r1"
  rejected=$(psql_q -c "SELECT count(*) FROM processed_events WHERE status = 'rejected'")
  check "the worker rejected some writes ($rejected), which make no changes" test "$rejected" -ge "$USERS"
else
  synthetic_changes 7 1
fi
n1=$(wc -l <"$W/expected.r1")
check "round 1 made changes for every user ($n1)" test "$n1" -ge $((USERS * 7))
dump_changes "$W/dump.r1"
check "diary.changes holds exactly the expected changes, once each" \
  diff <(cut -f1 "$W/dump.r1" | sort) "$W/expected.r1"

# --- 4. self-test results -------------------------------------------------------------------
for c in "${CLIENTS[@]}"; do
  finish_client "st-order-$c"
  if [ "$RC" = 3 ] && jq -e '.order_ok == false and .missing_count == 0 and .keys["key-b"].in_order == false
                             and .keys["key-a"].in_order == true' <<<"$REP" >/dev/null; then
    ok "self-test: $c reports a key on two partitions (exit 3)"
  else notok "self-test: $c order check: exit $RC, $REP"; show_err "st-order-$c"; fi
  finish_client "st-missing-$c"
  if [ "$RC" = 1 ] && jq -e '.missing == ["zz.0"] and .duplicates == 1 and .fillers == 1
                             and .malformed == 1 and .unique == 4' <<<"$REP" >/dev/null; then
    ok "self-test: $c reports the missing id, the duplicate, the filler and the bad value (exit 1)"
  else notok "self-test: $c missing check: exit $RC, $REP"; show_err "st-missing-$c"; fi
done

# --- 5. the three clients, concurrently, each in its own group -------------------------------
# Plus two confluent-kafka members of one shared group: stopped (SIGTERM) once the two of
# them together have every id.
for c in "${CLIENTS[@]}"; do
  start_client "$c" "r1-$c" "$GP-$c" "$W/expected.r1" 45
done
start_client python r1-shared-1 "$GP-shared" "" 45
start_client python r1-shared-2 "$GP-shared" "" 45
shared_has_all() {
  [ -z "$(comm -23 "$W/expected.r1" <(cat "$W/r1-shared-1.out" "$W/r1-shared-2.out" 2>/dev/null |
    jq -r 'select(.dup == false) | .id' 2>/dev/null | sort -u))" ]
}
wait_for 45 "the shared group" shared_has_all
kill -TERM "${PID_OF[r1-shared-1]}" "${PID_OF[r1-shared-2]}" 2>/dev/null

# check_round ROUND NAME CLIENT: the client saw every id of the round, nothing else, every key
# in order, and each record's partition and offset hold that id in kcat's dump.
check_round() {
  local r=$1 name=$2 c=$3 bad
  finish_client "$name"
  if [ "$RC" = 0 ] && jq -e '.ok and .unexpected == 0 and .malformed == 0' <<<"$REP" >/dev/null; then
    ok "$c (round $r) saw all $(jq .expected <<<"$REP") changes, in order, $(jq '.keys | length' <<<"$REP") keys, $(jq .duplicates <<<"$REP") duplicates, in $(jq .elapsed_s <<<"$REP") s"
  else
    notok "$c (round $r): exit $RC, $(head -c 800 <<<"$REP")"; show_err "$name"
  fi
  bad=$(jq -r '[.id, .partition, .offset, .key] | @tsv' "$W/$name.out" 2>/dev/null | sort -u |
        comm -23 - <(sort -u "$W/dump.r$r"))
  if [ -s "$W/$name.out" ] && [ -z "$bad" ]; then ok "$c (round $r): every id at the partition, offset and key of the log"
  else notok "$c (round $r): records not in the log: $(head -c 400 <<<"$bad")"; fi
}
for c in "${CLIENTS[@]}"; do check_round 1 "r1-$c" "$c"; done

finish_client r1-shared-1; rc1=$RC rep1=$REP
finish_client r1-shared-2; rc2=$RC rep2=$REP
if [ "$rc1" = 0 ] && [ "$rc2" = 0 ] && shared_has_all; then
  ok "two members of one group together saw all $n1 changes, each in order ($(jq .unique <<<"$rep1") + $(jq .unique <<<"$rep2"))"
else
  notok "shared group: exits $rc1 $rc2, $(head -c 400 <<<"$rep1") $(head -c 400 <<<"$rep2")"
  show_err r1-shared-1; show_err r1-shared-2
fi
p1=$(jq -r 'select(.dup == false) | .partition' "$W/r1-shared-1.out" 2>/dev/null | sort -un | paste -sd,)
p2=$(jq -r 'select(.dup == false) | .partition' "$W/r1-shared-2.out" 2>/dev/null | sort -un | paste -sd,)
echo "# shared group partitions with changes: member 1 [$p1], member 2 [$p2]"

# --- 6. more changes; each group resumes at its committed offsets ---------------------------
if [ "$MODE" = stack ]; then
  run_round 2
  check "round 2: every event decided and published" wait_for 30 "round 2 settled" round_settled 2
  psql_q -c "SELECT event_id || '.0' FROM processed_events WHERE status = 'applied' ORDER BY 1" |
    comm -23 - "$W/expected.r1" >"$W/expected.r2"
else
  synthetic_changes 2 2
fi
n2=$(wc -l <"$W/expected.r2")
check "round 2 made changes for every user ($n2)" test "$n2" -ge $((USERS * 2))
dump_changes "$W/dump.r2"
check "diary.changes holds both rounds, once each" \
  diff <(cut -f1 "$W/dump.r2" | sort) <(sort "$W/expected.r1" "$W/expected.r2")
for c in "${CLIENTS[@]}"; do
  start_client "$c" "r2-$c" "$GP-$c" "$W/expected.r2" 45
done
# unexpected == 0 in check_round: nothing of round 1 came again.
for c in "${CLIENTS[@]}"; do check_round 2 "r2-$c" "$c"; done

# --- the end --------------------------------------------------------------------------------
if [ "$MODE" = stack ]; then
  pids=$(stack_pids "$RUN_DIR")
  "$top/scripts/stack.sh" down 2>/dev/null
  check "down leaves no stack process" none_alive "$RUN_DIR" $pids
fi
leftover=""
for p in "${CLIENT_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && leftover+=" $p"; done
check "no client process left" test -z "$leftover"
no_group_process() { ! pgrep -f -- "$GP" >/dev/null; }
check "no kcat, python or node process of this run's groups left" wait_for 5 "clients to end" no_group_process
finish clients
