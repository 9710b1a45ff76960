#!/usr/bin/env bash
# The local stack: PostgreSQL primary + streaming replica, the devbroker, N workers and the
# ingest node, all on 127.0.0.1, all state under $RUN_DIR (default .run/).
#
#   stack.sh up      start what is not running, return once everything is ready
#   stack.sh run     up, then follow the logs in the foreground; Ctrl-C stops everything
#   stack.sh down    stop every process the stack started
#   stack.sh reset   down, then wipe $RUN_DIR
#   stack.sh status  what runs
#   stack.sh db      only the primary and replica, migrated
#
# Settings (environment): RUN_DIR, BIN_DIR (default build/bin), WORKERS (1), DIARY_HTTP_PORT
# (8080), PG_PRIMARY_PORT (55432), PG_REPLICA_PORT (55433), DIARY_WORKER_PORT (8081: the
# first worker's; the next ones count up), DEVBROKER_CONTROL_PORT (0: any free one),
# DIARY_INGEST_MAX_LAG (4000: what the devbroker keeps, see start_ingest).
# Fast-hash settings for tests go through as usual (DIARY_PWHASH_OPSLIMIT ...).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

RUN_DIR=${RUN_DIR:-$top/.run}
BIN_DIR=${BIN_DIR:-$top/build/bin}
case $BIN_DIR in /*) ;; *) BIN_DIR=$top/$BIN_DIR ;; esac
WORKERS=${WORKERS:-1}
HTTP_PORT=${DIARY_HTTP_PORT:-8080}
PG_PRIMARY_PORT=${PG_PRIMARY_PORT:-55432}
PG_REPLICA_PORT=${PG_REPLICA_PORT:-55433}
WORKER_PORT=${DIARY_WORKER_PORT:-8081}
CONTROL_PORT=${DEVBROKER_CONTROL_PORT:-0}
PGBIN=/usr/lib/postgresql/15/bin
PIDS=$RUN_DIR/pids
LOGS=$RUN_DIR/logs
PGDIR=$RUN_DIR/pg
DB=diary

say() { printf 'stack: %s\n' "$*" >&2; }
as_pg() { runuser -u postgres -- "$@"; }

primary_url() { echo "postgresql://postgres@127.0.0.1:$PG_PRIMARY_PORT/$DB"; }
replica_url() { echo "postgresql://postgres@127.0.0.1:$PG_REPLICA_PORT/$DB"; }

# Settings chosen at first start are kept in $RUN_DIR/ports.env so that a later `up` (or
# `down`) without the same environment still finds the same stack.
load_ports() {
  if [ -f "$RUN_DIR/ports.env" ]; then
    . "$RUN_DIR/ports.env"
  else
    mkdir -p "$RUN_DIR"
    cat >"$RUN_DIR/ports.env" <<EOF
HTTP_PORT=$HTTP_PORT
PG_PRIMARY_PORT=$PG_PRIMARY_PORT
PG_REPLICA_PORT=$PG_REPLICA_PORT
WORKER_PORT=$WORKER_PORT
EOF
  fi
}

prepare_dirs() {
  mkdir -p "$PIDS" "$LOGS" "$RUN_DIR/secrets" "$RUN_DIR/devbroker"
  chmod 755 "$RUN_DIR"
  chmod 700 "$RUN_DIR/secrets"
  if [ ! -f "$RUN_DIR/secrets/token.key" ]; then
    (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$RUN_DIR/secrets/token.key")
  fi
  mkdir -p "$PGDIR"
  chown postgres:postgres "$PGDIR"
  if ! as_pg test -w "$PGDIR"; then
    say "the postgres user cannot reach $PGDIR (a parent folder is closed to it);"
    say "clone the repository under a folder other users can enter, or set RUN_DIR"
    exit 1
  fi
}

pg_running() { [ -f "$PGDIR/$1/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$PGDIR/$1" status >/dev/null 2>&1; }

pg_record_pid() { head -1 "$PGDIR/$1/postmaster.pid" >"$PIDS/pg-$1.pid"; }

start_primary() {
  if pg_running primary; then pg_record_pid primary; return; fi
  if [ ! -f "$PGDIR/primary/PG_VERSION" ]; then
    say "initdb primary"
    as_pg "$PGBIN/initdb" -D "$PGDIR/primary" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$LOGS/initdb.log"
    cat >>"$PGDIR/primary/postgresql.conf" <<EOF
# diary local stack
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGDIR'
wal_level = replica
max_wal_senders = 5
hot_standby = on
max_connections = 200
shared_buffers = 256MB
logging_collector = off
EOF
    echo "host replication postgres 127.0.0.1/32 trust" >>"$PGDIR/primary/pg_hba.conf"
  fi
  as_pg "$PGBIN/pg_ctl" -D "$PGDIR/primary" -l "$PGDIR/primary.log" -o "-p $PG_PRIMARY_PORT" -w -t 60 start >/dev/null
  as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 ||
    as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U postgres -qc "CREATE DATABASE $DB"
  pg_record_pid primary
}

start_replica() {
  if pg_running replica; then pg_record_pid replica; return; fi
  if [ ! -f "$PGDIR/replica/PG_VERSION" ]; then
    say "pg_basebackup replica"
    as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U postgres -D "$PGDIR/replica" -R -X stream -c fast
    echo "hot_standby_feedback = on" >>"$PGDIR/replica/postgresql.auto.conf"
  fi
  as_pg "$PGBIN/pg_ctl" -D "$PGDIR/replica" -l "$PGDIR/replica.log" -o "-p $PG_REPLICA_PORT" -w -t 60 start >/dev/null
  pg_record_pid replica
}

start_devbroker() {
  if pid_alive "$PIDS/devbroker.pid"; then return; fi
  rm -f "$RUN_DIR/devbroker/bootstrap"
  setsid "$BIN_DIR/diary-devbroker" --topics "$top/topics" --state "$RUN_DIR/devbroker" \
    --control "127.0.0.1:$CONTROL_PORT" --bootstrap-file "$RUN_DIR/devbroker/bootstrap" \
    >>"$LOGS/devbroker.log" 2>&1 </dev/null &
  echo $! >"$PIDS/devbroker.pid"
  if ! wait_for 60 "the devbroker" test -s "$RUN_DIR/devbroker/bootstrap"; then
    tail -5 "$LOGS/devbroker.log" >&2
    exit 1
  fi
}

common_env() {
  export KAFKA_BOOTSTRAP
  KAFKA_BOOTSTRAP=$(cat "$RUN_DIR/devbroker/bootstrap")
  export PG_PRIMARY_URL PG_REPLICA_URL
  PG_PRIMARY_URL=$(primary_url)
  PG_REPLICA_URL=$(replica_url)
}

migrate() {
  PG_PRIMARY_URL=${PG_PRIMARY_URL:-$(primary_url)} "$BIN_DIR/diaryctl" migrate --dir "$top/schema/migrations" >>"$LOGS/migrate.log" 2>&1 || {
    tail -5 "$LOGS/migrate.log" >&2
    exit 1
  }
}

start_workers() {
  local i port
  for i in $(seq 1 "$WORKERS"); do
    if pid_alive "$PIDS/worker-$i.pid"; then continue; fi
    port=$((WORKER_PORT + i - 1))
    DIARY_WORKER_PORT=$port DIARY_WORKER_ID=worker-$i setsid "$BIN_DIR/diary-worker" \
      >>"$LOGS/worker-$i.log" 2>&1 </dev/null &
    echo $! >"$PIDS/worker-$i.pid"
    echo "$port" >"$RUN_DIR/worker-$i.port"
  done
  for i in $(seq 1 "$WORKERS"); do
    port=$(cat "$RUN_DIR/worker-$i.port")
    if ! wait_for 60 "worker-$i" curl -sf "http://127.0.0.1:$port/readyz"; then
      tail -5 "$LOGS/worker-$i.log" >&2
      exit 1
    fi
  done
}

# The devbroker keeps 5 MiB a partition and drops the oldest beyond it, read or not: about
# 6,400 of ingest's ~800-byte records. Ingest refuses writes to a partition whose apply is
# further behind than DIARY_INGEST_MAX_LAG (docs/api.md, "Load shedding"), so that no
# acknowledged write is dropped before the worker applies it.
start_ingest() {
  if ! pid_alive "$PIDS/ingest.pid"; then
    DIARY_TOKEN_KEY=$(cat "$RUN_DIR/secrets/token.key") DIARY_HTTP_PORT=$HTTP_PORT \
      DIARY_INGEST_MAX_LAG=${DIARY_INGEST_MAX_LAG:-4000} setsid "$BIN_DIR/diary-ingest" >>"$LOGS/ingest.log" 2>&1 </dev/null &
    echo $! >"$PIDS/ingest.pid"
  fi
  if ! wait_for 60 "diary-ingest" curl -sf "http://127.0.0.1:$HTTP_PORT/readyz"; then
    tail -5 "$LOGS/ingest.log" >&2
    exit 1
  fi
}

write_env() {
  local control=""
  [ -f "$RUN_DIR/devbroker/control.addr" ] && control="http://$(cat "$RUN_DIR/devbroker/control.addr")"
  cat >"$RUN_DIR/stack.env.tmp" <<EOF
# Written by scripts/stack.sh up; source it: . .run/stack.env
DIARY_URL=http://127.0.0.1:$HTTP_PORT
KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP
PG_PRIMARY_URL=$PG_PRIMARY_URL
PG_REPLICA_URL=$PG_REPLICA_URL
DEVBROKER_CONTROL_URL=$control
WORKER_URLS="$(for i in $(seq 1 "$WORKERS"); do printf 'http://127.0.0.1:%s ' "$(cat "$RUN_DIR/worker-$i.port")"; done | sed 's/ $//')"
RUN_DIR=$RUN_DIR
export DIARY_URL KAFKA_BOOTSTRAP PG_PRIMARY_URL PG_REPLICA_URL DEVBROKER_CONTROL_URL WORKER_URLS RUN_DIR
EOF
  mv "$RUN_DIR/stack.env.tmp" "$RUN_DIR/stack.env"
}

up() {
  for b in diary-ingest diary-worker diaryctl diary-devbroker; do
    [ -x "$BIN_DIR/$b" ] || { say "$BIN_DIR/$b is missing: run make first"; exit 1; }
  done
  load_ports
  prepare_dirs
  start_primary
  start_replica
  start_devbroker
  common_env
  migrate
  start_workers
  start_ingest
  write_env
  say "ready: $(grep ^DIARY_URL "$RUN_DIR/stack.env") (environment in $RUN_DIR/stack.env)"
}

# stop_pid FILE SECONDS: SIGTERM, wait, then SIGKILL what is left.
stop_pid() {
  local f=$1 secs=$2 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + secs))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$(basename "$f" .pid) did not stop in ${secs}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

down() {
  [ -d "$RUN_DIR" ] || return 0
  stop_pid "$PIDS/ingest.pid" 30
  for f in "$PIDS"/worker-*.pid; do [ -e "$f" ] && stop_pid "$f" 30; done
  stop_pid "$PIDS/devbroker.pid" 120
  for c in replica primary; do
    if pg_running "$c"; then as_pg "$PGBIN/pg_ctl" -D "$PGDIR/$c" -m fast -w -t 60 stop >/dev/null; fi
    rm -f "$PIDS/pg-$c.pid"
  done
  say "stopped"
}

status() {
  local f
  for f in "$PIDS"/*.pid; do
    [ -e "$f" ] || continue
    if pid_alive "$f"; then echo "$(basename "$f" .pid) running (pid $(cat "$f"))"; else echo "$(basename "$f" .pid) not running"; fi
  done
}

case ${1:-} in
  up) up ;;
  db)
    # Only the databases, migrated: for tests that bring their own processes.
    [ -x "$BIN_DIR/diaryctl" ] || { say "$BIN_DIR/diaryctl is missing: run make first"; exit 1; }
    load_ports; prepare_dirs; start_primary; start_replica
    PG_PRIMARY_URL=$(primary_url) migrate
    say "databases ready: $(primary_url) $(replica_url)"
    ;;
  down) down ;;
  reset) down; rm -rf "$RUN_DIR"; say "wiped $RUN_DIR" ;;
  status) status ;;
  run)
    up
    trap 'echo; down; exit 0' INT TERM
    say "following the logs; Ctrl-C stops the stack"
    tail -n 0 -F "$LOGS"/*.log &
    wait $!
    ;;
  *) echo "usage: $0 up|run|down|reset|status" >&2; exit 2 ;;
esac
