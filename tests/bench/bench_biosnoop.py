#!/usr/bin/env python3
"""Benchmark: biosnoop beside perf-tools' iosnoop (iosnoop-perf), perf
trace and perf record on a loop device at the highest rate it gives.

fio (random 4k reads and writes, direct I/O, libaio, iodepth 32, 2 jobs)
on a private loop device (losetup --direct-io=on), traced in turn by each
tool. For each run: I/Os the kernel completed (/sys/block/DEV/stat), the
lines (or events) the tool gave for that device, what it said it lost,
and its CPU time (its whole process tree, from wait4; perf record's
includes the perf script that prints its events) per completed I/O. Runs
are interleaved; the summary gives medians.

- biosnoop --json -d DEV: one object per I/O;
- iosnoop-perf -d MAJ,MIN (streaming, ended as Ctrl-C would: SIGINT to
  its process group): one line per I/O; it wants debugfs on
  /sys/kernel/debug (mounted here if it is not, and unmounted after) and
  takes the top level, whose buffer_size_kb is put back as found;
- perf trace -e block:block_rq_complete: one line per completion;
- perf record -e block:block_rq_issue,block:block_rq_complete -a, then
  perf script: the completions on the device, and the chunks perf says
  it lost.

Needs root, fio, iosnoop-perf (apt-get install perf-tools-unstable) and
perf (linux-perf); a peer that is missing is left out and said so.

Usage: tests/bench/bench_biosnoop.py [RUNS [SECONDS]]   (default 3 runs of 20 s)
"""

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests"))

import loopdev  # noqa: E402
from perftools import TopLevelGuard  # noqa: E402


def _io(dev) -> int:
    s = dev.stat()
    return s["read_ios"] + s["write_ios"]


def _majmin(dev):
    return tuple(int(x) for x in open("/sys/block/%s/dev" % dev.name).read().split(":"))


def _traced(argv, dev, fio, ready: str, stream: str = "stderr", group: bool = False):
    """Start argv, wait for its ready line, run fio, end it with SIGINT:
    (stdout lines, stderr text, CPU seconds, I/Os the kernel completed)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=group)
    out, err, live = [], [], threading.Event()

    def rd(f, into, watch):
        for line in f:
            into.append(line)
            if watch and ready in line:
                live.set()
        live.set()
    ts = [threading.Thread(target=rd, args=(p.stdout, out, stream == "stdout"), daemon=True),
          threading.Thread(target=rd, args=(p.stderr, err, stream == "stderr"), daemon=True)]
    for t in ts:
        t.start()
    if not ready:       # (perf says nothing when it starts)
        time.sleep(2)
    elif not live.wait(60):
        p.kill()
        raise RuntimeError("%s: no %r line: %s" % (argv[0], ready, "".join(err)))
    time.sleep(0.5)
    before = _io(dev)
    fio()
    dev.settle()
    done = _io(dev) - before
    time.sleep(1)       # (the tool catches up)
    if group:
        os.killpg(p.pid, signal.SIGINT)
    else:
        p.send_signal(signal.SIGINT)
    _, status, ru = os.wait4(p.pid, 0)
    for t in ts:
        t.join(30)
    return out, "".join(err), ru.ru_utime + ru.ru_stime, done


def run_ours(dev, fio) -> dict:
    out, err, cpu, done = _traced([sys.executable, os.path.join(REPO, "bin", "biosnoop"),
                                   "--json", "-d", dev.name], dev, fio, "Tracing")
    m = re.search(r"(\d+) events lost", err)
    return {"tool": "biosnoop", "kernel": done, "lines": len(out),
            "lost": int(m.group(1)) if m else 0, "cpu": cpu}


def run_iosnoop(dev, fio) -> dict:
    ma, mi = _majmin(dev)
    out, err, cpu, done = _traced(["iosnoop-perf", "-d", "%d,%d" % (ma, mi)], dev, fio,
                                  "Tracing block I/O", stream="stdout", group=True)
    pat = re.compile(r"^\S.*\s+[RWSDFMAN]+\s+%d,%d\s+\d+\s+\d+\s+[\d.]+\s*$" % (ma, mi))
    lines = sum(1 for l in out if pat.match(l))
    lost = sum(int(n) for n in re.findall(r"LOST (\d+) EVENTS", "".join(out) + err))
    return {"tool": "iosnoop-perf", "kernel": done, "lines": lines, "lost": lost, "cpu": cpu}


def run_perf_trace(dev, fio) -> dict:
    ma, mi = _majmin(dev)
    kdev = (ma << 20) | mi
    # perf trace writes its events to stderr, or to -o FILE: a file, read
    # once it has ended
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "trace.txt")
        _, err, cpu, done = _traced(["perf", "trace", "--no-syscalls", "-a", "-o", path, "-e",
                                     "block:block_rq_complete"], dev, fio, "", stream="none")
        with open(path, errors="replace") as f:
            out = f.readlines()
    lines = sum(1 for l in out if "block_rq_complete" in l and
                ("%d,%d" % (ma, mi) in l or "dev: %d" % kdev in l or "dev: %d," % kdev in l))
    lost = sum(int(n) for n in re.findall(r"LOST (\d+) events", "".join(out) + err, re.I))
    return {"tool": "perf trace", "kernel": done, "lines": lines, "lost": lost, "cpu": cpu}


def run_perf_record(dev, fio) -> dict:
    ma, mi = _majmin(dev)
    with tempfile.TemporaryDirectory(prefix="ftt-bench-") as d:
        data = os.path.join(d, "perf.data")
        out, err, cpu, done = _traced(["perf", "record", "-a", "-o", data,
                                       "-e", "block:block_rq_issue",
                                       "-e", "block:block_rq_complete"], dev, fio, "",
                                      stream="none")
        t0 = os.times()
        p = subprocess.run(["perf", "script", "-i", data], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        t1 = os.times()
        cpu += (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)
    lines = sum(1 for l in p.stdout.splitlines()
                if "block_rq_complete" in l and " %d,%d " % (ma, mi) in l)
    m = re.search(r"lost (\d+) chunks", err + p.stderr)
    return {"tool": "perf record", "kernel": done, "lines": lines,
            "lost": "%s chunks" % m.group(1) if m else 0, "cpu": cpu}


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 20
    if os.geteuid() != 0 or loopdev.have_tools():
        print("needs root, fio and losetup")
        return 77
    tools = [run_ours]
    for need, fn in (("iosnoop-perf", run_iosnoop), ("perf", run_perf_trace),
                     ("perf", run_perf_record)):
        if shutil.which(need):
            tools.append(fn)
        else:
            print("note: %s is not installed: %s left out" % (need, fn.__name__[4:]))
    rows = []
    with TopLevelGuard(), loopdev.LoopDevice(size_mb=256) as dev:
        fio, untraced = dev.full_speed(secs)
        for i in range(runs):   # each tool first in turn
            k = i % len(tools)
            rows += [dict(fn(dev, fio), run=i + 1) for fn in tools[k:] + tools[:k]]
            for r in rows[-len(tools):]:
                print("  run %d %-13s %s" % (i + 1, r["tool"], r), file=sys.stderr)
    print("biosnoop benchmark: fio randrw 4k direct, iodepth 32 x 2 jobs, %g s per run, "
          "loop device (--direct-io=on); untraced about %.0f IOPS; %d CPUs, shared and"
          " noisy: compare within a run, not across days" % (secs, untraced, os.cpu_count()))
    print()
    print("%-13s %3s %8s %8s %7s %10s %7s %7s" % (
        "TOOL", "RUN", "KERNEL", "LINES", "LINES%", "LOST", "CPU_S", "US/IO"))
    for r in rows:
        print("%-13s %3d %8d %8d %6.2f%% %10s %7.2f %7.2f" % (
            r["tool"], r["run"], r["kernel"], r["lines"], 100.0 * r["lines"] / r["kernel"],
            str(r["lost"])[:10], r["cpu"], r["cpu"] * 1e6 / r["kernel"]))
    print("LINES: lines (perf: completion events) for the device; US/IO: the tool's CPU"
          " per I/O the kernel completed")
    print()
    for tool in sorted({r["tool"] for r in rows}):
        rs = [r for r in rows if r["tool"] == tool]
        print("%-13s median: %.2f%% of completed I/Os shown; CPU %.2f us per completed I/O" % (
            tool, statistics.median(100.0 * r["lines"] / r["kernel"] for r in rs),
            statistics.median(r["cpu"] * 1e6 / r["kernel"] for r in rs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
