#!/usr/bin/env python3
"""Assembles the figures of one `make bench` run (the JSON files scripts/bench.sh left in
RES_DIR) into OUT_DIR/results.json and OUT_DIR/results.md, with every ratio and target, and
writes RES_DIR/latency.gp, the gnuplot script of OUT_DIR/latency.png.

    report.py RES_DIR OUT_DIR
"""
import glob
import json
import os
import statistics
import sys

NOISY = 1.2  # a ceiling whose max/min exceeds this is flagged


def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def load_lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except (OSError, ValueError):
        return []


def spread(values):
    values = [v for v in values if v]
    if not values:
        return None
    lo, hi = min(values), max(values)
    return {"runs": values, "min": lo, "median": statistics.median(values), "max": hi,
            "max_over_min": round(hi / lo, 3) if lo else None,
            "noisy": bool(lo) and hi / lo > NOISY}


def spread_text(values):
    s = spread(values)
    if not s:
        return "no runs"
    return f"max/min {s['max_over_min']}: {'**noisy**' if s['noisy'] else 'steady'}"


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def wrk_rate(x):
    """Requests a second of one wrk summary."""
    return round(x["requests"] / (x["duration_us"] / 1e6))


def paired(ceilings, measured):
    """Each measured figure against the mean of the ceiling runs just before and just after it
    (ceilings has one run more than measured): the ratios, their median, and how far the
    ceiling moved during the pairing."""
    if not measured or len(ceilings) != len(measured) + 1 or not all(ceilings):
        return None
    rows = []
    for i, m in enumerate(measured):
        c = (ceilings[i] + ceilings[i + 1]) / 2
        rows.append({"before": ceilings[i], "measured": m, "after": ceilings[i + 1],
                     "ratio": ratio(m, c)})
    ratios = [x["ratio"] for x in rows if x["ratio"]]
    return {"runs": rows, "ratio_median": statistics.median(ratios) if ratios else None,
            "ratio_spread": spread(ratios), "ceiling_spread": spread(ceilings)}


def paired_target(name, pr, goal, what):
    pr = pr or {}
    return target(f"{name} (paired runs, median)", pr.get("ratio_median"), ">=", goal,
                  note=f"{len(pr['runs'])} {what} runs, each against the ceiling just before and after it"
                  if pr else "")


def fmt(x, unit=""):
    if x is None:
        return "n/a"
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    if isinstance(x, float) and x < 100:
        return f"{x:,.2f}{unit}"
    return f"{x:,.0f}{unit}"


def target(name, measured, op, goal, unit="", note=""):
    if measured is None:
        met, by = False, "not measured"
    elif op == "<" and goal == 1:
        met, by = measured < goal, ""
    elif op == ">=":
        met = measured >= goal
        by = f"{measured / goal:.2f}x of the target" if goal else ""
    else:
        met = measured < goal
        by = f"{measured / goal:.2f}x of the limit" if goal else ""
    return {"target": name, "goal": f"{op} {goal}{unit}", "measured": measured, "unit": unit,
            "met": met, "by": by, "note": note}


def main():
    res, out_dir = sys.argv[1], sys.argv[2]
    machine = load(os.path.join(res, "machine.json"), {})
    phases = {p["phase"]: p["seconds"] for p in load_lines(os.path.join(res, "phases.jsonl"))}
    failed = [l.strip() for l in open(os.path.join(res, "failed.txt"))] \
        if os.path.exists(os.path.join(res, "failed.txt")) else []
    failed = [f for f in failed if f]
    r = {"machine": machine, "phase_seconds": phases,
         "cpu_whole_run": load(os.path.join(res, "cpu-total.json"), {})}

    # ---- ceilings ----
    c = {}
    for server in ("libevent", "nginx"):
        for conns in (64, 256):
            runs = load_lines(os.path.join(res, f"ceiling-{server}-{conns}.jsonl"))
            s = spread([wrk_rate(x) for x in runs])
            if s:
                s["p99_ms"] = [round(x["latency_us"]["p99"] / 1000, 2) for x in runs]
                c[f"{server}_{conns}"] = s
    s = spread([x["per_s"] for x in load_lines(os.path.join(res, "ceiling-upsert.jsonl"))])
    if s:
        c["upsert_rows"] = s
    s = spread([x["per_s"] for x in load_lines(os.path.join(res, "ceiling-kafka.jsonl"))])
    if s:
        c["kafka_messages"] = s
    r["ceilings"] = c
    med = lambda k: c.get(k, {}).get("median")

    # ---- ingest ----
    ing = {}
    for conns in (64, 256):
        x = load(os.path.join(res, f"ingest-{conns}.json"))
        if not x:
            continue
        x["ratio_to_libevent"] = ratio(x["per_s"], med(f"libevent_{conns}"))
        x["ratio_to_nginx"] = ratio(x["per_s"], med(f"nginx_{conns}"))
        ing[str(conns)] = x
    r["ingest"] = ing
    r["ingest_paired"] = paired([wrk_rate(x) for x in load_lines(os.path.join(res, "paired-libevent-256.jsonl"))],
                                [wrk_rate(x) for x in load_lines(os.path.join(res, "paired-ingest-256.jsonl"))])

    # ---- apply ----
    ap = {"backlog": load(os.path.join(res, "backlog.json"))}
    for key, name in (("one_worker", "apply1"), ("two_workers", "apply2")):
        x = load(os.path.join(res, f"apply-{name}.json"))
        if x:
            x["ratio_to_upsert"] = ratio(x.get("per_s_steady"), med("upsert_rows"))
            ap[key] = x
    # One worker ran three times: the targets take the median, the report shows the spread
    # (the table's other columns are the first, profiled run's).
    runs = [load(os.path.join(res, f"apply-{n}.json")) for n in ("apply1", "apply1b", "apply1c")]
    steady = [x["per_s_steady"] for x in runs if x and x.get("per_s_steady")]
    if "one_worker" in ap and steady:
        m = statistics.median(steady)
        ap["one_worker"]["runs_per_s_steady"] = steady
        ap["one_worker"]["per_s_steady_first_run"] = ap["one_worker"]["per_s_steady"]
        ap["one_worker"]["per_s_steady"] = m
        ap["one_worker"]["ratio_to_upsert"] = ratio(m, med("upsert_rows"))
    r["apply"] = ap
    r["apply_paired"] = paired([x["per_s"] for x in load_lines(os.path.join(res, "paired-upsert.jsonl"))],
                               [x.get("per_s_steady") if x else None for x in runs])

    # ---- e2e ----
    e2e = []
    for path in sorted(glob.glob(os.path.join(res, "e2e-*.json")),
                       key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0])):
        x = load(path)
        if x:
            vis = x.get("post_to_visible_replica", {})
            never = x.get("acked_never_visible_on_replica", 0)
            # Writes never seen on the replica count as infinitely late.
            x["visible_p99_ms_counting_never"] = vis.get("p99_ms") if x["acked"] and \
                never <= 0.01 * x["acked"] else None
            e2e.append(x)
    r["e2e"] = e2e

    # ---- replay ----
    reps = [x for x in (load(os.path.join(res, f"replay-{k}.json")) for k in (1, 2, 3)) if x]
    if reps:
        rp = dict(sorted(reps, key=lambda x: x["per_s_wall"])[len(reps) // 2])
        rp["runs_per_s_wall"] = [x["per_s_wall"] for x in reps]
        rp["same_rows"] = all(x["same_rows"] for x in reps)
        r["replay"] = rp
    else:
        r["replay"] = None

    # ---- profiles ----
    prof = {}
    for name in ("ingest", "apply"):
        p = os.path.join(res, f"perf-{name}.txt")
        if os.path.exists(p):
            dso = os.path.join(res, f"perf-{name}-dso.txt")
            prof[name] = {"symbols": open(p).read().splitlines(),
                          "by_library": open(dso).read().splitlines() if os.path.exists(dso) else [],
                          "by_command": open(os.path.join(res, f"perf-{name}-comm.txt")).read().splitlines()
                          if os.path.exists(os.path.join(res, f"perf-{name}-comm.txt")) else []}
    callers = {}
    for name in ("ingest", "apply-worker", "apply-backend"):
        p = os.path.join(res, f"perf-{name}-callers.txt")
        if os.path.exists(p):
            callers[name] = open(p).read().splitlines()
    r["profiles"] = prof
    r["call_chains"] = callers

    # ---- targets ----
    t = []
    i256 = ing.get("256", {})
    t.append(target("ingest writes/s at 256 connections", i256.get("per_s"), ">=", 50000, "/s"))
    t.append(target("ingest p99 at 256 connections",
                    round(i256["latency_us"]["p99"] / 1000, 2) if i256 else None, "<", 10, " ms"))
    t.append(paired_target("ingest / bare libevent at 256 connections", r["ingest_paired"], 0.6, "ingest"))
    one = ap.get("one_worker", {})
    t.append(target("apply events/s, one worker (steady, 10%-90% of the backlog)",
                    one.get("per_s_steady"), ">=", 50000, "/s"))
    t.append(paired_target("apply one worker / raw upsert", r["apply_paired"], 0.4, "apply"))
    top = [x for x in e2e if x.get("offered_per_s") == 20000]
    if top:
        x = top[0]
        t.append(target("e2e at 20,000/s: achieved acknowledged writes/s", x.get("achieved_acked_per_s"),
                        ">=", 19600, "/s", "at least 98% of the offered load"))
        t.append(target("e2e at 20,000/s: nothing lost or doubled",
                        x["lost"] + x["doubled"], "<", 1, " writes",
                        f"lost {x['lost']}, doubled {x['doubled']}"))
        t.append(target("e2e at 20,000/s: POST -> visible on the replica, p99",
                        x.get("visible_p99_ms_counting_never"), "<", 50, " ms",
                        f"{x.get('acked_never_visible_on_replica', 0)} acknowledged writes never became visible"))
    rp = r["replay"] or {}
    t.append(target("replay into an empty database, events/s", rp.get("per_s_wall"), ">=", 80000, "/s"))
    r["targets"] = t
    r["targets_met"] = sum(1 for x in t if x["met"])
    r["failed_checks"] = failed
    r["exactly_once_all_runs"] = all(x.get("exactly_once") for x in e2e) if e2e else None

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(r, f, indent=1)
        f.write("\n")
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown(r))
    with open(os.path.join(res, "latency.gp"), "w") as f:
        f.write(gnuplot(res, out_dir, e2e))
    return 0


def paired_md(w, pr, what, ceiling, intro):
    if not pr:
        return
    w(f"\n{intro} (ceiling {spread_text(pr['ceiling_spread']['runs'])} over the pairing; the ratios "
      f"{spread_text(pr['ratio_spread']['runs'])}):\n")
    w(f"| run | {ceiling} before | {what} | ceiling after | ratio to their mean |")
    w("|---|---|---|---|---|")
    for i, x in enumerate(pr["runs"], 1):
        w(f"| {i} | {fmt(x['before'])} | {fmt(x['measured'])} | {fmt(x['after'])} | {x['ratio']} |")
    w(f"\nMedian ratio: **{pr['ratio_median']}**.")


def pgss_table(w, rows):
    if not rows:
        return
    w("\nTop statements (pg_stat_statements, top level):\n")
    w("| calls | total ms | mean ms | rows | statement |")
    w("|---|---|---|---|---|")
    for s in rows[:6]:
        q = s["query"].replace("|", "\\|")
        w(f"| {s['calls']} | {s['total_ms']} | {s['mean_ms']} | {s['rows']} | `{q[:110]}` |")


def cpu_line(cpu):
    if not cpu:
        return ""
    # The script's own reaped children (wrk, loadgen, psql, kproduce) are counted as bash.
    parts = ", ".join(f"{'bench tools' if k == 'bash' else k} {v:.1f}"
                      for k, v in list(cpu.get("by_command_cpu_s", {}).items())[:7])
    return (f"CPU over {cpu.get('seconds')} s x {cpu.get('cpus')} cores: this run's processes "
            f"{cpu.get('bench_cpu_s')} s ({parts}); other processes on the machine "
            f"{cpu.get('other_cpu_s')} s ({100 * cpu.get('other_share', 0):.0f}% of the machine)")


def markdown(r):
    m = r["machine"]
    L = []
    w = L.append
    w("# `make bench` results\n")
    w(f"Run of {m.get('date')} on {m.get('cpus')} x {m.get('cpu_model')}, {m.get('mem_gib')} GiB, "
      f"Linux {m.get('kernel')}, Debian {m.get('debian')}; commit {m.get('commit')}"
      f"{' with uncommitted changes' if m.get('uncommitted_changes') else ''}; load average at "
      f"start {' '.join(m.get('loadavg_at_start', []))}. Every process (servers, databases, "
      f"broker, load generators) on this one machine. Total {r['phase_seconds'].get('total')} s "
      f"(phases: {', '.join(f'{k} {v} s' for k, v in r['phase_seconds'].items() if k != 'total')}).\n")
    cw = r.get("cpu_whole_run") or {}
    if cw:
        w(f"Machine share used by processes other than this run's: "
          f"**{100 * cw.get('other_share', 0):.0f}%** over the whole run "
          f"({cw.get('other_cpu_s')} CPU-s of {cw.get('busy_cpu_s')} busy). "
          + ("The machine was shared: every figure below is depressed and noisier than on an idle machine.\n"
             if cw.get("other_share", 0) > 0.05 else "The machine was otherwise idle.\n"))
    w("See [README.md](README.md) for the method and the findings.\n")

    w("## Targets\n")
    w("| target | goal | measured | met | |")
    w("|---|---|---|---|---|")
    for t in r["targets"]:
        w(f"| {t['target']} | {t['goal']} | {fmt(t['measured'], t['unit'])} | "
          f"{'**yes**' if t['met'] else '**no**'} | {t['by']}{'; ' + t['note'] if t['note'] else ''} |")
    w(f"\n{r['targets_met']} of {len(r['targets'])} targets met.")
    if r["failed_checks"]:
        w(f" **The run failed**: {'; '.join(r['failed_checks'])}.")
    w("\n")

    w("## 1. Ceilings (same run, same machine)\n")
    w("| ceiling | runs | min | median | max | max/min | |")
    w("|---|---|---|---|---|---|---|")
    names = {"libevent_64": "bare libevent evhttp, 202, 64 connections (req/s)",
             "libevent_256": "bare libevent evhttp, 202, 256 connections (req/s)",
             "nginx_64": "nginx 1 worker, `return 202`, 64 connections (req/s)",
             "nginx_256": "nginx 1 worker, `return 202`, 256 connections (req/s)",
             "upsert_rows": "raw upsert into daily_meals, 500 rows/txn, 2 connections (rows/s)",
             "kafka_messages": "librdkafka -> devbroker, 600 B, the shared producer settings, linger 1 ms (msg/s)"}
    for k, label in names.items():
        s = r["ceilings"].get(k)
        if s:
            w(f"| {label} | {len(s['runs'])} | {fmt(s['min'])} | {fmt(s['median'])} | {fmt(s['max'])} "
              f"| {s['max_over_min']} | {'**noisy**' if s['noisy'] else 'steady'} |")
    w("")

    w("## 2. Ingest (wrk, `PUT /v1/diary/{date}/{meal}/{food_id}`, answer after the broker's ack)\n")
    w("| connections | writes/s | p50 | p99 | p99.9 | errors | ingest CPU/request | RSS (peak) | / libevent | / nginx |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for conns, x in r["ingest"].items():
        lat = x["latency_us"]
        err = sum(x["errors"].values())
        w(f"| {conns} | {fmt(x['per_s'])} | {lat['p50'] / 1000:.2f} ms | {lat['p99'] / 1000:.2f} ms | "
          f"{lat['p99_9'] / 1000:.2f} ms | {err} | {x['ingest_cpu_us_per_request']} us | "
          f"{x['ingest_rss_kb'] // 1024} MiB ({x['ingest_peak_rss_kb'] // 1024} MiB) | "
          f"{x['ratio_to_libevent']} | {x['ratio_to_nginx']} |")
    for conns, x in r["ingest"].items():
        w(f"\n{conns} connections: {cpu_line(x.get('cpu'))}.")
    paired_md(w, r.get("ingest_paired"), "writes/s", "bare libevent, 256 connections (req/s)",
              "Then ingest at 256 connections in short runs between runs of the bare libevent server, "
              "with the same requests: the ratio target's figure")
    w("\n")

    ap = r["apply"]
    b = ap.get("backlog") or {}
    w("## 3. Apply (a backlog in diary.events, then the workers)\n")
    if b:
        w(f"Backlog: {b['events']:,} events ({b['users']} users: registration, food, "
          f"{b['entries_per_user']} entry sets each, {b['entry_updates']} of them updates), "
          f"{b['avg_value_bytes']} B a value on average; the fullest partition holds "
          f"{b['max_partition_events']:,} events, about {b['max_partition_bytes'] / 1048576:.1f} MiB "
          f"(the devbroker keeps 5 MiB or 100,000 message sets a partition); every partition's low "
          f"watermark 0 after producing: {'nothing dropped' if b['nothing_dropped'] else '**messages were dropped**'}. "
          f"The issue asks for 500,000 events: at the ~{b['max_partition_bytes'] / max(b['max_partition_events'], 1):.0f} B "
          f"stored per event measured here that is ~{500000 / 12 * b['max_partition_bytes'] / max(b['max_partition_events'], 1) / 1048576:.0f} MiB "
          f"a partition, beyond what the devbroker keeps, so the backlog is sized to fit.\n")
    w("| workers | events/s steady (10-90%) | overall | to first | batches | mean batch | / raw upsert | rows |")
    w("|---|---|---|---|---|---|---|---|")
    for key in ("one_worker", "two_workers"):
        x = ap.get(key)
        if x:
            w(f"| {x['workers']} | {fmt(x['per_s_steady'])} | {fmt(x['per_s_overall'])} | "
              f"{x['seconds_to_first']} s | {fmt(x['batches'])} | {x['mean_batch']} | {x['ratio_to_upsert']} | "
              f"{x['db'].get('daily_meals')} meals, {x['db'].get('applied')} applied"
              f"{'' if x['complete'] else ' (**incomplete**)'} |")
    runs = ap.get("one_worker", {}).get("runs_per_s_steady")
    if runs:
        w(f"\nOne worker, {len(runs)} runs, each into a fresh database: {', '.join(fmt(v) for v in runs)} "
          f"events/s steady ({spread_text(runs)}); the table and the targets give the median, the "
          f"details below are the first run's (profiled).")
    paired_md(w, r.get("apply_paired"), "events/s steady", "raw upsert (rows/s)",
              "The raw upsert ran before and after each one-worker run: the ratio target's figure")
    for key in ("one_worker", "two_workers"):
        x = ap.get(key)
        if not x:
            continue
        w(f"\n{x['workers']} worker(s): batch sizes (cumulative, all workers): "
          + ", ".join(f"<= {k}: {v}" for k, v in x.get("batch_size_cumulative", {}).items()) + ".")
        if (x.get("attempts") or 1) > 1:
            w(f"Measured at attempt {x['attempts']}: in the attempt(s) before, the workers' group did not form "
              f"within 10 s (the devbroker's SyncGroup race, README.md item 3, Apply), and the run was made again "
              f"with a fresh database and group.")
        wm = x.get("worker_metrics", {})
        bs, os_ = wm.get("diary_worker_batch_seconds_total"), wm.get("diary_worker_outbox_seconds_total")
        if bs is not None and x.get("seconds_total"):
            w(f"Time in apply_batch {bs:.1f} s, relaying the outbox {os_ or 0:.1f} s, of "
              f"{x['seconds_total']:.1f} s wall per worker.")
        w(cpu_line(x.get("cpu")) + ".")
        pgss_table(w, x.get("pg_stat_statements"))
    w("\n")

    w("## 4. End to end (open-loop load -> ingest -> devbroker -> worker -> primary -> replica, and diary.changes)\n")
    w("Latencies count from each write's scheduled send time (open loop); visibility is sampled every 5 ms "
      "(primary and replica consumer_offsets), the change stream by a consumer with fetch.wait.max.ms=5.\n")
    w("| offered/s | acked/s | never sent | 5xx/failed | POST->ack p50/p99 (from send p99) | "
      "POST->visible (replica) p50/p99/max | POST->change p50/p99 | replica lag p99 | never visible | "
      "lost | doubled | exactly once |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for x in r["e2e"]:
        a, v, ch, rl = (x["post_to_ack"], x["post_to_visible_replica"], x["post_to_change"],
                        x["replica_lag_per_event"])
        g = lambda d, k: fmt(d.get(k)) if d.get("count") else "n/a"
        w(f"| {fmt(x['offered_per_s'])} | {fmt(x['achieved_acked_per_s'])} | {fmt(x.get('unsent'))} | "
          f"{(x['status'].get('status_5xx') or 0) + (x['status'].get('failed') or 0)} | "
          f"{g(a, 'p50_ms')} / {g(a, 'p99_ms')} ({g(x.get('post_to_ack_from_send', {}), 'p99_ms')}) ms | "
          f"{g(v, 'p50_ms')} / {g(v, 'p99_ms')} / {g(v, 'max_ms')} ms | "
          f"{g(ch, 'p50_ms')} / {g(ch, 'p99_ms')} ms | {g(rl, 'p99_ms')} ms | "
          f"{x['acked_never_visible_on_replica']} | {x['lost']} | {x['doubled']} | "
          f"{'yes' if x['exactly_once'] else '**NO**'} |")
    for x in r["e2e"]:
        extra = []
        if x.get("worker_stopped_for_lost_events"):
            extra.append("the worker stopped with \"lost events\": it fell so far behind that the "
                         "devbroker dropped events it had not applied (5 MiB a partition)")
        elif not x.get("worker_alive_at_end", True):
            extra.append("the worker had exited")
        wm = x.get("worker_metrics") or {}
        if wm.get("diary_worker_batches_total"):
            extra.append(f"worker: {wm['diary_worker_batches_total']:.0f} batches of {wm.get('mean_batch')} "
                         f"events on average, {wm.get('diary_worker_batch_seconds_total', 0):.1f} s in "
                         f"apply_batch and {wm.get('diary_worker_outbox_seconds_total', 0):.1f} s relaying")
        if x.get("ingest_shed"):
            extra.append(f"ingest refused {x['ingest_shed']:,} writes with 503 apply-behind "
                         f"(load shedding: a partition's apply was more than DIARY_INGEST_MAX_LAG behind); "
                         f"they were never acknowledged and the check does not count them")
        if x.get("unsent", 0) > 0.001 * (x.get("requests") or 0):
            extra.append(f"{x['unsent']:,} requests were still queued in the load generator when the "
                         f"time was up (the pipeline did not keep up with the offered load)")
        w(f"\n{fmt(x['offered_per_s'])}/s: " + "; ".join(extra + [cpu_line(x.get("cpu"))]) + ".")
        pgss_table(w, x.get("pg_stat_statements"))
    w("\n![latency over time](latency.png)\n")

    rp = r.get("replay") or {}
    w("## 5. Replay (`diaryctl replay` of the backlog into an empty database)\n")
    if rp:
        runs = rp.get("runs_per_s_wall") or [rp.get("per_s_wall")]
        w(f"{len(runs)} runs, each into a fresh database: {', '.join(fmt(v) for v in runs)} events/s "
          f"({spread_text(runs)}). The median run: {fmt(rp.get('events'))} events in {rp.get('wall_seconds')} s wall: "
          f"**{fmt(rp.get('per_s_wall'))} events/s** (diaryctl's own figure {fmt(rp.get('diaryctl_per_s'))}/s); "
          f"daily_meals rows equal to the live apply's in every run: {rp.get('same_rows')}.\n")

    w("## Profiles (perf, cpu-clock at 499 Hz, during the 256-connection ingest run and the one-worker apply)\n")
    for name, p in r["profiles"].items():
        w(f"### {name}\n")
        w("```")
        w("\n".join(p["by_command"][:8]))
        w("")
        w("\n".join(p.get("by_library", [])[:20]))
        w("")
        w("\n".join(p["symbols"][:40]))
        w("```\n")
    if r.get("call_chains"):
        w("## Call chains (perf --call-graph dwarf, inclusive time per function)\n")
        w("Short extra profiles with DWARF unwinding, outside the measured runs: ingest during 3 s "
          "of an extra 256-connection wrk run, one worker and its PostgreSQL backend during 4 s of "
          "an extra one-worker apply of the backlog. Children included: a caller's share "
          "contains its callees'.\n")
        for name, lines in r["call_chains"].items():
            w(f"### {name}\n")
            w("```")
            w("\n".join(lines[:45]))
            w("```\n")
    return "\n".join(L) + "\n"


def gnuplot(res, out_dir, e2e):
    """Three panels over the seconds of each end-to-end run: POST -> visible on the replica
    and POST -> ack (p99 solid, p50 dashed) of the writes sent in each second, and the
    acknowledgements and replica visibility per second."""
    series = sorted(glob.glob(os.path.join(res, "e2e-*.series")),
                    key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0]))
    colors = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a"]
    lines = [
        "set terminal png size 1200,1200 noenhanced",
        f"set output '{os.path.join(out_dir, 'latency.png')}'",
        "set multiplot layout 3,1 title 'make bench, end to end: latency by the second a write was sent (p99 solid, p50 dashed); throughput'",
        "set grid", "set xlabel 'seconds into the run'", "set key outside right",
        "set logscale y", "set ylabel 'POST -> visible on replica (ms)'",
    ]

    def panel(cols, widths):
        plots = []
        for i, s in enumerate(series):
            rate = s.rsplit("-", 1)[1].split(".")[0]
            col = colors[i % len(colors)]
            for (c, label), (lw, dt) in zip(cols, widths):
                plots.append(f"'{s}' using 1:{c} with lines lw {lw} dt {dt} lc rgb '{col}' "
                             f"title '{rate}/s {label}'")
        return "plot " + ", ".join(plots) if plots else "plot 0"

    lines.append(panel([(6, "p99"), (5, "p50")], [(2, 1), (1, 2)]))
    lines.append("set ylabel 'POST -> ack (ms)'")
    lines.append(panel([(4, "p99"), (3, "p50")], [(2, 1), (1, 2)]))
    lines += ["unset logscale y", "set ylabel 'writes per second'"]
    lines.append(panel([(9, "acked"), (10, "visible")], [(2, 1), (1, 2)]))
    lines.append("unset multiplot")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
