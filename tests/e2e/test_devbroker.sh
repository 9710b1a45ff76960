#!/usr/bin/env bash
# End-to-end test of diary-devbroker: start it on a temporary state folder, produce 1000
# keyed messages with headers through kcat, stop it (SIGTERM saves), start it again and check
# that every topic reads back byte for byte the same (partition, offset, key, value,
# timestamp, headers), plus the control endpoint and the usage errors.
#
#   BIN_DIR=build/san/bin tests/e2e/test_devbroker.sh
#
# Prints "ok - ..." / "not ok - ..." lines and "# devbroker: N passed, M failed"; exits
# non-zero when anything failed. Needs kcat and curl.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR=${BIN_DIR:-build/san/bin}
case "$BIN_DIR" in /*) ;; *) BIN_DIR="$ROOT/$BIN_DIR" ;; esac
BROKER="$BIN_DIR/diary-devbroker"
TOPICS="$ROOT/topics"

# The broker reads these when a flag is absent; the test sets everything by flags.
unset DEVBROKER_TOPICS_DIR DEVBROKER_STATE_DIR DEVBROKER_BROKERS DEVBROKER_CONTROL \
    DEVBROKER_BOOTSTRAP_FILE DEVBROKER_CONTROL_FILE DEVBROKER_DEBUG

passed=0
failed=0
pid=""
work=$(mktemp -d /tmp/test_devbroker.XXXXXX)
state="$work/state"

cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() {
    echo "ok - $*"
    passed=$((passed + 1))
}

not_ok() {
    echo "not ok - $*"
    failed=$((failed + 1))
}

check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}

finish() {
    echo "# devbroker: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}

# Starts the broker in the background with its log in $work/log.N; waits for the
# bootstrap file, the readiness signal.
run=0
start_broker() {
    run=$((run + 1))
    "$BROKER" --topics "$TOPICS" --state "$state" --control 127.0.0.1:0 \
        2>"$work/log.$run" &
    pid=$!
    for _ in $(seq 1 150); do
        [ -s "$state/bootstrap" ] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Sends SIGTERM and waits up to 20 s for the exit; returns the exit status.
stop_broker() {
    local rc
    kill -TERM "$pid" 2>/dev/null || return 1
    for _ in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        pid=""
        return 124
    fi
    wait "$pid"
    rc=$?
    pid=""
    return $rc
}

# Every message of every defined topic, one line each, sorted (partitions interleave).
dump_topics() {
    local bs
    bs=$(cat "$state/bootstrap")
    for t in diary.events diary.changes diary.events.dlq; do
        timeout 20 kcat -C -b "$bs" -t "$t" -e -o beginning -q \
            -f '%t %p %o %k %s %T %h\n' || return 1
    done | LC_ALL=C sort
}

no_sanitizer_reports() {
    ! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$work"/log.*
}

logs_are_json_lines() {
    ! grep -qv '^{".*}$' "$work"/log.*
}

for tool in kcat curl; do
    if ! command -v "$tool" >/dev/null; then
        not_ok "$tool is installed"
        finish
    fi
done
if [ ! -x "$BROKER" ]; then
    not_ok "binary $BROKER exists (build it first)"
    finish
fi

# Usage errors exit 2 before anything starts.
"$BROKER" --topics "$TOPICS" --state "$state" --brokers 0 2>/dev/null
check "--brokers 0 is refused with exit 2" test $? -eq 2
"$BROKER" --state "$state" 2>/dev/null
check "a missing --topics is refused with exit 2" test $? -eq 2
"$BROKER" --help >/dev/null
check "--help exits 0" test $? -eq 0

if ! start_broker; then
    not_ok "broker starts and writes its bootstrap file"
    cat "$work/log.$run" >&2
    finish
fi
ok "broker starts and writes its bootstrap file"
check "a ready line is logged" grep -q '"msg":"ready"' "$work/log.$run"
bootstrap=$(cat "$state/bootstrap")
control=$(cat "$state/control.addr")

metadata=$(timeout 20 kcat -L -b "$bootstrap" 2>&1)
check "the three topics exist with 12 partitions" \
    test "$(grep -cE 'topic "diary\.(events|changes|events\.dlq)" with 12 partitions' <<<"$metadata")" -eq 3

for i in $(seq 1 1000); do
    echo "user-$((i % 37)):{\"n\":$i,\"food\":\"apple\"}"
done | timeout 20 kcat -P -b "$bootstrap" -t diary.events -K: -H source=test -H 'trace=a b'
check "kcat produced 1000 messages" test $? -eq 0
printf 'user-1:{"changed":true}\n' | timeout 20 kcat -P -b "$bootstrap" -t diary.changes -K: -p 5
printf 'nokey\n' | timeout 20 kcat -P -b "$bootstrap" -t diary.events.dlq -p 0

before="$work/before.txt"
dump_topics >"$before"
check "1002 messages read back" test "$(wc -l <"$before")" -eq 1002
keys_in_one_partition() {
    local pairs
    pairs=$(grep '^diary.events ' "$before" | awk '{print $4, $2}' | sort -u)
    [ "$(wc -l <<<"$pairs")" -eq 37 ] && [ -z "$(awk '{print $1}' <<<"$pairs" | uniq -d)" ]
}
check "each of the 37 keys lives in one partition" keys_in_one_partition

status=$(curl -s -m 5 "http://$control/status")
check "control: GET /status lists the brokers and topics" \
    grep -q '"brokers":\[1,2,3\].*"name":"diary.events"' <<<"$status"
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST "http://$control/brokers/2/rtt?ms=5")
check "control: POST /brokers/2/rtt?ms=5 answers 200" test "$code" = 200
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://$control/nowhere")
check "control: an unknown route answers 404" test "$code" = 404

stop_broker
check "SIGTERM stops it with exit 0" test $? -eq 0
check "the state was saved" test -s "$state/topics/diary.events.state"
check "the bootstrap file is gone after the stop" test ! -e "$state/bootstrap"

if ! start_broker; then
    not_ok "broker restarts on the saved state"
    cat "$work/log.$run" >&2
    finish
fi
ok "broker restarts on the saved state"
check "the restore is logged" grep -q '"msg":"state restored"' "$work/log.$run"

after="$work/after.txt"
dump_topics >"$after"
if cmp -s "$before" "$after"; then
    ok "every message is back byte for byte (partition, offset, key, value, timestamp, headers)"
else
    not_ok "every message is back byte for byte (partition, offset, key, value, timestamp, headers)"
    diff "$before" "$after" | head -5 >&2
fi

stop_broker
check "the second stop exits 0" test $? -eq 0
check "no sanitizer reports" no_sanitizer_reports
check "every log line is a JSON object" logs_are_json_lines

finish
