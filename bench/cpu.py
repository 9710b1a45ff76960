#!/usr/bin/env python3
"""CPU accounting for `make bench` from /proc: where the machine's CPU went during a phase,
split between the benchmark's own processes (by command name) and everything else on the
machine (other people's work on a shared machine shows up there, and makes a run noisy).

    cpu.py snap FILE                         writes a snapshot of every process and /proc/stat
    cpu.py diff BEFORE AFTER ROOT_PID...     JSON: the CPU seconds between the snapshots

A process belongs to the benchmark when a ROOT_PID is among its ancestors (or is it): the
script itself and the PostgreSQL postmasters, which pg_ctl detaches. The CPU of a process
that ended in between is counted through its parent's cutime/cstime (the fields the kernel
adds a reaped child's time to), so it is attributed to the parent's command.
"""
import json
import os
import sys

HZ = os.sysconf("SC_CLK_TCK")


def read_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    comm = s[s.index("(") + 1:s.rindex(")")]
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
    ppid = int(rest[1])
    ticks = int(rest[11]) + int(rest[12])
    child = int(rest[13]) + int(rest[14])
    return comm, ppid, ticks, child


def snap(path):
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                procs[d] = read_stat(d)
            except (OSError, ValueError, IndexError):
                pass
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    with open(path, "w") as f:
        json.dump({"procs": procs, "cpu": cpu, "ncpu": os.cpu_count()}, f)


def ours(procs, roots):
    mine = set()
    for pid in procs:
        p, seen = pid, 0
        while p in procs and seen < 64:
            if p in roots:
                mine.add(pid)
                break
            p = str(procs[p][1])
            seen += 1
    return mine


def diff(before_path, after_path, roots):
    with open(before_path) as f:
        a = json.load(f)
    with open(after_path) as f:
        b = json.load(f)
    roots = set(roots)
    mine_b = ours(b["procs"], roots)
    by_comm = {}
    for pid in mine_b:
        comm, _, ticks, child = b["procs"][pid]
        old = a["procs"].get(pid)
        # A pid seen before with another command is a new process.
        if old and old[0] == comm:
            d = (ticks - old[2]) + (child - old[3])
        else:
            d = ticks + child
        if d > 0:
            by_comm[comm] = by_comm.get(comm, 0) + d
    ca, cb = a["cpu"], b["cpu"]
    total = sum(cb) - sum(ca)
    idle = (cb[3] + cb[4]) - (ca[3] + ca[4])
    busy = total - idle
    mine = sum(by_comm.values())
    wall = total / b["ncpu"] / HZ if b["ncpu"] else 0
    out = {
        "seconds": round(wall, 2),
        "cpus": b["ncpu"],
        "busy_cpu_s": round(busy / HZ, 2),
        "bench_cpu_s": round(mine / HZ, 2),
        "other_cpu_s": round(max(busy - mine, 0) / HZ, 2),
        "other_share": round(max(busy - mine, 0) / total, 3) if total else 0,
        "steal_cpu_s": round(((cb[7] - ca[7]) if len(cb) > 7 else 0) / HZ, 2),
        "by_command_cpu_s": {k: round(v / HZ, 2) for k, v in
                             sorted(by_comm.items(), key=lambda kv: -kv[1])},
    }
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "snap":
        snap(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "diff":
        diff(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
