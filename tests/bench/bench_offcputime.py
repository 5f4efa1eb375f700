#!/usr/bin/env python3
"""Benchmark: offcputime beside perf sched record -g + perf sched timehist
-g (and trace-cmd profile in the QEMU guests) on the same workloads.

The workload is ``perf bench sched pipe -l LOOPS``: two processes pass a
token over pipes as fast as the machine allows, so that nearly every
context switch is a switch-out into sleep (pipe_read), each with a stack
to record: the worst case for an off-CPU profiler. Each round runs,
interleaved, the whole system traced:

  untraced            the workload alone (the baseline for slowdown)
  offcputime          its default way here: stacks recorded by the
                      stacktrace trigger and paired in Python, or summed in
                      the kernel where hist triggers keep stacks (6.5+)
  offcputime --stream where the kernel could sum them: the streaming way
  perf sched -g       perf sched record -a -g during the workload, then
                      perf sched timehist -g over the file (CPU of both)
  trace-cmd profile   in the guests only (FTT_EMULATED=1): it takes the
                      top level, which the shared host's other users need

Per configuration: median workload time and slowdown, context switches
during the run (/proc/stat ctxt), events lost (the tool's own report;
perf's "lost N chunks"), and the tracer's CPU time (user+sys, from wait4)
per context switch of the machine.

A second table traces one process: the live tests' Python ping-pong
(tests/live/test_schedtrace.py: a parent and the child it forks pass a
byte over pipes ROUNDS times) under ``offcputime -p PARENT``, whose sleeps
per task are compared with the kernel's voluntary switches
(/proc/PID/status, before and after, both tasks blocked), beside the
workload untraced and perf sched record -g of the same process tree.

Usage: bench_offcputime.py [--rounds N] [--loops N] [--pingpong N]   (root)
The machine is shared and noisy: read the medians, not single runs; in
the guests (QEMU's emulation) compare rows, not times.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, os.path.join(REPO, "tests"), os.path.join(REPO, "tests", "live"),
                os.path.join(REPO, "lib")]
import bench_schedtrace as bs  # noqa: E402

TOOL = os.path.join(REPO, "bin", "offcputime")
EMULATED = os.environ.get("FTT_EMULATED") == "1"


def kernel_path() -> bool:
    """Whether offcputime sums stacks in the kernel here by default."""
    from ftracetools.kernel.features import Features
    return Features().has("hist_stacktrace")


# trace-cmd profile's end (its report) may take minutes under emulation;
# past this it is stopped and its row says so (the 6.1 guest's table was
# once lost to a run that never ended)
TRACE_CMD_END_S = 300


def run_trace_cmd(loops: int):
    """trace-cmd profile, system-wide, during the workload (its report to
    /dev/null at the end: the CPU of both); None if it did not end within
    TRACE_CMD_END_S of its SIGINT (stopped, the tracing it left reset)."""
    with tempfile.TemporaryDirectory() as d, tempfile.TemporaryFile("w+") as errf:
        # (stderr to a file: a pipe nobody reads could stop it when full)
        p = subprocess.Popen(["trace-cmd", "profile"], stdout=subprocess.DEVNULL,
                             stderr=errf, cwd=d, start_new_session=True)
        time.sleep(2.0 if EMULATED else 1.0)     # it prints nothing when it is ready
        c0 = bs.ctxt()
        t = bs.workload(loops)
        c1 = bs.ctxt()
        p.send_signal(signal.SIGINT)
        cpu = bs.wait_cpu(p, TRACE_CMD_END_S)
        if cpu is None:
            print("trace-cmd profile: no end %d s after SIGINT: killed" % TRACE_CMD_END_S,
                  file=sys.stderr)
            os.killpg(p.pid, signal.SIGKILL)
            bs.wait_cpu(p)
            subprocess.run(["trace-cmd", "reset"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            return None
        errf.seek(0)
        err = errf.read()
    if p.returncode not in (0, -signal.SIGINT, 128 + signal.SIGINT):
        raise SystemExit("trace-cmd profile failed: %s" % err[-500:])
    lost = sum(int(n) for n in re.findall(r"(\d+) (?:events? )?lost", err, re.I))
    return t, c1 - c0, lost, cpu


def configs():
    out = [("untraced", bs.run_untraced),
           ("offcputime", lambda n: bs.run_schedtrace(n, [], tool=TOOL))]
    if kernel_path():
        out.append(("offcputime --stream",
                    lambda n: bs.run_schedtrace(n, ["--stream"], tool=TOOL)))
    out.append(("perf sched -g rec+timehist", lambda n: bs.run_perf(n, callchains=True)))
    if EMULATED and shutil.which("trace-cmd"):
        out.append(("trace-cmd profile", run_trace_cmd))
    return out


PINGPONG = [
    ("untraced", None),
    ("offcputime -p", bs.tool_p([], "sleeps", TOOL)),
    ("perf sched -g rec+timehist", lambda pid: bs.perf_sched_p(pid, callchains=True)),
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loops", type=int, default=100000 if not EMULATED else 5000)
    ap.add_argument("--pingpong", type=int, default=100000 if not EMULATED else 3000)
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 1
    cfg = configs()
    res, pp = bs.run_rounds(a, cfg, PINGPONG, kinds=("voluntary",), width=28)
    print("perf bench sched pipe -l %d, whole system traced, %d rounds, medians; kernel %s; "
          "load average %s" % (a.loops, a.rounds, os.uname().release,
                               open("/proc/loadavg").read().split()[0]))
    bs.system_table(res, [name for name, _ in cfg], width=28)
    print()
    print("ping-pong of two Python processes, %d round trips, traced with -p PARENT; "
          "%d rounds, medians" % (a.pingpong, a.rounds))
    bs.pingpong_table(pp, [name for name, _ in PINGPONG], ("TASK_VOL", "SLEEPS"), width=28)
    print("TASK_VOL: the two tasks' voluntary switches by the kernel's count "
          "(/proc/PID/status); SLEEPS: offcputime's; EXACT: rounds where they agree "
          "task by task. LOST: the worst round. CPU_US/SW: tracer CPU (user+sys) per "
          "context switch of the whole machine; perf sched: record plus timehist. The "
          "machine is shared with other developers' tests: noisy.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
