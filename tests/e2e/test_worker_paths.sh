#!/usr/bin/env bash
# Differential test of the worker's two apply paths: the same log, full of conflicts inside
# batches (the same entry set again, If-Match versions, an entry before its food, emails
# differing in case, duplicate event ids, malformed and refused events, random traffic), is
# applied once with the set-based path (DIARY_APPLY_MODE=set, several rounds per batch) into
# one database and once one event per statement (DIARY_APPLY_MODE=event) into another. The
# tables, processed_events and the change events must be the same.
#
# Env: BIN_DIR (default build/san/bin), PGBIN (default /usr/lib/postgresql/15/bin),
# KEEP_TMP=1 keeps the scratch folder.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/e2e/worklib.sh"
WORKER_PID=
kill_workers() { [ -n "$WORKER_PID" ] && kill -9 "$WORKER_PID" 2>/dev/null && wait "$WORKER_PID" 2>/dev/null; }
worklib_init worker-paths diary-worker-paths
worklib_require kcat psql python3 jq
worklib_require_bin diary-worker diary-devbroker diaryctl

# ---- PostgreSQL with two databases ----
worklib_pg_start
worklib_pg_db byset byevent
ok "PostgreSQL on port $PGPORT, databases byset and byevent"

# ---- broker ----
worklib_broker_start
ok "diary-devbroker at $KAFKA"

# ---- the log ----
python3 - "$TMP/log.tsv" <<'PY'
import json, random, sys, uuid
random.seed(7)
out = open(sys.argv[1], "w")
n = 0
def u(kind, i):
    return str(uuid.UUID(int=(kind << 120) | (0x7 << 76) | (0x8 << 60) | i))
def ev(typ, subj, data, eid=None, ifmatch=None, raw=None, key=None):
    global n
    n += 1
    eid = eid or u(0xe, n)
    e = {"specversion": "1.0", "id": eid, "source": "test", "type": typ, "subject": subj,
         "time": "2026-11-24T16:%02d:%02d.%03dZ" % (n // 3600 % 60, n // 60 % 60, n % 1000),
         "datacontenttype": "application/json", "requestid": "r%d" % n, "data": data}
    if ifmatch is not None:
        e["ifmatch"] = ifmatch
    if n % 3:
        e["requesthash"] = "%064x" % n
    out.write((key or KEYOF.get(subj, subj)) + "\t" + (raw if raw is not None else json.dumps(e, separators=(",", ":"))) + "\n")
    return eid
def reg(user, email, eid=None, key=None):
    return ev("diary.user.registered.v1", user, {"user_id": user, "email": email, "name": "N",
              "password_hash": "$argon2id$x"}, eid, key=key)
def food(user, f, cal=52.345, eid=None, typ="diary.food.created.v1", ifmatch=None):
    return ev(typ, user, {"food_id": f, "name": "Food", "calories_per_100g": cal,
              "protein_per_100g": 0.3, "carbs_per_100g": 14, "fat_per_100g": 0.2}, eid, ifmatch)
def entry(user, f, date, meal, amount, ifmatch=None, eid=None):
    return ev("diary.entry.set.v1", user, {"entry_id": u(0xd, n + 1), "date": date, "meal_type": meal,
              "food_id": f, "amount": amount}, eid, ifmatch)
def unentry(user, f, date, meal, ifmatch=None):
    return ev("diary.entry.removed.v1", user, {"date": date, "meal_type": meal, "food_id": f},
              ifmatch=ifmatch)
def weight(user, date, w, ifmatch=None):
    return ev("diary.weight.set.v1", user, {"weight_id": u(0xc, n + 1), "date": date, "weight": w},
              ifmatch=ifmatch)
def unweight(user, date, ifmatch=None):
    return ev("diary.weight.removed.v1", user, {"date": date}, ifmatch=ifmatch)
def settings(user, ifmatch=None, key=None, **fields):
    return ev("diary.settings.updated.v1", user, fields, ifmatch=ifmatch, key=key)
def revoke(user, s, key=None):
    return ev("diary.session.revoked.v1", user, {"session_id": s, "expires_at": "2026-12-01T00:00:00Z"},
              key=key)
def update(user, ifmatch=None, key=None, **fields):
    return ev("diary.user.updated.v1", user, fields, ifmatch=ifmatch, key=key)
def password(user, revoke_tokens, ifmatch=None):
    return ev("diary.user.password_changed.v1", user, {"password_hash": "$argon2id$p%d" % n,
              "revoke": revoke_tokens}, ifmatch=ifmatch)
def delete(user, ifmatch=None, key=None):
    return ev("diary.user.deleted.v1", user, {}, ifmatch=ifmatch, key=key)
U = [u(1, i) for i in range(24)]
F = [[u(2, i * 8 + k) for k in range(4)] for i in range(24)]
S = [[u(3, i * 8 + k) for k in range(3)] for i in range(24)]
# User 2 takes part in email conflicts with user 1 (below), so all its events go with user
# 1's key: the order of two partitions is not defined.
KEYOF = {U[2]: U[1]}
# Hand-made conflicts for user 0 (they all land in one partition, so in few batches).
a = U[0]
entry(a, F[0][0], "2026-01-01", "lunch", 100)           # before the user and the food: unknown_food
first = reg(a, "Ann@Example.org")
# Only one partition's order is defined: conflicts between users go through one key.
reg(U[1], "ann@example.org", key=a)                      # email taken (case differs)
reg(a, "ann2@example.org", eid=first)                    # duplicate id
ev("diary.food.created.v1", u(1, 99), {"food_id": u(2, 999), "name": "Food", "calories_per_100g": 1,
   "protein_per_100g": 0, "carbs_per_100g": 0, "fat_per_100g": 0}, key=a)  # unknown user
entry(a, F[0][0], "2026-01-01", "lunch", 100)            # food not created yet: unknown_food
food(a, F[0][0])
entry(a, F[0][0], "2026-01-01", "lunch", 10.555)         # created, amount rounds to 10.56
entry(a, F[0][0], "2026-01-01", "lunch", 20)             # update -> v2
entry(a, F[0][0], "2026-01-01", "lunch", 30, ifmatch=1)  # version_mismatch
e = entry(a, F[0][0], "2026-01-01", "lunch", 40, ifmatch=2)  # ok -> v3
entry(a, F[0][0], "2026-01-01", "lunch", 40, ifmatch=2, eid=e)  # duplicate id, same batch
entry(a, F[0][0], "2026-01-02", "lunch", 5, ifmatch=1)   # no such entry: version_mismatch
entry(a, F[0][0], "2026-01-01", "dinner", 1)
entry(a, F[0][0], "2026-01-01", "dinner", 2)
entry(a, F[0][0], "2026-01-01", "dinner", 3)
ev("diary.entry.set.v1", a, {}, raw='{"specversion":"1.0","id":"not json')   # malformed
reg(a, "someone@example.org")                            # the same user id again: refused by the database
ev("diary.weight.set.v1", a, {"weight": 70})             # malformed: no weight_id, no date
food(a, F[0][1], cal=999999.994)
# The types of 0003_api.sql, conflicting inside batches.
unentry(a, F[0][0], "2026-01-01", "dinner", ifmatch=2)   # at version 3: version_mismatch
unentry(a, F[0][0], "2026-01-01", "dinner")              # removed
unentry(a, F[0][0], "2026-01-01", "dinner")              # unknown_entry
entry(a, F[0][0], "2026-01-01", "dinner", 4)             # created again, a new id
food(a, F[0][0], cal=60.5, typ="diary.food.updated.v1", ifmatch=1)   # -> v2
food(a, F[0][0], cal=61, typ="diary.food.updated.v1", ifmatch=1)     # version_mismatch
food(a, u(2, 998), typ="diary.food.updated.v1")          # unknown_food
ev("diary.food.deleted.v1", a, {"food_id": F[0][1]})     # and its entries (none)
entry(a, F[0][1], "2026-01-01", "dinner", 1)             # unknown_food
weight(a, "2026-01-01", 70.5)
weight(a, "2026-01-01", 71, ifmatch=1)                   # -> v2
weight(a, "2026-01-01", 72, ifmatch=1)                   # version_mismatch
weight(a, "2026-01-02", 72, ifmatch=1)                   # no row: version_mismatch
unweight(a, "2026-01-01", ifmatch=2)
unweight(a, "2026-01-01")                                # unknown_weight
settings(a, fat_percentage=20)                           # inserted with the defaults
settings(a, protein_percentage=85)                       # 85 + 20: invalid_settings
settings(a, ifmatch=1, protein_percentage=80, unit_system="imperial")
settings(a, ifmatch=1, daily_calorie_goal=1800)          # version_mismatch
revoke(a, S[0][0])
revoke(a, S[0][0])                                       # again: nothing to do
revoke(u(1, 98), S[0][1], key=a)                         # no such user: nothing to do
update(a, name="Ann B.")
update(a, ifmatch=1, name="Nope")                        # version_mismatch
password(a, True)
password(a, False)
update(u(1, 97), key=a, name="Ghost")                    # unknown_user
# Random traffic over 24 users, some entries before their food, repeated keys, If-Match.
for i in range(1, 24):
    reg(U[i], "user%d@example.org" % i)
settings(U[1], protein_percentage=70, fat_percentage=40)  # invalid on insert
# Emails move between users only through one key (one partition): user 2 takes 1's, which
# is refused, then 1 changes hers and 2 takes it, then 2 is deleted and 3 registers with it
# under a new id.
update(U[2], key=U[1], email="USER1@example.org")        # email_taken
update(U[1], key=U[1], email="user1.b@example.org")
update(U[2], key=U[1], email="user1@example.org")
delete(U[2], key=U[1], ifmatch=1)                        # at version 2: version_mismatch
delete(U[2], key=U[1])
reg(u(1, 96), "User1@example.org", key=U[1])             # the freed email
delete(U[2], key=U[1])                                   # unknown_user
reg(U[2], "user2@example.org", key=U[1])                 # back, with its old email and id
exists = [True] * 24
done = []
for step in range(1500):
    i = random.randrange(24)
    r = random.random()
    date = "2026-02-%02d" % random.randint(1, 3)
    ifm = random.choice([None, None, None, 1, 2, 3])
    if r < 0.06:
        food(U[i], random.choice(F[i]))
    elif r < 0.09 and done:
        d = random.choice(done)
        out.write(d)                                     # a duplicate copy of an earlier message
    elif r < 0.12:
        food(U[i], random.choice(F[i]), cal=random.randint(1, 500), typ="diary.food.updated.v1",
             ifmatch=ifm)
    elif r < 0.13:
        ev("diary.food.deleted.v1", U[i], {"food_id": random.choice(F[i])}, ifmatch=ifm)
    elif r < 0.20:
        unentry(U[i], random.choice(F[i]), date, random.choice(["lunch", "dinner"]), ifmatch=ifm)
    elif r < 0.26:
        weight(U[i], date, random.randint(400, 1200) / 10, ifmatch=ifm)
    elif r < 0.29:
        unweight(U[i], date, ifmatch=ifm)
    elif r < 0.34:
        f = {}
        for k, v in (("unit_system", random.choice(["metric", "imperial"])),
                     ("daily_calorie_goal", random.randint(1200, 3500)),
                     ("protein_percentage", random.randint(10, 70)),
                     ("fat_percentage", random.randint(10, 60))):
            if random.random() < 0.5:
                f[k] = v
        settings(U[i], ifmatch=ifm, **f)
    elif r < 0.36:
        revoke(U[i], random.choice(S[i]))
    elif r < 0.37:
        update(U[i], ifmatch=random.choice([None, None, 1, 2]),
               **random.choice([{"name": "N%d" % step}, {"email": "u%d.%d@example.org" % (i, step)},
                                {"name": "M%d" % step, "email": "v%d.%d@example.org" % (i, step)}]))
    elif r < 0.375:
        password(U[i], random.random() < 0.5, ifmatch=random.choice([None, 2]))
    elif r < 0.38 and i > 3:
        if exists[i]:
            delete(U[i])
        else:
            reg(U[i], "user%d@example.org" % i)          # a new event id, the same user id
        exists[i] = not exists[i]
    else:
        entry(U[i], random.choice(F[i]), date, random.choice(["lunch", "dinner"]),
              random.randint(1, 500), ifmatch=ifm)
    if random.random() < 0.1:
        out.flush()
        with open(sys.argv[1]) as f:
            lines = f.readlines()
        done.append(lines[-1])
out.close()
PY
LINES=$(wc -l <"$TMP/log.tsv")
kcat -P -b "$KAFKA" -t diary.events -K '\t' -l "$TMP/log.tsv" 2>"$TMP/kcat.log" || bail "kcat produce"
ok "produced $LINES messages"

# ---- apply it twice ----
run_worker() { # MODE DB
    local mode=$1 db=$2
    rm -f "$TMP/port"
    KAFKA_BOOTSTRAP=$KAFKA PG_PRIMARY_URL="postgresql://postgres@127.0.0.1:$PGPORT/$db" \
        DIARY_WORKER_PORT=0 DIARY_WORKER_PORT_FILE="$TMP/port" DIARY_SESSION_TIMEOUT_MS=6000 \
        DIARY_APPLY_MODE=$mode DIARY_WORKER_ID=w-$mode DIARY_LOG_LEVEL=debug \
        "$BIN_DIR/diary-worker" >"$TMP/worker.$mode.log" 2>&1 &
    WORKER_PID=$!
    done_db() {
        [ "$(psql -qAtX -d $db -c 'SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets')" = "$LINES" ] &&
            [ "$(psql -qAtX -d $db -c 'SELECT count(*) FROM outbox')" = 0 ]
    }
    check "$mode path applies all $LINES messages into $db" wait_for 45 "$db done" done_db
    kill -TERM $WORKER_PID
    wait $WORKER_PID
    check "$mode worker exits 0" [ $? = 0 ]
    WORKER_PID=
}
run_worker set byset
run_worker event byevent
check "the set path ran batches of several rounds" \
    grep -Eq 'set-based batch of [0-9]+ events in ([2-9]|[1-9][0-9]+) rounds' "$TMP/worker.set.log"
check "the refused event made a batch fall back in both paths" \
    bash -c "grep -q 'retrying one event per transaction' '$TMP/worker.set.log' && grep -q 'retrying one event per transaction' '$TMP/worker.event.log'"
# A lane puts its partitions' batches into one transaction (apply_batches); failing on the
# refused event, that transaction went one partition at a time (the dumps must still agree).
check "a failed transaction of several partitions went one partition at a time" \
    grep -q 'partitions.* batches failed: .*; applying them one partition at a time' "$TMP/worker.set.log"

dump() { # DB
    psql -qAtX -d "$1" <<'SQL'
SELECT 'users', id, email, name, password_hash, version, created_at, updated_at, tokens_valid_after FROM users ORDER BY id;
SELECT 'foods', id, user_id, name, calories_per_100g, protein_per_100g, carbs_per_100g, fat_per_100g, version, created_at, updated_at FROM foods ORDER BY id;
SELECT 'meals', id, user_id, date, meal_type, food_id, amount, version, created_at, updated_at FROM daily_meals ORDER BY id;
SELECT 'weights', id, user_id, date, weight, version, created_at, updated_at FROM weight_entries ORDER BY id;
SELECT 'settings', user_id, unit_system, daily_calorie_goal, protein_percentage, fat_percentage, version, created_at, updated_at FROM user_settings ORDER BY user_id;
SELECT 'sessions', session_id, user_id, expires_at, revoked_at FROM revoked_sessions ORDER BY session_id;
SELECT 'events', event_id, user_id, type, status, reason, problem, "partition", "offset", payload_hash, resource_id, request_hash FROM processed_events ORDER BY event_id;
SELECT 'offsets', group_id, topic, "partition", next_offset FROM consumer_offsets ORDER BY 2, 3, 4;
SQL
}
dump byset >"$TMP/byset.dump"
dump byevent >"$TMP/byevent.dump"
check "same tables, processed_events and offsets ($(wc -l <"$TMP/byset.dump") rows)" \
    cmp -s "$TMP/byset.dump" "$TMP/byevent.dump"
[ "$FAIL" -gt 0 ] && diff "$TMP/byset.dump" "$TMP/byevent.dump" | head -20
summary() { psql -qAtX -d byset -c "SELECT o || ' ' || count(*) FROM (SELECT status || coalesce(':' || (problem->>'type'), '') AS o FROM processed_events) s GROUP BY o ORDER BY o" | tr '\n' ' '; }
echo "# outcomes: $(summary)"
check "the workload exercised every outcome (every slug of docs/events.md)" \
    bash -c "s='$(summary)'; for w in applied rejected:email_taken rejected:unknown_user rejected:unknown_food rejected:version_mismatch rejected:invalid_event rejected:unknown_entry rejected:unknown_weight rejected:invalid_settings; do case \$s in *\$w*) ;; *) exit 1 ;; esac; done"

# Every change event was published once per run; the two copies must agree (but for time and
# the worker-independent fields, which are equal anyway), and so must the order of each user's
# changes from each source partition (the set run published first, so a change's first copy
# is the set run's), which is the log order. (A few hand-made events are produced under
# another user's key; the order between two source partitions is not defined.)
kcat -C -b "$KAFKA" -t diary.changes -e -q -f '%k\t%s\n' 2>/dev/null >"$TMP/changes"
python3 - "$TMP/changes" >"$TMP/changes.check" <<'PY'
import json, sys, collections
seen = collections.defaultdict(list)
order = [collections.defaultdict(list), collections.defaultdict(list)]
for line in open(sys.argv[1]):
    if line.strip():
        key, value = line.rstrip("\n").split("\t", 1)
        e = json.loads(value)
        seen[e["id"]].append(json.dumps({k: e[k] for k in e if k != "time"}, sort_keys=True))
        order[min(len(seen[e["id"]]), 2) - 1][(key, e["data"]["source"]["partition"])].append(
            (e["data"]["source"]["offset"], int(e["id"].rsplit(".", 1)[1]), e["id"]))
bad = [k for k, v in seen.items() if len(v) != 2 or v[0] != v[1]]
for key in set(order[0]) | set(order[1]):
    a, b = order[0][key], order[1][key]
    if a != b or a != sorted(a):
        bad.append("order of %s: %s / %s" % (key, [x[2] for x in a][:5], [x[2] for x in b][:5]))
print(len(seen), len(bad))
for k in bad[:5]:
    print(k, seen.get(k))
PY
read -r NCHANGES NBAD <"$TMP/changes.check"
check "diary.changes: $NCHANGES change ids, each twice and identical, per user in log order in both runs" \
    bash -c "[ '$NBAD' = 0 ] && [ '$NCHANGES' -gt 100 ]"
[ "$NBAD" != 0 ] && head -6 "$TMP/changes.check"

# ---- one transaction a pass ----
# A clean tail (every event applies) over many users, so many partitions: a lane puts the
# batches of its partitions with work into one transaction (apply_batches), so rows of
# several partitions share a transaction id, and each partition's position and change events
# are still its own.
python3 - "$TMP/tail.tsv" <<'PY'
import json, sys, uuid
out = open(sys.argv[1], "w")
n = 0
def u(kind, i):
    return str(uuid.UUID(int=(kind << 120) | (0x7 << 76) | (0x8 << 60) | i))
def ev(typ, subj, data):
    global n
    n += 1
    e = {"specversion": "1.0", "id": u(0x5, n), "source": "test", "type": typ, "subject": subj,
         "time": "2026-11-25T10:00:00.%03dZ" % (n % 1000), "datacontenttype": "application/json",
         "requestid": "t%d" % n, "data": data}
    out.write(subj + "\t" + json.dumps(e, separators=(",", ":")) + "\n")
for i in range(24):
    user, f = u(3, i), u(4, i)
    ev("diary.user.registered.v1", user, {"user_id": user, "email": "tail%d@example.org" % i,
       "name": "T", "password_hash": "$argon2id$x"})
    ev("diary.food.created.v1", user, {"food_id": f, "name": "Food", "calories_per_100g": 52,
       "protein_per_100g": 0.3, "carbs_per_100g": 14, "fat_per_100g": 0.2})
    for d in range(20):
        ev("diary.entry.set.v1", user, {"entry_id": u(6, i * 100 + d), "date": "2026-10-%02d" % (d + 1),
           "meal_type": "lunch", "food_id": f, "amount": d + 1})
PY
TAIL=$(wc -l <"$TMP/tail.tsv")
tail_events() { psql -qAtX -d byset -c "SELECT count(*) FROM processed_events WHERE event_id::text LIKE '05%'"; }
BEFORE=$(psql -qAtX -d byset -c "SELECT count(*) FROM processed_events WHERE status = 'applied'")
kcat -P -b "$KAFKA" -t diary.events -K '\t' -l "$TMP/tail.tsv" 2>>"$TMP/kcat.log" || bail "kcat produce the tail"
LINES=$((LINES + TAIL))
run_worker set byset
tail_txns() {
    psql -qAtX -d byset -c "SELECT count(*) || ' ' || coalesce(max(np), 0) FROM (SELECT count(DISTINCT \"partition\") AS np FROM processed_events WHERE event_id::text LIKE '05%' GROUP BY xmin::text HAVING count(DISTINCT \"partition\") > 1) t"
}
read -r NTX MAXP <<<"$(tail_txns)"
check "the tail's $TAIL events applied, each once: $(tail_events) records, nothing else changed" \
    [ "$(tail_events)|$(psql -qAtX -d byset -c "SELECT count(*) - $BEFORE FROM processed_events WHERE status = 'applied'")" = "$TAIL|$TAIL" ]
check "$NTX transactions each held several partitions' batches (up to $MAXP partitions)" [ "$NTX" -gt 0 ]
kcat -C -b "$KAFKA" -t diary.changes -e -q -f '%k\t%s\n' 2>/dev/null >"$TMP/changes.tail"
check "each of the tail's changes published, with its own partition, per user in log order" \
    python3 - "$TMP/tail.tsv" "$TMP/changes.tail" <<'PY'
import json, sys, collections
want = collections.defaultdict(list)
for line in open(sys.argv[1]):
    key, value = line.rstrip("\n").split("\t", 1)
    want[key].append(json.loads(value)["id"] + ".0")
got, part = collections.defaultdict(list), collections.defaultdict(set)
for line in open(sys.argv[2]):
    if line.strip():
        key, value = line.rstrip("\n").split("\t", 1)
        e = json.loads(value)
        if key in want:
            got[key].append(e["id"])
            part[key].add(e["data"]["source"]["partition"])
sys.exit(0 if got == want and all(len(p) == 1 for p in part.values()) else 1)
PY
# ---- a batch of entry sets writes its changes straight into the outbox (0009) ----
# Entry sets only, one per row (so one round): each partition's batch goes to
# diary_apply_entries_direct, which writes the outbox itself; one entry a user updates a row of
# the tail above, so its change carries the row before.
python3 - "$TMP/tail2.tsv" <<'PY'
import json, sys, uuid
out = open(sys.argv[1], "w")
n = 0
def u(kind, i):
    return str(uuid.UUID(int=(kind << 120) | (0x7 << 76) | (0x8 << 60) | i))
for i in range(24):
    user, f = u(3, i), u(4, i)
    for d in range(8):
        n += 1
        data = {"entry_id": u(9, i * 100 + d), "date": "2026-09-%02d" % (d + 1) if d else "2026-10-01",
                "meal_type": "lunch", "food_id": f, "amount": 99 if d == 0 else d + 0.25}
        e = {"specversion": "1.0", "id": u(0xa, n), "source": "test", "type": "diary.entry.set.v1",
             "subject": user, "time": "2026-11-25T11:00:00.%03dZ" % (n % 1000),
             "datacontenttype": "application/json", "requestid": "d%d" % n, "data": data}
        out.write(user + "\t" + json.dumps(e, separators=(",", ":")) + "\n")
PY
TAIL2=$(wc -l <"$TMP/tail2.tsv")
kcat -P -b "$KAFKA" -t diary.events -K '\t' -l "$TMP/tail2.tsv" 2>>"$TMP/kcat.log" || bail "kcat produce the entry sets"
LINES=$((LINES + TAIL2))
# The functions the worker's sessions call, counted from here (track_functions).
psql -qAtX -d byset -c "ALTER DATABASE byset SET track_functions = 'pl'" -c "SELECT pg_stat_reset()" >/dev/null
run_worker set byset
check "the entry sets' batches wrote their changes straight to the outbox" \
    grep -q 'its changes straight to the outbox' "$TMP/worker.set.log"
fcalls() { # FUNCTION: its calls since the reset
    wait_for 5 "function statistics" bash -c "[ -n \"\$(psql -qAtX -d byset -c \"SELECT calls FROM pg_stat_user_functions WHERE funcname = 'diary_apply_entries_direct'\")\" ]" >/dev/null 2>&1
    psql -qAtX -d byset -c "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions WHERE funcname = '$1'"
}
# Regression: a direct batch also cleared the staging table it had not used (a statement a
# batch for nothing).
direct_only() {
    [ "$(fcalls diary_apply_entries_direct)" -gt 0 ] &&
        [ "$(fcalls diary_apply_flush)|$(fcalls diary_stage_clear)" = "0|0" ]
}
check "a direct batch neither flushes nor clears the staging table ($(fcalls diary_apply_entries_direct) direct calls)" \
    direct_only
psql -qAtX -d byset -c "ALTER DATABASE byset RESET track_functions" >/dev/null
kcat -C -b "$KAFKA" -t diary.changes -e -q -f '%k\t%s\n' 2>/dev/null >"$TMP/changes.tail2"
check "each of the $TAIL2 entry sets applied and published once, per user in log order, the update with its row before" \
    python3 - "$TMP/tail2.tsv" "$TMP/changes.tail2" <<'PY'
import json, sys, collections
want = collections.defaultdict(list)
for line in open(sys.argv[1]):
    key, value = line.rstrip("\n").split("\t", 1)
    want[key].append(json.loads(value)["id"] + ".0")
got, bad = collections.defaultdict(list), 0
for line in open(sys.argv[2]):
    if line.strip():
        key, value = line.rstrip("\n").split("\t", 1)
        e = json.loads(value)
        if e["id"].startswith("0a"):
            got[key].append(e["id"])
            d = e["data"]
            upd = d["after"]["date"] == "2026-10-01"
            if upd != (d["op"] == "u") or (upd and (d["before"]["amount"] != 1 or d["version"] != 2
                                                    or d["after"]["amount"] != 99)) \
               or (not upd and (d["before"] is not None or d["version"] != 1)):
                bad += 1
sys.exit(0 if got == want and bad == 0 else 1)
PY

# ---- diaryctl replay of the same log ----
# The same apply code in a replay (batches of 2,000, no outbox): the log's refused events make
# its batches fall back to one event per transaction too; it must count every event once
# and end with the worker's tables.
worklib_pg_db byreplay
KAFKA_BOOTSTRAP=$KAFKA "$BIN_DIR/diaryctl" replay --url "postgresql://postgres@127.0.0.1:$PGPORT/byreplay" \
    --group paths-replay --json >"$TMP/replay.out" 2>"$TMP/replay.err"
check "diaryctl replay of the log exits 0" [ $? = 0 ]
check "its summary counts each of the $LINES events once" jq -s -e \
    "map(select(.level == \"summary\")) | length == 1 and .[0].done == $LINES and .[0].total == $LINES and .[0].applied + .[0].rejected + .[0].duplicates + .[0].dead_letters == $LINES" \
    "$TMP/replay.out"
check "the replayed database equals the worker's (but for the consumer group's name)" \
    cmp -s <(dump byset | grep -v '^offsets') <(dump byreplay | grep -v '^offsets')

# ---- the staging table across transactions (0008) ----
# One session, as a worker's lane: staged rows survive no flush into the next transaction,
# the table is emptied by the flush while small and truncated past 128 KiB, a transaction
# that fails takes its staged rows with it, and with diary.changes = off (replay) an entry
# set is applied without staging its change.
psql -qAtX -v ON_ERROR_STOP=1 -d byset >"$TMP/stage.out" 2>"$TMP/stage.err" <<'SQL'
\o /dev/null
SELECT diary_stage_open();
CREATE TEMP TABLE seen (step text, n bigint);
CREATE FUNCTION pg_temp.stage(p_n integer, p_bytes integer) RETURNS void LANGUAGE sql AS $$
    INSERT INTO diary_stage
    SELECT i, 0, gen_random_uuid(), gen_random_uuid(), 'daily_meals', 'c', gen_random_uuid(),
           NULL, '"' || repeat('x', p_bytes) || '"', 1, 'r'
      FROM generate_series(1, p_n) i $$;
BEGIN;
SELECT pg_temp.stage(3, 10);
INSERT INTO seen SELECT 'small flush', count(*) FROM diary_apply_flush(0, 'diary.events', 'test');
COMMIT;
INSERT INTO seen SELECT 'left after the small flush', count(*) FROM diary_stage;
INSERT INTO seen SELECT 'small table kept', (pg_relation_size('pg_temp.diary_stage') > 0)::int;
BEGIN;
SELECT pg_temp.stage(2, 10);
INSERT INTO seen SELECT 'next flush', count(*) FROM diary_apply_flush(0, 'diary.events', 'test');
COMMIT;
BEGIN;
SELECT pg_temp.stage(400, 1000);
INSERT INTO seen SELECT 'large flush', count(*) FROM diary_apply_flush(0, 'diary.events', 'test');
COMMIT;
INSERT INTO seen SELECT 'large table truncated', pg_relation_size('pg_temp.diary_stage');
BEGIN;
SELECT pg_temp.stage(5, 10);
ROLLBACK;
BEGIN;
SELECT pg_temp.stage(1, 10);
SELECT diary_stage_clear();
INSERT INTO seen SELECT 'after a rollback and a clear', count(*) FROM diary_stage;
COMMIT;
CREATE FUNCTION pg_temp.one_entry() RETURNS SETOF text LANGUAGE sql AS $$
    SELECT e.status FROM (SELECT id::text AS f, user_id::text AS u FROM foods LIMIT 1) x,
           diary_apply_entries(0, ARRAY['0'], ARRAY[gen_random_uuid()::text], ARRAY[x.u],
               ARRAY['diary.entry.set.v1'], ARRAY['1'], ARRAY[md5('a')],
               ARRAY['2026-11-24T10:00:00.000Z'], ARRAY[NULL]::text[], ARRAY['r'],
               ARRAY[NULL]::text[], ARRAY[gen_random_uuid()::text], ARRAY['1999-01-01'],
               ARRAY['lunch'], ARRAY[x.f], ARRAY['100']) e $$;
BEGIN;
SELECT count(*) AS applied FROM pg_temp.one_entry() s WHERE s = 'applied' \gset
SELECT count(*) AS staged FROM diary_stage \gset
ROLLBACK;
INSERT INTO seen VALUES ('entry applied', :applied), ('its change staged', :staged);
SELECT set_config('diary.changes', 'off', false);
BEGIN;
SELECT count(*) AS applied FROM pg_temp.one_entry() s WHERE s = 'applied' \gset
SELECT count(*) AS staged FROM diary_stage \gset
ROLLBACK;
INSERT INTO seen VALUES ('entry applied, changes off', :applied), ('nothing staged', :staged);
-- 0009: the direct function writes the very change events the staged path flushes (but for
-- the time of the transaction), and returns them after the outcomes; an insert and an update.
CREATE FUNCTION pg_temp.entry(p_direct boolean, p_ev text, p_amount text)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    f text;
    u text;
BEGIN
    SELECT id::text, user_id::text INTO f, u FROM foods ORDER BY id LIMIT 1;
    IF p_direct THEN
        RETURN QUERY SELECT coalesce(e.status, e.ch_event) FROM diary_apply_entries_direct(0, 'diary.events', 'test',
            ARRAY['0'], ARRAY[p_ev], ARRAY[u], ARRAY['diary.entry.set.v1'], ARRAY['7'],
            ARRAY[md5('a')], ARRAY['2026-11-24T10:00:00.000Z'], ARRAY[NULL]::text[], ARRAY['r'],
            ARRAY[NULL]::text[], ARRAY['00000000-0000-7000-8000-0000000000e1'],
            ARRAY['1999-02-01'], ARRAY['lunch'], ARRAY[f], ARRAY[p_amount]) e;
    ELSE
        RETURN QUERY SELECT e.status FROM diary_apply_entries(0,
            ARRAY['0'], ARRAY[p_ev], ARRAY[u], ARRAY['diary.entry.set.v1'], ARRAY['7'],
            ARRAY[md5('a')], ARRAY['2026-11-24T10:00:00.000Z'], ARRAY[NULL]::text[], ARRAY['r'],
            ARRAY[NULL]::text[], ARRAY['00000000-0000-7000-8000-0000000000e1'],
            ARRAY['1999-02-01'], ARRAY['lunch'], ARRAY[f], ARRAY[p_amount]) e;
    END IF;
END $$;
CREATE FUNCTION pg_temp.untimed(p text) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(p, '"time" : "[^"]*"', '') $$;
SELECT set_config('diary.changes', 'on', false);
BEGIN;
SELECT * FROM pg_temp.entry(false, '00000000-0000-7000-8000-0000000000a1', '10');
SELECT pg_temp.untimed(string_agg(event, '|' ORDER BY seq)) AS staged
  FROM diary_apply_flush(0, 'diary.events', 'test') \gset
ROLLBACK;
BEGIN;
SELECT pg_temp.untimed(string_agg(x, '|')) AS returned
  FROM pg_temp.entry(true, '00000000-0000-7000-8000-0000000000a1', '10') x WHERE x LIKE '{%' \gset
SELECT pg_temp.untimed(string_agg(event, '|' ORDER BY seq)) AS direct FROM outbox
 WHERE request_id = 'r' AND change_id LIKE '00000000-0000-7000-8000-0000000000a1%' \gset
ROLLBACK;
INSERT INTO seen SELECT 'direct insert as staged', (:'staged' = :'direct' AND :'direct' = :'returned' AND :'direct' LIKE '%"op" : "c"%')::int;
BEGIN;
SELECT * FROM pg_temp.entry(false, '00000000-0000-7000-8000-0000000000a2', '10');
SELECT count(*) FROM diary_apply_flush(0, 'diary.events', 'test');
COMMIT;
BEGIN;
SELECT * FROM pg_temp.entry(false, '00000000-0000-7000-8000-0000000000a3', '20.5');
SELECT pg_temp.untimed(string_agg(event, '|' ORDER BY seq)) AS staged
  FROM diary_apply_flush(0, 'diary.events', 'test') \gset
ROLLBACK;
BEGIN;
SELECT pg_temp.untimed(string_agg(x, '|')) AS returned
  FROM pg_temp.entry(true, '00000000-0000-7000-8000-0000000000a3', '20.5') x WHERE x LIKE '{%' \gset
SELECT pg_temp.untimed(string_agg(event, '|' ORDER BY seq)) AS direct FROM outbox
 WHERE request_id = 'r' AND change_id LIKE '00000000-0000-7000-8000-0000000000a3%' \gset
ROLLBACK;
INSERT INTO seen SELECT 'direct update as staged', (:'staged' = :'direct' AND :'direct' = :'returned' AND :'direct' LIKE '%"op" : "u"%"before" : {%')::int;
DELETE FROM outbox WHERE request_id = 'r';
\o
SELECT string_agg(step || '=' || n, ',' ORDER BY ctid) FROM seen;
SQL
check "staging table: each flush gets its own transaction's rows only, emptied while small, truncated when large; with diary.changes = off nothing staged; the direct function writes what the flush writes" \
    test "$(cat "$TMP/stage.out")" = "small flush=3,left after the small flush=0,small table kept=1,next flush=2,large flush=400,large table truncated=0,after a rollback and a clear=0,entry applied=1,its change staged=1,entry applied, changes off=1,nothing staged=0,direct insert as staged=1,direct update as staged=1"
[ -s "$TMP/stage.err" ] && head -5 "$TMP/stage.err"
worklib_check_sanitizers "no sanitizer report"
finish worker-paths
