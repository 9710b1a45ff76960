#!/usr/bin/env python3
"""Analysis of one end-to-end run of `make bench`: joins what bench/loadgen sent and got back,
what bench/probe saw on the primary, the replica and diary.changes, and the database check.

    e2e.py LOADGEN_OUT OFFSETS CHANGES LOADGEN_SUMMARY DBCHECK SERIES_OUT > result.json

An acknowledged write (202 with a position P:O) is visible on a side from the first probe
sample of that side where partition P's next_offset is above O; its change event is the first
"<event id>.0" received on diary.changes. Latencies count from the write's scheduled send
time (open loop: queueing in the load generator counts; requests never sent because the
run's time was up are counted apart). SERIES_OUT receives one line per second of the run for
the plot: t, answered writes sent in that second, p50/p99 of POST->ack, POST->visible on the
replica and POST->change of the writes sent in that second, in milliseconds ("nan" when a
second has none), then the acknowledgements received and the writes that became visible on
the replica in that second.
"""
import bisect
import json
import math
import sys


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, int(math.ceil(p / 100.0 * len(sorted_vals))) - 1))
    return sorted_vals[i]


def summary_ms(vals):
    """p50/p99/p99.9/max of microsecond values, in milliseconds."""
    v = sorted(vals)
    if not v:
        return {"count": 0}
    r = lambda x: round(x / 1000.0, 2)
    return {"count": len(v), "p50_ms": r(pct(v, 50)), "p99_ms": r(pct(v, 99)),
            "p99_9_ms": r(pct(v, 99.9)), "max_ms": r(v[-1]), "mean_ms": r(sum(v) / len(v))}


def load_offsets(path):
    sides = {"p": {}, "r": {}}
    lag = []
    with open(path) as f:
        for line in f:
            a = line.split()
            if len(a) != 4:
                continue
            if a[1] == "L":
                lag.append((int(a[0]), int(a[2]), int(a[3])))
                continue
            part = sides[a[1]].setdefault(int(a[2]), ([], []))
            part[0].append(int(a[3]))
            part[1].append(int(a[0]))
    return sides, lag


def visible_at(side, partition, offset):
    s = side.get(partition)
    if not s:
        return None
    i = bisect.bisect_right(s[0], offset)
    return s[1][i] if i < len(s[0]) else None


def main():
    if len(sys.argv) != 7:
        print(__doc__, file=sys.stderr)
        return 2
    lg_path, off_path, ch_path, summary_path, check_path, series_path = sys.argv[1:]
    sides, lag = load_offsets(off_path)
    changes = {}
    dup_changes = 0
    with open(ch_path) as f:
        for line in f:
            a = line.split()
            if len(a) == 2:
                if a[1] in changes:
                    dup_changes += 1
                else:
                    changes[a[1]] = int(a[0])
    with open(summary_path) as f:
        lsum = json.load(f)
    with open(check_path) as f:
        check = json.load(f)

    start = None
    ack, ack_send, vis_r, vis_p, chg, repl = [], [], [], [], [], []
    not_visible = not_changed = acked = unsent = 0
    per_sec, ack_at, vis_at = {}, {}, {}
    with open(lg_path) as f:
        for line in f:
            a = line.split()
            if len(a) != 8:
                continue
            sched, sent, done, status = int(a[1]), int(a[2]), int(a[3]), int(a[4])
            if start is None:
                start = sched
            if not sent:
                unsent += 1
                continue
            sec = (sent - start) // 1000000
            b = per_sec.setdefault(sec, [0, [], [], []])
            if not done:
                continue
            b[0] += 1
            if status != 202:
                continue
            acked += 1
            ack_at[(done - start) // 1000000] = ack_at.get((done - start) // 1000000, 0) + 1
            ack.append(done - sched)
            ack_send.append(done - sent)
            b[1].append(done - sched)
            part, off, eid = int(a[5]), int(a[6]), a[7]
            tr = visible_at(sides["r"], part, off) if part >= 0 else None
            tp = visible_at(sides["p"], part, off) if part >= 0 else None
            if tr is None:
                not_visible += 1
            else:
                vis_at[(tr - start) // 1000000] = vis_at.get((tr - start) // 1000000, 0) + 1
                vis_r.append(tr - sched)
                b[2].append(tr - sched)
            if tp is not None:
                vis_p.append(tp - sched)
                if tr is not None:
                    repl.append(max(tr - tp, 0))
            tc = changes.get(eid + ".0")
            if tc is None:
                not_changed += 1
            else:
                chg.append(tc - sched)
                b[3].append(tc - sched)

    with open(series_path, "w") as f:
        last = max(list(per_sec) + list(ack_at) + list(vis_at) + [0])
        for sec in range(0, last + 1):
            b = per_sec.get(sec, [0, [], [], []])
            cols = [str(sec), str(b[0])]
            for vals in b[1:]:
                v = sorted(vals)
                for p in (50, 99):
                    x = pct(v, p)
                    cols.append("nan" if x is None else "%.3f" % (x / 1000.0))
            cols += [str(ack_at.get(sec, 0)), str(vis_at.get(sec, 0))]
            f.write(" ".join(cols) + "\n")

    lag_us = sorted(x[1] for x in lag)
    lag_bytes = sorted(x[2] for x in lag)
    lost = check.get("missing", 0) + check.get("acked_without_row", 0)
    doubled = check.get("rows_not_version_1", 0)
    out = {
        "offered_per_s": lsum.get("offered_per_s"),
        "seconds": lsum.get("seconds"),
        "requests": lsum.get("requests"),
        "acked": acked,
        "achieved_acked_per_s": lsum.get("acked_in_window_per_s"),
        "answered_in_window_per_s": lsum.get("answered_in_window_per_s"),
        "unsent": unsent,
        "status": {k: lsum.get(k) for k in ("status_2xx", "status_4xx", "status_5xx", "failed")},
        "loadgen_max_queue": lsum.get("max_queue"),
        "post_to_ack": summary_ms(ack),
        "post_to_ack_from_send": summary_ms(ack_send),
        "post_to_visible_primary": summary_ms(vis_p),
        "post_to_visible_replica": summary_ms(vis_r),
        "post_to_change": summary_ms(chg),
        "replica_lag_per_event": summary_ms(repl),
        "replica_replay_lag_sampled": {
            "samples": len(lag_us),
            "p50_ms": round(pct(lag_us, 50) / 1000.0, 2) if lag_us else None,
            "max_ms": round(lag_us[-1] / 1000.0, 2) if lag_us else None,
            "max_bytes_behind": lag_bytes[-1] if lag_bytes else None,
        },
        "acked_never_visible_on_replica": not_visible,
        "acked_without_change_event": not_changed,
        "duplicate_change_events": dup_changes,
        "db_check": check,
        "lost": lost,
        "doubled": doubled,
        "exactly_once": lost == 0 and doubled == 0 and check.get("replica_rows") == check.get("rows"),
    }
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
