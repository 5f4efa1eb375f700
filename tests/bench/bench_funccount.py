#!/usr/bin/env python3
"""Benchmark funccount's counting paths against trace-cmd (not a test).

A workload makes CALLS getppid() system calls; each counting path the
kernel offers (forced with FTT_METHOD) counts them with -p, and so
does trace-cmd (``record -p function -l FUNC -P PID`` then ``report``).
Printed per path, medians of ROUNDS interleaved runs:

  tool CPU s/M   user+system CPU of the counting tool (and its children),
                 per million calls counted, beyond that of the same run with
                 no calls (FIXED: start-up, probe set-up, teardown)
  slowdown       workload wall time while counted / untraced
  exact          runs whose count was exactly CALLS

Needs root and a kernel that allows function tracing (the Debian 6.1/6.12
VMs: ``vng ... --exec 'python3 tests/bench/bench_funccount.py'``). The
machine is shared and noisy, and under QEMU software emulation every figure
is 10-50x slower than on hardware: compare rows, not absolute values.

Usage: bench_funccount.py [CALLS [ROUNDS]]
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "lib"))
TOOL = os.path.join(REPO, "bin", "funccount")

LOOP = ("import os, sys, time\nsys.stdin.readline()\nt = time.perf_counter()\n"
        "for _ in range(%d): os.getppid()\n"
        "print(time.perf_counter() - t, flush=True)\nsys.stdin.read()\n")


LOST: Dict[str, int] = {}  # events each path reported lost, all rounds


def finish(p: subprocess.Popen) -> Tuple[str, float]:
    """Wait for the tool: (its stdout, CPU seconds of it and its children)."""
    out = p.stdout.read()
    if p.stderr:
        p.stderr.read()
    _, _, ru = os.wait4(p.pid, 0)
    p.returncode = 0  # reaped here, so that Popen does not wait again
    return out, ru.ru_utime + ru.ru_stime


class Load:
    def __init__(self, calls: int) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", LOOP % calls],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def go(self) -> float:
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        secs = float(self.p.stdout.readline())
        self.p.stdin.close()
        self.p.wait()
        return secs


def wait_line(p: subprocess.Popen, start: str, timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = p.stderr.readline()
        if not line:
            raise RuntimeError("tool ended before tracing")
        if line.startswith(start):
            return
    raise RuntimeError("no %r line" % start)


def run_funccount(method: str, func: str, calls: int) -> Tuple[float, float, int]:
    load = Load(calls)
    env = dict(os.environ, FTT_METHOD=method)
    p = subprocess.Popen([sys.executable, TOOL, "--json", "-p", str(load.p.pid), func],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_line(p, "Tracing")
    secs = load.go()
    out, cpu = finish(p)
    import json
    objs = [json.loads(l) for l in out.splitlines() if l]
    got = sum(o["counts"].get(func, 0) for o in objs)
    LOST[method] = LOST.get(method, 0) + sum(o.get("lost", 0) for o in objs)
    return secs, cpu, got


def armed(p: subprocess.Popen, tracer: str) -> None:
    """Wait until a peer has set its tracer (its "Hit Ctrl^C" line sits in
    stdio's buffer while stdout is a pipe), then a little more."""
    from ftracetools.kernel.features import Features
    cur = os.path.join(Features().root, "current_tracer")
    end = time.monotonic() + 600
    while open(cur).read().strip() != tracer:
        if p.poll() is not None or time.monotonic() > end:
            raise RuntimeError("%s did not start: %s" % (p.args[0], p.stdout.read()[-300:]))
        time.sleep(0.2)
    time.sleep(2)


def tracecmd(tracer: str, func: str, calls: int, hit) -> Tuple[float, float, int]:
    """``trace-cmd record -p TRACER -l FUNC -P PID`` on a run of ``calls``,
    then ``report``: (workload seconds, CPU of both, report lines matching
    ``hit``). stdin: /dev/null (in a guest it is the console)."""
    load = Load(calls)
    d = tempfile.mkdtemp()
    dat = os.path.join(d, "trace.dat")
    p = subprocess.Popen(["trace-cmd", "record", "-p", tracer, "-l", func,
                          "-P", str(load.p.pid), "-o", dat], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    armed(p, tracer)
    secs = load.go()
    p.send_signal(2)
    _, cpu = finish(p)
    rep = subprocess.Popen(["trace-cmd", "report", "-i", dat], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    text, cpu2 = finish(rep)
    got = sum(1 for l in text.splitlines() if hit.search(l))
    shutil.rmtree(d, ignore_errors=True)
    return secs, cpu + cpu2, got


def run_tracecmd(func: str, calls: int) -> Tuple[float, float, int]:
    # "function:   FUNC" (trace-cmd 3.x prints no parent unless asked;
    # older ones add "<-- PARENT")
    return tracecmd("function", func, calls,
                    re.compile(r"\bfunction:\s+%s(\s|$)" % re.escape(func)))


def compare(paths: List[str], one, func: str, calls: int, rounds: int,
            lost: Dict[str, int], peers, verb: str) -> None:
    """Rounds of ``one(path, calls)`` -> (workload seconds, tool CPU, calls
    seen), each beside the same run with no calls and an untraced run,
    interleaved; then the table of medians (shared with bench_funclatency)."""
    res: Dict[str, List[Tuple[float, float, int]]] = {p: [] for p in paths + ["none"]}
    idle: Dict[str, List[float]] = {p: [] for p in paths}
    for _ in range(rounds):
        res["none"].append((Load(calls).go(), 0.0, calls))
        for p in paths:
            try:
                # with no calls: start-up, set-up and teardown, which do not
                # grow with the call rate
                r, r0 = one(p, calls), one(p, 0)
            except Exception as e:  # a broken path is a row, not a crash
                print("%s: %s" % (p, e), file=sys.stderr)
                continue
            res[p].append(r)
            idle[p].append(r0[1])
            print("  %s: %.2f s, tool CPU %.2f s (idle run %.2f s), %s %d"
                  % (p, r[0], r[1], r0[1], verb, r[2]), file=sys.stderr, flush=True)
    base = statistics.median(s for s, _, _ in res["none"])
    print("%s, %d calls of %s, median of %d interleaved rounds (%s)"
          % (os.uname().release, calls, func, rounds,
             "noisy shared machine; QEMU TCG if a VM: compare rows only"))
    print("%-14s %12s %12s %10s %8s %8s" % ("PATH", "TOOL CPU s/M", "FIXED CPU s",
                                             "SLOWDOWN", "EXACT", "LOST"))
    for p in paths:
        if not res[p]:
            print("%-14s %12s %12s %10s %8s" % (p, "failed", "-", "-", "-"))
            continue
        secs = statistics.median(s for s, _, _ in res[p])
        cpu = statistics.median(c for _, c, _ in res[p])
        fixed = statistics.median(idle[p])
        exact = sum(1 for _, _, g in res[p] if g == calls)
        print("%-14s %12.3f %12.2f %9.2fx %5d/%d %8s" % (
            p, max(0.0, cpu - fixed) / calls * 1e6, fixed, secs / base, exact, len(res[p]),
            lost.get(p, "-") if p not in peers else "-"))
    print("%-14s %12s %12s %9.2fx" % ("untraced", "-", "-", 1.0))


def getppid_body(who: str):
    """(Features, the traceable getppid body), or (None, None) and a line
    saying why not, where function tracing is forbidden."""
    from ftracetools.kernel.features import Features
    feat = Features()
    why = feat.why_not("function")
    if why:
        print("%s: cannot run here: %s" % (who, why))
        return None, None
    with open(os.path.join(feat.root, "available_filter_functions")) as f:
        have = {l.split()[0] for l in f if l.strip()}
    return feat, next(n for n in ("__do_sys_getppid", "__se_sys_getppid",
                                  "__x64_sys_getppid") if n in have)


def main(argv: List[str]) -> int:
    calls = int(argv[1]) if len(argv) > 1 else 200000
    rounds = int(argv[2]) if len(argv) > 2 else 3
    feat, func = getppid_body("bench_funccount")
    if feat is None:
        return 0
    needs = {"kprobe-hist": ("kprobes", "hist"), "fprobe-hist": ("fprobes", "hist"),
             "function": ("function_instance",), "profiler": ("function_profiler",)}
    paths = [m for m, fs in needs.items() if all(feat.has(x) for x in fs)]
    if shutil.which("trace-cmd"):
        paths.append("trace-cmd")

    def one(p: str, n: int) -> Tuple[float, float, int]:
        return run_tracecmd(func, n) if p == "trace-cmd" else run_funccount(p, func, n)
    compare(paths, one, func, calls, rounds, LOST, ("trace-cmd",), "counted")
    print("TOOL CPU s/M: CPU of the counting tool per million calls beyond the same run "
          "with no calls (FIXED: start-up, set-up, teardown); SLOWDOWN: workload wall "
          "time traced / untraced; EXACT: runs that counted every call; LOST: events the "
          "tool reported lost (its count then falls short by as many, never silently)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
