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


def wait_cpu(p: subprocess.Popen) -> float:
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = (os.waitstatus_to_exitcode(status)
                    if hasattr(os, "waitstatus_to_exitcode") else status >> 8)
    return ru.ru_utime + ru.ru_stime


def run_untraced(loops: int):
    c0 = ctxt()
    t = workload(loops)
    return t, ctxt() - c0, 0, 0.0


def start_schedtrace(args, out=subprocess.DEVNULL):
    err = tempfile.TemporaryFile(mode="w+")
    p = subprocess.Popen([sys.executable, TOOL] + args, stdout=out, stderr=err)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        err.seek(0)
        if "Tracing" in err.read():
            break
        time.sleep(0.02)
    return p, err


def run_schedtrace(loops: int, args):
    p, err = start_schedtrace(args)
    c0 = ctxt()
    t = workload(loops)
    c1 = ctxt()
    p.send_signal(signal.SIGINT)
    cpu = wait_cpu(p)
    err.seek(0)
    text = err.read()
    lost = sum(int(n) for n in re.findall(r"(\d+) events lost", text))
    if p.returncode != 0:
        raise SystemExit("schedtrace failed: %s" % text)
    return t, c1 - c0, lost, cpu


def run_perf(loops: int):
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "perf.data")
        p = subprocess.Popen([PERF, "sched", "record", "-a", "-o", data],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)     # perf prints nothing when it is ready
        c0 = ctxt()
        t = workload(loops)
        c1 = ctxt()
        p.send_signal(signal.SIGINT)
        cpu = wait_cpu(p)
        rec_err = p.stderr.read()
        q = subprocess.Popen([PERF, "sched", "timehist", "-i", data],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        cpu += wait_cpu(q)
        rep_err = q.stderr.read()
    lost = sum(int(n) for n in re.findall(r"lost (\d+) chunks", rec_err + rep_err))
    lost += sum(int(n) for n in re.findall(r"(\d+) lost events", rec_err + rep_err))
    return t, c1 - c0, lost, cpu


def pingpong(rounds: int, tracer=None):
    """The ping-pong under ``tracer(parent pid)`` (started before, stopped
    after: returns its CPU, lost and per-task switch counts); returns
    (seconds, machine switches, lost, tracer CPU, (kernel's switches of the
    two tasks, the tracer's, whether they match task by task))."""
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
        ksw = {pid: k["voluntary"] + k["involuntary"] for pid, k in kernel.items()}
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


def schedtrace_p(pid: int):
    import json
    out = tempfile.TemporaryFile(mode="w+")
    p, err = start_schedtrace(["-s", "--json", "-p", str(pid)], out)

    def stop():
        p.send_signal(signal.SIGINT)
        cpu = wait_cpu(p)
        err.seek(0)
        text = err.read()
        if p.returncode != 0:
            raise SystemExit("schedtrace failed: %s" % text)
        out.seek(0)
        rows = [json.loads(line) for line in out if line.strip()]
        counted = {t["pid"]: t["switches"] for r in rows for t in r["tasks"]}
        return cpu, sum(r["lost"] for r in rows), counted
    return stop


def perf_sched_p(pid: int):
    d = tempfile.TemporaryDirectory()
    data = os.path.join(d.name, "perf.data")
    p = subprocess.Popen([PERF, "sched", "record", "-a", "-o", data],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)

    def stop():
        p.send_signal(signal.SIGINT)
        cpu = wait_cpu(p)
        rec_err = p.stderr.read()
        q = subprocess.Popen([PERF, "sched", "timehist", "-i", data, "-p", str(pid)],
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loops", type=int, default=300000)
    ap.add_argument("--pingpong", type=int, default=300000)
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 1
    res = {name: [] for name, _ in CONFIGS}
    pp = {name: [] for name, _ in PINGPONG}
    for r in range(a.rounds):
        for name, fn in CONFIGS:
            res[name].append(fn(a.loops))
            print("round %d %-24s %.2fs %d switches lost %d cpu %.2fs"
                  % ((r + 1, name) + res[name][-1]), file=sys.stderr)
        for name, fn in PINGPONG:
            pp[name].append(pingpong(a.pingpong, fn))
            print("round %d ping-pong %-24s %.2fs %d switches lost %d cpu %.2fs %s"
                  % ((r + 1, name) + pp[name][-1]), file=sys.stderr)
    base = statistics.median(x[0] for x in res["untraced"])
    print("perf bench sched pipe -l %d, %d rounds, medians; load average %s"
          % (a.loops, a.rounds, open("/proc/loadavg").read().split()[0]))
    print("%-24s %8s %6s %9s %9s %7s %9s" % ("CONFIG", "TIME_S", "SLOW", "SWITCH/S",
                                             "SWITCHES", "LOST", "CPU_US/SW"))
    for name, _ in CONFIGS:
        rows = res[name]
        t = statistics.median(x[0] for x in rows)
        sw = statistics.median(x[1] for x in rows)
        lost = max(x[2] for x in rows)
        cpu = statistics.median(x[3] / x[1] * 1e6 if x[1] else 0 for x in rows)
        print("%-24s %8.2f %5.2fx %9d %9d %7d %9s" % (
            name, t, t / base, sw / t, sw, lost, "-" if name == "untraced" else "%.2f" % cpu))
    rows = res["schedtrace -s"]
    cpu = statistics.median(x[3] / x[1] * 1e6 if x[1] else 0 for x in rows)
    lost = max(x[2] for x in rows)
    print("TARGET (issue 9): schedtrace -s with 0 lost and under 1 us CPU per switch: %s "
          "(%d lost, %.2f us)" % ("met" if lost == 0 and cpu < 1.0 else "MISSED", lost, cpu))
    print()
    base = statistics.median(x[0] for x in pp["untraced"])
    print("ping-pong of two Python processes, %d round trips, traced with -p PARENT; "
          "%d rounds, medians" % (a.pingpong, a.rounds))
    print("%-24s %8s %6s %9s %9s %9s %6s %7s %9s" % (
        "CONFIG", "TIME_S", "SLOW", "SWITCH/S", "TASK_SW", "COUNTED", "EXACT", "LOST",
        "CPU_US/SW"))
    for name, _ in PINGPONG:
        rows = pp[name]
        t = statistics.median(x[0] for x in rows)
        sw = statistics.median(x[1] for x in rows)
        cpu = statistics.median(x[3] / x[1] * 1e6 if x[1] else 0 for x in rows)
        exact = [x[4][2] for x in rows]
        print("%-24s %8.2f %5.2fx %9d %9d %9s %6s %7d %9s" % (
            name, t, t / base, sw / t, statistics.median(x[4][0] for x in rows),
            "-" if rows[0][4][1] is None else statistics.median(x[4][1] for x in rows),
            "-" if exact[0] is None else
            "%d/%d" % (sum(1 for e in exact if e), len(exact)),
            max(x[2] for x in rows), "-" if name == "untraced" else "%.2f" % cpu))
    rows = pp["schedtrace -s -p"]
    cpu = statistics.median(x[3] / x[1] * 1e6 if x[1] else 0 for x in rows)
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
