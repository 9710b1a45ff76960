#!/usr/bin/env bash
# Nothing lost, nothing doubled: the worker and the change stream under faults (docs/faults.md).
#
# One stack on free loopback ports (scripts/stack.sh up with two workers, the sanitizer
# build), USERS users registered with two foods each. Then, per scenario, a paced load of
# `PUT /v1/diary/{date}/{meal}/{food_id}` writes through ingest (tests/faults/load.py: each
# user's writes one after the other, many users in parallel, every write with its own
# Idempotency-Key and retried until acknowledged), the scenario's fault injected while it
# runs, and tests/faults/check.py comparing the database and diary.changes with the serial
# application of every write acknowledged so far (this scenario's and the earlier ones'):
# 0 lost, 0 doubled, every applied event on the change stream, per user in log order. Every
# fault is undone before the next scenario. The stack's logs are checked for sanitizer
# reports at the end.
#
#   kill     kill -9 of a worker three times during the load (the two in turn), each restarted
#            at once with scripts/stack.sh up
#   brokers  every broker down for 4 s, then one broker down for 5 s with its partition
#            leaders moved to the others
#   dups     produce acknowledgements lost: a broker's answers delayed, then the broker
#            dropped and back, so producers send again what the log already has; the copies
#            are counted in diary.events with kcat and absorbed by the worker
#   pg       the PostgreSQL primary killed (pg_ctl stop -m immediate) and restarted
#   commit   the answer to a COMMIT lost (tests/faults/pgproxy.py drops the worker's database
#            connection right after forwarding a COMMIT): the batch is in, the worker's retry
#            is refused by the compare-and-set, and its change events must still be published
#   stop     a worker frozen with SIGSTOP in the middle of a transaction, past its session
#            timeout, until the other worker owns its partitions; then SIGCONT: the stale
#            batch is refused by the compare-and-set
#   poison   malformed events produced straight to diary.events with kcat (one of them over a
#            megabyte): dead-lettered with a reason, lag back to 0, workers alive, the good
#            events around them applied
#
# Env: BIN_DIR (default build/san/bin); FAULTS="kill pg" runs only those scenarios, in that
# order; FAULT_USERS (200), FAULT_WRITES (15 per user and scenario), FAULT_RATE (writes/s,
# 200); KEEP_RUN=1 keeps the run folder (logs, users.json, acks-*.jsonl).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/e2e/lib.sh"
TEST_NAME=faults
# lib.sh's bail, plus the closing count.
bail() { notok "$*"; echo "# bailing out"; echo "# $TEST_NAME: $PASS passed, $FAIL failed"; exit 1; }

PY=/usr/bin/python3
FX=$top/tests/faults
PGBIN=/usr/lib/postgresql/15/bin
export BIN_DIR=${BIN_DIR:-$top/build/san/bin}
case $BIN_DIR in /*) ;; *) BIN_DIR=$top/$BIN_DIR ;; esac
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
FAULTS=${FAULTS:-kill brokers dups pg commit stop poison}
USERS=${FAULT_USERS:-200}
WRITES=${FAULT_WRITES:-15}
RATE=${FAULT_RATE:-200}
TOTAL=$((USERS * WRITES))
# Cheap argon2id: the same code path, minimal cost. Two workers; a dead or frozen worker's
# partitions move after 6 s instead of 10.
export DIARY_PWHASH_OPSLIMIT=1 DIARY_PWHASH_MEMLIMIT=8192 WORKERS=2 DIARY_SESSION_TIMEOUT_MS=6000
# Ingest answers 504 after 2.5 s: a write caught in a broker outage gets no promise, the load
# sends it again with the same Idempotency-Key, and the first attempt may still reach the log
# once the brokers are back: an unacknowledged write that applies, and must apply once.
export DIARY_REQUEST_TIMEOUT_MS=2500
START=$SECONDS

RUN_DIR=$(mktemp -d /tmp/diary-faults.XXXXXX)
chmod 755 "$RUN_DIR"
export RUN_DIR
LOAD_PID=
STOPPED_PID=
PROXY_PIDS=() # the commit scenario's own worker and proxy
C=
cleanup() {
  local p
  [ -n "$STOPPED_PID" ] && kill -CONT "$STOPPED_PID" 2>/dev/null
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null
  for p in "${PROXY_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  [ -n "$C" ] && curl -s -m 5 -X POST "$C/clear" >/dev/null 2>&1
  "$top/scripts/stack.sh" down >/dev/null 2>&1
  sanitizer_check "$RUN_DIR/logs"
  if [ "${KEEP_RUN:-0}" = 1 ] || [ "$FAIL" -gt 0 ]; then
    echo "# run folder kept: $RUN_DIR"
  else
    rm -rf "$RUN_DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { echo "# $*"; }

for tool in kcat jq curl psql; do
  command -v $tool >/dev/null || bail "missing tool: $tool"
done
"$PY" -c 'import confluent_kafka' 2>/dev/null || bail "$PY has no confluent_kafka (python3-confluent-kafka)"
for b in diary-ingest diary-worker diaryctl diary-devbroker; do
  [ -x "$BIN_DIR/$b" ] || bail "no $BIN_DIR/$b (make SAN=address,undefined)"
done

# Regression (scripts/lib.sh): a process killed a moment ago that init has not reaped yet (a
# zombie) counted as running, so `stack.sh up` right after a kill -9 did not restart it.
zombie_is_dead() {
  local f rc=0
  f=$(mktemp)
  bash -c "setsid sleep 60 >/dev/null 2>&1 </dev/null & echo \$! >$f"
  pid_alive "$f" || { rm -f "$f"; return 1; }
  kill -9 "$(cat "$f")"
  pid_alive "$f" && rc=1
  rm -f "$f"
  return $rc
}
check "lib.sh pid_alive: a process killed a moment ago (a zombie, not reaped yet) is not running" zombie_is_dead

# Ports for the stack, below the kernel's ephemeral range: processes are restarted here (a
# killed worker, the primary), and a port of the ephemeral range can meanwhile become the
# local end of some outgoing connection, so that the restarted process cannot listen on it.
# stable_ports N: N consecutive ports, free now, outside that range.
stable_ports() {
  "$PY" -c '
import random, socket, sys
n = int(sys.argv[1])
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
lo, hi = (20000, lo) if lo > 21000 else (max(lo, 61000), 65000)
for _ in range(1000):
    p = random.randrange(lo, hi - n)
    socks = []
    try:
        for q in range(p, p + n):
            s = socket.socket(); socks.append(s); s.bind(("127.0.0.1", q))
        print(p); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()' "$1"
}

# ---- the stack and the users --------------------------------------------------------------
p=$(stable_ports 5)
DIARY_HTTP_PORT=$p PG_PRIMARY_PORT=$((p + 1)) PG_REPLICA_PORT=$((p + 2)) DIARY_WORKER_PORT=$((p + 3))
export DIARY_HTTP_PORT PG_PRIMARY_PORT PG_REPLICA_PORT DIARY_WORKER_PORT
t=$SECONDS
"$top/scripts/stack.sh" up 2>"$RUN_DIR/up.err" || { cat "$RUN_DIR/up.err"; bail "stack up"; }
. "$RUN_DIR/stack.env"
C=$DEVBROKER_CONTROL_URL
W1=$(echo "$WORKER_URLS" | cut -d' ' -f1)
ok "stack up with 2 workers ($((SECONDS - t)) s)"
t=$SECONDS
"$PY" "$FX/load.py" setup --url "$DIARY_URL" --users "$USERS" --foods 2 --tag fx \
  --out "$RUN_DIR/users.json" 2>"$RUN_DIR/setup.err" || { cat "$RUN_DIR/setup.err"; bail "register $USERS users"; }
ok "$USERS users registered, each with 2 foods ($((SECONDS - t)) s)"

# ---- helpers --------------------------------------------------------------------------------
ACKS=()   # the acks files of the loads so far, in order
begin() {
  SC=$1
  SC_START=$SECONDS
  echo "# --- scenario $SC"
}
end() {
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null
  LOAD_PID=
  ctl /clear >/dev/null
  note "$SC: $((SECONDS - SC_START)) s"
}

# load_start [load.py run options]: this scenario's load in the background, its
# acknowledgements in acks-$SC.jsonl.
load_start() {
  ACKF=$RUN_DIR/acks-$SC.jsonl
  : >"$ACKF"
  ACKS+=("$ACKF")
  "$PY" "$FX/load.py" run --url "$DIARY_URL" --users "$RUN_DIR/users.json" --writes "$WRITES" \
    --rate "$RATE" --tag "$SC" --out "$ACKF" "$@" 2>"$RUN_DIR/load-$SC.err" &
  LOAD_PID=$!
}

acked() { wc -l <"$ACKF"; }

# wait_acks PERCENT: until that share of this scenario's load is acknowledged (or it ended).
wait_acks() {
  local want=$((TOTAL * $1 / 100)) deadline=$((SECONDS + 120))
  while [ "$(acked)" -lt "$want" ] && kill -0 "$LOAD_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
    sleep 0.1
  done
}

# load_wait: the load's end; ok when it acknowledged every write.
load_wait() {
  wait "$LOAD_PID"
  local rc=$?
  LOAD_PID=
  if [ $rc = 0 ]; then
    ok "$SC: load: $(tail -1 "$RUN_DIR/load-$SC.err" | sed 's/^load: //')"
  else
    notok "$SC: load failed (exit $rc): $(tail -3 "$RUN_DIR/load-$SC.err")"
  fi
}

# oracle: check.py over every load so far; its lines become this test's ok / not ok lines.
oracle() {
  local out rc line fails=0 f args=()
  for f in "${ACKS[@]}"; do args+=(--acks "$f"); done
  out=$("$PY" "$FX/check.py" --users "$RUN_DIR/users.json" "${args[@]}" --pg "$PG_PRIMARY_URL" \
    --bootstrap "$KAFKA_BOOTSTRAP" --writes "$WRITES" --wait 120 --name "$SC" 2>&1)
  rc=$?
  while IFS= read -r line; do
    case $line in
      "ok - "*) ok "${line#ok - }" ;;
      "not ok - "*) notok "${line#not ok - }"; fails=$((fails + 1)) ;;
      *) echo "$line" ;;
    esac
  done <<<"$out"
  [ $rc = 0 ] || [ $fails -gt 0 ] || notok "$SC: check.py failed (exit $rc)"
}

ctl() { curl -s -m 10 -X POST "$C$1"; }

# stop_worker N: SIGTERM to the stack's worker-N, waits for it to end.
stop_worker() {
  local pid
  pid=$(cat "$RUN_DIR/pids/worker-$1.pid")
  kill -TERM "$pid" 2>/dev/null
  wait_for 30 "worker-$1 to stop" bash -c "! kill -0 $pid 2>/dev/null || ps -o stat= -p $pid | grep -q '^Z'"
}

workers_alive() {
  local i
  for i in 1 2; do pid_alive "$RUN_DIR/pids/worker-$i.pid" || return 1; done
}

# metric NAME_WITH_LABELS: the sum of that metric over both workers.
metric() {
  local u sum=0 v
  for u in $WORKER_URLS; do
    v=$(curl -s -m 5 "$u/metrics" | awk -v k="$1" '$1 == k {print $2}')
    sum=$((sum + ${v:-0}))
  done
  echo $sum
}

# The event ids of diary.events, one line per message (poison messages without an id left out).
log_ids() {
  kcat -C -b "$KAFKA_BOOTSTRAP" -t diary.events -e -q -f '%s\n' 2>/dev/null | jq -rR 'fromjson? | .id? // empty'
}

# How many of this scenario's acknowledged events diary.events holds more than once.
acked_in_log_twice() {
  log_ids | sort | uniq -d >"$RUN_DIR/dup-ids"
  jq -r .event_id "$ACKF" | sort | comm -12 - "$RUN_DIR/dup-ids" | wc -l
}

pg_primary_down() { ! runuser -u postgres -- "$PGBIN/pg_ctl" -D "$RUN_DIR/pg/primary" status >/dev/null 2>&1; }

# in_lock_wait APP: APP's database session waits for a lock.
in_lock_wait() {
  [ "$(psql -qAtX "$PG_PRIMARY_URL" -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$1' AND wait_event_type = 'Lock'" 2>/dev/null)" -ge 1 ] 2>/dev/null
}

# ---- 1. kill -9 of a worker, three times ------------------------------------------------------
s_kill() {
  begin kill
  # A third of the rate: each restart waits for the group to drop the dead member (about
  # 12 s with the mock), and all three kills should land while writes still come in.
  load_start --rate $((RATE / 3))
  local k victim pid
  for k in 1 2 3; do
    victim=$((2 - k % 2))
    wait_acks $((k * 25 - 15))
    pid=$(cat "$RUN_DIR/pids/worker-$victim.pid")
    kill -9 "$pid"
    note "kill -9 worker-$victim (pid $pid) at $(acked) of $TOTAL acknowledged writes"
    # Right away: the killed process may still be a zombie, which must not count as running.
    if "$top/scripts/stack.sh" up 2>"$RUN_DIR/up-kill-$k.err" && [ "$(cat "$RUN_DIR/pids/worker-$victim.pid")" != "$pid" ]; then
      ok "kill: worker-$victim killed with SIGKILL and restarted at once by stack.sh up (kill $k of 3)"
    else
      notok "kill: restart of worker-$victim: $(tail -3 "$RUN_DIR/up-kill-$k.err")"
    fi
  done
  load_wait
  oracle
  check "kill: both workers running at the end" workers_alive
  end
}

# ---- 2. all brokers down, then one down with its leaders moved ----------------------------------
s_brokers() {
  begin brokers
  load_start
  wait_acks 15
  local b before moved=0 t p x
  for b in 1 2 3; do ctl "/brokers/$b/down" >/dev/null; done
  before=$(acked)
  note "every broker down at $before acknowledged writes"
  sleep 4
  # A few answers may have been on their way when the brokers went down.
  check "brokers: no write acknowledged while every broker is down ($before -> $(acked))" \
    [ "$(acked)" -le $((before + 24)) ]
  for b in 1 2 3; do ctl "/brokers/$b/up" >/dev/null; done
  before=$(acked)
  check "brokers: writes acknowledged again once the brokers are back" \
    wait_for 40 "acknowledgements" bash -c "[ \$(wc -l <'$ACKF') -gt $((before + 50)) ]"
  check "brokers: writes caught in the outage got no acknowledgement (504) and were sent again ($(wc -l <"$ACKF.unacked") attempts)" \
    [ "$(wc -l <"$ACKF.unacked")" -gt 0 ]
  wait_acks 55
  # Broker 2's leaderships go to 1 and 3, then broker 2 goes down for 5 s.
  while read -r t p; do
    x=$((moved % 2 == 0 ? 1 : 3))
    ctl "/partitions/$t/$p/leader?broker=$x" >/dev/null && moved=$((moved + 1))
  done < <(kcat -L -b "$KAFKA_BOOTSTRAP" -J 2>/dev/null |
    jq -r '.topics[] | .topic as $t | .partitions[] | select(.leader == 2) | "\($t) \(.partition)"')
  ctl /brokers/2/down >/dev/null
  note "moved $moved partition leaders off broker 2, broker 2 down at $(acked) acknowledged writes"
  check "brokers: leaders moved off broker 2 ($moved partitions)" [ $moved -gt 0 ]
  before=$(acked)
  sleep 5
  check "brokers: writes go on while broker 2 is down ($before -> $(acked))" [ "$(acked)" -gt $((before + 50)) ]
  ctl /brokers/2/up >/dev/null
  load_wait
  note "brokers: $(acked_in_log_twice) of this load's writes are in diary.events more than once (attempts that got a 504 and still reached the log)"
  oracle
  check "brokers: both workers running at the end" workers_alive
  end
}

# ---- 3. lost produce acknowledgements: duplicates in the log --------------------------------
s_dups() {
  begin dups
  local round b copies0 dup0 copies dups acked_dups
  log_ids >"$RUN_DIR/ids-before"
  copies0=$(($(wc -l <"$RUN_DIR/ids-before") - $(sort -u "$RUN_DIR/ids-before" | wc -l)))
  dup0=$(metric 'diary_worker_events_total{outcome="duplicate"}')
  load_start
  wait_acks 10
  for round in 1 2 3 4 5 6; do
    b=$(((round - 1) % 3 + 1))
    # The broker appends every request at once but answers 1.5 s later; dropping its
    # connections meanwhile loses the answers, and the producers send the same batches again.
    ctl "/brokers/$b/rtt?ms=1500" >/dev/null
    sleep 1
    ctl "/brokers/$b/down" >/dev/null
    sleep 0.3
    ctl "/brokers/$b/up" >/dev/null
    ctl "/brokers/$b/rtt?ms=0" >/dev/null
    sleep 0.7
  done
  load_wait
  log_ids >"$RUN_DIR/ids-after"
  copies=$(($(wc -l <"$RUN_DIR/ids-after") - $(sort -u "$RUN_DIR/ids-after" | wc -l) - copies0))
  acked_dups=$(acked_in_log_twice)
  check "dups: diary.events holds $acked_dups of this load's acknowledged events more than once ($copies extra copies; counted with kcat)" \
    [ "$acked_dups" -gt 0 ]
  oracle
  dups=$(($(metric 'diary_worker_events_total{outcome="duplicate"}') - dup0))
  check "dups: the workers absorbed every extra copy as a duplicate ($dups >= $copies)" [ "$dups" -ge "$copies" ]
  check "dups: both workers running at the end" workers_alive
  end
}

# ---- 4. the PostgreSQL primary killed and restarted -----------------------------------------
s_pg() {
  begin pg
  local before rec0
  rec0=$(metric diary_worker_db_reconnects_total)
  load_start
  wait_acks 25
  note "pg_ctl stop -m immediate at $(acked) acknowledged writes"
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$RUN_DIR/pg/primary" -m immediate stop >/dev/null 2>&1
  check "pg: primary stopped (immediate)" pg_primary_down
  before=$(acked)
  sleep 4
  check "pg: ingest acknowledges writes while the primary is down ($before -> $(acked))" [ "$(acked)" -gt "$before" ]
  check "pg: worker-1 says PostgreSQL is not ready (/readyz 503)" bash -c "! curl -sf '$W1/readyz'"
  if "$top/scripts/stack.sh" up 2>"$RUN_DIR/up-pg.err"; then
    ok "pg: primary restarted by stack.sh up, workers ready again"
  else
    notok "pg: restart: $(tail -3 "$RUN_DIR/up-pg.err")"
  fi
  load_wait
  oracle
  check "pg: the workers reconnected ($(($(metric diary_worker_db_reconnects_total) - rec0)) reconnections)" \
    [ "$(metric diary_worker_db_reconnects_total)" -gt "$rec0" ]
  check "pg: both workers running at the end (no restart)" workers_alive
  end
}

# ---- 4b. the answer to a COMMIT lost --------------------------------------------------------
# Regression (workers/worker.c): when the connection broke after the server had committed a
# batch but before the worker read the answer, the worker's retry was refused by the
# compare-and-set (the batch was already in), it moved on, and the batch's change events
# stayed in the outbox until the partition's next write: on a quiet partition, for good.
# The stack's workers are stopped and one worker runs through tests/faults/pgproxy.py, which
# forwards a COMMIT and then drops the connection without the answer, while armed.
s_commit() {
  begin commit
  local i pport wpid ppid wport fired=0 u t f eid rc
  for i in 1 2; do stop_worker "$i"; done
  "$PY" "$FX/pgproxy.py" --listen-port-file "$RUN_DIR/proxy.port" --target "127.0.0.1:$PG_PRIMARY_PORT" \
    --arm-file "$RUN_DIR/proxy.arm" --fired-file "$RUN_DIR/proxy.fired" 2>>"$RUN_DIR/logs/pgproxy.log" &
  ppid=$!
  PROXY_PIDS=("$ppid")
  wait_for 10 "the proxy" test -s "$RUN_DIR/proxy.port"
  pport=$(cat "$RUN_DIR/proxy.port")
  rm -f "$RUN_DIR/worker-proxy.port"
  PG_PRIMARY_URL="postgresql://postgres@127.0.0.1:$pport/diary" DIARY_WORKER_ID=worker-proxy DIARY_WORKER_PORT=0 \
    DIARY_WORKER_PORT_FILE="$RUN_DIR/worker-proxy.port" "$BIN_DIR/diary-worker" >>"$RUN_DIR/logs/worker-proxy.log" 2>&1 &
  wpid=$!
  PROXY_PIDS=("$wpid" "$ppid")
  wait_for 10 "worker-proxy's port" test -s "$RUN_DIR/worker-proxy.port"
  wport=$(cat "$RUN_DIR/worker-proxy.port")
  check "commit: a worker through the proxy is ready" wait_for 30 "worker-proxy" curl -sf "http://127.0.0.1:$wport/readyz"
  # Three lost answers during the load ...
  load_start
  for i in 1 2 3; do
    wait_acks $((i * 25))
    rm -f "$RUN_DIR/proxy.fired"
    touch "$RUN_DIR/proxy.arm"
    wait_for 10 "a COMMIT" test -f "$RUN_DIR/proxy.fired" && fired=$((fired + 1))
  done
  check "commit: the proxy dropped the connection after a COMMIT 3 times during the load ($fired)" [ $fired = 3 ]
  load_wait
  # ... and one on the last write of a quiet partition: a user of its own, one write.
  "$PY" "$FX/load.py" setup --url "$DIARY_URL" --users 1 --foods 1 --tag commit-lost \
    --out "$RUN_DIR/user-commit.json" 2>>"$RUN_DIR/setup.err" || notok "commit: register one more user"
  u=$(jq -r '.users[0].user_id' "$RUN_DIR/user-commit.json")
  t=$(jq -r '.users[0].token' "$RUN_DIR/user-commit.json")
  f=$(jq -r '.users[0].foods[0]' "$RUN_DIR/user-commit.json")
  sleep 1 # the change events of the registration and the food are out
  rm -f "$RUN_DIR/proxy.fired"
  touch "$RUN_DIR/proxy.arm"
  http PUT "/v1/diary/2026-01-01/lunch/$f" '{"amount":42}' -H "Authorization: Bearer $t"
  eid=$(jq -r .event_id <<<"$BODY")
  check "commit: the answer to the COMMIT of a user's only write was lost" wait_for 10 "a COMMIT" test -f "$RUN_DIR/proxy.fired"
  check "commit: that write is applied once (version 1)" wait_for 10 "the row" bash -c \
    "[ \"\$(psql -qAtX '$PG_PRIMARY_URL' -c \"SELECT amount || ' ' || version FROM daily_meals WHERE user_id = '$u'\")\" = '42.00 1' ]"
  check "commit: its change event leaves the outbox and reaches diary.changes" wait_for 10 "the change event" bash -c \
    "kcat -C -b '$KAFKA_BOOTSTRAP' -t diary.changes -e -q -f '%s\n' 2>/dev/null | grep -q '\"event_id\" *: *\"$eid\"'"
  note "worker-proxy: $(curl -s -m 5 "http://127.0.0.1:$wport/metrics" | grep -E '^diary_worker_(stale_batches_total|db_reconnects_total) ' | tr '\n' ' ')"
  oracle
  kill -TERM "$wpid"
  wait "$wpid"
  rc=$?
  check "commit: worker-proxy stops cleanly on SIGTERM (exit $rc)" [ $rc = 0 ]
  kill -TERM "$ppid" 2>/dev/null
  wait "$ppid" 2>/dev/null
  PROXY_PIDS=()
  if "$top/scripts/stack.sh" up 2>"$RUN_DIR/up-commit.err" && workers_alive; then
    ok "commit: the stack's two workers started again by stack.sh up"
  else
    notok "commit: stack.sh up: $(tail -3 "$RUN_DIR/up-commit.err")"
  fi
  end
}

# ---- 5. a worker frozen past its session timeout --------------------------------------------
# To make the stale commit certain rather than lucky, worker-1 is frozen while one of its
# batches is inside a transaction: a psql session holds the consumer_offsets row of one of
# worker-1's partitions (SELECT ... FOR UPDATE) for 3 s; once worker-1's compare-and-set waits
# on it, worker-1 gets SIGSTOP, and the row lock passes to worker-1's open transaction. After
# the session timeout worker-2 owns every partition; its batch on that partition waits for the
# frozen transaction. SIGCONT once worker-2 waits so (about 15 s: the mock drops a silent
# member after the session timeout, then waits another session timeout less 1 s for members
# to rejoin before it assigns): worker-1 commits its batch (the database still said it owned
# those offsets), and worker-2's compare-and-set then finds the row moved and commits nothing
# (stale); any further batch of worker-1 on a partition it no longer owns is refused the same
# way.
s_stop() {
  begin stop
  local part caught=no took=no lockpid= stale0 stale t0
  stale0=$(metric diary_worker_stale_batches_total)
  load_start
  wait_acks 20
  part=$(curl -s -m 5 "$W1/metrics" | sed -n 's/^diary_worker_lag{partition="\([0-9]*\)"} [0-9].*/\1/p' | head -1)
  if [ -n "$part" ]; then
    psql -qAtX "$PG_PRIMARY_URL" -c "BEGIN; SELECT 1 FROM consumer_offsets WHERE \"partition\" = $part FOR UPDATE; SELECT pg_sleep(3); COMMIT" \
      >/dev/null 2>&1 &
    lockpid=$!
    wait_for 3 "worker-1 waiting on the row lock" in_lock_wait worker-1 && caught=yes
  fi
  STOPPED_PID=$(cat "$RUN_DIR/pids/worker-1.pid")
  kill -STOP "$STOPPED_PID"
  t0=$SECONDS
  note "SIGSTOP worker-1 (pid $STOPPED_PID) at $(acked) acknowledged writes; caught in a transaction on partition ${part:-?}: $caught"
  sleep 6
  if [ $caught = yes ]; then
    wait_for 34 "worker-2 waiting on the frozen transaction" in_lock_wait worker-2 && took=yes
    sleep 0.5
  else
    sleep 10
  fi
  kill -CONT "$STOPPED_PID"
  STOPPED_PID=
  note "SIGCONT worker-1 after $((SECONDS - t0)) s frozen (session timeout 6 s)"
  [ -n "$lockpid" ] && wait "$lockpid"
  if [ $caught = yes ]; then
    check "stop: worker-2 took partition $part over while worker-1 was frozen, and waited for its open transaction" [ $took = yes ]
  else
    notok "stop: worker-1 was not caught inside a transaction (partition ${part:-none})"
  fi
  load_wait
  oracle
  stale=$(($(metric diary_worker_stale_batches_total) - stale0))
  check "stop: the stale batch was refused by the compare-and-set ($stale stale batches)" [ "$stale" -ge 1 ]
  check "stop: both workers running at the end" workers_alive
  check "stop: worker-1 is back in the group (/readyz 200)" wait_for 30 "worker-1 ready" curl -sf "$W1/readyz"
  end
}

# ---- 6. poison events ------------------------------------------------------------------------
s_poison() {
  begin poison
  local users=() name n dl0 dlq lag big env
  dl0=$(metric 'diary_worker_events_total{outcome="dead_letter"}')
  load_start
  wait_acks 30
  # Each poison message is keyed by a load user (so it lands among that user's good writes)
  # and carries the header poison=<name>.
  mapfile -t users < <(jq -r '.users[].user_id' "$RUN_DIR/users.json" | head -7)
  big=$(head -c 300000 /dev/zero | tr '\0' 'x')
  env='"specversion":"1.0","source":"faults","subject":"%s","time":"2026-03-01T10:00:00.000Z","datacontenttype":"application/json","requestid":"poison"'
  poison() { # NAME KEY VALUE
    printf '%s' "$3" | kcat -P -b "$KAFKA_BOOTSTRAP" -t diary.events -k "$2" -H "poison=$1" -H "request-id=poison-$1" 2>>"$RUN_DIR/kcat.err"
  }
  poison not-json "${users[0]}" '{"specversion":"1.0", this is not json'
  poison not-envelope "${users[1]}" '{"hello":"world","id":"c0ffee00-0000-7000-8000-00000000aa01"}'
  poison unknown-type "${users[2]}" "$(printf "{\"id\":\"c0ffee00-0000-7000-8000-00000000aa02\",\"type\":\"diary.nothing.v1\",$env,\"data\":{}}" "${users[2]}")"
  poison oversized "${users[3]}" "$(printf "{\"id\":\"c0ffee00-0000-7000-8000-00000000aa03\",\"type\":\"diary.entry.set.v1\",$env,\"data\":{\"pad\":\"%s\"}}" "${users[3]}" "$big")"
  poison bad-uuid "${users[4]}" "$(printf "{\"id\":\"not-a-uuid\",\"type\":\"diary.entry.set.v1\",$env,\"data\":{\"entry_id\":\"x\",\"date\":\"2026-03-01\",\"meal_type\":\"lunch\",\"food_id\":\"x\",\"amount\":1}}" "${users[4]}")"
  poison bad-uuid-data "${users[5]}" "$(printf "{\"id\":\"c0ffee00-0000-7000-8000-00000000aa04\",\"type\":\"diary.entry.set.v1\",$env,\"data\":{\"entry_id\":\"c0ffee00-0000-7000-8000-00000000aa05\",\"date\":\"2026-03-01\",\"meal_type\":\"lunch\",\"food_id\":\"not-a-uuid\",\"amount\":1}}" "${users[5]}")"
  # Regression (workers/worker.c): an event over a megabyte made a dead letter the broker
  # refused (Message size too large), and the partition waited for its delivery forever.
  { printf '{"id":"c0ffee00-0000-7000-8000-00000000aa06","type":"diary.entry.set.v1",'"$env"',"data":{"pad":"' "${users[6]}"
    head -c 1100000 /dev/zero | tr '\0' 'x'
    printf '"}}'; } >"$RUN_DIR/huge.json"
  kcat -P -b "$KAFKA_BOOTSTRAP" -t diary.events -k "${users[6]}" -X message.max.bytes=4000000 -H poison=huge \
    -H request-id=poison-huge "$RUN_DIR/huge.json" 2>>"$RUN_DIR/kcat.err"
  n=7
  note "produced $n poison messages with kcat at $(acked) acknowledged writes"
  load_wait
  oracle
  dlq=$RUN_DIR/dlq.txt
  wait_for 30 "dead letters" bash -c "[ \$(kcat -C -b '$KAFKA_BOOTSTRAP' -t diary.events.dlq -e -q -f '%h\n' 2>/dev/null | grep -c 'poison=') -ge $n ]"
  kcat -C -b "$KAFKA_BOOTSTRAP" -t diary.events.dlq -e -q -f '%h\t%s\n' 2>/dev/null >"$dlq"
  for name in not-json not-envelope unknown-type oversized bad-uuid bad-uuid-data huge; do
    check "poison: $name dead-lettered once, with a reason: $(grep "poison=$name[,	]" "$dlq" | cut -f2- | jq -r '.error' 2>/dev/null | head -1)" \
      bash -c "[ \$(grep -c 'poison=$name[,	]' '$dlq') = 1 ] && grep 'poison=$name[,	]' '$dlq' | cut -f2- | jq -e '(.error | length > 0) and (.attempts >= 1) and .topic == \"diary.events\" and (.event | type == \"string\")'"
  done
  check "poison: huge (1.1 MB) is dead-lettered with its first 128 KiB and says so" \
    bash -c "grep 'poison=huge[,	]' '$dlq' | cut -f2- | jq -e '(.error | test(\"cut to its first\")) and (.event | length) <= 131072'"
  check "poison: nothing else was ever dead-lettered in this run ($(wc -l <"$dlq") dead letters)" [ "$(wc -l <"$dlq")" = $n ]
  check "poison: unknown-type and bad-uuid-data (whole envelopes, usable ids) recorded as rejected (invalid_event)" \
    [ "$(psql -tAX "$PG_PRIMARY_URL" -c "SELECT count(*) FROM processed_events WHERE event_id IN ('c0ffee00-0000-7000-8000-00000000aa02','c0ffee00-0000-7000-8000-00000000aa04') AND status = 'rejected' AND problem->>'type' = 'invalid_event'")" = 2 ]
  lag=$("$BIN_DIR/diaryctl" lag --json 2>/dev/null | jq -s '[.[] | select(.topic == "diary.events") | .lag] | add')
  check "poison: diaryctl lag --json says 0 ($lag)" [ "$lag" = 0 ]
  check "poison: the workers counted $n dead letters" [ $(($(metric 'diary_worker_events_total{outcome="dead_letter"}') - dl0)) = $n ]
  check "poison: both workers still running" workers_alive
  end
}

# ---- the oracle catches what it is meant to ---------------------------------------------------
# check.py, run on the final state with a fault of its own made by hand, must fail and name it:
# a row applied once too often (its version bumped behind the worker's back), and an
# acknowledged write that never arrived (an acknowledgement added to a copy of the last load).
# expect_oracle_failure WHAT PATTERN [check.py args]: check.py exits 1 with a not ok line
# matching PATTERN.
expect_oracle_failure() {
  local what=$1 pat=$2 out rc
  shift 2
  out=$("$PY" "$FX/check.py" --users "$RUN_DIR/users.json" --pg "$PG_PRIMARY_URL" \
    --bootstrap "$KAFKA_BOOTSTRAP" --wait 3 --name selftest "$@" 2>&1)
  rc=$?
  if [ $rc = 1 ] && grep -q "^not ok - .*$pat" <<<"$out"; then
    ok "oracle self-test: $what is caught ($(grep -m1 "^not ok - .*$pat" <<<"$out" | sed 's/^not ok - selftest: //'))"
  else
    notok "oracle self-test: $what is not caught (exit $rc)"
    grep -E '^(not ok|#)' <<<"$out" | head -10
  fi
}
s_selftest() {
  begin selftest
  local args=() f row last fake
  for f in "${ACKS[@]}"; do args+=(--acks "$f"); done
  row=$(psql -qAtX "$PG_PRIMARY_URL" -c "UPDATE daily_meals SET version = version + 1 WHERE id = (SELECT id FROM daily_meals WHERE user_id = '$(jq -r '.users[0].user_id' "$RUN_DIR/users.json")' ORDER BY id LIMIT 1) RETURNING id")
  expect_oracle_failure "a write applied twice" "1 doubled" "${args[@]}"
  psql -qAtX "$PG_PRIMARY_URL" -c "UPDATE daily_meals SET version = version - 1 WHERE id = '$row'" >/dev/null
  last=${ACKS[${#ACKS[@]}-1]}
  fake=$RUN_DIR/acks-selftest.jsonl
  cp "$last" "$fake"
  tail -1 "$last" | jq -c '.seq = 1000 | .event_id = "00000000-0000-7000-8000-000000000001"' >>"$fake"
  args[${#args[@]}-1]=$fake
  expect_oracle_failure "an acknowledged write lost" "1 lost" "${args[@]}"
  rm -f "$fake"
  end
}

for s in $FAULTS; do
  case $s in
    kill | brokers | dups | pg | commit | stop | poison) "s_$s" ;;
    *) notok "unknown scenario $s (want: kill brokers dups pg commit stop poison)" ;;
  esac
done
[ ${#ACKS[@]} -gt 0 ] && s_selftest
note "faults: $((SECONDS - START)) s for: $FAULTS ($USERS users, $WRITES writes per user and scenario at $RATE/s)"
"$top/scripts/stack.sh" down 2>/dev/null
sanitizer_check "$RUN_DIR/logs"
ok "stack down, no sanitizer report in its logs"
finish faults
