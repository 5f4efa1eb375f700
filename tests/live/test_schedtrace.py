"""schedtrace against the kernel's own per-task accounting.

Two processes ping-pong one byte over pipes a known number of times while
schedtrace traces the parent with -p (the child, forked after tracing
began, is followed through event-fork). What the tool reports per task is
compared with the deltas of /proc/PID/status (voluntary_ctxt_switches,
nonvoluntary_ctxt_switches) and /proc/PID/schedstat (run ns, run-queue
wait ns, timeslices) taken around the workload. Both processes are blocked
in read() before and after, so nothing runs outside the window.

Run this file as a script (``pingpong N``) to get the workload alone.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Dict, List, Tuple

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import tooling  # noqa: E402
from torture import hand_made_instance  # noqa: E402

ROUNDS = 3000
# Run time comes from the kernel's own deltas (sched_stat_runtime): it must
# equal schedstat's to the nanosecond (measured: 0 ns off in 12 of 12
# tasks, 6 runs of this test, on the 6.18 host at load 2-3; 0 ns in 250
# runs of the burst test below). Once, in a CI run on the 6.18 host, a
# burst run came out 10,450 ns short of 106.6 ms (one delta's worth; the
# message did not show the loss count); that host records no event for some switches it counts
# (unrecorded() below), so a measurement that is off is taken again, up
# to EXACT_TRIES times in all, and must be exact once: a tool that
# miscounts is off every time. Where it is
# counted from the switches (-C, or a kernel without the event) it differs
# by the wakeup-to-switch latency of each preempting wakeup (the kernel
# skips the clock update in __schedule): a woken task is charged less, a
# task preempted by a wakeup more, measured up to 15 us per preemption
# here under load (13.5 us per run for a CPU-bound task preempted 1657
# times while two emulated guests ran): 2 %, RUN_TOL_PER_RUN_NS per run
# and PREEMPT_SKEW_NS per involuntary switch.
#
# Wait time: the kernel's run_delay ends at the clock of the wakeup that
# preempts (the same skipped update), a traced wait at the sched_switch:
# ours is the longer, by the wakeup-to-switch latency: 126-197 ns per run
# on an idle host (the same 12 tasks: ratio 1.06-1.11), 1.29-1.43 us per
# run with two emulated guests busy on both CPUs; on the emulated guests
# themselves microseconds. Ours may also start later (the kernel stamps
# the enqueue before the sched_wakeup event): never seen beyond 1 us.
RUN_TOL = 0.02
RUN_TOL_PER_RUN_NS = 1000 if not tooling.EMULATED else 20000
PREEMPT_SKEW_NS = 20000
WAIT_OVER_PER_RUN_NS = 2500 if not tooling.EMULATED else 20000
WAIT_UNDER_PER_RUN_NS = 1000 if not tooling.EMULATED else 20000
EXACT_TRIES = 3


def pingpong(n: int) -> None:
    """Parent: wait for "go", fork, ping-pong n times, report, wait for "end"."""
    print("ready", flush=True)
    sys.stdin.readline()
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    end_r, end_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(end_w)     # or the final read never sees EOF
        for _ in range(n):
            os.read(a_r, 1)
            os.write(b_w, b"y")
        os.read(end_r, 1)
        os._exit(0)
    for _ in range(n):
        os.write(a_w, b"x")
        os.read(b_r, 1)
    print("done %d" % pid, flush=True)
    sys.stdin.readline()
    os.close(end_w)
    os.waitpid(pid, 0)


def counters(pid: int) -> Dict[str, int]:
    with open("/proc/%d/status" % pid) as f:
        st = f.read()
    with open("/proc/%d/schedstat" % pid) as f:
        run, wait, slices = (int(x) for x in f.read().split())
    return {"voluntary": int(re.search(r"voluntary_ctxt_switches:\s+(\d+)", st).group(1)),
            "involuntary": int(re.search(r"nonvoluntary_ctxt_switches:\s+(\d+)", st).group(1)),
            "run_ns": run, "wait_ns": wait, "runs": slices}


def settled(pid: int, timeout: float = 10) -> Dict[str, int]:
    """The counters once the task sleeps and they stop moving."""
    end = time.monotonic() + timeout * tooling.SCALE
    prev = None
    while time.monotonic() < end:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        c = counters(pid)
        if state == "S" and c == prev:
            return c
        prev = c
        time.sleep(0.05)
    raise AssertionError("task %d did not settle" % pid)


def around(w, tool: str, *args: str, env=None):
    """Start ``tool args`` while the workload ``w`` (a Popen printing
    "ready", then waiting for "go") waits; let it run to "done", both
    times settled; stop the tool. Returns (the kernel's deltas of w, rc,
    out, err)."""
    t = tooling.start(tool, *args, env=env)
    before = settled(w.pid)
    w.stdin.write("go\n")
    w.stdin.flush()
    assert w.stdout.readline() == "done\n"
    after = settled(w.pid)
    rc, out, err = t.stop(signal.SIGINT)
    return {k: after[k] - before[k] for k in before}, rc, out, err


class Workload:
    def __init__(self, n: int = ROUNDS) -> None:
        self.p = subprocess.Popen([sys.executable, __file__, "pingpong", str(n)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        assert self.p.stdout.readline().strip() == "ready"
        self.pid = self.p.pid
        self.child = 0

    def run(self) -> None:
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline().split()
        assert line[0] == "done", line
        self.child = int(line[1])

    def close(self) -> None:
        if self.p.poll() is None:
            try:
                self.p.stdin.write("end\n")
                self.p.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def traced(*args: str, env=None) -> Tuple[Workload, Dict[int, Dict[str, int]], str, str]:
    """Run the ping-pong under schedtrace ``args -p PARENT``; return the
    workload, kernel deltas per task, the tool's stdout and stderr."""
    born = time.monotonic_ns()
    w = Workload()
    try:
        settled(w.pid)
        t = tooling.start("schedtrace", *args, "-p", str(w.pid), env=env)
        before = settled(w.pid)
        start = time.monotonic_ns()
        w.run()
        after = {w.pid: settled(w.pid), w.child: settled(w.child)}
        # the longest each task's deltas can span (see possible())
        w.spans = {w.pid: time.monotonic_ns() - start, w.child: time.monotonic_ns() - born}
        rc, out, err = t.stop(signal.SIGINT)
        assert rc == 0, err
        assert "lost" not in err, err
        delta = {w.pid: {k: after[w.pid][k] - before[k] for k in before},
                 w.child: after[w.child]}
        return w, delta, out, err
    finally:
        w.close()


def unrecorded(err: str) -> int:
    """Switch-ins the tool says the kernel did not record (the 6.18
    development host now and then records no idle -> task switch that
    schedstat counts; the tool sees the task's switch-out and says so)."""
    m = re.search(r"note: (\d+) switch-ins? of traced tasks not recorded", err)
    return int(m.group(1)) if m else 0


def close(ours: int, kernel: int, runs: int, preempted: int = 0) -> bool:
    """A run time counted from the switches: within 2 %, a constant per run
    and the skew per preemption of the kernel's, either way."""
    return abs(ours - kernel) <= (RUN_TOL * kernel + RUN_TOL_PER_RUN_NS * runs
                                  + PREEMPT_SKEW_NS * preempted)


def close_wait(ours: int, kernel: int, runs: int) -> bool:
    """A wait time: within 2 % of the kernel's, and at most the measured
    wakeup-to-switch latency per run longer or the enqueue skew shorter."""
    return (kernel * (1 - RUN_TOL) - WAIT_UNDER_PER_RUN_NS * runs <= ours
            <= kernel * (1 + RUN_TOL) + WAIT_OVER_PER_RUN_NS * runs)


# Summaries are counted on arrays once a round brings 64 pages, event by
# event before: both ways, whatever this workload's rounds bring.
BOTH_WAYS = pytest.mark.parametrize("rounds", ["arrays", "one by one"])


def ways(rounds: str) -> Dict[str, str]:
    return {"FTT_SMALL_ROUND": "0" if rounds == "arrays" else "1000000000"}


def possible(w: Workload, delta: Dict[int, Dict[str, int]]) -> bool:
    """Whether schedstat's own figures fit the time they span: once in the
    6.12 guest (emulated clock) a task's run-queue wait grew by 3.25 s in a
    run of well under a second (CI, 2026-11-29; offcputime's test met the
    same: 4.7 s in 0.54 s)."""
    return all(k["run_ns"] + k["wait_ns"] <= w.spans[pid] for pid, k in delta.items())


@pytest.mark.vm
@BOTH_WAYS
def test_summary_matches_proc_accounting(rounds) -> None:
    for _ in range(EXACT_TRIES):
        w, delta, out, err = traced("-s", "--json", env=ways(rounds))
        if possible(w, delta) and exact(out, delta):
            break
    rows = [json.loads(l) for l in out.splitlines() if l.strip()]
    assert len(rows) == 1, out
    assert rows[0]["lost"] == 0
    tasks = {t["pid"]: t for t in rows[0]["tasks"]}
    assert set(tasks) == {w.pid, w.child}, tasks.keys()
    for pid, k in delta.items():
        t = tasks[pid]
        # most rounds block (a reply already waiting does not): the workload ran
        assert k["runs"] >= ROUNDS // 2
        assert t["voluntary"] == k["voluntary"], (pid, t, k)
        assert t["involuntary"] == k["involuntary"], (pid, t, k)
        assert t["switches"] == k["voluntary"] + k["involuntary"]
        assert t["runs"] == k["runs"], (pid, t, k)
        assert t["unrecorded"] <= t["runs"]
        if t["run_from"] == "kernel":
            assert t["run_ns"] == k["run_ns"], (pid, t, k)
        else:
            assert close(t["run_ns"], k["run_ns"], k["runs"], k["involuntary"]), (pid, t, k)
        assert close_wait(t["wait_ns"], k["wait_ns"], k["runs"]), (pid, t, k)
        assert t["max_wait_ns"] <= t["wait_ns"]
    assert tasks[w.child]["comm"].startswith("python")


def exact(out: str, delta: Dict[int, Dict[str, int]]) -> bool:
    """Whether every task whose run time the tool took from the kernel's
    deltas has schedstat's to the nanosecond (see EXACT_TRIES)."""
    tasks = {t["pid"]: t for t in json.loads(out.splitlines()[-1])["tasks"]}
    return all(tasks[pid]["run_ns"] == k["run_ns"] for pid, k in delta.items()
               if pid in tasks and tasks[pid]["run_from"] == "kernel")


BURSTS = r"""
import sys, time
spin, n = float(sys.argv[1]), int(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
for _ in range(n):
    end = time.perf_counter() + spin
    while time.perf_counter() < end:
        pass
    if n > 1:
        time.sleep(spin)
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.mark.vm
@pytest.mark.parametrize("spin,n", [(1.0, 1), (0.00001, 5000), (0.0001, 1000)],
                         ids=["CPU-bound", "10us-bursts", "100us-bursts"])
def test_run_time_is_the_kernels(spin, n) -> None:
    """The issue's runs: a CPU-bound task, and bursts of 10 and 100 us
    separated by sleeps as long (switch-based run time was 17 % short on
    the 10 us bursts). Run time equals schedstat's to the nanosecond where
    the kernel reports its deltas, else within 2 % and a constant per run."""
    off = []
    for _ in range(EXACT_TRIES):
        w = subprocess.Popen([sys.executable, "-c", BURSTS, str(spin), str(n)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert w.stdout.readline() == "ready\n"
            k, rc, out, err = around(w, "schedtrace", "-s", "--json", "-p", str(w.pid))
        finally:
            w.kill()
            w.wait()
        assert rc == 0, err
        assert "lost" not in err, err
        if exact(out, {w.pid: k}):
            break
        off.append(out.splitlines()[-1])
    task = [x for x in json.loads(out.splitlines()[-1])["tasks"] if x["pid"] == w.pid][0]
    # (a 10 us sleep may end before its task blocks: fewer runs than
    # rounds, one in twenty under the guests' emulation)
    assert k["runs"] >= n // 2
    if task["run_from"] == "kernel":
        assert task["run_ns"] == k["run_ns"], (task, k, off)
    else:
        assert close(task["run_ns"], k["run_ns"], k["runs"], k["involuntary"]), (task, k)


@BOTH_WAYS
def test_event_lines_match_proc_switch_counts(rounds) -> None:
    """A line per switch; as arrays, the lines made a round at a time."""
    w, delta, out, err = traced(env=ways(rounds))
    vol = {w.pid: 0, w.child: 0}
    invol = {w.pid: 0, w.child: 0}
    ins = {w.pid: 0, w.child: 0}
    pat = re.compile(r"^\s*\d+\.\d{6} \[(\d{3})\] .*?:(\d+) \[(\d+)\] (\S+) ==> .*?:(\d+) \[(\d+)\]")
    for line in out.splitlines()[1:]:
        m = pat.match(line)
        assert m, line
        prev, state, nxt = int(m.group(2)), m.group(4), int(m.group(5))
        if prev in vol:
            if state in ("R", "R+"):
                invol[prev] += 1
            else:
                assert state in ("S", "D"), line
                vol[prev] += 1
        if nxt in ins:
            ins[nxt] += 1
    for pid, k in delta.items():
        assert vol[pid] == k["voluntary"], (pid, vol, k)
        assert invol[pid] == k["involuntary"], (pid, invol, k)
        assert ins[pid] <= k["runs"], (pid, ins, k)
    # every run either has its switch-in line or is one the tool reported
    assert sum(ins.values()) + unrecorded(err) == sum(k["runs"] for k in delta.values()), \
        (ins, delta, err)


@BOTH_WAYS
def test_histogram_counts_every_wait(rounds) -> None:
    w, delta, out, err = traced("-H", "--by", "task", "--json", env=ways(rounds))
    rows = [json.loads(l) for l in out.splitlines() if l.strip()]
    assert len(rows) == 1, out
    h = {e["pid"]: e for e in rows[0]["hists"]}
    for pid, k in delta.items():
        if pid not in h:
            # no wait at all: only if the kernel recorded none of its
            # switch-ins (CI, 2026-11-29, the 6.18 host: one of the two
            # tasks had no histogram; the tool's words were not kept)
            assert rows[0]["unrecorded"] >= k["runs"], (pid, w.pid, w.child, rows[0], err)
            continue
        # Every switch-in follows a wakeup or a preemption in the window;
        # a run whose switch-in the kernel did not record has no wait.
        assert h[pid]["count"] <= k["runs"], (pid, h[pid]["count"], k)
        assert sum(b["count"] for b in h[pid]["buckets"]) == h[pid]["count"]
        # (whole microseconds: each wait is up to 1 us short in the table)
        assert close_wait(h[pid]["total"] * 1000 + 500 * h[pid]["count"], k["wait_ns"],
                          k["runs"]), (pid, h[pid], k)
    assert sum(e["count"] for e in h.values()) + rows[0]["unrecorded"] == \
        sum(k["runs"] for k in delta.values()), (rows[0], delta)
    assert unrecorded(err) == rows[0]["unrecorded"], err


NAMED_FORKS = r"""
import ctypes, os, re, sys, time
libc = ctypes.CDLL(None)
print("ready", flush=True)
sys.stdin.readline()
kids = []
for n in range(1, 16):
    libc.prctl(15, b"abcdefghijklmno"[:n], 0, 0, 0)    # PR_SET_NAME; children inherit it
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        time.sleep(0.002)
        time.sleep(0.002)
        with open("/proc/self/status") as f:
            v = re.search(r"\nvoluntary_ctxt_switches:\s+(\d+)", f.read()).group(1)
        os.write(w, v.encode())
        os._exit(0)
    os.close(w)
    kids.append("%d:%d" % (pid, int(os.read(r, 32))))
    os.waitpid(pid, 0)
    os.close(r)
libc.prctl(15, b"parent", 0, 0, 0)
print("done", " ".join(kids), flush=True)
sys.stdin.readline()
"""


@BOTH_WAYS
def test_children_of_every_name_length_are_followed(rounds) -> None:
    """-p follows forks whatever the children's names: a parent renames
    itself to names of 1 to 15 letters and forks a child under each, which
    sleeps twice and reports its own voluntary switches. Every child is
    there, under its name, with those switches and at most the exit's
    more. (On 6.18 a fork record of two 4-letter names is as long as a
    wakeup: the arrays path read it as one and lost the child.)"""
    w = subprocess.Popen([sys.executable, "-c", NAMED_FORKS], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert w.stdout.readline() == "ready\n"
        t = tooling.start("schedtrace", "-s", "--json", "-p", str(w.pid), env=ways(rounds))
        w.stdin.write("go\n")
        w.stdin.flush()
        line = w.stdout.readline().split()
        rc, out, err = t.stop(signal.SIGINT)
    finally:
        w.kill()
        w.wait()
    assert rc == 0, err
    assert line[0] == "done", line
    kids = dict(tuple(int(x) for x in k.split(":")) for k in line[1:])
    assert len(kids) == 15
    tasks = {x["pid"]: x for x in json.loads(out.splitlines()[-1])["tasks"]}
    for n, (pid, vol) in enumerate(kids.items(), 1):
        assert pid in tasks, (n, pid, sorted(tasks), err)
        assert tasks[pid]["comm"] == "abcdefghijklmno"[:n], (rounds, json.dumps(tasks[pid]), err)
        assert vol <= tasks[pid]["voluntary"] <= vol + 1, (vol, tasks[pid])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_cpu_filter_excludes_other_cpus() -> None:
    """-C: a task spinning 1 s pinned to one CPU is all there on that CPU's
    trace (its run time, counted from the switches with -C, within 2 % and
    the per-run constant of schedstat's, read around the spin with the
    task blocked before and after) and absent from the other CPU's."""
    cpus = sorted(os.sched_getaffinity(0))
    got = {}
    for c in (cpus[1], cpus[0]):
        w = subprocess.Popen(["taskset", "-c", str(cpus[0]), sys.executable, "-c", BURSTS,
                              "1.0", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        try:
            assert w.stdout.readline() == "ready\n"
            k, rc, out, err = around(w, "schedtrace", "-s", "--json", "-C", str(c))
        finally:
            w.kill()
            w.wait()
        assert rc == 0, err
        tasks = {x["pid"]: x for x in json.loads(out.splitlines()[-1])["tasks"]}
        got[c] = (tasks.get(w.pid), k)
    elsewhere, _ = got[cpus[1]]
    assert elsewhere is None or elsewhere["run_ns"] == 0, got
    there, k = got[cpus[0]]
    # (a 1 s spin by the clock: 0.4 s of CPU with two emulated guests busy)
    assert k["run_ns"] > 0.1e9, k
    assert there["run_from"] == "switches"
    assert close(there["run_ns"], k["run_ns"], k["runs"], k["involuntary"]), (there, k)


HOG = "import time\nend = time.time() + float(__import__('sys').argv[1])\nwhile time.time() < end: pass\n"


def test_states_are_the_kernels_own(tracefs_root):
    """Each switch-out's state letters are what the kernel's own text says
    (a hand-made instance records the same sched_switch events): two CPU
    hogs sharing CPU 0 are switched out runnable, as R when preempted on
    the way back to user space and R+ when preempted in the kernel."""
    hogs = []
    settings = (("trace_clock", "mono"), ("tracing_cpumask", "1"), ("buffer_size_kb", "16384"),
                ("events/sched/sched_switch/enable", "1"))
    with hand_made_instance(tracefs_root, "statecheck", settings) as inst:
        try:
            t = tooling.start("schedtrace", "-C", "0", "--json", "-d", "2")
            hogs = [subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", HOG, "1.5"])
                    for _ in range(2)]
            rc, out, err = t.wait(60)
            with open(os.path.join(inst, "events/sched/sched_switch/enable"), "w") as fh:
                fh.write("0")
            with open(os.path.join(inst, "trace")) as fh:
                text = fh.read()
        finally:
            for h in hogs:
                h.wait()
    assert rc == 0 and "lost" not in err, err
    m = re.search(r"entries-in-buffer/entries-written: (\d+)/(\d+)", text)
    assert m and m.group(1) == m.group(2), "the kernel's own capture lost events"
    pids = {h.pid for h in hogs}
    ours, kernels = {}, {}
    for line in out.splitlines():
        e = json.loads(line)
        if e["event"] == "switch" and e["prev_pid"] in pids:
            k = (e["prev_pid"], e["prev_state"])
            ours[k] = ours.get(k, 0) + 1
    for m in re.finditer(r"prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==>", text):
        if int(m.group(1)) in pids:
            k = (int(m.group(1)), m.group(2))
            kernels[k] = kernels.get(k, 0) + 1
    assert sum(n for (p, s), n in kernels.items() if s.startswith("R")) > 10, kernels
    assert ours == kernels


if __name__ == "__main__":
    if sys.argv[1:2] == ["pingpong"]:
        pingpong(int(sys.argv[2]))
