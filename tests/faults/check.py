#!/usr/bin/python3
"""The oracle of the fault tests (docs/faults.md): is the database exactly the serial
application of every acknowledged write, and is each of them on the change stream, in order?

  check.py --users users.json --acks acks.jsonl [--acks acks2.jsonl ...] --pg URL
           --bootstrap SERVERS [--writes W] [--group diary-apply] [--wait 120] [--name NAME]

users.json and the acks files come from load.py; several acks files are loads run one after
the other on the same users (in that order), and the expected state is that of all of them.
Standard library plus Debian's python3-confluent-kafka (run it with /usr/bin/python3);
PostgreSQL is read with psql.

It first waits (up to --wait seconds) until the system is quiet: every acknowledged event id
is in processed_events, consumer_offsets has reached the end of every diary.events partition
and the outbox is empty. Then it compares, and prints one `ok - ...` / `not ok - ...` line per
property (details of a failure as `# ...` lines). Exit status 0 when everything holds.

Expected state, from the acknowledged writes in each user's order (load.py sends a user's
next write only after the previous one's acknowledgement, and retries an unacknowledged one
with the same Idempotency-Key, hence the same event id, until it is acknowledged). A write
that never got its acknowledgement (the load gave up; it is in <acks>.unacked) may or may
not have applied: an applied entry event of a load user that no acknowledgement names must
match such a write (same user, key and amount, from its change event), at most once, and then
counts in its place in the user's order; anything else applied is an error.
  - per (user, date, meal, food): the amount of the last write, and version = the number of
    writes to that key (a write applied twice or lost shows as a wrong version or amount);
  - processed_events: each acknowledged event id exactly once, status applied, on the
    partition of its acknowledgement and at or before its offset (an earlier copy may be the
    one applied); per user the offsets increase in write order;
  - diary.changes (read from the beginning): every applied event id of processed_events has a
    change event; the change of the k-th write to a key says version k, the write's amount, op
    c for k = 1 and u after; its source partition and offset are processed_events'; per user,
    the first copies of the change events come in write order with increasing source offsets
    (copies are allowed: the stream is at least once, consumers deduplicate on id).
"""

import argparse
import json
import subprocess
import sys
import time
import uuid
from decimal import Decimal

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

PASS = 0
FAIL = 0
NAME = ""


def ok(what):
    global PASS
    PASS += 1
    print("ok - %s%s" % (NAME, what), flush=True)


def notok(what, details=()):
    global FAIL
    FAIL += 1
    print("not ok - %s%s" % (NAME, what), flush=True)
    for d in list(details)[:15]:
        print("#   %s" % d)
    if len(details) > 15:
        print("#   ... and %d more" % (len(details) - 15))


def check(what, problems):
    if problems:
        notok("%s (%d problems)" % (what, len(problems)), problems)
    else:
        ok(what)


def psql(url, sql):
    """Rows of a query as lists of strings (None for NULL). Fields and rows are separated by
    the ASCII unit and record separators, which no value here contains."""
    p = subprocess.run(["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", "-F", "\x1f", "-R", "\x1e",
                        "-P", "null=\x1dNULL", url, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("psql: %s" % p.stderr.strip())
    out = p.stdout[:-1] if p.stdout.endswith("\n") else p.stdout
    if not out:
        return []
    return [[None if f == "\x1dNULL" else f for f in row.split("\x1f")] for row in out.split("\x1e")]


def consumer(bootstrap):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "faults-check-%s" % uuid.uuid4(),
                     "enable.auto.commit": False, "fetch.wait.max.ms": 10,
                     "enable.partition.eof": False, "socket.timeout.ms": 10000})


def watermarks(c, topic):
    md = c.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions)
    return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in parts}


def read_topic(bootstrap, topic):
    """Every message of topic, as (partition, offset, key, value bytes, headers) in offset
    order per partition; devbroker fillers are skipped."""
    c = consumer(bootstrap)
    try:
        wm = watermarks(c, topic)
        todo = {p: hi for p, (lo, hi) in wm.items() if hi > lo}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
        out = {p: [] for p in wm}
        seen = {p: -1 for p in todo}
        deadline = time.monotonic() + 60
        while any(seen[p] + 1 < hi for p, hi in todo.items()):
            if time.monotonic() > deadline:
                raise RuntimeError("reading %s: timed out at %s of %s" % (topic, seen, todo))
            for m in c.consume(1000, 0.5):
                if m.error():
                    continue
                p = m.partition()
                seen[p] = max(seen[p], m.offset())
                hdrs = dict(m.headers() or [])
                if "devbroker-filler" in hdrs:
                    continue
                if m.offset() < todo.get(p, 0):
                    out[p].append((p, m.offset(), m.key(), m.value(), hdrs))
        return out
    finally:
        c.close()


def main():
    global NAME
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", required=True)
    ap.add_argument("--acks", required=True, action="append", help="in the order the loads ran")
    ap.add_argument("--pg", required=True)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", default="diary-apply")
    ap.add_argument("--events-topic", default="diary.events")
    ap.add_argument("--changes-topic", default="diary.changes")
    ap.add_argument("--writes", type=int, default=0, help="writes per user load.py was asked for")
    ap.add_argument("--wait", type=float, default=120)
    ap.add_argument("--name", default="")
    a = ap.parse_args()
    NAME = a.name + ": " if a.name else ""

    with open(a.users) as f:
        users = json.load(f)["users"]
    uids = {u["user_id"] for u in users}
    acks = []
    for n, path in enumerate(a.acks):
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    r["load"] = n
                    acks.append(r)
    # Each user's writes in the order they were sent: load by load, then by sequence number.
    acks.sort(key=lambda r: (r["user"], r["load"], r["seq"]))

    # --- the loads themselves: every write of every user acknowledged once ------------------
    probs = []
    seen = {}
    for r in acks:
        k = (r["user"], r["load"], r["seq"])
        if k in seen:
            probs.append("write %s acknowledged twice" % (k,))
        seen[k] = r
    if a.writes:
        for n in range(len(a.acks)):
            for u in uids:
                for s in range(a.writes):
                    if (u, n, s) not in seen:
                        probs.append("write %d of user %s in %s never acknowledged" % (s, u, a.acks[n]))
    check("every one of the %d writes acknowledged once (%d loads)" % (len(acks), len(a.acks)), probs)
    acked_ids = {r["event_id"] for r in acks}
    if len(acked_ids) != len(acks):
        notok("acknowledged event ids are distinct", ["%d acks, %d ids" % (len(acks), len(acked_ids))])

    # --- quiet: applied everything, offsets at the log end, outbox empty --------------------
    c = consumer(a.bootstrap)
    deadline = time.monotonic() + a.wait
    while True:
        wm = watermarks(c, a.events_topic)
        offs = {int(p): int(n) for p, n in psql(a.pg, "SELECT \"partition\", next_offset FROM consumer_offsets "
                                                   "WHERE group_id = '%s' AND topic = '%s'" % (a.group, a.events_topic))}
        behind = {p: (offs.get(p), hi) for p, (lo, hi) in wm.items() if hi > lo and offs.get(p) != hi}
        outbox = int(psql(a.pg, "SELECT count(*) FROM outbox")[0][0])
        applied = {r[0] for r in psql(a.pg, "SELECT event_id FROM processed_events")}
        missing = acked_ids - applied
        if not behind and outbox == 0 and not missing:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    c.close()
    check("quiet within %ds: consumer_offsets at the log end of every partition, outbox empty, "
          "every acknowledged event recorded" % a.wait,
          ["partition %d: applied up to %s, log end %s" % (p, n, hi) for p, (n, hi) in sorted(behind.items())]
          + (["%d rows left in the outbox" % outbox] if outbox else [])
          + ["event %s acknowledged, not in processed_events" % e for e in sorted(missing)])

    # --- the evidence: processed_events and the change stream -----------------------------
    pe = {}
    for eid, u, typ, status, part, off in psql(
            a.pg, "SELECT event_id, user_id, type, status, \"partition\", \"offset\" FROM processed_events"):
        pe[eid] = (u, typ, status, int(part), int(off))
    try:
        msgs = read_topic(a.bootstrap, a.changes_topic)
    except Exception as e:  # noqa: BLE001
        notok("read %s: %s" % (a.changes_topic, e))
        return finish()
    first = {}   # change id -> (partition, offset, change)
    copies = 0
    bad = []
    for p, lst in msgs.items():
        for _, off, key, val, hdrs in lst:
            try:
                ch = json.loads(val, parse_float=Decimal)
            except (ValueError, TypeError):
                bad.append("%s %d:%d is not JSON" % (a.changes_topic, p, off))
                continue
            if ch.get("id") in first:
                copies += 1
                continue
            first[ch.get("id")] = (p, off, ch)
    by_event = {}
    for cid, (p, off, ch) in first.items():
        src = (ch.get("data") or {}).get("source") or {}
        by_event.setdefault(src.get("event_id"), []).append((p, off, ch))

    # --- unacknowledged writes that applied ---------------------------------------------------
    # A write that never got its acknowledgement (the load gave up on it) may or may not have
    # applied. An applied entry event of a load user that no acknowledgement names must be
    # such a write: same user, key and amount (read from its change event); each at most once.
    # It then takes its place in the user's order and counts like an acknowledged write.
    pending = {}
    for n, path in enumerate(a.acks):
        try:
            f = open(path + ".unacked")
        except FileNotFoundError:
            continue
        with f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    k = (r["user"], n, r["seq"])
                    if k not in seen and "date" in r:
                        r["load"] = n
                        pending[k] = r
    probs = []
    effective = list(acks)
    for eid, e in sorted(pe.items()):
        if e[0] not in uids or e[1] != "diary.entry.set.v1" or e[2] != "applied" or eid in acked_ids:
            continue
        lst = by_event.get(eid)
        after = ((lst[0][2].get("data") or {}).get("after") or {}) if lst else {}
        match = None
        for k, r in sorted(pending.items()):
            if k[0] == e[0] and "event_id" not in r and (r["date"], r["meal"], r["food"]) == (
                    after.get("date"), after.get("meal_type"), after.get("food_id")) \
                    and Decimal(r["amount"]) == Decimal(str(after.get("amount"))):
                match = r
                break
        if match is None:
            probs.append("event %s of a load user applied, but no write made it: %s, change %s" % (eid, e, after))
            continue
        match["event_id"] = eid
        match["position"] = None
        effective.append(match)
    effective.sort(key=lambda r: (r["user"], r["load"], r["seq"]))
    check("nothing applied that no write made (%d unacknowledged writes, %d of them applied)"
          % (len(pending), len(effective) - len(acks)), probs)

    # --- the rows ------------------------------------------------------------------------
    expected = {}
    for r in effective:
        k = (r["user"], r["date"], r["meal"], r["food"])
        n = expected.get(k, (None, 0))[1] + 1
        expected[k] = (Decimal(r["amount"]), n)
        r["version"] = n
    rows = psql(a.pg, "SELECT user_id, date::text, meal_type, food_id, amount, version FROM daily_meals")
    got = {}
    for u, d, m, f, amt, v in rows:
        if u in uids:
            got[(u, d, m, f)] = (Decimal(amt), int(v))
    probs = []
    lost = doubled = 0
    for k, (amt, n) in sorted(expected.items()):
        g = got.get(k)
        if g is None:
            probs.append("missing row %s (want amount %s version %d)" % (k, amt, n))
            lost += n
        elif g != (amt, n):
            probs.append("row %s: amount %s version %d, want amount %s version %d" % (k, g[0], g[1], amt, n))
            if g[1] < n:
                lost += n - g[1]
            elif g[1] > n:
                doubled += g[1] - n
    for k in sorted(set(got) - set(expected)):
        probs.append("unexpected row %s: %s" % (k, got[k]))
    check("daily_meals equals the serial application of the %d acknowledged writes (%d rows; "
          "%d lost, %d doubled)" % (len(acks), len(expected), lost, doubled), probs)

    # --- processed_events ------------------------------------------------------------------
    probs = []
    for r in effective:
        e = pe.get(r["event_id"])
        if r["position"] is not None:
            p, o = (int(x) for x in r["position"].split(":"))
        if e is None:
            probs.append("event %s (user %s write %d) not recorded" % (r["event_id"], r["user"], r["seq"]))
        elif e[2] != "applied" or e[0] != r["user"] or e[1] != "diary.entry.set.v1":
            probs.append("event %s recorded as %s" % (r["event_id"], e))
        elif r["position"] is not None and (e[3] != p or e[4] > o):
            probs.append("event %s applied at %d:%d, acknowledged at %s" % (r["event_id"], e[3], e[4], r["position"]))
    last = {}
    for r in effective:
        e = pe.get(r["event_id"])
        if e is None:
            continue
        prev = last.get(r["user"])
        if prev is not None and (e[3], e[4]) <= prev:
            probs.append("user %s: write %d of load %d applied at %d:%d, not after the previous write (%d:%d)"
                         % (r["user"], r["seq"], r["load"], e[3], e[4], prev[0], prev[1]))
        last[r["user"]] = (e[3], e[4])
    check("processed_events: each acknowledged event once, applied, in log order per user", probs)

    # --- diary.changes ---------------------------------------------------------------------
    probs = list(bad)
    for eid, e in pe.items():
        if e[2] == "applied" and eid not in by_event:
            probs.append("applied event %s (%s) has no change event" % (eid, e[1]))
    check("every applied event of processed_events (%d) is on %s (%d change events, %d extra copies)"
          % (sum(1 for e in pe.values() if e[2] == "applied"), a.changes_topic, len(first), copies), probs)

    probs = []
    for r in effective:
        lst = by_event.get(r["event_id"])
        if not lst:
            continue
        if len(lst) != 1:
            probs.append("event %s has %d distinct change ids" % (r["event_id"], len(lst)))
        p, off, ch = lst[0]
        d = ch.get("data") or {}
        after = d.get("after") or {}
        want_op = "c" if r["version"] == 1 else "u"
        src = d.get("source") or {}
        e = pe.get(r["event_id"])
        if ch.get("id") != r["event_id"] + ".0":
            probs.append("change id %s for event %s" % (ch.get("id"), r["event_id"]))
        if d.get("table") != "daily_meals" or d.get("op") != want_op or d.get("version") != r["version"] \
                or Decimal(str(after.get("amount"))) != Decimal(r["amount"]) or after.get("version") != r["version"]:
            probs.append("change of user %s write %d: table %s op %s version %s amount %s; want op %s version %d "
                         "amount %s" % (r["user"], r["seq"], d.get("table"), d.get("op"), d.get("version"),
                                        after.get("amount"), want_op, r["version"], r["amount"]))
        if e is not None and (src.get("partition"), src.get("offset")) != (e[3], e[4]):
            probs.append("change of event %s says source %s:%s, processed_events %d:%d"
                         % (r["event_id"], src.get("partition"), src.get("offset"), e[3], e[4]))
        if ch.get("subject") != r["user"]:
            probs.append("change of event %s has subject %s" % (r["event_id"], ch.get("subject")))
    check("each acknowledged write's change event has the serial application's op, version and amount", probs)

    probs = []
    per_user = {}
    for r in effective:
        lst = by_event.get(r["event_id"])
        if lst:
            p, off, ch = lst[0]
            per_user.setdefault(r["user"], []).append((p, off, (r["load"], r["seq"]), ch["data"]["source"]["offset"]))
    for u, lst in per_user.items():
        parts = {x[0] for x in lst}
        if len(parts) != 1:
            probs.append("user %s: change events on %d partitions of %s" % (u, len(parts), a.changes_topic))
            continue
        lst.sort()
        for x, y in zip(lst, lst[1:]):
            if not (y[2] > x[2] and y[3] > x[3]):
                probs.append("user %s: change of write %s (source offset %s) at %s offset %d comes after "
                             "write %s (source offset %s)" % (u, y[2], y[3], a.changes_topic, y[1], x[2], x[3]))
    check("per user, the change events come in write order with increasing source offsets", probs)
    return finish()


def finish():
    print("# %schecks: %d passed, %d failed" % (NAME, PASS, FAIL))
    return 0 if FAIL == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
