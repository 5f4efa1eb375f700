#!/usr/bin/env python3
"""Start-up and teardown of the event tools beside their peers.

START: from exec to the line saying tracing is live ("Tracing ...";
trace-cmd: "Hit Ctrl^C"). END: from SIGINT to the process's exit, with
every setting restored. Each tool runs as a user's `sudo TOOL` would: the
environment without PYTHONDONTWRITEBYTECODE (sudo drops it), after one
warm-up run (as after `pip install`, the bytecode exists). The first row
is the interpreter alone: the floor under every Python tool here.

Targets (issue 9): START under 150 ms, END under 100 ms.

Then the fixed cost of a short run (issue 21): the CPU of a whole
3-second run on an idle machine, exec to exit, of the runs the issue
names (iolatency -d DEV 1 3, schedtrace -s -d 3, pagefaults -p PID -d 3)
beside the interpreter sleeping 3 s and iolatency-perf. This script is the
subreaper of what it starts, so a tool's guardian (kernel.guardian: it
outlives the tool by a moment) is reaped here and its CPU counted too.
"""

import ctypes
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "..", "..", "bin")
ROUNDS = 7
START_MS, END_MS = 150, 100


def tool(name, *args):
    return [sys.executable, os.path.join(BIN, name)] + list(args)


def rows():
    dat = os.path.join(tempfile.mkdtemp(), "t.dat")
    r = [("python alone (floor)", [sys.executable, "-c",
          "import sys, time; sys.stderr.write('Tracing\\n'); time.sleep(60)"], False),
         ("pagefaults -p 1", tool("pagefaults", "-p", "1"), True),
         ("schedtrace -s", tool("schedtrace", "-s"), True),
         ("schedtrace (events)", tool("schedtrace"), True),
         ("iolatency", tool("iolatency"), True),
         ("iolatency -Q", tool("iolatency", "-Q"), True)]
    if os.path.exists("/usr/sbin/iolatency-perf"):
        r.append(("iolatency-perf (perf-tools)", ["/usr/sbin/iolatency-perf"], False))
    tc = "/usr/bin/trace-cmd"
    if os.path.exists(tc):
        r.append(("trace-cmd record sched_switch",
                  [tc, "record", "-e", "sched:sched_switch", "-o", dat], False))
    return r


def once(argv, env):
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, env=env, text=True,
                         start_new_session=True)
    seen = []
    for line in p.stdout:
        seen.append(line)
        if "Tracing" in line or "Hit Ctrl^C" in line:
            break
    else:
        p.wait()
        raise RuntimeError("ended before tracing: " + "".join(seen)[-300:])
    t1 = time.monotonic()
    time.sleep(0.3)
    t2 = time.monotonic()
    os.killpg(p.pid, signal.SIGINT)     # as Ctrl-C: the whole process group
    p.stdout.read()
    p.wait()
    t3 = time.monotonic()
    return (t1 - t0) * 1000, (t3 - t2) * 1000


def disk() -> str:
    """A real disk here (not loop, ram, zram or device-mapper)."""
    for d in sorted(os.listdir("/sys/block")):
        if os.path.exists("/sys/block/%s/device" % d) and not d.startswith(("loop", "ram", "zram")):
            return d
    raise RuntimeError("no disk in /sys/block")


def idle_rows(dev: str, pid: int):
    r = [("python alone, 3 s", [sys.executable, "-c", "import time; time.sleep(3)"]),
         ("iolatency -d %s 1 3" % dev, tool("iolatency", "-d", dev, "1", "3")),
         ("schedtrace -s -d 3", tool("schedtrace", "-s", "-d", "3")),
         ("pagefaults -p PID -d 3", tool("pagefaults", "-p", str(pid), "-d", "3"))]
    if os.path.exists("/usr/sbin/iolatency-perf"):
        with open("/sys/block/%s/dev" % dev) as f:      # its -d: "major,minor"
            mm = f.read().strip().replace(":", ",")
        r.append(("iolatency-perf -d %s 1 3" % mm,
                  ["/usr/sbin/iolatency-perf", "-d", mm, "1", "3"]))
    return r


def cpu_of(argv, env) -> float:
    """CPU seconds of ``argv`` and all it left behind, exec to exit."""
    def used():
        u = resource.getrusage(resource.RUSAGE_CHILDREN)
        return u.ru_utime + u.ru_stime
    before = used()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, env=env, text=True)
    if p.returncode != 0:
        raise RuntimeError("exit %d: %s" % (p.returncode, p.stderr[-300:]))
    while True:     # its guardian, reparented here
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    return used() - before


def measure_idle(env, rounds: int = 3):
    # pagefaults' target: a sleeper that is not our child (cpu_of reaps
    # every child), started before this becomes a subreaper
    out = subprocess.run(["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    sleeper = int(out.stdout)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)      # PR_SET_CHILD_SUBREAPER
    try:
        table = idle_rows(disk(), sleeper)
        res = {name: [] for name, _a in table}
        for _ in range(rounds):
            for name, argv in table:
                res[name].append(cpu_of(argv, env))
    finally:
        os.kill(sleeper, signal.SIGKILL)
    print()
    print("idle 3-second runs: CPU from exec to exit (a tool's guardian included), "
          "median (min) of %d; load average %.2f" % (rounds, os.getloadavg()[0]))
    print("%-30s %14s" % ("RUN", "CPU_MS"))
    for name, _argv in table:
        v = [x * 1000 for x in res[name]]
        print("%-30s %7.0f (%4.0f)" % (name, statistics.median(v), min(v)))


def main():
    sys.path.insert(0, os.path.join(HERE, ".."))
    from perftools import TopLevelGuard     # iolatency-perf wants debugfs
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with TopLevelGuard():
        rc = measure(env, rows())
        measure_idle(env)
        return rc


def measure(env, table):
    for row in list(table):        # warm-up: bytecode written, caches hot
        try:
            once(row[1], env)
        except RuntimeError as e:
            if row[2]:
                raise
            print("note: %s cannot run here: %s" % (row[0], " ".join(str(e).split())[:160]))
            table.remove(row)
    res = {name: ([], []) for name, _a, _o in table}
    for rnd in range(ROUNDS):
        for name, argv, _ours in table:   # interleaved: noise hits all alike
            s, e = once(argv, env)
            res[name][0].append(s)
            res[name][1].append(e)
    print("%d rounds, medians (min); kernel %s; load average %.2f"
          % (ROUNDS, os.uname().release, os.getloadavg()[0]))
    print("%-30s %14s %14s" % ("TOOL", "START_MS", "END_MS"))
    missed = []
    for name, _argv, ours in table:
        s, e = res[name]
        ms, me = statistics.median(s), statistics.median(e)
        print("%-30s %7.0f (%4.0f) %7.0f (%4.0f)" % (name, ms, min(s), me, min(e)))
        if ours and (ms >= START_MS or me >= END_MS):
            missed.append(name)
    print("START: exec to the tracing-is-live line; END: SIGINT to exit, "
          "settings restored")
    print("TARGET (start < %d ms, end < %d ms): %s" % (
        START_MS, END_MS, "met" if not missed else "MISSED by " + ", ".join(missed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
