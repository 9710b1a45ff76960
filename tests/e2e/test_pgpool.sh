#!/usr/bin/env bash
# End-to-end test of ingest/pgpool: starts a throwaway PostgreSQL 15 cluster (trust auth on
# 127.0.0.1, a free port, data under a mktemp folder), runs the cmocka program
# build/san/tests/test_pgpool against it and stops the cluster again, whatever happens.
# Prints "ok - ..." / "not ok - ..." per test and "# pgpool: N passed, M failed"; exits
# non-zero when anything failed.
#   BUILD=build/san (default)  PGBIN=/usr/lib/postgresql/15/bin (default)
#   PGPOOL_BENCH=1             also time prepared against unnamed statements
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
. scripts/lib.sh

build=${BUILD:-build/san}
bin=$top/$build/tests/test_pgpool
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
passed=0 failed=0

ok() { echo "ok - $*"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $*"; failed=$((failed + 1)); }
finish() {
  echo "# pgpool: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit $?
}

# PostgreSQL refuses to run as root: run its tools as the postgres user then.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ ! -x "$bin" ]; then
  make --no-print-directory SAN=address,undefined "$build/tests/test_pgpool" >/dev/null ||
    { not_ok "build $build/tests/test_pgpool"; finish; }
fi

tmp=$(mktemp -d /tmp/pgpool-e2e.XXXXXX)
data=$tmp/data
cleanup() {
  if [ -f "$data/postmaster.pid" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[ "$(id -u)" -eq 0 ] && chown postgres: "$tmp"

port=$(free_port)
if as_pg "$PGBIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale \
  >"$tmp/initdb.log" 2>&1; then
  ok "initdb"
else
  cat "$tmp/initdb.log"; not_ok "initdb"; finish
fi
opts="-c listen_addresses=127.0.0.1 -p $port -k $tmp -c fsync=off -c synchronous_commit=off"
if as_pg "$PGBIN/pg_ctl" -D "$data" -l "$tmp/postgres.log" -o "$opts" -w -t 30 start \
  >/dev/null 2>&1; then
  ok "postgres started on 127.0.0.1:$port"
else
  cat "$tmp/postgres.log"; not_ok "postgres start"; finish
fi

export PGPOOL_TEST_URL="postgresql://postgres@127.0.0.1:$port/postgres"
# Restarting keeps the port, so the pool can come back to the same URL.
export PGPOOL_TEST_RESTART="$(printf '%q ' runuser -u postgres -- "$PGBIN/pg_ctl" -D "$data" \
  -l "$tmp/postgres.log" -o "$opts" -m fast -w -t 30 restart) >/dev/null 2>&1"
[ "$(id -u)" -eq 0 ] || PGPOOL_TEST_RESTART="${PGPOOL_TEST_RESTART#runuser -u postgres -- }"

# cmocka's TAP output: "ok N - name", "not ok N - name", "not ok N # SKIP name" (cmocka 1.1).
out=$tmp/test.out
keep=${PGPOOL_KEEP_OUTPUT:-}
CMOCKA_MESSAGE_OUTPUT=TAP timeout --kill-after=10 600 "$bin" >"$out" 2>"$tmp/test.err"
rc=$?
while IFS= read -r line; do
  case $line in
    *"# SKIP"*) echo "# skipped: ${line##*# SKIP }" ;;
    "not ok "*) not_ok "pgpool ${line#not ok * - }" ;;
    "ok "*) ok "pgpool ${line#ok * - }" ;;
    "#"*) echo "$line" ;;
  esac
done <"$out"
if [ $rc -ne 0 ]; then
  not_ok "test_pgpool exited with status $rc"
  echo "# last lines of its output:"
  tail -40 "$tmp/test.err" | sed 's/^/#   /'
fi
[ -n "$keep" ] && cp "$out" "$tmp/test.err" "$keep"/
finish
