#!/usr/bin/env bash
# Integration test of diary-worker with real processes: a throwaway PostgreSQL 15 cluster
# with the migrations, the development broker, the worker under the sanitizers, events
# produced with kcat. Checks the rows, processed_events, consumer_offsets, the outbox, the
# change stream and the dead letters; kills the worker with SIGKILL in the middle of a run of
# events and checks that the restarted worker leaves the same results; stops it with SIGTERM
# and checks a clean exit. Prints TAP-like lines and "# worker: N passed, M failed".
#
# Env: BIN_DIR (default build/san/bin), PGBIN (default /usr/lib/postgresql/15/bin),
# KEEP_TMP=1 keeps the scratch folder.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/e2e/worklib.sh"
WORKER_PID=
kill_workers() { [ -n "$WORKER_PID" ] && kill -9 "$WORKER_PID" 2>/dev/null && wait "$WORKER_PID" 2>/dev/null; }
worklib_init worker diary-worker-test
worklib_require kcat psql python3 curl
worklib_require_bin diary-worker

# ---- PostgreSQL ----
worklib_pg_start
worklib_pg_db postgres
ok "PostgreSQL on port $PGPORT with $NMIGRATIONS migrations"
q() { psql -qAtX -c "$1" 2>/dev/null; }

# ---- broker ----
if [ -x "$BIN_DIR/diary-devbroker" ]; then
    worklib_broker_start
    BROKER=diary-devbroker
else
    # No devbroker built: a librdkafka mock cluster with the same topics.
    mkdir -p "$TMP/broker"
    cat >"$TMP/mock.c" <<'EOF'
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
static volatile sig_atomic_t stop;
static void on_sig(int s) { stop = s; }
int main(int argc, char **argv) {
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), err, sizeof(err));
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, 3);
    const char *topics[] = {"diary.events", "diary.changes", "diary.events.dlq"};
    for (int i = 0; i < 3; i++) rd_kafka_mock_topic_create(mc, topics[i], 12, 3);
    FILE *f = fopen(argv[1], "w");
    fprintf(f, "%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fclose(f);
    signal(SIGTERM, on_sig);
    while (!stop) pause();
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
EOF
    cc -o "$TMP/mock" "$TMP/mock.c" $(pkg-config --cflags --libs rdkafka) || bail "cannot build the mock broker"
    "$TMP/mock" "$TMP/broker/bootstrap.tmp" >"$TMP/broker.log" 2>&1 &
    PIDS+=($!)
    wait_for 10 "the mock cluster" test -s "$TMP/broker/bootstrap.tmp" && mv "$TMP/broker/bootstrap.tmp" "$TMP/broker/bootstrap"
    BROKER="librdkafka mock cluster (no diary-devbroker)"
    worklib_broker_wait
fi
ok "broker up: $BROKER at $KAFKA"

# ---- the worker ----
export KAFKA_BOOTSTRAP=$KAFKA PG_PRIMARY_URL="postgresql://postgres@127.0.0.1:$PGPORT/postgres"
# Small batches, so that the SIGKILL below lands between two of them.
export DIARY_WORKER_PORT=0 DIARY_SESSION_TIMEOUT_MS=6000 DIARY_LOG_LEVEL=info DIARY_BATCH_MAX=20
RUNS=0
start_worker() {
    RUNS=$((RUNS + 1))
    rm -f "$TMP/worker.port"
    DIARY_APPLY_LANES=${DIARY_APPLY_LANES:-2} \
    DIARY_WORKER_PORT_FILE=$TMP/worker.port DIARY_WORKER_ID=test-worker-$RUNS \
        "$BIN_DIR/diary-worker" >"$TMP/worker.$RUNS.log" 2>&1 &
    WORKER_PID=$!
    wait_for 10 "the worker's port file" test -s "$TMP/worker.port" || bail "worker did not open its HTTP port (see $TMP/worker.$RUNS.log)"
    WPORT=$(cat "$TMP/worker.port")
}
ready() { curl -sf "http://127.0.0.1:$WPORT/readyz" >/dev/null; }

# ---- events ----
U1=0b6f3c9e-1d2a-7c4e-8a10-000000000001
U2=0b6f3c9e-1d2a-7c4e-8a10-000000000002
F1=5d1e7a20-3b4c-8d5e-9f60-0000000000f1
F2=5d1e7a20-3b4c-8d5e-9f60-0000000000f2
ENTRY1=6e2f8b31-4c5d-8e6f-a071-0000000000e1
ENTRY2=6e2f8b31-4c5d-8e6f-a071-0000000000e2
EVT=c0ffee00-0000-7000-8000 # event id prefix: $EVT-<12 digits>
NOFOOD=5d1e7a20-3b4c-8d5e-9f60-00000000dead

# envelope ID TYPE SUBJECT DATA_JSON [EXTRA_JSON_MEMBERS]
envelope() {
    printf '{"specversion":"1.0","id":"%s-%012d","source":"test","type":"%s","subject":"%s","time":"2026-11-24T16:00:%02d.000Z","datacontenttype":"application/json","requestid":"req-%d"%s,"data":%s}' \
        "$EVT" "$1" "$2" "$3" "$(($1 % 60))" "$1" "${5:+,$5}" "$4"
}
# produce KEY REQUEST_ID VALUE
produce() {
    printf '%s\n' "$3" | kcat -P -b "$KAFKA" -t diary.events -k "$1" -H "request-id=$2" -H ce_type=test 2>>"$TMP/kcat.log"
}
register() { envelope "$1" diary.user.registered.v1 "$2" "{\"user_id\":\"$2\",\"email\":\"$3\",\"name\":\"Test\",\"password_hash\":\"\$argon2id\$v=19\$m=65536,t=2,p=1\$c2FsdA\$aGFzaA\"}"; }
food() { envelope "$1" diary.food.created.v1 "$2" "{\"food_id\":\"$3\",\"name\":\"Apple\",\"calories_per_100g\":52,\"protein_per_100g\":0.3,\"carbs_per_100g\":14,\"fat_per_100g\":0.2}"; }
entry() { envelope "$1" diary.entry.set.v1 "$2" "{\"entry_id\":\"$3\",\"date\":\"$4\",\"meal_type\":\"lunch\",\"food_id\":\"$5\",\"amount\":$6}"; }

PRODUCED=0
send() { produce "$1" "rid-$2" "$3" && PRODUCED=$((PRODUCED + 1)); }

send $U1 1 "$(register 1 $U1 ann@example.org)"
send $U1 2 "$(food 2 $U1 $F1)"
send $U1 3 "$(entry 3 $U1 $ENTRY1 2026-11-24 $F1 150)"
send $U1 4 "$(entry 4 $U1 $ENTRY2 2026-11-24 $F1 200)"   # same (user, date, meal, food): update
send $U1 3 "$(entry 3 $U1 $ENTRY1 2026-11-24 $F1 150)"   # a duplicate copy of event 3
send $U1 5 "$(entry 5 $U1 6e2f8b31-4c5d-8e6f-a071-0000000000e5 2026-11-24 $NOFOOD 100)" # unknown food
send $U1 6 '{"specversion":"1.0","id": not json at all'                                # malformed
send $U1 7 "$(register 7 $U1 other@example.org)" # same user id again: the database refuses it
send $U1 8 "$(entry 8 $U1 6e2f8b31-4c5d-8e6f-a071-0000000000e8 2026-11-25 $F1 90)"   # applies after it
[ "$PRODUCED" = 9 ] || bail "kcat produced $PRODUCED of 9 messages (see $TMP/kcat.log)"

# Statistics of a nearly empty outbox, as autovacuum leaves them between bursts: a plan
# the relay caches now must not scan the outbox whole once it has grown (0010). The test's
# own reads of the outbox go by an index, so the table's seq_scan counts the worker's alone.
q 'VACUUM ANALYZE outbox' >/dev/null
outbox_scans() { q "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'outbox'"; }
SEQ_SCANS_BEFORE=$(outbox_scans) # the migrations' (table rewrites, index builds)
start_worker
check "worker becomes ready (/readyz 200)" wait_for 20 "readiness" ready
applied_to() { [ "$(q 'SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets')" = "$1" ]; }
outbox_empty() { [ "$(PGOPTIONS='-c enable_seqscan=off' q 'SELECT count(*) FROM outbox')" = 0 ]; }
check "consumer_offsets reach the $PRODUCED messages" wait_for 20 "all messages applied" applied_to $PRODUCED
check "the outbox drains" wait_for 10 "an empty outbox" outbox_empty

ev() { printf '%s-%012d' "$EVT" "$1"; }
status_of() { q "SELECT status || coalesce(':' || (problem->>'type'), '') FROM processed_events WHERE event_id = '$(ev "$1")'"; }
check "registration applied" [ "$(status_of 1)" = applied ]
check "users row without surprises" [ "$(q "SELECT email || ' ' || version || ' ' || (created_at = '2026-11-24T16:00:01Z') FROM users WHERE id = '$U1'")" = "ann@example.org 1 true" ]
check "food applied" [ "$(q "SELECT name || ' ' || calories_per_100g FROM foods WHERE id = '$F1' AND user_id = '$U1'")" = "Apple 52.00" ]
check "entry set twice: one row, amount 200, version 2, id of the first set" \
    [ "$(q "SELECT id || ' ' || amount || ' ' || version FROM daily_meals WHERE user_id = '$U1' AND date = '2026-11-24'")" = "$ENTRY1 200.00 2" ]
check "duplicate copy absorbed (event 3 recorded once, at its first offset)" \
    [ "$(q "SELECT count(*) || ' ' || min(\"offset\") FROM processed_events WHERE event_id = '$(ev 3)'")" = "1 2" ]
check "unknown food rejected and recorded" [ "$(status_of 5)" = rejected:unknown_food ]
check "unknown food left no row" [ "$(q "SELECT count(*) FROM daily_meals WHERE food_id = '$NOFOOD'")" = 0 ]
check "event refused by the database recorded as rejected" [ "$(status_of 7)" = rejected:invalid_event ]
check "the event after it still applied" [ "$(status_of 8)" = applied ]
check "processed_events has one row per event id (7)" [ "$(q 'SELECT count(*) FROM processed_events')" = 7 ]

changes() { kcat -C -b "$KAFKA" -t diary.changes -e -q -f '%s\n' 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    if line.strip():
        e = json.loads(line)
        print(e["id"], e["type"], e["data"]["op"], e["data"]["version"], "password_hash" in json.dumps(e))'; }
changes >"$TMP/changes.1"
has_change() { grep -q "^$(ev "$1").0 $2 $3 $4 False$" "$TMP/changes.1"; }
check "change: user created" has_change 1 diary.change.users.v1 c 1
check "change: food created" has_change 2 diary.change.foods.v1 c 1
check "change: entry created" has_change 3 diary.change.daily_meals.v1 c 1
check "change: entry updated to version 2" has_change 4 diary.change.daily_meals.v1 u 2
check "change: entry of the last event" has_change 8 diary.change.daily_meals.v1 c 1
check "no change event for rejections and dead letters" [ "$(wc -l <"$TMP/changes.1")" = 5 ]
check "change headers carry ce_type and request-id" \
    bash -c "kcat -C -b '$KAFKA' -t diary.changes -e -q -f '%h\n' 2>/dev/null | grep -c 'ce_type=diary.change.*request-id=req-' | grep -qx 5"

dlq() { kcat -C -b "$KAFKA" -t diary.events.dlq -e -q -f '%k %h %s\n' 2>/dev/null; }
dlq >"$TMP/dlq.1"
check "dead letter for the malformed message (attempts 1, original headers)" \
    grep -q "^$U1 .*request-id=rid-6.*\"attempts\":1,\"topic\":\"diary.events\",\"partition\":[0-9]*,\"offset\":6," "$TMP/dlq.1"
check "dead letter for the refused event (attempts 2, original value)" \
    grep -q "^$U1 .*request-id=rid-7.*$(ev 7).*\"attempts\":2," "$TMP/dlq.1"
check "exactly 2 dead letters" [ "$(wc -l <"$TMP/dlq.1")" = 2 ]
check "/metrics counts the outcomes" bash -c "curl -sf http://127.0.0.1:$WPORT/metrics | grep -q '^diary_worker_events_total{outcome=\"dead_letter\"} 2$'"

# ---- a dead letter redriven after the operator fixed its cause ----
U3=0b6f3c9e-1d2a-7c4e-8a10-000000000003
send $U3 20 "$(register 20 $U3 carl@example.org)"
REDRIVEN=$(register 21 $U3 carl.new@example.org) # the same user id: refused, dead-lettered
send $U3 21 "$REDRIVEN"
check "refused registration dead-lettered" wait_for 15 "the dead letter" bash -c "[ \"\$(psql -qAtX -c \"SELECT problem->>'type' FROM processed_events WHERE event_id = '$(ev 21)'\")\" = invalid_event ]"
q "DELETE FROM users WHERE id = '$U3'" >/dev/null # the operator's fix
redrive() { printf '%s\n' "$REDRIVEN" | kcat -P -b "$KAFKA" -t diary.events -k $U3 -H request-id=rid-21 -H diary-redrive=0:0 2>>"$TMP/kcat.log" && PRODUCED=$((PRODUCED + 1)); }
redrive
check "the redriven event applies" wait_for 15 "the redriven event" bash -c "[ \"\$(psql -qAtX -c \"SELECT status FROM processed_events WHERE event_id = '$(ev 21)'\")\" = applied ]"
check "... with its own data" [ "$(q "SELECT email FROM users WHERE id = '$U3'")" = carl.new@example.org ]
redrive
check "redriving it again is harmless" wait_for 15 "all messages applied" applied_to $PRODUCED
check "... one record, the user unchanged" [ "$(q "SELECT count(*) FROM processed_events WHERE event_id = '$(ev 21)'")|$(q "SELECT email || version FROM users WHERE id = '$U3'")" = "1|carl.new@example.org1" ]
DLQ_COUNT=3

# ---- SIGKILL in the middle of a run ----
N=300
{
    register 100 $U2 bob@example.org
    echo
    food 101 $U2 $F2
    echo
    for i in $(seq 1 $N); do
        entry $((1000 + i)) $U2 "$(printf '7f3a9c42-5b6d-8e7f-a082-%012d' "$i")" \
            "$(date -u -d "2020-01-01 + $i days" +%F)" $F2 "$i"
        echo
    done
} >"$TMP/run.jsonl"
kcat -P -b "$KAFKA" -t diary.events -k $U2 -H request-id=run -l "$TMP/run.jsonl" 2>>"$TMP/kcat.log" ||
    notok "kcat produced the run"
PRODUCED=$((PRODUCED + N + 2))
run_applied() { q "SELECT count(*) FROM processed_events WHERE user_id = '$U2'"; }
for i in $(seq 500); do [ "$(run_applied)" -gt 0 ] && break; sleep 0.02; done
kill -9 "$WORKER_PID"
wait "$WORKER_PID" 2>/dev/null
WORKER_PID=
KILLED_AT=$(run_applied)
if [ "$KILLED_AT" -gt 0 ] && [ "$KILLED_AT" -lt $((N + 2)) ]; then
    ok "worker killed with SIGKILL mid-way, after $KILLED_AT of $((N + 2)) events"
else
    echo "# note: the SIGKILL landed after $KILLED_AT of $((N + 2)) events, not mid-way"
    ok "worker killed with SIGKILL"
fi
# The restarted worker runs on one apply lane (the consumer thread applies), the others on the
# default two: both shapes of the worker go through the same checks.
DIARY_APPLY_LANES=1 start_worker
check "the restarted worker runs one apply lane" wait_for 10 "its start line" \
    grep -q '1 apply lane(s)' "$TMP/worker.$RUNS.log"
check "restarted worker reaches all $PRODUCED messages" wait_for 30 "all messages applied" applied_to $PRODUCED
# (30 s: when the SIGKILL landed after the last batch, the rows it left wait for the
# restarted worker's assignment, after the killed member's session timeout.)
check "the outbox drains again" wait_for 30 "an empty outbox" outbox_empty
check "every event of the run applied exactly once" \
    [ "$(q "SELECT count(*) || ' ' || count(DISTINCT event_id) || ' ' || bool_and(status = 'applied') FROM processed_events WHERE user_id = '$U2'")" = "$((N + 2)) $((N + 2)) true" ]
check "the run's rows: $N entries, all version 1, amounts 1..$N" \
    [ "$(q "SELECT count(*) || ' ' || bool_and(version = 1) || ' ' || sum(amount) FROM daily_meals WHERE user_id = '$U2'")" = "$N true $((N * (N + 1) / 2)).00" ]
check "first part unchanged after the restart" [ "$(q 'SELECT count(*) FROM processed_events')" = $((9 + N + 2)) ]
changes >"$TMP/changes.2"
expected_changes() {
    local missing
    missing=$(for i in 100 101 $(seq 1001 $((1000 + N))); do echo "$(ev "$i").0"; done |
        sort >"$TMP/expected" && cut -d' ' -f1 "$TMP/changes.2" | sort -u | comm -23 "$TMP/expected" - | wc -l)
    [ "$missing" = 0 ]
}
check "diary.changes has every change id of the run (at least once)" expected_changes
check "no new dead letters after the restart" [ "$(dlq | wc -l)" = $DLQ_COUNT ]

# ---- the log behind the database: refuse to start ----
check "SIGTERM: clean exit 0 (sanitizers quiet)" bash -c "kill -TERM $WORKER_PID; wait_pid() { for i in \$(seq 100); do kill -0 $WORKER_PID 2>/dev/null || return 0; sleep 0.1; done; return 1; }; wait_pid"
wait "$WORKER_PID" 2>/dev/null
RC=$?
WORKER_PID=
check "worker exit status 0 after SIGTERM (was $RC)" [ "$RC" = 0 ]
# Every delete and read of the relay by its primary key or (partition, seq) index, never a
# sequential scan (the backends report their counts as they end with the worker).
SEQ_SCANS=$(($(outbox_scans) - SEQ_SCANS_BEFORE))
check "the relay never read the outbox sequentially ($SEQ_SCANS sequential scans)" [ "$SEQ_SCANS" = 0 ]
worklib_check_sanitizers "no sanitizer report in the worker logs"
P=$(q "SELECT \"partition\" FROM consumer_offsets WHERE next_offset > 0 LIMIT 1")
q "UPDATE consumer_offsets SET next_offset = next_offset + 1000 WHERE \"partition\" = $P" >/dev/null
start_worker
exited() { ! kill -0 "$WORKER_PID" 2>/dev/null; }
check "a database ahead of the log stops the worker" wait_for 20 "the worker's exit" exited
wait "$WORKER_PID" 2>/dev/null
RC=$?
WORKER_PID=
check "... with a non-zero exit ($RC) and a clear error" \
    bash -c "[ $RC != 0 ] && grep -q 'the log is behind the database' $TMP/worker.$RUNS.log"
q "UPDATE consumer_offsets SET next_offset = next_offset - 1000 WHERE \"partition\" = $P" >/dev/null

finish worker
