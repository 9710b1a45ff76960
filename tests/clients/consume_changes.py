#!/usr/bin/python3
"""Consume diary.changes in a consumer group with confluent-kafka (librdkafka) and check it.

A third-party client reading the change stream the way a downstream service would
(docs/consumers.md): it joins a consumer group, starts at the earliest offset when the group
has no committed offset, commits only after a batch has been handled (at least once),
de-duplicates on the change `id`, and checks that each key's (user's) changes arrive from one
partition in increasing offset order.

    /usr/bin/python3 consume_changes.py --bootstrap HOST:PORT[,...] [--group G]
        [--topic diary.changes] [--expected FILE] [--deadline 60] [--out FILE]
        [--report FILE] [--quiet]

One JSON line per change received goes to --out (default stdout):
    {"client","id","key","partition","offset","event_id","dup"}
A summary (one JSON object) goes to --report, and always as the last line of stderr.

It stops once it has seen every id of --expected (one change id per line), or at the
deadline. Exit status: 0 every expected id was seen and every key was in order (without
--expected: the deadline passed and every key was in order); 1 an expected id is missing at
the deadline; 3 every id was seen but some key's changes were out of order or on two
partitions; 2 bad arguments or a fatal client error.

Use Debian's interpreter (/usr/bin/python3): python3-confluent-kafka is installed for it.
"""

import argparse
import json
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException

CLIENT = "confluent-kafka-python"


def log(msg, **fields):
    """One JSON line on stderr, in the spirit of the services' logs."""
    rec = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "client": CLIENT, "msg": msg}
    rec.update(fields)
    print(json.dumps(rec), file=sys.stderr, flush=True)


def read_expected(path):
    with open(path, encoding="utf-8") as f:
        return {line.strip() for line in f if line.strip()}


class Checker:
    """De-duplication on the change id and the per-key order check (docs/consumers.md)."""

    def __init__(self, expected):
        self.expected = expected
        self.seen = set()
        self.keys = {}  # key -> {"partition", "last_offset", "changes", "in_order"}
        self.received = 0
        self.duplicates = 0
        self.malformed = 0
        self.fillers = 0
        self.violations = []

    def missing(self):
        return self.expected - self.seen if self.expected is not None else set()

    def done(self):
        return self.expected is not None and self.expected <= self.seen

    # [docs:python-handle]
    def handle(self, key, partition, offset, value):
        """The record to print; ValueError, KeyError or TypeError if it is not a change."""
        change = json.loads(value)
        change_id = change["id"]
        event_id = change["data"]["source"]["event_id"]
        dup = change_id in self.seen  # at least once: a re-delivered change is skipped
        if not dup:
            self.seen.add(change_id)
            k = self.keys.setdefault(key, {"partition": partition, "last_offset": -1,
                                           "changes": 0, "in_order": True})
            # One user's changes live on one partition, in increasing offsets.
            if k["partition"] != partition or offset <= k["last_offset"]:
                k["in_order"] = False
                self.violations.append({"key": key, "partition": partition, "offset": offset,
                                        "after_partition": k["partition"],
                                        "after_offset": k["last_offset"]})
            else:
                k["last_offset"] = offset
            k["changes"] += 1
        return {"client": CLIENT, "id": change_id, "key": key, "partition": partition,
                "offset": offset, "event_id": event_id, "dup": dup}
    # [/docs:python-handle]

    def summary(self, group, elapsed):
        missing = sorted(self.missing())
        order_ok = all(k["in_order"] for k in self.keys.values())
        return {
            "client": CLIENT, "group": group, "elapsed_s": round(elapsed, 3),
            "expected": len(self.expected) if self.expected is not None else None,
            "received": self.received, "unique": len(self.seen),
            "duplicates": self.duplicates, "malformed": self.malformed,
            "fillers": self.fillers,
            "unexpected": len(self.seen - self.expected) if self.expected is not None else 0,
            "missing_count": len(missing), "missing": missing[:20],
            "order_ok": order_ok, "violations": self.violations[:20],
            "keys": {k: {"partition": v["partition"], "changes": v["changes"],
                         "in_order": v["in_order"]} for k, v in sorted(self.keys.items())},
            "ok": not missing and order_ok,
        }


def main():
    ap = argparse.ArgumentParser(description="Consume diary.changes in a consumer group.")
    ap.add_argument("--bootstrap", required=True, help="bootstrap servers, host:port[,...]")
    ap.add_argument("--group", default="diary-changes-python", help="consumer group id")
    ap.add_argument("--topic", default="diary.changes")
    ap.add_argument("--expected", help="file of change ids to wait for, one per line")
    ap.add_argument("--deadline", type=float, default=60.0, help="seconds (default 60)")
    ap.add_argument("--out", help="where the per-change JSON lines go (default stdout)")
    ap.add_argument("--report", help="where the summary JSON goes (also on stderr)")
    ap.add_argument("--quiet", action="store_true", help="fewer lines on stderr")
    args = ap.parse_args()

    try:
        expected = read_expected(args.expected) if args.expected else None
    except OSError as e:
        log("cannot read the expected ids", error=str(e))
        return 2
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    checker = Checker(expected)
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def on_error(err):
        # Transport errors are retried by librdkafka; only fatal ones end the run.
        if not args.quiet or err.fatal():
            log("client error", error=str(err), fatal=err.fatal())

    # [docs:python-consumer]
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": args.group,
        "auto.offset.reset": "earliest",    # a new group starts at the beginning
        "enable.auto.commit": False,        # commit only what has been handled
        "fetch.wait.max.ms": 100,           # the devbroker answers empty fetches late
        "session.timeout.ms": 6000,         # a group left behind is free again sooner
        "heartbeat.interval.ms": 1000,
        "error_cb": on_error,
    })

    def on_assign(c, partitions):
        log("assigned", partitions=[p.partition for p in partitions])

    def on_revoke(c, partitions):
        log("revoked", partitions=[p.partition for p in partitions])

    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
    # [/docs:python-consumer]

    start = time.monotonic()
    status = 2
    uncommitted = False
    try:
        while stop["signal"] is None and not checker.done():
            if time.monotonic() - start >= args.deadline:
                break
            # [docs:python-loop]
            msgs = consumer.consume(num_messages=500, timeout=0.5)
            for m in msgs:
                if m.error():
                    if m.error().fatal():
                        raise KafkaException(m.error())
                    continue
                if any(h[0] == "devbroker-filler" for h in (m.headers() or [])):
                    checker.fillers += 1  # devbroker restore padding, not a change
                    continue
                checker.received += 1
                key = m.key().decode("utf-8") if m.key() is not None else None
                try:
                    rec = checker.handle(key, m.partition(), m.offset(), m.value())
                except (ValueError, KeyError, TypeError) as e:
                    checker.malformed += 1
                    log("not a change event", partition=m.partition(), offset=m.offset(),
                        error=str(e))
                    continue
                checker.duplicates += rec["dup"]
                out.write(json.dumps(rec) + "\n")
            if msgs:
                out.flush()
                try:
                    # After the batch is handled: at least once. The broker refuses commits
                    # during a rebalance; the next batch's commit covers these offsets.
                    consumer.commit(asynchronous=False)
                    uncommitted = False
                except KafkaException as e:
                    uncommitted = e.args[0].code() != KafkaError._NO_OFFSET
                    if uncommitted:
                        log("commit failed; retried with the next batch", error=str(e))
            # [/docs:python-loop]
        status = 0
    except KafkaException as e:
        log("fatal client error", error=str(e))
    finally:
        # A last commit of what was handled (auto commit is off), then close() leaves the
        # group at once instead of waiting for the session to time out.
        if uncommitted:
            try:
                consumer.commit(asynchronous=False)
            except KafkaException as e:
                log("last commit failed; those changes come again to this group", error=str(e))
        consumer.close()
        if out is not sys.stdout:
            out.close()

    summary = checker.summary(args.group, time.monotonic() - start)
    if stop["signal"] is not None:
        summary["stopped_by_signal"] = stop["signal"]
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(summary, f)
            f.write("\n")
    print(json.dumps({"summary": summary}), file=sys.stderr, flush=True)
    if status != 0:
        return status
    if summary["missing_count"]:
        return 1
    if not summary["order_ok"]:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
