#!/usr/bin/env python3
"""Benchmark: schedtrace beside perf sched on a pipe ping-pong workload.

The workload is ``perf bench sched pipe -l LOOPS``: two processes pass a
token over pipes as fast as the machine allows (the highest context switch
rate it reaches). Each round runs, interleaved:

  untraced          the workload alone (the baseline for slowdown)
  schedtrace        event mode, every switch printed (to /dev/null)
  schedtrace -s     per-task summary
  schedtrace -H     run-queue latency histogram
  perf sched        ``perf sched record -a`` during the workload, then
                    ``perf sched timehist`` over the file (the CPU of both)

Everything traces the whole system. Per configuration: median workload
time and slowdown, context switches during the run (/proc/stat ctxt),
events lost (the tool's own report; perf's "lost N chunks"), and the
tracer's CPU time (user+sys of its process, from wait4) per switch.

A second table traces one process: the live tests' Python ping-pong
(tests/live/test_schedtrace.py: a parent and the child it forks pass a
byte over pipes ROUNDS times) under ``schedtrace -s -p PARENT``, whose
switch counts per task are compared with the kernel's own
(/proc/PID/status voluntary and involuntary switches, before and after,
both tasks blocked), beside the workload untraced and ``perf sched
record`` of the same process tree. The tool reads every switch of the
machine (a kernel pid filter drops some here): CPU per machine switch.

Usage: bench_schedtrace.py [--rounds N] [--loops N] [--pingpong N]   (root)
The machine is shared and noisy: read the medians, not single runs.
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(REPO, "tests"), os.path.join(REPO, "tests", "live")]
TOOL = os.path.join(REPO, "bin", "schedtrace")
PERF = "/usr/bin/perf"


def ctxt() -> int:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("ctxt "):
                return int(line.split()[1])
    return 0


def workload(loops: int) -> float:
    t0 = time.monotonic()
    subprocess.run([PERF, "bench", "sched", "pipe", "-l", str(loops)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.monotonic() - t0


def wait_cpu(p: subprocess.Popen, timeout: Optional[float] = None) -> Optional[float]:
    """Reap p: its CPU (user+sys, with its reaped children's); None if it
    has not ended within ``timeout`` seconds (still running)."""
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, 0 if end is None else os.WNOHANG)
        if pid:
            break
        if time.monotonic() > end:
            return None
        time.sleep(0.2)
    p.returncode = (os.waitstatus_to_exitcode(status)
                    if hasattr(os, "waitstatus_to_exitcode") else status >> 8)
    return ru.ru_utime + ru.ru_stime


def run_untraced(loops: int):
    c0 = ctxt()
    t = workload(loops)
    return t, ctxt() - c0, 0, 0.0


def start_schedtrace(args, out=subprocess.DEVNULL, tool=TOOL):
    err = tempfile.TemporaryFile(mode="w+")
    p = subprocess.Popen([sys.executable, tool] + args, stdout=out, stderr=err)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        err.seek(0)
        if "Tracing" in err.read():
            break
        time.sleep(0.02)
    return p, err


def run_schedtrace(loops: int, args, tool=TOOL):
    p, err = start_schedtrace(args, tool=tool)
    c0 = ctxt()
    t = workload(loops)
    c1 = ctxt()
    p.send_signal(signal.SIGINT)
    cpu = wait_cpu(p)
    err.seek(0)
    text = err.read()
    lost = sum(int(n) for n in re.findall(r"(\d+) events lost", text))
    if p.returncode != 0:
        raise SystemExit("%s failed: %s" % (os.path.basename(tool), text))
    return t, c1 - c0, lost, cpu


def run_perf(loops: int, callchains: bool = False):
    """perf sched record -a (-g: with call chains) during the workload, then
    perf sched timehist (-g) over the file; the CPU of both."""
    g = ["-g"] if callchains else []
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "perf.data")
        p = subprocess.Popen([PERF, "sched", "record", "-a"] + g + ["-o", data],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)     # perf prints nothing when it is ready
        c0 = ctxt()
        t = workload(loops)
        c1 = ctxt()
        p.send_signal(signal.SIGINT)
        cpu = wait_cpu(p)
        rec_err = p.stderr.read()
        q = subprocess.Popen([PERF, "sched", "timehist", "-i", data] + g,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        cpu += wait_cpu(q)
        rep_err = q.stderr.read()
    lost = sum(int(n) for n in re.findall(r"lost (\d+) chunks", rec_err + rep_err))
    lost += sum(int(n) for n in re.findall(r"(\d+) lost events", rec_err + rep_err))
    return t, c1 - c0, lost, cpu


def pingpong(rounds: int, tracer=None, kinds=("voluntary", "involuntary")):
    """The ping-pong under ``tracer(parent pid)`` (started before, stopped
    after: returns its CPU, lost and per-task switch counts); returns
    (seconds, machine switches, lost, tracer CPU, (kernel's switches of the
    two tasks, the tracer's, whether they match task by task)). ``kinds``:
    the kernel's switches the tracer's counts are held to."""
    import test_schedtrace as ts
    w = ts.Workload(rounds)
    try:
        ts.settled(w.pid)
        stop = tracer(w.pid) if tracer else None
        before = ts.settled(w.pid)
        c0, t0 = ctxt(), time.monotonic()
        w.run()
        t, c1 = time.monotonic() - t0, ctxt()
        after = {w.pid: ts.settled(w.pid), w.child: ts.settled(w.child)}
        kernel = {w.pid: {k: after[w.pid][k] - before[k] for k in before},
                  w.child: after[w.child]}
        ksw = {pid: sum(k[x] for x in kinds) for pid, k in kernel.items()}
        if stop is None:
            return t, c1 - c0, 0, 0.0, (sum(ksw.values()), None, None)
        cpu, lost, counted = stop()
        if counted is None:     # a tracer whose counts are not compared
            return t, c1 - c0, lost, cpu, (sum(ksw.values()), None, None)
        got = sum(counted.get(pid, 0) for pid in ksw)
        exact = all(counted.get(pid) == n for pid, n in ksw.items())
        return t, c1 - c0, lost, cpu, (sum(ksw.values()), got, exact)
    finally:
        w.close()


def tool_p(args, field: str, tool=TOOL):
    """A tracer for ``pingpong``: ``TOOL ARGS --json -p PID``, its count per
    task from each JSON task's ``field``."""
    import json

    def start(pid: int):
        out = tempfile.TemporaryFile(mode="w+")
        p, err = start_schedtrace(list(args) + ["--json", "-p", str(pid)], out, tool=tool)

        def stop():
            p.send_signal(signal.SIGINT)
            cpu = wait_cpu(p)
            err.seek(0)
            text = err.read()
            if p.returncode != 0:
                raise SystemExit("%s failed: %s" % (os.path.basename(tool), text))
            out.seek(0)
            rows = [json.loads(line) for line in out if line.strip()]
            counted = {t["pid"]: t[field] for r in rows for t in r["tasks"]}
            return cpu, sum(r["lost"] for r in rows), counted
        return stop
    return start


schedtrace_p = tool_p(["-s"], "switches")


def perf_sched_p(pid: int, callchains: bool = False):
    """perf sched record -a (-g) for ``pingpong``, then perf sched timehist
    (-g) of the process: not compared (no counts)."""
    g = ["-g"] if callchains else []
    d = tempfile.TemporaryDirectory()
    data = os.path.join(d.name, "perf.data")
    p = subprocess.Popen([PERF, "sched", "record", "-a"] + g + ["-o", data],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)

    def stop():
        p.send_signal(signal.SIGINT)
        cpu = wait_cpu(p)
        rec_err = p.stderr.read()
        q = subprocess.Popen([PERF, "sched", "timehist", "-i", data, "-p", str(pid)] + g,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        cpu += wait_cpu(q)
        rep_err = q.stderr.read()
        d.cleanup()
        lost = sum(int(n) for n in re.findall(r"lost (\d+) chunks", rec_err + rep_err))
        return cpu, lost, None
    return stop


PINGPONG = [
    ("untraced", None),
    ("schedtrace -s -p", schedtrace_p),
    ("perf sched rec+timehist", perf_sched_p),
]


CONFIGS = [
    ("untraced", run_untraced),
    ("schedtrace (events)", lambda n: run_schedtrace(n, [])),
    ("schedtrace -s", lambda n: run_schedtrace(n, ["-s"])),
    ("schedtrace -H", lambda n: run_schedtrace(n, ["-H"])),
    ("perf sched rec+timehist", run_perf),
]


def run_rounds(a, configs, pingpongs, kinds=("voluntary", "involuntary"), width=24):
    """Each configuration on the pipe workload, then each ping-pong, ``a.rounds``
    times, interleaved; returns their results by name."""
    res = {name: [] for name, _ in configs}
    pp = {name: [] for name, _ in pingpongs}
    for r in range(a.rounds):
        for name, fn in configs:
            row = fn(a.loops)
            if row is None:     # a peer that never ended (stopped)
                print("round %d %-*s did not end" % (r + 1, width, name), file=sys.stderr)
                continue
            res[name].append(row)
            print("round %d %-*s %.2fs %d switches lost %d cpu %.2fs"
                  % ((r + 1, width, name) + row), file=sys.stderr)
        for name, fn in pingpongs:
            pp[name].append(pingpong(a.pingpong, fn, kinds))
            print("round %d ping-pong %-*s %.2fs %d switches lost %d cpu %.2fs %s"
                  % ((r + 1, width, name) + pp[name][-1]), file=sys.stderr)
    return res, pp


def cpu_per_switch(rows) -> float:
    return statistics.median(x[3] / x[1] * 1e6 if x[1] else 0 for x in rows)


def system_table(res, names, width=24) -> None:
    """The pipe workload's table: a row per configuration, medians."""
    base = statistics.median(x[0] for x in res["untraced"])
    print("%-*s %8s %6s %9s %9s %7s %9s" % (width, "CONFIG", "TIME_S", "SLOW", "SWITCH/S",
                                            "SWITCHES", "LOST", "CPU_US/SW"))
    for name in names:
        rows = res[name]
        if not rows:
            print("%-*s did not end in any round (stopped; no figures)" % (width, name))
            continue
        t = statistics.median(x[0] for x in rows)
        sw = statistics.median(x[1] for x in rows)
        print("%-*s %8.2f %5.2fx %9d %9d %7d %9s%s" % (
            width, name, t, t / base, sw / t, sw, max(x[2] for x in rows),
            "-" if name == "untraced" else "%.2f" % cpu_per_switch(rows),
            "" if len(rows) == len(res["untraced"]) else
            "  (%d of %d rounds ended)" % (len(rows), len(res["untraced"]))))


def pingpong_table(pp, names, heads=("TASK_SW", "COUNTED"), width=24) -> None:
    """The ping-pong's table: the kernel's switches of the two tasks, the
    tracer's count, the rounds where they agree task by task."""
    base = statistics.median(x[0] for x in pp["untraced"])
    print("%-*s %8s %6s %9s %9s %9s %6s %7s %9s" % (
        width, "CONFIG", "TIME_S", "SLOW", "SWITCH/S", heads[0], heads[1], "EXACT", "LOST",
        "CPU_US/SW"))
    for name in names:
        rows = pp[name]
        t = statistics.median(x[0] for x in rows)
        sw = statistics.median(x[1] for x in rows)
        exact = [x[4][2] for x in rows]
        print("%-*s %8.2f %5.2fx %9d %9d %9s %6s %7d %9s" % (
            width, name, t, t / base, sw / t, statistics.median(x[4][0] for x in rows),
            "-" if rows[0][4][1] is None else statistics.median(x[4][1] for x in rows),
            "-" if exact[0] is None else
            "%d/%d" % (sum(1 for e in exact if e), len(exact)),
            max(x[2] for x in rows), "-" if name == "untraced" else "%.2f" % cpu_per_switch(rows)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loops", type=int, default=300000)
    ap.add_argument("--pingpong", type=int, default=300000)
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 1
    res, pp = run_rounds(a, CONFIGS, PINGPONG)
    print("perf bench sched pipe -l %d, %d rounds, medians; load average %s"
          % (a.loops, a.rounds, open("/proc/loadavg").read().split()[0]))
    system_table(res, [name for name, _ in CONFIGS])
    rows = res["schedtrace -s"]
    cpu = cpu_per_switch(rows)
    lost = max(x[2] for x in rows)
    print("TARGET (issue 9): schedtrace -s with 0 lost and under 1 us CPU per switch: %s "
          "(%d lost, %.2f us)" % ("met" if lost == 0 and cpu < 1.0 else "MISSED", lost, cpu))
    ev, ps = res["schedtrace (events)"], res["perf sched rec+timehist"]
    e_cpu, p_cpu, e_lost = cpu_per_switch(ev), cpu_per_switch(ps), max(x[2] for x in ev)
    print("TARGET (issue 21): event mode at or below perf sched's CPU per switch, 0 lost: %s "
          "(%.2f against %.2f us, %d lost)" % ("met" if e_cpu <= p_cpu and not e_lost else
                                               "MISSED", e_cpu, p_cpu, e_lost))
    print()
    print("ping-pong of two Python processes, %d round trips, traced with -p PARENT; "
          "%d rounds, medians" % (a.pingpong, a.rounds))
    pingpong_table(pp, [name for name, _ in PINGPONG])
    rows = pp["schedtrace -s -p"]
    cpu = cpu_per_switch(rows)
    ok = all(x[4][2] for x in rows) and max(x[2] for x in rows) == 0
    print("TARGET (issue 9): schedtrace -s -p exact switch counts, 0 lost, under 1 us CPU "
          "per switch: %s (%.2f us)" % ("met" if ok and cpu < 1.0 else "MISSED", cpu))
    print("TASK_SW: the two tasks' switches by the kernel's count (/proc/PID/status); "
          "COUNTED: schedtrace's; EXACT: rounds where they agree task by task. "
          "CPU_US/SW per switch of the whole machine.")
    print("LOST: the worst round. CPU_US/SW: tracer CPU (user+sys) per context "
          "switch of the whole machine during the run; perf sched: record plus "
          "timehist. The machine is shared with other developers' tests: noisy.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
