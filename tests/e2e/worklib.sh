# Shared setup of the worker tests (test_worker*.sh): a scratch folder, a throwaway PostgreSQL
# 15 cluster with the migrations, the development broker, and an exit trap that stops them all.
# Source it after setting top; it sources lib.sh, whose ok / notok / check / finish / wait_for /
# free_port the tests use. Then, in this order:
#
#   worklib_init NAME TMP_PREFIX     TEST_NAME=NAME, ROOT, BIN_DIR, PGBIN, TMP, the exit trap
#   worklib_require TOOL...          bails unless every tool is on PATH
#   worklib_require_bin BINARY...    bails unless every binary is in BIN_DIR
#   worklib_pg_start                 initdb + start on a free port; exports PGHOST PGPORT ...
#   worklib_pg_db DB...              creates each database (but postgres) and migrates it
#   worklib_broker_start             diary-devbroker with topics/; sets KAFKA
#   worklib_broker_wait              (for another broker) waits for $TMP/broker/bootstrap
#   worklib_check_sanitizers DESC    one check: no sanitizer report in $TMP/worker.*.log
#
# A test that starts workers defines kill_workers (after sourcing): the exit trap calls it first,
# so that no worker outlives the database and the broker it talks to.
#
# Env: BIN_DIR (default build/san/bin; relative to top), PGBIN (default
# /usr/lib/postgresql/15/bin), KEEP_TMP=1 keeps the scratch folder (it is kept anyway when a
# check failed).
. "$top/tests/e2e/lib.sh"

# lib.sh's bail, plus the closing count (as test_clients.sh does).
bail() {
  notok "$*"
  echo "# bailing out"
  echo "# $TEST_NAME: $PASS passed, $FAIL failed"
  exit 1
}

# The default: the test starts no worker.
kill_workers() { :; }

# worklib_init NAME TMP_PREFIX: NAME is the one of the closing count ("# NAME: N passed, M
# failed"); the scratch folder is /tmp/TMP_PREFIX.XXXXXX.
worklib_init() {
  TEST_NAME=$1
  ROOT=$top
  BIN_DIR=${BIN_DIR:-$ROOT/build/san/bin}
  case $BIN_DIR in /*) ;; *) BIN_DIR=$ROOT/$BIN_DIR ;; esac
  PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
  # Background helpers (the broker) the exit trap stops with SIGTERM and reaps.
  PIDS=()
  # PostgreSQL refuses to run as root: run its tools as the postgres user when we are root.
  if [ "$(id -u)" = 0 ]; then AS_PG=(runuser -u postgres --); else AS_PG=(); fi
  # Leak detection is ASan's default on Linux; say so, unless the caller chose otherwise.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
  TMP=$(mktemp -d "/tmp/$2.XXXXXX") || bail "mktemp"
  chmod 755 "$TMP" # the postgres user must reach $TMP/pg
  trap worklib_cleanup EXIT
}

worklib_cleanup() {
  local p
  kill_workers
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  if [ -d "$TMP/pg/data" ]; then
    "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg/data" -m immediate stop >/dev/null 2>&1
  fi
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [ "${KEEP_TMP:-0}" = 1 ] || [ "$FAIL" -gt 0 ]; then
    echo "# scratch folder kept: $TMP"
  else
    rm -rf "$TMP"
  fi
}

worklib_require() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || bail "missing tool: $tool"
  done
}

worklib_require_bin() {
  local bin
  for bin in "$@"; do
    [ -x "$BIN_DIR/$bin" ] || bail "no $BIN_DIR/$bin (make SAN=address,undefined)"
  done
}

# worklib_pg_start: a cluster in $TMP/pg/data listening on 127.0.0.1:PGPORT (a free port; the
# socket in $TMP/pg), trust authentication, no fsync. Exports PGHOST, PGPORT, PGUSER and
# PGDATABASE (postgres) for psql. The exit trap stops it.
worklib_pg_start() {
  PGPORT=$(free_port)
  mkdir -p "$TMP/pg"
  [ "$(id -u)" = 0 ] && chown postgres "$TMP/pg"
  "${AS_PG[@]}" "$PGBIN/initdb" -D "$TMP/pg/data" -A trust -U postgres --no-sync >"$TMP/initdb.log" 2>&1 ||
    bail "initdb failed (see $TMP/initdb.log)"
  "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg/data" -l "$TMP/pg/log" -w -t 20 \
    -o "-p $PGPORT -k $TMP/pg -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null ||
    bail "PostgreSQL did not start (see $TMP/pg/log)"
  export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=postgres
}

# worklib_pg_db DB...: creates each database (postgres exists already) and applies
# schema/migrations/*.sql to it in order; NMIGRATIONS is their number. Bails on any error.
worklib_pg_db() {
  local db f
  NMIGRATIONS=$(ls "$ROOT"/schema/migrations/*.sql | wc -l)
  for db in "$@"; do
    if [ "$db" != postgres ]; then
      psql -q -d postgres -c "CREATE DATABASE $db" || bail "createdb $db"
    fi
    for f in "$ROOT"/schema/migrations/*.sql; do
      psql -q -v ON_ERROR_STOP=1 -d "$db" -f "$f" >>"$TMP/migrate.log" 2>&1 ||
        bail "migration $(basename "$f") on $db failed (see $TMP/migrate.log)"
    done
  done
}

# worklib_broker_start: diary-devbroker with the topics of topics/, its state in $TMP/broker;
# waits for it (worklib_broker_wait). The exit trap stops it.
worklib_broker_start() {
  mkdir -p "$TMP/broker"
  "$BIN_DIR/diary-devbroker" --topics "$ROOT/topics" --state "$TMP/broker" \
    --bootstrap-file "$TMP/broker/bootstrap" >"$TMP/broker.log" 2>&1 &
  PIDS+=($!)
  worklib_broker_wait
}

# worklib_broker_wait: waits until $TMP/broker/bootstrap has the bootstrap address (whoever
# writes it) and sets KAFKA to it.
worklib_broker_wait() {
  wait_for 15 "the broker's bootstrap file" test -s "$TMP/broker/bootstrap" ||
    bail "broker did not start (see $TMP/broker.log)"
  KAFKA=$(head -1 "$TMP/broker/bootstrap")
}

# worklib_check_sanitizers DESCRIPTION: one check that no worker log ($TMP/worker.*.log) has a
# sanitizer report; a failure names the logs that have one.
worklib_check_sanitizers() {
  local bad
  bad=$(grep -l 'Sanitizer\|runtime error' "$TMP"/worker.*.log 2>/dev/null | tr '\n' ' ')
  if [ -z "$bad" ]; then ok "$1"; else notok "$1: $bad"; fi
}
