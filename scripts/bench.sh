#!/usr/bin/env bash
# `make bench`: the pipeline's speed against this machine's own ceilings, measured in one run
# (bench/README.md says what each figure means and how it is taken).
#
#   1. ceilings: bare libevent and nginx answering 202, a raw batched upsert into daily_meals
#      (replica attached), librdkafka producing to the devbroker; 3 times each
#   2. ingest: wrk + bench/ingest.lua, authenticated diary writes, 64 and 256 connections;
#      then 3 short runs at 256 between runs of the bare libevent server (the ratio target)
#   3. apply: a backlog in diary.events applied by one worker 3 times, each between runs of
#      the raw upsert (the ratio target), then (fresh database) by two workers
#   4. end to end: fixed offered loads, POST -> visible on the replica -> change event, and
#      the check that every acknowledged write is in the database exactly once
#   5. replay: the backlog's log into an empty database with diaryctl replay
#
# Writes bench/results.json, bench/results.md and bench/latency.png. Exits 1 when the
# exactly-once check of an end-to-end run failed (or a phase could not run), after writing
# the results. Everything runs on 127.0.0.1, on free ports, under $BENCH_RUN_DIR (default
# bench/out/run, wiped at start); everything started is stopped on exit.
#
# Settings (environment; defaults give about 5-6 minutes on 2 cores):
#   BIN_DIR                 optimised binaries (build/bin)
#   BENCH_RUN_DIR           scratch folder (bench/out/run)
#   BENCH_RESULTS_DIR       where results.* and latency.png go (bench)
#   BENCH_CEILING_SECONDS   length of one ceiling repetition (3)
#   BENCH_INGEST_SECONDS    length of one measured ingest run (15), after a 3 s warm-up
#   BENCH_PAIRED_SECONDS    length of each of the 3 ingest runs between ceiling runs (5)
#   BENCH_USERS             users created through the API for ingest and e2e (200)
#   BENCH_APPLY_USERS, BENCH_APPLY_ENTRIES   the backlog: users x (2 + entries) events (1000, 50)
#   BENCH_E2E_RATES         offered loads in writes/s, RATE[:SECONDS] (1000:20 10000 20000):
#                           one the pipeline sustains today, then the issue's two
#   BENCH_E2E_SECONDS       length of those without :SECONDS (60)
#   BENCH_E2E_NICE          nice level of ingest and the load generator in those runs (10)
#   BENCH_E2E_MAX_LAG       ingest's DIARY_INGEST_MAX_LAG in those runs (4000; 0 = no shedding)
#   BENCH_PHASES            which phases to run (ceilings ingest apply e2e replay)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. "$top/scripts/lib.sh"

BIN_DIR=${BIN_DIR:-$top/build/bin}
case $BIN_DIR in /*) ;; *) BIN_DIR=$top/$BIN_DIR ;; esac
RUN=${BENCH_RUN_DIR:-$top/bench/out/run}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$top/bench}
CEIL_SECS=${BENCH_CEILING_SECONDS:-3}
PAIR_SECS=${BENCH_PAIRED_SECONDS:-5}
INGEST_SECS=${BENCH_INGEST_SECONDS:-15}
NUSERS=${BENCH_USERS:-200}
APPLY_USERS=${BENCH_APPLY_USERS:-1000}
APPLY_ENTRIES=${BENCH_APPLY_ENTRIES:-50}
E2E_RATES=${BENCH_E2E_RATES:-1000:20 10000 20000}
E2E_SECS=${BENCH_E2E_SECONDS:-60}
E2E_NICE=${BENCH_E2E_NICE:-10}
E2E_MAX_LAG=${BENCH_E2E_MAX_LAG:-4000}
PHASES=${BENCH_PHASES:-ceilings ingest apply e2e replay}
PGBIN=/usr/lib/postgresql/15/bin
TOOLS=$top/bench/out
RES=$RUN/res
LOGS=$RUN/logs
HZ=$(getconf CLK_TCK)
BENCH_START=$SECONDS
FAILED=()

say() { printf 'bench [%3ds]: %s\n' $((SECONDS - BENCH_START)) "$*" >&2; }
now_ms() { date +%s%3N; }
has_phase() { grep -qw "$1" <<<"$PHASES"; }

# ---- tools -------------------------------------------------------------------------------

install_tools() {
  local missing=() p
  for p in wrk nginx gnuplot-nox; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && command -v perf >/dev/null && return 0
  if [ "$(id -u)" -ne 0 ]; then
    [ ${#missing[@]} -eq 0 ] && { say "no perf and not root: the report will have no profiles"; return 0; }
    say "missing ${missing[*]} and not root: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
  say "installing ${missing[*]:-} $(command -v perf >/dev/null || echo linux-perf)"
  # Installing nginx must not start a system nginx: without a policy-rc.d, lend one that
  # refuses service starts for the time of the install.
  local lent=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    lent=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if [ ${#missing[@]} -gt 0 ] &&
    ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$LOGS/apt.log" 2>&1; then
    [ $lent = 1 ] && rm -f /usr/sbin/policy-rc.d
    say "apt-get failed (see $LOGS/apt.log)"
    exit 1
  fi
  # perf only adds the profiles: the run goes on without it.
  command -v perf >/dev/null ||
    apt-get install -y -qq --no-install-recommends linux-perf >>"$LOGS/apt.log" 2>&1 ||
    say "no perf (linux-perf did not install): the report will have no profiles"
  [ $lent = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

# The C tools of bench/ with the Makefile's flags, linked with libdiary.a.
build_tools() {
  local pkgs="rdkafka libpq libevent libevent_pthreads jansson libsodium libcyaml" t
  local warn="-Wall -Wextra -Wno-unused-parameter -Wmissing-prototypes -Wstrict-prototypes
    -Wold-style-definition -Wpointer-arith -Wformat=2 -Wundef -Wshadow -Werror"
  local lib=$top/build/libdiary.a
  [ -f "$lib" ] || { say "$lib is missing: run make first"; exit 1; }
  mkdir -p "$TOOLS"
  for t in ceiling_http kproduce upsert probe loadgen; do
    # shellcheck disable=SC2046,SC2086
    cc -O2 -g -std=c17 -D_GNU_SOURCE $warn -I"$top/shared" $(pkg-config --cflags $pkgs) \
      -o "$TOOLS/$t" "$top/bench/$t.c" "$lib" $(pkg-config --libs $pkgs) -lcrypt -lpthread -lm
  done
}

# ---- processes ---------------------------------------------------------------------------

PIDS=()
LAST_PID=
# start_bg NAME COMMAND...: runs COMMAND in its own session, output to logs/NAME.log.
# Disowned, so that bash does not report the brokers it kills; it still reaps them.
start_bg() {
  local name=$1; shift
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  LAST_PID=$!
  disown "$LAST_PID"
  PIDS+=("$LAST_PID")
}

# stop_pid PID [SECONDS [SIGNAL]]: SIGNAL (TERM), wait, then KILL.
stop_pid() {
  local pid=$1 secs=${2:-30} sig=${3:-TERM}
  kill -0 "$pid" 2>/dev/null || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + secs))
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

alive() { kill -0 "$1" 2>/dev/null && ! ps -o stat= -p "$1" | grep -q '^Z'; }

cleanup() {
  local rc=$?
  set +e
  trap - EXIT
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do stop_pid "$pid" 15 TERM; done
  [ -n "${PG_READY:-}" ] && RUN_DIR=$RUN/stack "$top/scripts/stack.sh" down >/dev/null 2>&1
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- PostgreSQL: the stack's primary and replica, under $RUN/stack ------------------------

PG_PRIMARY_PORT=$(free_port)
PG_REPLICA_PORT=$(free_port)
purl() { echo "postgresql://postgres@127.0.0.1:$PG_PRIMARY_PORT/$1"; }
rurl() { echo "postgresql://postgres@127.0.0.1:$PG_REPLICA_PORT/$1"; }
psql_p() { local db=$1; shift; PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -qAtX -v ON_ERROR_STOP=1 "$(purl "$db")" "$@"; }
psql_r() { local db=$1; shift; PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -qAtX -v ON_ERROR_STOP=1 "$(rurl "$db")" "$@"; }

start_databases() {
  PG_PRIMARY_PORT=$PG_PRIMARY_PORT PG_REPLICA_PORT=$PG_REPLICA_PORT RUN_DIR=$RUN/stack BIN_DIR=$BIN_DIR \
    "$top/scripts/stack.sh" db >>"$LOGS/stack.log" 2>&1 || { tail -5 "$LOGS/stack.log" >&2; exit 1; }
  PG_READY=1
  # pg_stat_statements (top-level statements) on the primary, for the report's split of
  # the workers' database time.
  local conf=$RUN/stack/pg/primary/postgresql.conf
  printf "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = top\n" >>"$conf"
  # A new cluster creates every WAL segment during the run, and zero-filling them (16 MiB
  # each, in the committing backend) was ~13% of the apply's backend CPU; a server that has
  # run a while recycles its segments instead. Not zero-filling measures that steady state.
  echo "wal_init_zero = off" >>"$conf"
  echo "wal_init_zero = off" >>"$RUN/stack/pg/replica/postgresql.conf"
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$RUN/stack/pg/replica" reload >/dev/null
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$RUN/stack/pg/primary" -m fast -w -t 60 restart \
    -l "$RUN/stack/pg/primary.log" -o "-p $PG_PRIMARY_PORT" >/dev/null
  wait_for 60 "the replica" psql_r postgres -c "SELECT 1"
  psql_p diary -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
}

# new_db NAME: an empty migrated database, copied from the stack's "diary" (never used).
new_db() {
  psql_p postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1 TEMPLATE diary"
  wait_for 30 "database $1 on the replica" psql_r "$1" -c "SELECT 1"
}

postmaster_pid() { head -1 "$RUN/stack/pg/$1/postmaster.pid"; }

# ---- the devbroker, workers, ingest -------------------------------------------------------

BROKER_PID='' BOOT=
# start_broker NAME: a devbroker on a state folder of its own. Its log is throwaway: it is
# stopped with SIGKILL (no save of up to 60 MiB of messages).
start_broker() {
  local dir=$RUN/broker-$1
  mkdir -p "$dir"
  start_bg "broker-$1" "$BIN_DIR/diary-devbroker" --topics "$top/topics" --state "$dir" \
    --control 127.0.0.1:0 --bootstrap-file "$dir/bootstrap"
  BROKER_PID=$LAST_PID
  wait_for 60 "devbroker $1" test -s "$dir/bootstrap" || exit 1
  BOOT=$(cat "$dir/bootstrap")
}

# start_worker ID GROUP DB
start_worker() {
  rm -f "$RUN/$1.port"
  KAFKA_BOOTSTRAP=$BOOT PG_PRIMARY_URL=$(purl "$3") DIARY_GROUP=$2 DIARY_WORKER_ID=$1 \
    DIARY_WORKER_PORT=0 DIARY_WORKER_PORT_FILE=$RUN/$1.port start_bg "$1" "$BIN_DIR/diary-worker"
}
worker_port() { cat "$RUN/$1.port" 2>/dev/null; }
worker_ready() { [ -s "$RUN/$1.port" ] && curl -sf "http://127.0.0.1:$(worker_port "$1")/readyz" >/dev/null; }

TOKEN_KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
INGEST_PID='' INGEST_PORT=
# start_ingest NAME DB GROUP [NICE] [MAX_LAG]: MAX_LAG is DIARY_INGEST_MAX_LAG (load shedding,
# docs/api.md): 0 for the ingest phase, whose log nobody reads; in the e2e runs what
# scripts/stack.sh sets for the devbroker (5 MiB a partition, ~6,400 records).
start_ingest() {
  rm -f "$RUN/$1.port"
  KAFKA_BOOTSTRAP=$BOOT PG_REPLICA_URL=$(rurl "$2") PG_PRIMARY_URL=$(purl "$2") DIARY_GROUP=$3 \
    DIARY_TOKEN_KEY=$TOKEN_KEY DIARY_HTTP_PORT=0 DIARY_HTTP_PORT_FILE=$RUN/$1.port \
    DIARY_PWHASH_OPSLIMIT=1 DIARY_PWHASH_MEMLIMIT=8192 DIARY_API_SCHEMA=$top/schema/api.yaml \
    DIARY_INGEST_MAX_LAG=${5:-0} start_bg "$1" nice -n "${4:-0}" "$BIN_DIR/diary-ingest"
  INGEST_PID=$LAST_PID
  wait_for 60 "$1" test -s "$RUN/$1.port" || exit 1
  INGEST_PORT=$(cat "$RUN/$1.port")
  wait_for 60 "$1 ready" curl -sf "http://127.0.0.1:$INGEST_PORT/readyz" || { tail -5 "$LOGS/$1.log" >&2; exit 1; }
}

proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
proc_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_snap() { python3 "$top/bench/cpu.py" snap "$1"; }
# cpu_diff BEFORE AFTER: the CPU split of what ran in between (bench processes by command).
cpu_diff() {
  python3 "$top/bench/cpu.py" diff "$1" "$2" $$ "$(postmaster_pid primary)" "$(postmaster_pid replica)"
}

# perf_start NAME PID...: a flat profile (cpu-clock, 499 Hz) of those processes, until
# perf_finish NAME stops it. perf_finish comes after the run's closing CPU snapshot: perf's
# own exit (writing its data, build ids) must not land in the measured window, as it did
# when the profile was a fixed 6 s that a slower run outlasted.
PERF_PID=
perf_start() {
  local name=$1; shift
  PERF_PID=
  command -v perf >/dev/null || return 0
  perf record -q -F 499 -e cpu-clock -o "$RUN/perf-$name.data" -p "$(IFS=,; echo "$*")" \
    -- sleep 300 >"$LOGS/perf-$name.log" 2>&1 &
  PERF_PID=$!
  PIDS+=("$PERF_PID")
}
perf_finish() {
  local name=$1
  [ -n "$PERF_PID" ] || return 0
  kill -INT "$PERF_PID" 2>/dev/null
  wait "$PERF_PID" 2>/dev/null || true # perf exits with its workload's status (SIGTERM)
  [ -s "$RUN/perf-$name.data" ] || return 0
  perf report -i "$RUN/perf-$name.data" --stdio --sort comm,dso,sym --percent-limit 0.7 \
    2>/dev/null | grep -v '^#' | grep -v '^$' | head -45 >"$RES/perf-$name.txt" || true
  perf report -i "$RUN/perf-$name.data" --stdio --sort comm 2>/dev/null | grep -v '^#' |
    grep -v '^$' | head -12 >"$RES/perf-$name-comm.txt" || true
  perf report -i "$RUN/perf-$name.data" --stdio --sort comm,dso --percent-limit 0.5 2>/dev/null |
    grep -v '^#' | grep -v '^$' | head -25 >"$RES/perf-$name-dso.txt" || true
}

# perf_callers NAME SECONDS PID: a short profile with DWARF call chains of one process, to say
# which of its functions the flat profile's hot spots (malloc, printf, the kernel) serve.
# Recording copies stacks and the report unwinds them (seconds of CPU): never during a
# measured run; perf_callers_report runs once the recording processes are done.
perf_callers() {
  local name=$1 secs=$2 pid=$3
  command -v perf >/dev/null || return 0
  perf record -q -F 499 -e cpu-clock --call-graph dwarf,16384 -o "$RUN/perf-$name-cg.data" \
    -p "$pid" -- sleep "$secs" >"$LOGS/perf-$name-cg.log" 2>&1 || true
}
perf_callers_report() {
  local name=$1
  [ -s "$RUN/perf-$name-cg.data" ] || return 0
  # Inclusive time per function (children included); unresolved addresses left out.
  perf report -i "$RUN/perf-$name-cg.data" --stdio --children --sort dso,sym --percent-limit 3 \
    -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | grep -v ' 0x0000' | grep -v '0xffffffff' |
    head -60 >"$RES/perf-$name-callers.txt" || true
}

# run_wrk URL CONNS SECONDS OUT: one wrk run of bench/ingest.lua; appends its JSON to OUT.
run_wrk() {
  BENCH_USERS=$USERS_FILE BENCH_WRK_OUT=$4 wrk -t2 -c"$2" -d"$3"s --timeout 10s --latency \
    -s "$top/bench/ingest.lua" "$1" >>"$LOGS/wrk.log" 2>&1
}

# ---- 1. ceilings ---------------------------------------------------------------------------

# upsert_db DB: the raw upsert's database (1000 users with a food each), warmed up.
upsert_db() {
  new_db "$1"
  psql_p "$1" -c "INSERT INTO users (id, email, name, password_hash, created_at, updated_at)
      SELECT md5('u' || g)::uuid, 'u' || g || '@example.org', 'Bench', 'x', now(), now()
      FROM generate_series(1, 1000) g" \
    -c "INSERT INTO foods (id, user_id, name, calories_per_100g, protein_per_100g, carbs_per_100g,
          fat_per_100g, created_at, updated_at)
      SELECT md5('f' || g)::uuid, md5('u' || g)::uuid, 'Rolled oats', 379, 13.2, 67.7, 6.5, now(), now()
      FROM generate_series(1, 1000) g" -c "ANALYZE"
  "$TOOLS/upsert" "$(purl "$1")" 1 2 500 >/dev/null
}

# upsert_rep DB OUT: one repetition of the raw upsert ceiling (rows of daily_meals, 500 a
# statement, 2 connections) from an empty table after a checkpoint; its JSON line into OUT.
upsert_rep() {
  psql_p "$1" -c "TRUNCATE daily_meals" -c "CHECKPOINT"
  "$TOOLS/upsert" "$(purl "$1")" "$CEIL_SECS" 2 500 >>"$2"
}

phase_ceilings() {
  say "ceilings: bare libevent, nginx, raw upsert, librdkafka (3 x ${CEIL_SECS}s each)"
  local c i port
  # The HTTP ceilings need tokens and food ids only as bytes: fake ones of the real length.
  USERS_FILE=$RUN/fake-users.txt
  python3 -c 'import secrets, uuid
for i in range(200): print(secrets.token_urlsafe(82), uuid.uuid4())' >"$USERS_FILE"

  start_bg ceiling-http "$TOOLS/ceiling_http" "$RUN/ceiling_http.port"
  local chttp=$LAST_PID
  wait_for 10 "ceiling_http" test -s "$RUN/ceiling_http.port" || exit 1
  port=$(cat "$RUN/ceiling_http.port")
  run_wrk "http://127.0.0.1:$port" 256 2 /dev/null
  for c in 64 256; do
    for i in 1 2 3; do run_wrk "http://127.0.0.1:$port" "$c" "$CEIL_SECS" "$RES/ceiling-libevent-$c.jsonl"; done
  done
  stop_pid "$chttp"

  port=$(free_port)
  mkdir -p "$RUN/nginx"
  cat >"$RUN/nginx/nginx.conf" <<EOF
# The nginx ceiling: one worker (diary-ingest is one event loop), 202 from a return.
worker_processes 1;
daemon off;
pid $RUN/nginx/nginx.pid;
error_log $RUN/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  client_body_temp_path $RUN/nginx/body;
  proxy_temp_path $RUN/nginx/proxy;
  fastcgi_temp_path $RUN/nginx/fastcgi;
  uwsgi_temp_path $RUN/nginx/uwsgi;
  scgi_temp_path $RUN/nginx/scgi;
  server {
    listen 127.0.0.1:$port;
    location / {
      default_type application/json;
      add_header Location /v1/events/0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f always;
      add_header Diary-Position 4:1042 always;
      return 202 '{"event_id":"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f","position":"4:1042","status":"pending","id":"6e2f8b31-4c5d-8e6f-a071-0000000000e1"}';
    }
  }
}
EOF
  start_bg nginx nginx -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e "$RUN/nginx/error.log"
  local ngx=$LAST_PID
  wait_for 10 "nginx" curl -s -o /dev/null -X PUT "http://127.0.0.1:$port/" || exit 1
  run_wrk "http://127.0.0.1:$port" 256 2 /dev/null
  for c in 64 256; do
    for i in 1 2 3; do run_wrk "http://127.0.0.1:$port" "$c" "$CEIL_SECS" "$RES/ceiling-nginx-$c.jsonl"; done
  done
  stop_pid "$ngx"

  upsert_db b_ceiling
  for i in 1 2 3; do upsert_rep b_ceiling "$RES/ceiling-upsert.jsonl"; done
  psql_p postgres -c "DROP DATABASE b_ceiling"

  start_broker ceiling
  "$TOOLS/kproduce" ceiling "$BOOT" diary.events 20000 600 >/dev/null
  for i in 1 2 3; do
    "$TOOLS/kproduce" ceiling "$BOOT" diary.events 300000 600 >>"$RES/ceiling-kafka.jsonl"
  done
  stop_pid "$BROKER_PID" 5 KILL
}

# ---- 2. ingest -----------------------------------------------------------------------------

# setup_users NAME DB GROUP [NICE] [MAX_LAG]: broker, database, worker and ingest (at that nice
# level, with that load-shedding bound) up;
# NUSERS users with a food each created through the API; USERS_FILE has their tokens.
setup_users() {
  start_broker "$1"
  new_db "$2"
  start_worker "$1-worker" "$3" "$2"
  WORKER_PID=$LAST_PID
  start_ingest "$1-ingest" "$2" "$3" "${4:-0}" "${5:-0}"
  wait_for 60 "$1-worker ready" worker_ready "$1-worker" || { tail -5 "$LOGS/$1-worker.log" >&2; exit 1; }
  USERS_FILE=$RUN/$1-users.txt
  python3 "$top/bench/users.py" "http://127.0.0.1:$INGEST_PORT" "$NUSERS" "$USERS_FILE" "$1" ||
    { say "could not create the users"; exit 1; }
}

phase_ingest() {
  say "ingest: $NUSERS users, then wrk 64 and 256 connections (${INGEST_SECS}s each)"
  setup_users ingest b_ingest bench-ingest
  # Ingest alone: the worker would only compete for the two cores (the writes pile up in the
  # log, which drops the oldest beyond 5 MiB a partition: nobody reads them).
  stop_pid "$WORKER_PID"
  local c url="http://127.0.0.1:$INGEST_PORT" t0 t1 b0 b1 req
  for c in 64 256; do
    run_wrk "$url" "$c" 3 /dev/null
    cpu_snap "$RUN/cpu-a"
    t0=$(proc_ticks "$INGEST_PID"); b0=$(proc_ticks "$BROKER_PID")
    [ "$c" = 256 ] && perf_start ingest "$INGEST_PID"
    run_wrk "$url" "$c" "$INGEST_SECS" "$RUN/ingest-$c.json"
    t1=$(proc_ticks "$INGEST_PID"); b1=$(proc_ticks "$BROKER_PID")
    cpu_snap "$RUN/cpu-b"
    if [ "$c" = 256 ]; then
      perf_finish ingest
      # A short extra run with call chains (not measured: the unwinding costs the process).
      run_wrk "$url" "$c" 5 /dev/null &
      local wpid=$!
      sleep 1
      perf_callers ingest 3 "$INGEST_PID"
      wait "$wpid" || true
      perf_callers_report ingest
    fi
    req=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"])' "$RUN/ingest-$c.json")
    python3 - "$RUN/ingest-$c.json" "$((t1 - t0))" "$((b1 - b0))" "$HZ" "$req" \
      "$(proc_kb "$INGEST_PID" VmRSS)" "$(proc_kb "$INGEST_PID" VmHWM)" "$c" \
      "$(cpu_diff "$RUN/cpu-a" "$RUN/cpu-b")" >"$RES/ingest-$c.json" <<'EOF'
import json, sys
w = json.load(open(sys.argv[1]))
ticks, bticks, hz, req = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), max(int(sys.argv[5]), 1)
w.update({"connections": int(sys.argv[8]),
          "per_s": round(w["requests"] / (w["duration_us"] / 1e6), 0),
          "ingest_cpu_s": ticks / hz, "ingest_cpu_us_per_request": round(ticks / hz / req * 1e6, 1),
          "devbroker_cpu_us_per_request": round(bticks / hz / req * 1e6, 1),
          "ingest_rss_kb": int(sys.argv[6] or 0), "ingest_peak_rss_kb": int(sys.argv[7] or 0),
          "cpu": json.loads(sys.argv[9])})
json.dump(w, sys.stdout)
EOF
  done
  ingest_paired "http://127.0.0.1:$INGEST_PORT"
  stop_pid "$INGEST_PID"
  stop_pid "$BROKER_PID" 5 KILL
  psql_p postgres -c "DROP DATABASE b_ingest"
}

# ingest_paired URL: ingest at 256 connections between runs of the bare libevent server, for
# the ratio target. The machine's speed moves by up to a third within minutes (bench/README.md,
# "Paired runs"), more than the ratio's margin, so each ingest run is compared with the
# ceiling measured just before and just after it: ceiling, ingest, ceiling, ingest, ceiling,
# ingest, ceiling, with the same requests.
ingest_paired() {
  local i port chttp
  say "ingest: paired with the bare libevent server (3 x ${PAIR_SECS}s, 4 x ${CEIL_SECS}s)"
  rm -f "$RUN/ceiling_http.port"
  start_bg ceiling-http-paired "$TOOLS/ceiling_http" "$RUN/ceiling_http.port"
  chttp=$LAST_PID
  wait_for 10 "ceiling_http" test -s "$RUN/ceiling_http.port" || exit 1
  port=$(cat "$RUN/ceiling_http.port")
  run_wrk "http://127.0.0.1:$port" 256 2 /dev/null
  for i in 1 2 3; do
    run_wrk "http://127.0.0.1:$port" 256 "$CEIL_SECS" "$RES/paired-libevent-256.jsonl"
    run_wrk "$1" 256 "$PAIR_SECS" "$RES/paired-ingest-256.jsonl"
  done
  run_wrk "http://127.0.0.1:$port" 256 "$CEIL_SECS" "$RES/paired-libevent-256.jsonl"
  stop_pid "$chttp"
}

# ---- 3. apply ------------------------------------------------------------------------------

# pgss_top DB OUT: DB's top statements by total time since its pg_stat_statements_reset(), as
# a JSON array in OUT.
pgss_top() {
  psql_p "$1" -c "SELECT coalesce(json_agg(t), '[]') FROM (
      SELECT calls, round(total_exec_time::numeric, 1) AS total_ms, rows,
             round((total_exec_time / greatest(calls, 1))::numeric, 3) AS mean_ms,
             regexp_replace(left(query, 160), '\s+', ' ', 'g') AS query
      FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '$1')
      ORDER BY total_exec_time DESC LIMIT 8) t" >"$2" 2>/dev/null || echo '[]' >"$2"
}

APPLY_BOOT='' APPLY_BROKER_PID='' BACKLOG_N=0
# apply_run NAME WORKERS: a fresh database, WORKERS workers of one group on the backlog,
# progress sampled from consumer_offsets until all BACKLOG_N events are applied.
#
# The devbroker's group coordinator (librdkafka's mock cluster) has a race a real broker does
# not: the leader's SyncGroup carries every member's assignment, so if it arrives before a
# follower's, the group is "synced" and the follower's own SyncGroup is answered "rebalance in
# progress"; it joins again and the group only settles after about two session timeouts
# (~20 s), while the leader applies its half alone. A run whose workers do not all hold
# partitions 10 s after they start (the coordinator waits 3 s for the first members) is such
# a run: it is stopped and made again with a fresh database and group, at most 3 times, and
# the report says how many it took.
apply_run() {
  local name=$1 n=$2 attempt rc
  for attempt in 1 2 3; do
    rc=0
    apply_attempt "$name" "$n" "$attempt" || rc=$?
    [ $rc = 2 ] || return $rc
    say "apply $name: the workers' group did not form within 10 s (the devbroker's SyncGroup race); again"
  done
  FAILED+=("apply $name: the group did not form in 3 attempts")
}

# all_assigned NAME N: every worker of the run holds partitions
all_assigned() {
  local i
  for i in $(seq 1 "$2"); do
    grep -q '"msg":"diary.events \[[0-9]*\]: assigned' "$LOGS/$1-w$i.log" 2>/dev/null || return 1
  done
}

apply_attempt() {
  local name=$1 n=$2 attempt=$3 db=b_$1 group=bench-$1 i pids=() start s deadline profiled='' formed=''
  [ "$attempt" -gt 1 ] && group=bench-$1-$attempt
  for i in $(seq 1 "$n"); do
    [ -f "$LOGS/$name-w$i.log" ] && mv "$LOGS/$name-w$i.log" "$LOGS/$name-w$i.attempt$((attempt - 1)).log"
  done
  new_db "$db"
  rm -f "$RUN/$name.offsets"
  psql_p "$db" -c "SELECT pg_stat_statements_reset()" >/dev/null
  # Progress: consumer_offsets of the group on the primary, sampled every 50 ms.
  start_bg "$name-offsets" "$TOOLS/probe" offsets "$RUN/$name.offsets" 50 "$group" diary.events \
    "$(purl "$db")" "$(rurl "$db")"
  local probe=$LAST_PID
  sleep 0.3
  cpu_snap "$RUN/cpu-a"
  start=$(now_ms)
  for i in $(seq 1 "$n"); do
    start_worker "$name-w$i" "$group" "$db"
    pids+=("$LAST_PID")
  done
  deadline=$((SECONDS + 240))
  local form_deadline=$((SECONDS + 10))
  while :; do
    if [ -z "$formed" ]; then
      if all_assigned "$name" "$n"; then
        formed=1
      elif [ $SECONDS -ge $form_deadline ]; then
        for i in "${pids[@]}"; do stop_pid "$i" 10; done
        stop_pid "$probe"
        [ -n "$profiled" ] && perf_finish apply
        return 2
      fi
    fi
    # The probe writes each partition's next offset when it moves: their sum is the progress.
    s=$(awk '$2 == "p" {v[$3] = $4} END {for (k in v) t += v[k]; print t + 0}' "$RUN/$name.offsets")
    [ "$s" -ge "$BACKLOG_N" ] && break
    if [ "$name" = apply1 ] && [ -z "$profiled" ] && [ "$s" -gt 0 ]; then
      # A flat profile of the worker, the database backends and the broker, from the first
      # applied batch (the group join before it is idle time).
      profiled=1
      # shellcheck disable=SC2046
      perf_start apply "${pids[0]}" $(pgrep -P "$(postmaster_pid primary)") "$BROKER_PID"
    fi
    if [ $SECONDS -ge $deadline ]; then say "apply $name: gave up after 240 s at $s of $BACKLOG_N"; break; fi
    local any=0
    for i in "${pids[@]}"; do alive "$i" && any=1; done
    if [ $any = 0 ]; then say "apply $name: the workers exited at $s of $BACKLOG_N"; break; fi
    # The rates come from the probe's samples, not from this loop: once the group has formed
    # and the profile started, looking once a second keeps this shell's own CPU (awk, ps)
    # off the two cores the apply measures.
    if [ -n "$formed" ] && { [ "$name" != apply1 ] || [ -n "$profiled" ]; }; then sleep 1; else sleep 0.3; fi
  done
  cpu_snap "$RUN/cpu-b"
  [ -n "$profiled" ] && perf_finish apply
  for i in $(seq 1 "$n"); do
    curl -sf "http://127.0.0.1:$(worker_port "$name-w$i")/metrics" >"$RUN/$name-w$i.metrics" || true
  done
  pgss_top "$db" "$RUN/$name.pgss.json"
  local counts
  counts=$(psql_p "$db" -c "SELECT json_build_object('processed', (SELECT count(*) FROM processed_events),
      'applied', (SELECT count(*) FROM processed_events WHERE status = 'applied'),
      'daily_meals', (SELECT count(*) FROM daily_meals), 'users', (SELECT count(*) FROM users),
      'outbox_left', (SELECT count(*) FROM outbox))")
  for i in "${pids[@]}"; do stop_pid "$i"; done
  stop_pid "$probe"
  ATTEMPT=$attempt python3 - "$RUN/$name.offsets" "$start" "$BACKLOG_N" "$n" "$RUN/$name.pgss.json" "$counts" \
    "$(cpu_diff "$RUN/cpu-a" "$RUN/cpu-b")" "$RUN/$name"-w*.metrics >"$RES/apply-$name.json" <<'EOF'
import json, os, re, sys
offsets_path, start_ms = sys.argv[1], int(sys.argv[2])
n, workers = int(sys.argv[3]), int(sys.argv[4])
# The timeline: (ms since the workers started, sum of the next offsets) at each move.
tl, cur = [], {}
for line in open(offsets_path):
    a = line.split()
    if len(a) == 4 and a[1] == "p":
        cur[a[2]] = int(a[3])
        tl.append((int(a[0]) // 1000 - start_ms, sum(cur.values())))
def first(frac):
    for t, s in tl:
        if s >= frac * n:
            return t
    return None
t0, t10, t90, t100 = first(1e-9), first(0.1), first(0.9), first(1.0)
done = tl[-1][1] if tl else 0
out = {"workers": workers, "events": n, "applied_offsets": done, "complete": done >= n,
       "attempts": int(os.environ["ATTEMPT"]),
       "seconds_to_first": t0 / 1000 if t0 is not None else None,
       "seconds_total": t100 / 1000 if t100 else None,
       "per_s_overall": round(n / (t100 / 1000), 0) if t100 else None,
       "per_s_steady": round(0.8 * n / ((t90 - t10) / 1000), 0) if t10 is not None and t90 and t90 > t10 else None,
       "timeline_ms_offsets": tl[:: max(1, len(tl) // 60)],
       "db": json.loads(sys.argv[6]), "pg_stat_statements": json.load(open(sys.argv[5])),
       "cpu": json.loads(sys.argv[7])}
buckets, metrics = {}, {}
for path in sys.argv[8:]:
    for line in open(path):
        m = re.match(r'diary_worker_batch_size_bucket\{le="([^"]+)"\} (\d+)', line)
        if m:
            buckets[m.group(1)] = buckets.get(m.group(1), 0) + int(m.group(2))
            continue
        m = re.match(r'(diary_worker_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$', line)
        if m and "lag{" not in m.group(1) and "_bucket" not in m.group(1):
            metrics[m.group(1)] = metrics.get(m.group(1), 0) + float(m.group(2))
out["batch_size_cumulative"] = buckets
out["batches"] = metrics.get("diary_worker_batches_total")
out["mean_batch"] = round(metrics.get("diary_worker_batch_size_sum", 0) / metrics["diary_worker_batch_size_count"], 1) if metrics.get("diary_worker_batch_size_count") else None
out["worker_metrics"] = {k: v for k, v in metrics.items() if any(s in k for s in (
    "events_total", "batches_total", "batch_seconds_total", "outbox_seconds_total",
    "failed_batches", "stale_batches", "apply_errors", "outbox_published"))}
json.dump(out, sys.stdout)
EOF
}

phase_apply() {
  local i
  start_broker apply
  APPLY_BOOT=$BOOT APPLY_BROKER_PID=$BROKER_PID
  say "apply: producing the backlog ($APPLY_USERS users x (2 + $APPLY_ENTRIES) events)"
  "$TOOLS/kproduce" backlog "$BOOT" diary.events "$APPLY_USERS" "$APPLY_ENTRIES" >"$RES/backlog.json" ||
    { say "the backlog did not fit in the devbroker (see $RES/backlog.json)"; FAILED+=("backlog dropped"); }
  BACKLOG_N=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["events"])' "$RES/backlog.json")
  # One worker three times (the first profiled), so that the report shows the spread of the
  # figure the targets use; two workers once.
  # The raw upsert ceiling before and after each, for the ratio target (as ingest_paired).
  say "apply: $BACKLOG_N events, one worker (3 runs, each between runs of the raw upsert)"
  upsert_db b_paired
  upsert_rep b_paired "$RES/paired-upsert.jsonl"
  for i in 1 1b 1c; do
    apply_run "apply$i" 1
    upsert_rep b_paired "$RES/paired-upsert.jsonl"
  done
  psql_p postgres -c "DROP DATABASE b_paired"
  say "apply: two workers"
  apply_run apply2 2
  apply_callers
}

# apply_callers: an extra, unmeasured apply of the backlog by one worker (fresh database),
# for call chains of the worker and of its PostgreSQL backend while they apply.
apply_callers() {
  local db=b_prof group=bench-prof pid backend i
  say "apply: call chains (an unmeasured extra run)"
  new_db "$db"
  start_worker prof-w1 "$group" "$db"
  pid=$LAST_PID
  for i in $(seq 1 100); do
    [ "$(psql_p "$db" -c "SELECT coalesce(sum(next_offset), 0) > 0 FROM consumer_offsets" 2>/dev/null)" = t ] && break
    sleep 0.3
  done
  backend=$(psql_p "$db" -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'prof-w1' LIMIT 1")
  [ -n "$backend" ] && perf_callers apply-backend 4 "$backend" &
  perf_callers apply-worker 4 "$pid"
  wait
  stop_pid "$pid"
  perf_callers_report apply-backend
  perf_callers_report apply-worker
  psql_p postgres -c "DROP DATABASE $db" || true
}

# ---- 4. end to end -------------------------------------------------------------------------

phase_e2e() {
  local r
  for r in $E2E_RATES; do
    case $r in *:*) e2e_run "${r%%:*}" "${r#*:}" ;; *) e2e_run "$r" "$E2E_SECS" ;; esac
  done
}

# e2e_run RATE SECONDS
e2e_run() {
  local rate=$1 secs=$2 name=e2e-$1 db=b_e2e_$1 group=bench-e2e
  say "e2e: $rate writes/s for ${secs}s (setting up $NUSERS users)"
  # Ingest and the load generator run at nice $E2E_NICE here. On two shared cores, at an
  # offered load above what the pipeline sustains, an ingest with the CPU to itself
  # acknowledges writes faster than the worker and PostgreSQL apply them; the log's backlog
  # then outgrows what the devbroker keeps (5 MiB a partition) and the worker stops rather
  # than skip events. Deployed, ingest and the workers have machines of their own; here the
  # apply side gets the larger share so that it keeps up, and the excess waits in the
  # generator's queue (where the latencies, counted from each write's scheduled time, include
  # it). Nice 5 was not always enough: a run whose ingest got faster outgrew the devbroker at
  # 20,000/s offered (bench/README.md).
  setup_users "$name" "$db" "$group" "$E2E_NICE" "$E2E_MAX_LAG"
  start_bg "$name-offsets" "$TOOLS/probe" offsets "$RUN/$name.offsets" 5 "$group" diary.events \
    "$(purl "$db")" "$(rurl "$db")"
  local poff=$LAST_PID
  start_bg "$name-changes" "$TOOLS/probe" changes "$RUN/$name.changes" "$BOOT" diary.changes
  local pchg=$LAST_PID
  wait_for 30 "the change probe" grep -q "probe: reading" "$LOGS/$name-changes.log" || exit 1
  sleep 1
  psql_p "$db" -c "SELECT pg_stat_statements_reset()" >/dev/null
  cpu_snap "$RUN/cpu-a"
  nice -n "$E2E_NICE" "$TOOLS/loadgen" "$INGEST_PORT" "$rate" "$secs" 256 "$USERS_FILE" "$RUN/$name.requests" \
    >"$RUN/$name.loadgen.json" 2>>"$LOGS/$name-loadgen.log"
  cpu_snap "$RUN/cpu-b"
  pgss_top "$db" "$RUN/$name.pgss.json"
  # Drain: until the replica has every event, or nothing moved for 5 s (a worker that
  # stopped), at most 45 s.
  local setup_events=$((2 * NUSERS)) acked last=-1 still=0 deadline=$((SECONDS + 45)) c
  acked=$(awk '$5 == 202' "$RUN/$name.requests" | wc -l)
  while [ $SECONDS -lt $deadline ]; do
    c=$(psql_r "$db" -c "SELECT count(*) FROM processed_events" 2>/dev/null || echo 0)
    [ "$c" -ge $((setup_events + acked)) ] &&
      [ "$(psql_p "$db" -c "SELECT count(*) FROM outbox")" = 0 ] && break
    if [ "$c" = "$last" ]; then still=$((still + 1)); else still=0; last=$c; fi
    [ $still -ge 10 ] && break
    sleep 0.5
  done
  sleep 1
  stop_pid "$poff"; stop_pid "$pchg"
  # The check: every acknowledged write applied exactly once, on the primary and the replica.
  awk '$5 == 202 && $8 != "-" {print $8}' "$RUN/$name.requests" >"$RUN/$name.acked"
  local q="CREATE TEMP TABLE acked (event_id uuid);
\\copy acked FROM '$RUN/$name.acked'
SELECT json_build_object(
  'acked', (SELECT count(*) FROM acked),
  'applied', (SELECT count(*) FROM acked JOIN processed_events p USING (event_id) WHERE p.status = 'applied'),
  'rejected', (SELECT count(*) FROM acked JOIN processed_events p USING (event_id) WHERE p.status <> 'applied'),
  'missing', (SELECT count(*) FROM acked a WHERE NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.event_id = a.event_id)),
  'acked_without_row', (SELECT count(*) FROM acked JOIN processed_events p USING (event_id)
                        WHERE NOT EXISTS (SELECT 1 FROM daily_meals d WHERE d.id = p.resource_id)),
  'rows', (SELECT count(*) FROM daily_meals),
  'rows_not_version_1', (SELECT count(*) FROM daily_meals WHERE version <> 1),
  'outbox_left', (SELECT count(*) FROM outbox));"
  local primary replica
  primary=$(printf '%s\n' "$q" | psql_p "$db" -f - 2>>"$LOGS/$name-check.log" || echo '{}')
  replica=$(psql_r "$db" -c "SELECT count(*) FROM daily_meals" 2>/dev/null || echo -1)
  python3 -c 'import json,sys; d=json.loads(sys.argv[1] or "{}"); d["replica_rows"]=int(sys.argv[2]); print(json.dumps(d))' \
    "$primary" "$replica" >"$RUN/$name.check.json"
  local worker_alive=true
  alive "$WORKER_PID" || worker_alive=false
  curl -sf "http://127.0.0.1:$(worker_port "$name-worker")/metrics" >"$RUN/$name-worker.metrics" || : >"$RUN/$name-worker.metrics"
  curl -sf "http://127.0.0.1:$INGEST_PORT/metrics" >"$RUN/$name-ingest.metrics" || : >"$RUN/$name-ingest.metrics"
  python3 "$top/bench/e2e.py" "$RUN/$name.requests" "$RUN/$name.offsets" "$RUN/$name.changes" \
    "$RUN/$name.loadgen.json" "$RUN/$name.check.json" "$RES/$name.series" >"$RUN/$name.result.json"
  python3 - "$RUN/$name.result.json" "$(cpu_diff "$RUN/cpu-a" "$RUN/cpu-b")" "$worker_alive" \
    "$(grep -c 'lost events' "$LOGS/$name-worker.log" || true)" "$RUN/$name-worker.metrics" \
    "$RUN/$name.pgss.json" "$RUN/$name-ingest.metrics" >"$RES/$name.json" <<'EOF'
import json, re, sys
r = json.load(open(sys.argv[1]))
r["pg_stat_statements"] = json.load(open(sys.argv[6]))
r["cpu"] = json.loads(sys.argv[2])
r["worker_alive_at_end"] = sys.argv[3] == "true"
r["worker_stopped_for_lost_events"] = int(sys.argv[4] or 0) > 0
m = {}
for line in open(sys.argv[5]):
    x = re.match(r'(diary_worker_(?:batches_total|batch_size_sum|batch_size_count|batch_seconds_total|outbox_seconds_total)) ([0-9.e+-]+)$', line)
    if x:
        m[x.group(1)] = float(x.group(2))
if m.get("diary_worker_batch_size_count"):
    m["mean_batch"] = round(m["diary_worker_batch_size_sum"] / m["diary_worker_batch_size_count"], 1)
r["worker_metrics"] = m
# Writes ingest refused (503 apply-behind): never acknowledged, not in the check.
r["ingest_shed"] = next((int(float(l.split()[1])) for l in open(sys.argv[7])
                         if l.startswith("diary_ingest_shed_total ")), None)
json.dump(r, sys.stdout)
EOF
  if ! python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["exactly_once"] else 1)' "$RES/$name.json"; then
    FAILED+=("e2e $rate/s: acknowledged writes lost or doubled")
  fi
  stop_pid "$INGEST_PID"; stop_pid "$WORKER_PID"; stop_pid "$BROKER_PID" 5 KILL
  psql_p postgres -c "DROP DATABASE $db" || true
  rm -f "$RUN/$name.requests" "$RUN/$name.acked"
}

# ---- 5. replay -----------------------------------------------------------------------------

phase_replay() {
  [ -n "$APPLY_BOOT" ] || { say "replay needs the apply phase's log"; return 0; }
  local k
  for k in 1 2 3; do
    say "replay $k of 3: the backlog's $BACKLOG_N events into an empty database"
    replay_run "$k"
  done
  stop_pid "$APPLY_BROKER_PID" 5 KILL
}

# replay_run K: diaryctl replay of the backlog into a fresh database; $RES/replay-K.json
replay_run() {
  local k=$1 db=b_replay$1 t0 t1 same
  new_db "$db"
  t0=$(now_ms)
  KAFKA_BOOTSTRAP=$APPLY_BOOT timeout 300 "$BIN_DIR/diaryctl" replay --url "$(purl "$db")" \
    --group "bench-replay$k" --from-beginning --json >"$RUN/replay$k.out" 2>>"$LOGS/replay.log" ||
    FAILED+=("replay $k exited non-zero")
  t1=$(now_ms)
  same=$(psql_p "$db" -c "SELECT count(*) FROM daily_meals")-$(psql_p b_apply1 -c "SELECT count(*) FROM daily_meals" 2>/dev/null || echo '?')
  python3 - "$RUN/replay$k.out" "$((t1 - t0))" "$BACKLOG_N" "$same" >"$RES/replay-$k.json" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
s = [l for l in lines if l.get("level") == "summary"]
s = s[-1] if s else {}
ms, n = int(sys.argv[2]), int(sys.argv[3])
a, b = sys.argv[4].split("-", 1)
json.dump({"events": n, "done": s.get("done"), "applied": s.get("applied"),
           "diaryctl_seconds": s.get("seconds"), "diaryctl_per_s": s.get("events_per_s"),
           "wall_seconds": ms / 1000, "per_s_wall": round(n / (ms / 1000), 0),
           "daily_meals_replay": a, "daily_meals_apply1": b, "same_rows": a == b}, sys.stdout)
EOF
}

# ---- the run -------------------------------------------------------------------------------

rm -rf "$RUN"
mkdir -p "$RUN" "$RES" "$LOGS"
chmod 755 "$RUN"
install_tools
build_tools
for b in diary-ingest diary-worker diaryctl diary-devbroker; do
  [ -x "$BIN_DIR/$b" ] || { say "$BIN_DIR/$b is missing: run make first"; exit 1; }
done
say "databases (primary + replica) on ports $PG_PRIMARY_PORT, $PG_REPLICA_PORT"
start_databases
cpu_snap "$RUN/cpu-start"
python3 - >"$RES/machine.json" <<'EOF'
import json, os, platform, subprocess, time
cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
mem = [l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")]
def git(*a):
    try:
        return subprocess.run(["git", *a], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return ""
print(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "cpus": os.cpu_count(), "cpu_model": cpu[0] if cpu else "?",
                  "mem_gib": round(int(mem[0]) / 1048576, 1) if mem else None,
                  "kernel": platform.release(), "debian": open("/etc/debian_version").read().strip(),
                  "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
                  "commit": git("rev-parse", "--short", "HEAD"),
                  "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no"))}))
EOF

for phase in ceilings ingest apply e2e replay; do
  has_phase "$phase" || continue
  t=$SECONDS
  "phase_$phase"
  echo "{\"phase\":\"$phase\",\"seconds\":$((SECONDS - t))}" >>"$RES/phases.jsonl"
done

cpu_snap "$RUN/cpu-end"
cpu_diff "$RUN/cpu-start" "$RUN/cpu-end" >"$RES/cpu-total.json"
echo "{\"phase\":\"total\",\"seconds\":$((SECONDS - BENCH_START))}" >>"$RES/phases.jsonl"
printf '%s\n' "${FAILED[@]}" | grep -v '^$' >"$RES/failed.txt" || true
say "report"
python3 "$top/bench/report.py" "$RES" "$RESULTS_DIR"
if command -v gnuplot >/dev/null && ls "$RES"/e2e-*.series >/dev/null 2>&1; then
  gnuplot "$RES/latency.gp" 2>>"$LOGS/gnuplot.log" || say "gnuplot failed (see $LOGS/gnuplot.log)"
fi
say "done in $((SECONDS - BENCH_START)) s: $RESULTS_DIR/results.md"
if [ ${#FAILED[@]} -gt 0 ]; then
  say "FAILED: ${FAILED[*]}"
  exit 1
fi
