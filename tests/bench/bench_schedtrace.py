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

Usage: bench_schedtrace.py [--rounds N] [--loops N]   (root)
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


def run_schedtrace(loops: int, args):
    err = tempfile.TemporaryFile(mode="w+")
    p = subprocess.Popen([sys.executable, TOOL] + args, stdout=subprocess.DEVNULL,
                         stderr=err)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        err.seek(0)
        if "Tracing" in err.read():
            break
        time.sleep(0.02)
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
    ap.add_argument("--loops", type=int, default=100000)
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 1
    res = {name: [] for name, _ in CONFIGS}
    for r in range(a.rounds):
        for name, fn in CONFIGS:
            res[name].append(fn(a.loops))
            print("round %d %-24s %.2fs %d switches lost %d cpu %.2fs"
                  % ((r + 1, name) + res[name][-1]), file=sys.stderr)
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
    print("LOST: the worst round. CPU_US/SW: tracer CPU (user+sys) per context "
          "switch of the whole machine during the run; perf sched: record plus "
          "timehist. The machine is shared with other developers' tests: noisy.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
