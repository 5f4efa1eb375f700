#!/usr/bin/env python3
"""Benchmark: pagefaults -p (summary mode) beside perf trace -F, perf stat,
and the physical limit, on one thread faulting as fast as it can.

Usage: tests/bench/bench_pagefaults.py [--faults N] [--rounds R] [--no-perf-trace]

Each round runs, for every tracer, an untraced workload and then a traced
one (interleaved pairs: the machine is shared and noisy), and the table
shows medians over the rounds of:
  LOST      events the tracer lost (kernel per-CPU stats; perf: its count)
  ERROR     tracer's fault count minus the kernel's (getrusage minflt delta)
  CPU/FLT   the tracer's own CPU time per fault, in microseconds, counted
            from the moment it is ready (its start-up excluded)
  SLOWDOWN  workload CPU time (user + sys, getrusage) traced / untraced,
            in the same pair: the kernel writes events in the faulting
            task's context, and CPU time is far less disturbed than wall
            time by the other work on a shared machine
  WALL      the same for wall-clock time (noisy here)
The physical limit is the kernel writing the same events (the two
exceptions tracepoints, PID-filtered) into a buffer that nobody reads;
"count-only" is the design pagefaults did not take: five instances with
kernel filters, one per kind, counted from per_cpu stats without reading.
Needs root, perf (linux-perf) for its rows.
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "lib"))
sys.path.insert(0, os.path.join(REPO, "tests"))

WORKLOAD = r'''
import mmap, resource, sys, time
PAGE = mmap.PAGESIZE
n, chunk = int(sys.argv[1]), 8192
def storm(n):
    done = 0
    while done < n:
        k = min(chunk, n - done)
        m = mmap.mmap(-1, k * PAGE)
        m.madvise(mmap.MADV_NOHUGEPAGE)
        m[0:k * PAGE:PAGE] = b"\1" * k
        m.close()
        done += k
storm(chunk)                      # warm up: the same paths, untimed
print("ready", flush=True)
sys.stdin.readline()
r0 = resource.getrusage(resource.RUSAGE_SELF)
t = time.monotonic()
storm(n)
el = time.monotonic() - t
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
print(el, cpu, r1.ru_minflt - r0.ru_minflt + r1.ru_majflt - r0.ru_majflt, flush=True)
sys.stdin.readline()
'''


def cpu_of(pid):
    """utime + stime of a live process, seconds."""
    with open("/proc/%d/stat" % pid) as f:
        d = f.read()
    fl = d[d.rfind(")") + 2:].split()
    return (int(fl[11]) + int(fl[12])) / os.sysconf("SC_CLK_TCK")


class Workload:
    def __init__(self, n):
        self.p = subprocess.Popen([sys.executable, "-c", WORKLOAD, str(n)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        self.pid = self.p.pid
        assert self.p.stdout.readline() == "ready\n"
        time.sleep(0.05)  # blocked in read

    def run(self):
        """Fault; returns ((wall s, CPU s), kernel's fault count), then waits."""
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        el, cpu, n = self.p.stdout.readline().split()
        return (float(el), float(cpu)), int(n)

    def end(self):
        self.p.stdin.write("end\n")
        self.p.stdin.flush()
        self.p.wait()


def wait_rusage(proc):
    _, _, ru = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return ru.ru_utime + ru.ru_stime


def t_pagefaults(w):
    import json
    import tooling
    t = tooling.start("pagefaults", "-p", str(w.pid), "--json")
    c0 = cpu_of(t.proc.pid)
    el, kn = w.run()
    t.proc.send_signal(signal.SIGINT)
    cpu = wait_rusage(t.proc) - c0
    t._t_out.join(5)
    s = json.loads("".join(t.out))
    row = [p for p in s["processes"] if p["pid"] == w.pid]
    got = row[0]["faults"] if row else 0
    return el, kn, s["lost"], got - kn, cpu


def t_limit(w):
    from ftracetools.ring.reader import lost_from_stats, read_stats
    from ftracetools.kernel.session import Session
    with Session("pfbench") as s:
        s.set_buffer_kb(4096)
        s.set_pids("set_event_pid", [w.pid])
        s.enable_event("exceptions", "page_fault_user")
        s.enable_event("exceptions", "page_fault_kernel")
        el, kn = w.run()
        cpus = [d for d in os.listdir(s.path("per_cpu")) if d.startswith("cpu")]
        st = [read_stats(s.path("per_cpu", c)) for c in cpus]
        written = sum(x.get("entries", 0) + lost_from_stats(x) for x in st)
    return el, kn, None, written - kn, None


def t_count_only(w):
    """The alternative to reading events: one instance per kind, counts
    from per_cpu stats. Five buffers are written per fault, not one."""
    import contextlib
    from ftracetools.ring.reader import lost_from_stats, read_stats
    from ftracetools.kernel.session import Session
    kinds = [(("user", "kernel"), None), (("kernel",), None),
             (("user", "kernel"), "error_code & 2"),
             (("user", "kernel"), "error_code & 16"),
             (("user", "kernel"), "error_code & 1")]
    with contextlib.ExitStack() as st:
        ss = []
        for i, (evs, filt) in enumerate(kinds):
            s = st.enter_context(Session("pfbench%d" % i))
            s.set_buffer_kb(64)
            s.set_pids("set_event_pid", [w.pid])
            for e in evs:
                s.enable_event("exceptions", "page_fault_" + e, filt)
            ss.append(s)
        el, kn = w.run()
        s = ss[0]
        cpus = [d for d in os.listdir(s.path("per_cpu")) if d.startswith("cpu")]
        st0 = [read_stats(s.path("per_cpu", c)) for c in cpus]
        written = sum(x.get("entries", 0) + lost_from_stats(x) for x in st0)
    return el, kn, None, written - kn, None


def t_perf_stat(w):
    out = tempfile.NamedTemporaryFile("r", suffix=".perf")
    p = subprocess.Popen(["perf", "stat", "-x,", "-e", "page-faults", "-o", out.name,
                          "-p", str(w.pid)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    c0 = cpu_of(p.pid)
    el, kn = w.run()
    p.send_signal(signal.SIGINT)
    cpu = wait_rusage(p) - c0
    n = [int(l.split(",")[0]) for l in out.read().splitlines() if "page-faults" in l]
    return el, kn, None, (n[0] if n else 0) - kn, cpu


def t_perf_trace(w):
    out = tempfile.NamedTemporaryFile("r", suffix=".perf")
    p = subprocess.Popen(["perf", "trace", "--no-syscalls", "-F", "all", "-o", out.name,
                          "-p", str(w.pid)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(2.0)
    c0 = cpu_of(p.pid)
    el, kn = w.run()
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    cpu = wait_rusage(p) - c0
    text = out.read()
    got = text.count("minfault") + text.count("majfault")
    lost = sum(int(l.split("LOST")[1].split()[0]) for l in text.splitlines()
               if "LOST" in l and l.split("LOST")[1].split()[0].isdigit())
    return el, kn, lost, got - kn, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faults", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-perf-trace", action="store_true")
    a = ap.parse_args()
    tracers = [("physical limit", t_limit), ("pagefaults -p", t_pagefaults),
               ("count-only, 5 instances", t_count_only)]
    if shutil.which("perf"):
        tracers.append(("perf stat -e page-faults", t_perf_stat))
        if not a.no_perf_trace:
            tracers.append(("perf trace -F all", t_perf_trace))
    res = {name: [] for name, _ in tracers}
    base_rates = []
    for rnd in range(a.rounds):
        for name, fn in tracers:
            w = Workload(a.faults)
            el0, kn0 = w.run()   # untraced, same process: warm
            w.end()
            w = Workload(a.faults)
            try:
                el, kn, lost, err, cpu = fn(w)
            finally:
                w.end()
            base_rates.append(kn0 / el0[0])
            res[name].append((el[1] / el0[1], lost, err,
                              None if cpu is None else cpu / kn * 1e6, el[0] / el0[0]))
            sys.stderr.write("round %d %-26s slowdown cpu %.2f wall %.2f lost %s error %s "
                             "cpu/flt %s\n" % (rnd + 1, name, el[1] / el0[1], el[0] / el0[0],
                                                lost, err, "-" if cpu is None
                                                else "%.2f us" % (cpu / kn * 1e6)))

    def med(xs):
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if xs else None
    print("%d faults per run, %d rounds, untraced rate %.0f faults/s (median);"
          " shared noisy 2-CPU machine" % (a.faults, a.rounds, med(base_rates)))
    print("%-25s %6s %7s %9s %8s %6s" % ("TRACER", "LOST", "ERROR", "CPU/FLT",
                                         "SLOWDOWN", "WALL"))
    for name, _ in tracers:
        rows = res[name]
        sl, lost, err, cpu, wall = (med([r[i] for r in rows]) for i in range(5))
        print("%-25s %6s %7s %9s %7.2fx %5.2fx" % (
            name, "-" if lost is None else "%d" % max(r[1] or 0 for r in rows),
            "%+d" % max((r[2] for r in rows), key=abs),
            "-" if cpu is None else "%.2f us" % cpu, sl, wall))
    print("(LOST and ERROR: worst round; CPU/FLT, SLOWDOWN, WALL: medians)")


if __name__ == "__main__":
    main()
