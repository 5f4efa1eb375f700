"""offcputime against the kernel's own accounting.

A Python process sleeps in known ways while offcputime traces it with -p:
nanosleep a known number of times for a known time, blocking reads of a
pipe that a process made before tracing writes into every few
milliseconds, and direct-I/O reads of a private loop device (D state).
It is blocked reading its stdin before and after, so that nothing of it
runs outside the window, and the kernel's counters are read there:

- every sleep is counted: the tool's sleeps of the task equal its
  voluntary switches (/proc/PID/status);
- its off-CPU time, with the part before its first wakeup, equals the
  tool's window minus its run time and its run-queue wait
  (/proc/PID/schedstat), within a bound per sleep measured below;
- the stacks name the functions each sleep goes through.

Run this file as a script (``sleeper DEV NANO SECS PIPE IO``) to get the
workload alone.
"""

import json
import mmap
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import loopdev  # noqa: E402
import tooling  # noqa: E402
from test_schedtrace import around, settled  # noqa: E402

NANO, NANO_S, PIPE, PIPE_GAP_S, IO = 20, 0.01, 20, 0.005, 50
# Per sleep the tool and the kernel read the clock at other places. The
# tool's sleep starts at sched_switch, the kernel's after its clock update
# early in __schedule (newly-idle balancing may run in between); it ends at
# sched_wakeup, which the kernel emits after the enqueue where run_delay
# starts (and after the resched IPI to the woken task's CPU when that CPU
# is busy: in this VM an IPI is a VM exit). Measured on the 6.18 host, 40
# runs of this workload (91 sleeps): -1.1 to +3.7 us per sleep on average
# (direct I/O alone, woken from the other CPU: -1.9 to +5.3); the bound
# below is twice the worst. Under QEMU's emulation each of these steps
# takes tens of microseconds: measured +34 us per sleep on 6.1, -3.6 on
# 6.12; the kernel's tables and the stream differed by +13.8 us per
# nanosleep, -1.3 per direct read on 6.12, and on a slow day (the VM tier
# a quarter slower than usual) -100.1 per direct read (CI of ed068cf).
PER_SLEEP_NS = 8000 if not tooling.EMULATED else 200000
SLACK_NS = 2000         # the window is given to the microsecond


def sleeper(dev: str, nano: int, secs: float, npipe: int, nio: int) -> None:
    """Wait for "go", sleep in known ways, say "done", wait for "end"."""
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    child = os.fork()
    if child == 0:      # the writer, made before tracing: not traced
        os.close(r)
        os.close(go_w)
        os.read(go_r, 1)
        for _ in range(npipe):
            time.sleep(PIPE_GAP_S)
            os.write(w, b"x")
        os._exit(0)
    os.close(w)
    os.close(go_r)
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT) if nio else -1
    buf = mmap.mmap(-1, 4096)       # page-aligned, as O_DIRECT wants
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(nano):
        time.sleep(secs)
    os.write(go_w, b"g")
    for _ in range(npipe):
        os.read(r, 1)
    for i in range(nio):
        os.preadv(fd, [buf], (i * 7919 % 4000) * 4096)
    print("done", flush=True)
    sys.stdin.readline()
    os.waitpid(child, 0)


def run_traced(dev: str, *args: str):
    """The workload under ``offcputime --json -p W args``: returns W's
    pid, its kernel deltas, the tool's JSON object and stderr."""
    w = subprocess.Popen([sys.executable, __file__, "sleeper", dev, str(NANO), str(NANO_S),
                          str(PIPE), str(IO)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert w.stdout.readline() == "ready\n"
        settled(w.pid)
        k, rc, out, err = around(w, "offcputime", "--json", "-v", "-p", str(w.pid), *args)
        w.stdin.write("end\n")
        w.stdin.flush()
        w.wait(30)
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
    assert rc == 0, err
    rows = [json.loads(l) for l in out.splitlines() if l.strip()]
    assert len(rows) == 1, out
    return w.pid, k, rows[0], err


def has(row, *names) -> bool:
    return any(n in f for f in row["frames"] for n in names)


@pytest.fixture(scope="module")
def loop():
    if shutil.which("losetup") is None:
        pytest.skip("losetup not installed")
    # In the guests /tmp is a tmpfs: the loop device's worker reads it at
    # once and, under single-threaded emulation, completes each read before
    # the reader gets to sleep (no D sleep at all on 6.1). There the backing
    # file goes to the results directory, the host's, through the emulator:
    # a read takes long enough that the reader waits, in D (else /tmp).
    old = os.environ.get("FTT_LOOP_DIR")
    rw = os.path.dirname(os.environ.get("FTT_VM_PROGRESS", ""))
    if tooling.EMULATED and rw:
        os.environ["FTT_LOOP_DIR"] = rw
    try:
        with loopdev.LoopDevice(size_mb=32) as d:
            yield d
    finally:
        if old is None:
            os.environ.pop("FTT_LOOP_DIR", None)
        else:
            os.environ["FTT_LOOP_DIR"] = old


@pytest.mark.vm
def test_off_cpu_time_adds_up_to_schedstat_and_names_the_stacks(loop) -> None:
    for _ in range(3):
        pid, k, obj, err = run_traced(loop.path)
        # a sleep whose wakeup and switch-in the kernel did not record (the
        # 6.18 host, about one in 5,000 sleeps here) has an estimated end,
        # which the tool says: try again. So too when the reference itself
        # is impossible: once in the 6.12 guest schedstat's run-queue wait
        # grew by 4.7 s in a 0.54 s window (the emulated clock).
        if obj["unended"]:
            assert "note: %d sleeps whose wakeup" % obj["unended"] in err, err
        elif k["run_ns"] + k["wait_ns"] <= obj["interval"] * 1e9:
            break
    assert "stacks recorded at each switch-out" in err, err     # -v: the way
    assert obj["method"] == "stream"
    assert obj["lost"] == 0 and obj["nostack"] == 0 and obj["unended"] == 0, obj
    task = [t for t in obj["tasks"] if t["pid"] == pid][0]
    rows = [r for r in obj["stacks"] if r["pid"] == pid]
    # every sleep is there, each with its stack; the rows add up to the task
    assert task["sleeps"] == k["voluntary"], (task, k)
    assert sum(r["sleeps"] for r in rows) == task["sleeps"]
    assert sum(r["off_ns"] for r in rows) == task["off_ns"]
    # the window is its run time, its run-queue waits and its sleeps
    window = round(obj["interval"] * 1e9)
    expect = window - k["run_ns"] - k["wait_ns"]
    got = task["off_ns"] + task["before_ns"]
    assert abs(got - expect) <= PER_SLEEP_NS * (task["sleeps"] + 1) + SLACK_NS, \
        (got, expect, got - expect, window, task, k, obj["unrecorded"])
    print("offcputime: off-CPU %d ns, schedstat's window - run - wait %d ns: %+d ns "
          "in %d sleeps" % (got, expect, got - expect, task["sleeps"]))
    # the stacks: nanosleep, pipe reads (the last read of stdin still going
    # at the end), direct I/O in D
    nano = [r for r in rows if has(r, "do_nanosleep", "hrtimer_nanosleep")]
    assert sum(r["sleeps"] for r in nano) == NANO, nano
    assert NANO * NANO_S * 1e9 <= sum(r["off_ns"] for r in nano) <= \
        NANO * (NANO_S + 0.005 * tooling.SCALE) * 1e9, nano
    pipe = [r for r in rows if has(r, "pipe_read")]
    assert PIPE // 2 <= sum(r["sleeps"] for r in pipe) <= PIPE + 1, pipe
    io = [r for r in rows if has(r, "io_schedule")]
    assert IO // 2 <= sum(r["sleeps"] for r in io) and all("D" in r["state"] for r in io), rows
    assert all(r["frames"][0] == "__schedule" for r in rows), rows


@pytest.mark.needs("hist_stacktrace")
def test_kernel_tables_agree_with_the_stream(loop) -> None:
    """Where the kernel sums the sleeps per stack itself (hist triggers,
    6.5+), its rows for the workload, traced system-wide, are the streaming
    path's (-p, in the same window): the same sleeps per kind of stack, and
    the same time asleep within the per-sleep bound. The kernel counts only
    sleeps that end: not the last read of stdin, still going."""
    w = subprocess.Popen([sys.executable, __file__, "sleeper", loop.path, str(NANO), str(NANO_S),
                          str(PIPE), str(IO)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    kt = None
    try:
        assert w.stdout.readline() == "ready\n"
        settled(w.pid)
        kt = tooling.start("offcputime", "--json", "-v")
        k, rc, out, err = around(w, "offcputime", "--json", "--stream", "-p", str(w.pid))
        krc, kout, kerr = kt.stop(signal.SIGINT)
    finally:
        if kt is not None and kt.proc.poll() is None:
            kt.stop(signal.SIGTERM)
        w.kill()
        w.wait()
    assert rc == 0 and krc == 0, (err, kerr)
    assert "summed per stack in the kernel" in kerr, kerr
    (st,), (kn,) = [[json.loads(l) for l in o.splitlines() if l.strip()] for o in (out, kout)]
    assert (st["method"], kn["method"]) == ("stream", "kernel")
    assert kn["lost"] == 0 and st["lost"] == 0 and st["unended"] == 0, (kn, st)
    ktask = [t for t in kn["tasks"] if t["pid"] == w.pid][0]
    stask = [t for t in st["tasks"] if t["pid"] == w.pid][0]
    assert ktask["wait_ns"] is None and ktask["before_ns"] is None
    assert stask["sleeps"] == k["voluntary"] == ktask["sleeps"] + 1, (stask, ktask, k)
    rows = {p: [r for r in o["stacks"] if r.get("pid") == w.pid] for p, o in (("s", st), ("k", kn))}
    for names, ongoing in ((("do_nanosleep", "hrtimer_nanosleep"), 0), (("io_schedule",), 0),
                           (("pipe_read",), 1)):
        n = {p: sum(r["sleeps"] for r in rs if has(r, *names)) for p, rs in rows.items()}
        ns = {p: sum(r["off_ns"] for r in rs if has(r, *names)) for p, rs in rows.items()}
        assert n["s"] == n["k"] + ongoing > 0, (names, n)
        if not ongoing:
            assert abs(ns["s"] - ns["k"]) <= PER_SLEEP_NS * n["k"], (names, ns, n)
            print("offcputime: %s: %d sleeps, kernel %d ns, stream %d ns: %+d" % (
                names[0], n["k"], ns["k"], ns["s"], ns["s"] - ns["k"]))


def test_state_filter_keeps_only_those_sleeps(loop) -> None:
    pid, k, obj, err = run_traced(loop.path, "--state", "D")
    rows = [r for r in obj["stacks"] if r["pid"] == pid]
    assert rows and all(r["state"] == "D" for r in rows), rows
    assert all(has(r, "io_schedule") for r in rows), rows
    assert IO // 2 <= sum(r["sleeps"] for r in rows) < k["voluntary"] - NANO
    task = [t for t in obj["tasks"] if t["pid"] == pid][0]
    assert task["before_ns"] == 0     # in which state it slept before is unknown


def test_folded_stacks_of_a_command() -> None:
    """-c: a command traced from its start; folded output for flame graphs,
    rooted at the process name, frames outermost first, microseconds."""
    p = tooling.run("offcputime", "--folded", "-c", "sleep 0.3")
    assert p.returncode == 0, p.stderr
    lines = [l.rsplit(" ", 1) for l in p.stdout.splitlines()]
    nano = [(s.split(";"), int(v)) for s, v in lines
            if s.startswith("sleep;") and "do_nanosleep" in s]
    assert len(nano) == 1, p.stdout
    frames, us = nano[0]
    assert frames[-1] == "__schedule" and frames.index("do_nanosleep") > 1, frames
    assert 300000 <= us <= 300000 + 20000 * tooling.SCALE, us


def test_text_layout_as_bcc() -> None:
    """The default output: each stack innermost frame first, then
    "-  COMM (PID)" and the time; the summary line last."""
    p = tooling.run("offcputime", "-c", "sleep 0.1")
    assert p.returncode == 0, p.stderr
    blocks = p.stdout.strip("\n").split("\n\n")
    assert blocks[-1].startswith("blocked ") and "run-queue waits" in blocks[-1] and "before" not in blocks[-1], blocks[-1]
    mine = [b for b in blocks if "do_nanosleep" in b]
    assert len(mine) == 1, p.stdout
    lines = mine[0].splitlines()
    assert lines[0] == "    __schedule" and lines[-2].startswith("    -                sleep (")
    assert lines[-1].strip().split()[1:5] == ["us", "in", "1", "sleep"], lines[-1]


if __name__ == "__main__":
    if sys.argv[1] == "sleeper":
        sleeper(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]),
                int(sys.argv[6]))
