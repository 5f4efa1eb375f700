#!/usr/bin/env python3
"""Benchmark funclatency's timing paths beside perf ftrace latency and
trace-cmd's function_graph (not a test).

A workload makes CALLS getppid() system calls; each path the kernel
offers (forced with FTT_METHOD) times them with -p, and so do
``perf ftrace latency -T FUNC -p PID`` (its function_graph path: no BPF
here) and ``trace-cmd record -p function_graph -l FUNC -P PID`` then
``report``. Printed per row, medians of ROUNDS interleaved runs:

  tool CPU s/M   user+system CPU of the tool (and its children, trace-cmd's
                 report included) per million calls, beyond that of the
                 same run with no calls (FIXED: start-up, set-up, teardown)
  slowdown       workload wall time while timed / untraced
  exact          runs that saw every call (the histogram's count, or the
                 calls in trace-cmd's report)
  lost           calls the tool said it lost

Needs root and a kernel that allows function tracing: run it in the
Debian guests (``tests/bench/run funclatency``). Under QEMU software
emulation every figure is 10-50x slower than on hardware: compare rows.

Usage: bench_funclatency.py [CALLS [ROUNDS [ROWS]]]
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_funccount import (REPO, Load, armed, compare, finish,  # noqa: E402
                             getppid_body, tracecmd, wait_line)

TOOL = os.path.join(REPO, "bin", "funclatency")
LOST: Dict[str, int] = {}


def run_ours(method: str, func: str, calls: int) -> Tuple[float, float, int]:
    load = Load(calls)
    p = subprocess.Popen([sys.executable, TOOL, "--json", "-p", str(load.p.pid), func],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, FTT_METHOD=method))
    wait_line(p, "Tracing")
    secs = load.go()
    out, cpu = finish(p)
    objs = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    LOST[method] = LOST.get(method, 0) + sum(o.get("lost", 0) for o in objs)
    return secs, cpu, sum(o["count"] for o in objs)


def run_perf(func: str, calls: int) -> Tuple[float, float, int]:
    load = Load(calls)
    # stdin: /dev/null (in the guests it is the console, where perf ftrace
    # blocks writing once the run ends)
    p = subprocess.Popen(["perf", "ftrace", "latency", "-T", func, "-p", str(load.p.pid)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    armed(p, "function_graph")
    secs = load.go()
    time.sleep(1)
    p.send_signal(signal.SIGINT)
    out, cpu = finish(p)
    # "     0 - 1    us |     1234 | ####": the count column of each row
    got = sum(int(m.group(1)) for m in re.finditer(r"\|\s+(\d+)\s+\|", out))
    return secs, cpu, got


def run_tracecmd(func: str, calls: int) -> Tuple[float, float, int]:
    # a leaf "FUNC();" or a closing "} /* FUNC */"
    return tracecmd("function_graph", func, calls,
                    re.compile(r"(\b%s\(\);|\} /\* %s \*/)" % ((re.escape(func),) * 2)))


def main(argv: List[str]) -> int:
    calls = int(argv[1]) if len(argv) > 1 else 100000
    rounds = int(argv[2]) if len(argv) > 2 else 3
    feat, func = getppid_body("bench_funclatency")
    if feat is None:
        return 0
    needs = {"fprobe-hist": ("fprobes", "hist", "synthetic"),
             "kprobe-hist": ("kprobes", "hist", "synthetic"), "graph": ("function_graph",)}
    paths = [m for m, fs in needs.items() if all(feat.has(x) for x in fs)]
    peers = {"perf ftrace": run_perf, "trace-cmd": run_tracecmd}
    paths += [p for p, cmd in (("perf ftrace", "perf"), ("trace-cmd", "trace-cmd"))
              if shutil.which(cmd)]
    if len(argv) > 3:   # only these rows (comma-separated)
        paths = [p for p in paths if p in argv[3].split(",")]

    def one(p: str, n: int) -> Tuple[float, float, int]:
        return peers[p](func, n) if p in peers else run_ours(p, func, n)
    compare(paths, one, func, calls, rounds, LOST, peers, "timed")
    print("TOOL CPU s/M: CPU of the tool per million calls timed beyond the same run "
          "with no calls (FIXED: start-up, set-up, teardown); SLOWDOWN: workload wall "
          "time traced / untraced; EXACT: runs that saw every call; LOST: calls the "
          "tool reported lost")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
