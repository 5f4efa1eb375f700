"""funclatency against a workload that knows its calls and their lengths.

The workload sleeps a known number of times, in groups an order of
magnitude apart, and times each sleep itself. Each sleep is one call of
``do_nanosleep``, whose duration lies between the length asked and the
length the workload measured around the system call: where both bounds
fall in one log2 bucket the call must be in that bucket; where they
straddle a boundary, in one of the two. The count must be exact. Each way
the kernel offers is forced in turn (FTT_METHOD). A sleep cut short by a
signal returns a negative value: ``--errors`` must print exactly those.
On a kernel that forbids function tracing (the development host) the
tool refuses in one line.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import tooling

FUNC = "do_nanosleep"
METHODS = {
    "fprobe-hist": ("fprobes", "hist", "synthetic"),
    "kprobe-hist": ("kprobes", "hist", "synthetic"),
    "graph": ("function_graph",),
}
# sleeps (seconds, how many): the middle of buckets of 1, 8 and 64 ms
GROUPS = ((0.0013, 12), (0.011, 8), (0.09, 4))

# Print the PID, wait for a line, then sleep as told ("S:N,S:N"), each
# sleep a relative nanosleep (time.sleep sleeps to a deadline it computed
# before the call: the kernel's part would be shorter than asked), timed
# here (ns); on a line "sig", sleep long and count the
# SIGUSR1 that cut it short; print the times as JSON, wait for stdin to end.
WORKLOAD = r"""
import ctypes, json, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(29, 1, 0, 0, 0)     # PR_SET_TIMERSLACK: 1 ns
class timespec(ctypes.Structure):
    _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
got = []
signal.signal(signal.SIGUSR1, lambda *a: got.append(1))
print(os.getpid(), flush=True)
cmd = sys.stdin.readline().strip()
out = []
if cmd == "sig":
    while len(got) < int(sys.argv[1]):
        time.sleep(0.5)
else:
    for part in cmd.split(","):
        secs, n = part.split(":")
        for _ in range(int(n)):
            ns = int(float(secs) * 1e9)
            ts = timespec(ns // 10**9, ns % 10**9)
            t = time.monotonic_ns()
            libc.nanosleep(ctypes.byref(ts), None)   # relative: lasts at least ns
            out.append((float(secs), time.monotonic_ns() - t))
print(json.dumps(out), flush=True)
sys.stdin.read()
"""


def _param(m):
    return pytest.param(m, marks=pytest.mark.needs(*METHODS[m]), id=m)


class Sleeper:
    def __init__(self, signals: int = 0) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", WORKLOAD, str(signals)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = int(self.p.stdout.readline())
        with open("/proc/%d/comm" % self.pid) as f:
            self.comm = f.read().strip()

    def run(self, cmd: str):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        if cmd == "sig":
            return None
        return json.loads(self.p.stdout.readline())

    def end(self) -> None:
        self.p.stdin.close()
        self.p.wait(30 * tooling.SCALE)


def bucket(us: float) -> int:
    return 0 if us < 1 else int(us).bit_length()


def timed(method, *opts, sleeps=GROUPS):
    """funclatency -p on the sleeper: (its JSON objects, the sleeps as
    (asked s, measured ns), stderr, the sleeper)."""
    w = Sleeper()
    t = tooling.start("funclatency", "-p", str(w.pid), "--json", *opts, FUNC,
                      env={"FTT_METHOD": method}, timeout=180)
    done = w.run(",".join("%s:%d" % g for g in sleeps))
    w.end()
    rc, out, err = t.wait(180)
    assert rc == 0, err
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")], done, err, w


@pytest.mark.parametrize("method", [_param(m) for m in METHODS])
def test_every_call_counted_in_its_bucket(method):
    objs, done, err, _ = timed(method, "-u")
    assert len(objs) == 1, objs
    o = objs[0]
    assert o["function"] == FUNC and o["method"] == method and o["unit"] == "us"
    assert o["count"] == sum(n for _, n in GROUPS) == len(done), (o, err)
    assert o["lost"] == 0 and o["unpaired"] == 0, o
    got = {bucket(b["low"]): b["count"] for b in o["buckets"] if b["count"]}
    sure, either = {}, []
    for asked, ns in done:
        lo, hi = bucket(asked * 1e6), bucket(ns / 1000.0)
        if lo == hi:
            sure[lo] = sure.get(lo, 0) + 1
        else:
            either.append((lo, hi))
    # every call whose bucket is certain is there; the others in one of theirs
    for b, n in sure.items():
        assert got.get(b, 0) >= n, (b, got, sure, either)
    left = {b: got.get(b, 0) - sure.get(b, 0) for b in got}
    for lo, hi in sorted(either, key=lambda e: (e[1], e[0])):  # (optimal for intervals)
        for b in range(lo, hi + 1):
            if left.get(b, 0) > 0:
                left[b] -= 1
                break
        else:
            pytest.fail("a sleep of %s..%s has no place in %s" % (lo, hi, got))
    assert all(v == 0 for v in left.values()), (got, sure, either)
    # the groups sit mid-bucket: most calls' buckets are certain (under
    # QEMU's emulation, on a slow day, 1.3 ms sleeps took up to 2.4 ms:
    # 7 of 24 could be in either of two buckets; CI of ed068cf)
    assert len(either) <= len(done) // (2 if tooling.EMULATED else 4), either
    # the durations: at least what was asked, at most what the workload saw
    assert sum(a for a, _ in done) * 1e6 <= o["total"] * 1.001 + 1
    assert o["total"] <= sum(ns for _, ns in done) / 1000.0 + 1, (o, done)


@pytest.mark.parametrize("method", [_param(m) for m in METHODS])
def test_slower_prints_exactly_the_slow_calls(method):
    """--slower 5000: the 11 ms and 90 ms sleeps (12 of them), not the
    1.3 ms ones, each with the sleeper's PID and name."""
    objs, done, err, w = timed(method, "--slower", "5000")
    # slow for sure: asked 5 ms or more; perhaps: asked less but took more
    sure = [ns for asked, ns in done if asked >= 0.005]
    maybe = [ns for asked, ns in done if asked < 0.005 <= ns / 1e9]
    assert len(sure) == 12 and len(sure) <= len(objs) <= len(sure) + len(maybe), (
        [(o["pid"], o["duration_ns"]) for o in objs], done, err)
    odd = [o for o in objs if (o["pid"], o["comm"], o["function"]) != (w.pid, w.comm, FUNC)]
    assert not odd, (w.pid, w.comm, odd)
    assert all(o["duration_ns"] >= 5000000 for o in objs)
    # each in order: no shorter than asked, no longer than the sleeper saw
    asked = [(a, ns) for a, ns in done if a >= 0.005 or ns >= 5e6]
    extra = len(asked) - len(objs)
    for o in sorted(objs, key=lambda o: o["time"]):
        while not asked[0][0] * 1e9 <= o["duration_ns"] <= asked[0][1] and extra > 0:
            asked.pop(0)
            extra -= 1
        a, ns = asked.pop(0)
        assert a * 1e9 <= o["duration_ns"] <= ns, (a, ns, o)
    if method != "graph":
        assert all(o["retval"] == 0 for o in objs), objs


@pytest.mark.parametrize("method", [_param(m) for m in METHODS])
def test_b_sizes_the_records_buffer(method, tracefs_root):
    """-b KB sizes the buffer the slow calls' records go to, on every path
    (the in-kernel paths kept 1024 KB whatever -b said)."""
    t = tooling.start("funclatency", "-b", "1540", "--slower", "5000", "-d", "60", FUNC,
                      env={"FTT_METHOD": method}, timeout=180)
    try:
        inst = os.path.join(tracefs_root, "instances", "funclatency-%d" % t.proc.pid)
        where = inst if os.path.isdir(inst) else tracefs_root   # (graph on the top level)
        with open(os.path.join(where, "buffer_size_kb")) as f:
            kb = f.read().split()[0]
    finally:
        rc, _out, err = t.stop()
    assert rc == 0, err
    # (the kernel rounds to its pages of 4080 bytes of data: 1541)
    assert abs(int(kb) - 1540) < 4, (where, kb)


@pytest.mark.parametrize("method", [_param(m) for m in ("fprobe-hist", "kprobe-hist")])
def test_errors_prints_the_calls_a_signal_cut_short(method):
    n = 3
    w = Sleeper(signals=n)
    t = tooling.start("funclatency", "-p", str(w.pid), "--json", "--errors", FUNC,
                      env={"FTT_METHOD": method}, timeout=180)
    w.run("sig")
    for _ in range(n):
        time.sleep(0.2)
        os.kill(w.pid, signal.SIGUSR1)
    assert w.p.stdout.readline().strip() == "[]"
    w.end()
    rc, out, err = t.wait(180)
    assert rc == 0, err
    objs = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    assert len(objs) == n, (objs, err)
    # do_nanosleep cut short: -ERESTART_RESTARTBLOCK (an int: see funclat.ERRORS)
    assert all(o["retval"] == -516 and o["pid"] == w.pid for o in objs), objs


@pytest.mark.needs("function_graph")
def test_errors_refused_where_no_return_values(tracefs_root):
    r = tooling.run("funclatency", "--errors", "-d", "1", FUNC, env={"FTT_METHOD": "graph"},
                    timeout=120)
    assert r.returncode == 1 and "no return values" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_refuses_in_one_line_where_function_tracing_is_forbidden(tracefs_root):
    from ftracetools.kernel.features import Features
    if Features(tracefs_root).why_not("function") is None:
        pytest.skip("function tracing is allowed here (the refusal is for kernels "
                    "that forbid it)")
    r = tooling.run("funclatency", "-d", "1", "vfs_read")
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("funclatency: function tracing is "
                                                   "forbidden"), r.stderr
    assert "lockdown" in lines[0] and "iolatency" in lines[0]
