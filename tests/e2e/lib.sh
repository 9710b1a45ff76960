# Helpers for the end-to-end tests: TAP-like "ok - " / "not ok - " lines and a closing count.
# Source it after setting top. Tests talk to $DIARY_URL.
. "$top/scripts/lib.sh"

PASS=0
FAIL=0
# A test stopped by a signal still runs its EXIT trap (which stops its stack).
trap 'exit 143' TERM
trap 'exit 130' INT
ok() { PASS=$((PASS + 1)); echo "ok - $*"; }
notok() { FAIL=$((FAIL + 1)); echo "not ok - $*"; }
bail() { notok "$*"; echo "# bailing out"; exit 1; }

# check DESCRIPTION COMMAND...: ok when COMMAND succeeds.
check() {
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then ok "$what"; else notok "$what"; fi
}

# http METHOD PATH [BODY] [curl args...]: sets STATUS, HEADERS and BODY.
http() {
  local method=$1 path=$2; shift 2
  local data=()
  if [ $# -gt 0 ] && [ "${1:0:1}" != "-" ]; then data=(--data-binary "$1" -H 'Content-Type: application/json'); shift; fi
  local hf; hf=$(mktemp)
  BODY=$(curl -s -X "$method" -D "$hf" "${data[@]}" "$@" --max-time 30 "$DIARY_URL$path")
  HEADERS=$(tr -d '\r' <"$hf")
  STATUS=$(head -1 "$hf" | awk '{print $2}')
  rm -f "$hf"
}

expect_status() {
  if [ "$STATUS" = "$2" ]; then ok "$1 ($2)"; else notok "$1: status $STATUS, want $2: $(head -c 400 <<<"$BODY")"; fi
}

# expect_json DESCRIPTION JQ_EXPR EXPECTED_JSON
expect_json() {
  local got; got=$(jq -c "$2" <<<"$BODY" 2>/dev/null)
  if [ "$got" = "$(jq -c -n "$3")" ]; then ok "$1"; else notok "$1: $2 = $got, want $3: $(head -c 400 <<<"$BODY")"; fi
}

# The last answer is RFC 9457 problem+json with type, title and a status equal to the HTTP one.
expect_problem() {
  if grep -qi '^content-type: application/problem+json' <<<"$HEADERS" &&
     jq -e --argjson s "$STATUS" '(.type|type=="string") and (.title|type=="string") and .status==$s' <<<"$BODY" >/dev/null 2>&1; then
    ok "$1 is problem+json"
  else
    notok "$1 is not problem+json: $(head -c 300 <<<"$HEADERS$BODY")"
  fi
}

# The pids of every process the stack under RUN_DIR runs (from its pid files).
stack_pids() { cat "$1"/pids/*.pid 2>/dev/null | tr '\n' ' '; }

# none_alive DIR PID...: none of the pids lives and no process names DIR (postgres -D, the
# devbroker's --state).
none_alive() {
  local dir=$1 p; shift
  # A zombie (state Z) has exited; only its parent has not reaped it yet.
  for p in "$@"; do
    case $(ps -o stat= -p "$p" 2>/dev/null) in "" | Z*) ;; *) return 1 ;; esac
  done
  ! pgrep -r R,S,D,T -f -- "$dir" >/dev/null
}

# Fails the test when any log under dir has a sanitizer report.
sanitizer_check() {
  if grep -l -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$1"/*.log 2>/dev/null; then
    notok "sanitizer reports in $1"
    grep -h -A 30 -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$1"/*.log | head -60
    echo "# $TEST_NAME: $PASS passed, $FAIL failed"
    exit 1
  fi
}

TEST_NAME=e2e
finish() {
  TEST_NAME=$1
  echo "# $1: $PASS passed, $FAIL failed"
  [ "$FAIL" -eq 0 ]
}

# stack_test_env NAME: a fresh RUN_DIR under /tmp and free loopback ports for a test's own
# stack (scripts/stack.sh reads them), with the cheap argon2id cost tests use.
stack_test_env() {
  RUN_DIR=$(mktemp -d "/tmp/diary-$1.XXXXXX")
  chmod 755 "$RUN_DIR"
  DIARY_HTTP_PORT=$(free_port) PG_PRIMARY_PORT=$(free_port) PG_REPLICA_PORT=$(free_port)
  DIARY_WORKER_PORT=$(free_port)
  # The same code path at minimal cost.
  DIARY_PWHASH_OPSLIMIT=1 DIARY_PWHASH_MEMLIMIT=8192
  export RUN_DIR DIARY_HTTP_PORT PG_PRIMARY_PORT PG_REPLICA_PORT DIARY_WORKER_PORT
  export DIARY_PWHASH_OPSLIMIT DIARY_PWHASH_MEMLIMIT
}

# Stops the test's stack, fails on sanitizer reports in its logs, removes RUN_DIR.
stack_test_cleanup() {
  "$top/scripts/stack.sh" down >/dev/null 2>&1
  sanitizer_check "$RUN_DIR/logs"
  rm -rf "$RUN_DIR"
}
