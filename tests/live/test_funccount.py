"""funccount against workloads with an exactly known number of calls.

A workload process makes exactly N getppid() (and M getpid()) system calls
once told to; the kernel function that implements getppid is found in this
kernel's available_filter_functions (``__do_sys_getppid`` on 6.1 and 6.12).
Each counting path the kernel offers is forced in turn (FTT_METHOD)
and must report exactly N. On the development host function tracing is
forbidden: there the test is that funccount refuses clearly and leaves
tracefs as it was (the conftest fixture checks every live test for that).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

import pytest

import tooling

N = 2000
M = 700

# The workload: print the PID, wait for a line, make the calls (optionally
# pinned to a CPU, optionally in a second thread, optionally in two bursts
# with a pause between), print "done", then wait for stdin to close.
WORKLOAD = r"""
import os, sys, threading, time
n, m, cpu, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if cpu >= 0:
    os.sched_setaffinity(0, {cpu})
def calls(k, f):
    for _ in range(k):
        f()
tid = [0]
def thread_body(ev):
    tid[0] = threading.get_native_id()
    ev.wait()
    calls(n, os.getppid)
go = threading.Event()
t = None
if mode == "thread":
    t = threading.Thread(target=thread_body, args=(go,))
    t.start()
    while not tid[0]:
        time.sleep(0.01)
print(os.getpid(), tid[0], flush=True)
sys.stdin.readline()
if mode == "thread":
    go.set(); t.join()
    calls(m, os.getpid)
elif mode == "bursts":
    calls(n // 2, os.getppid); time.sleep(float(sys.argv[5])); calls(n - n // 2, os.getppid)
    calls(m, os.getpid)
else:
    calls(n, os.getppid); calls(m, os.getpid)
print("done", flush=True)
sys.stdin.read()
"""

METHODS = {
    "kprobe": ("kprobes",),
    "kprobe-hist": ("kprobes", "hist"),
    "fprobe-hist": ("fprobes", "hist"),
    "function": ("function_instance",),
    "profiler": ("function_profiler",),
}
FILTERING = ["kprobe-hist", "fprobe-hist", "function"]


class Workload:
    def __init__(self, n: int = N, m: int = M, cpu: int = -1, mode: str = "plain",
                 pause: float = 0.0) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", WORKLOAD, str(n), str(m),
                                   str(cpu), mode, str(pause)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first = self.p.stdout.readline().split()
        self.pid, self.tid = int(first[0]), int(first[1])

    def run(self) -> None:
        """Make the calls and wait until they are made."""
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        assert self.p.stdout.readline().strip() == "done"

    def end(self) -> None:
        self.p.stdin.close()
        self.p.wait(30 * tooling.SCALE)


def syscall_function(root: str, syscall: str) -> str:
    with open(os.path.join(root, "available_filter_functions")) as f:
        have = {line.split()[0] for line in f if line.strip()}
    for name in ("__do_sys_" + syscall, "__se_sys_" + syscall, "__x64_sys_" + syscall,
                 "sys_" + syscall):
        if name in have:
            return name
    pytest.fail("no traceable function for %s() on this kernel" % syscall)
    raise AssertionError


def parse_table(out: str) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"^(\S+)\s+(\d+)$", line)
        if m and m.group(1) != "FUNC":
            counts[m.group(1)] = counts.get(m.group(1), 0) + int(m.group(2))
    return counts


def env_for(method: Optional[str]) -> Dict[str, str]:
    return {"FTT_METHOD": method} if method else {}


def count_pid(method: Optional[str], patterns: List[str], w: Workload, *opts: str):
    """Start funccount -p on the workload, run it, return (counts, stderr)."""
    t = tooling.start("funccount", "-p", str(w.pid), *opts, *patterns,
                      env=env_for(method), timeout=120)
    w.run()
    w.end()  # funccount ends when the process has exited
    rc, out, err = t.wait(120)
    assert rc == 0, err
    return out, err


def _needs(method: str):
    return pytest.mark.needs(*METHODS[method])


# -- the host: function tracing forbidden --------------------------------------

def test_refuses_clearly_when_function_tracing_is_forbidden(tracefs_root):
    from ftracetools.kernel.features import Features
    why = Features(tracefs_root).why_not("function")
    if why is None:
        pytest.skip("function tracing is allowed here (the refusal is for kernels "
                    "that forbid it)")
    before = sorted(os.listdir(os.path.join(tracefs_root, "instances")))
    r = tooling.run("funccount", "-d", "1", "vfs_read")
    assert r.returncode == 1
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("funccount: function tracing is forbidden")
    assert "lockdown" in lines[0] and "Traceback" not in r.stderr
    assert sorted(os.listdir(os.path.join(tracefs_root, "instances"))) == before


def test_bad_patterns_refused_before_tracefs():
    for pat in ("vfs_read:traceoff", "a b", "!vfs_read", "x;y"):
        r = tooling.run("funccount", pat)
        assert r.returncode == 2, (pat, r.stderr)
        assert "not a function pattern" in r.stderr and "Traceback" not in r.stderr


# -- stock kernels --------------------------------------------------------------

@pytest.mark.needs("function")
def test_list_and_suggestions(tracefs_root):
    func = syscall_function(tracefs_root, "getppid")
    r = tooling.run("funccount", "-l", "*sys_getppid", timeout=120)
    assert r.returncode == 0, r.stderr
    assert func in r.stdout.split()
    r = tooling.run("funccount", "-l", "-r", "^%s$" % re.escape(func), timeout=120)
    assert r.stdout.split() == [func]
    # A wrapper name that is not traceable: the error names it and suggests
    # the traceable body.
    r = tooling.run("funccount", "-d", "1", "__x64_sys_getppidx", timeout=120)
    assert r.returncode == 2, r.stderr
    assert "__x64_sys_getppidx" in r.stderr and func in r.stderr, r.stderr


def _param(method: str):
    return pytest.param(method, marks=pytest.mark.needs(*METHODS[method]), id=method)


@pytest.mark.parametrize("method", [_param(m) for m in FILTERING] + [
    pytest.param("function/arrays", marks=pytest.mark.needs(*METHODS["function"]),
                 id="function-arrays")])
def test_exact_count_of_a_process(method, tracefs_root, monkeypatch):
    """function-arrays: the function path decoding every round as arrays
    (numpy), where a busy run does."""
    if method == "function/arrays":
        pytest.importorskip("numpy")
        method = "function"
        monkeypatch.setenv("FTT_SMALL_ROUND", "0")
    f1 = syscall_function(tracefs_root, "getppid")
    f2 = syscall_function(tracefs_root, "getpid")
    w = Workload()
    glob2 = f2[:-1] + "[" + f2[-1] + "]"
    out, err = count_pid(method, [f1, glob2], w, "-v")
    counts = parse_table(out)
    assert counts.get(f1) == N, out + err
    assert counts.get(f2) == M, out + err
    assert "2 functions counted; 0 lost" in out
    assert "by %s" % method in err


@pytest.mark.parametrize("method", [_param("kprobe"), _param("profiler")])
def test_exact_count_unfiltered(method, tracefs_root):
    """These paths count every task: the workload is the only caller of
    getppid() on the test machine (true in the VMs)."""
    func = syscall_function(tracefs_root, "getppid")
    w = Workload()
    t = tooling.start("funccount", func, env=env_for(method), timeout=120)
    w.run()
    w.end()
    rc, out, err = t.stop(signal.SIGINT, 120)
    assert rc == 0, err
    assert parse_table(out).get(func) == N, out + err


@pytest.mark.parametrize("method", [_param(m) for m in FILTERING])
def test_cpu_filter_on_pinned_workloads(method, tracefs_root):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    cpu0, cpu1 = sorted(os.sched_getaffinity(0))[:2]
    func = syscall_function(tracefs_root, "getppid")
    a, b = Workload(n=N, cpu=cpu1), Workload(n=N // 2, cpu=cpu0)
    t = tooling.start("funccount", "-C", str(cpu1), func, env=env_for(method), timeout=120)
    a.run()
    b.run()
    rc, out, err = t.stop(signal.SIGINT, 120)
    a.end()
    b.end()
    assert rc == 0, err
    assert parse_table(out).get(func) == N, out + err


@pytest.mark.needs("function")
def test_intervals_sum_to_the_total(tracefs_root):
    func = syscall_function(tracefs_root, "getppid")
    iv = 0.5 * tooling.SCALE
    w = Workload(mode="bursts", pause=3 * iv)
    t = tooling.start("funccount", "-p", str(w.pid), "-i", str(iv), "--json", func,
                      timeout=120)
    w.run()
    w.end()
    rc, out, err = t.wait(120)
    assert rc == 0, err
    objs = [json.loads(l) for l in out.splitlines()]
    assert len(objs) >= 3, out
    assert sum(o["counts"].get(func, 0) for o in objs) == N, out
    assert sum(1 for o in objs if o["counts"]) >= 2, out  # really split
    for o in objs:
        assert o["lost"] == 0 and o["interval"] > 0 and o["time"] > 0


@pytest.mark.needs("function")
def test_command_and_thread(tracefs_root):
    func = syscall_function(tracefs_root, "getppid")
    code = "import os\nfor _ in range(%d): os.getppid()" % N
    r = tooling.run("funccount", "-c", "%s -c %s" % (sys.executable, _quote(code)),
                    func, timeout=120)
    assert r.returncode == 0, r.stderr
    assert parse_table(r.stdout).get(func) == N, r.stdout + r.stderr
    # -L: only the thread's N getppid, not the main thread's M getpid
    w = Workload(mode="thread")
    f2 = syscall_function(tracefs_root, "getpid")
    t = tooling.start("funccount", "-L", str(w.tid), func, f2, timeout=120)
    w.run()
    rc, out, err = t.stop(signal.SIGINT, 120)
    w.end()
    assert rc == 0, err
    counts = parse_table(out)
    assert counts.get(func) == N and f2 not in counts, out + err


def _quote(s: str) -> str:
    import shlex
    return shlex.quote(s)


# -- tracepoints: every kernel, this one included ----------------------------------

TRACEPOINTS = {"tp-counter": (), "tp-records": (), "tp-hist": ("hist",)}


@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.needs(*TRACEPOINTS[m])
                                                 if TRACEPOINTS[m] else ())
                                    for m in sorted(TRACEPOINTS)])
def test_tracepoints_counted_exactly(method):
    """The system call tracepoints of getppid and getpid fire exactly as often
    as the workload calls them (N and M), on each counting path; the glob
    also takes getpgid, which the workload never calls."""
    w = Workload()
    try:
        out, err = count_pid(method, ["t:syscalls:sys_enter_getp*id"], w, "--json", "-v")
    finally:
        w.end()
    obj = json.loads(out.splitlines()[-1])
    assert obj["method"] == method and obj["lost"] == 0, err
    assert obj["counts"].get("syscalls:sys_enter_getppid") == N, obj
    assert obj["counts"].get("syscalls:sys_enter_getpid") == M, obj
    assert not obj["counts"].get("syscalls:sys_enter_getpgid"), obj
    assert "counting 3 tracepoints with" in err


# -- per stack (bcc's stackcount): the paths that carry a stack ---------------------

STACKS = {"tp-records": ("t:syscalls:sys_enter_getppid", ()),
          "tp-hist": ("t:syscalls:sys_enter_getppid", ("hist",)),
          "kprobe-hist": (None, ("kprobes", "hist")),
          "fprobe-hist": (None, ("fprobes", "hist"))}


@pytest.mark.parametrize("method", [
    pytest.param(m, marks=pytest.mark.needs(*STACKS[m][1]) if STACKS[m][1] else pytest.mark.vm)
    for m in sorted(STACKS)])
def test_stacks_add_up_to_the_counts(method, tracefs_root):
    """--stacks: the workload's N getppid() calls, counted per kernel stack,
    add up to N, as plain counting has them; every stack goes through the
    system call entry."""
    what = STACKS[method][0] or syscall_function(tracefs_root, "getppid")
    name = what[2:] if what.startswith("t:") else what
    w = Workload()
    try:
        out, err = count_pid(method, [what], w, "--stacks", "--json", "-v")
    finally:
        w.end()
    obj = json.loads(out.splitlines()[-1])
    assert obj["method"] == method and obj["lost"] == 0, err
    assert obj["counts"] == {name: N}, obj["counts"]
    mine = [s for s in obj["stacks"] if s["name"] == name]
    assert sum(s["count"] for s in mine) == N, mine
    assert all("do_syscall_64" in s["frames"] for s in mine), mine


def test_stacks_refused_where_none_is_kept():
    """The kernel's count of events written keeps no stacks: forced, a clear
    refusal before tracefs is touched; else a path that keeps them."""
    p = tooling.run("funccount", "--stacks", "-d", "0.1", "t:syscalls:sys_enter_getppid",
                    env=dict(os.environ, FTT_METHOD="tp-counter"))
    assert p.returncode == 1 and p.stderr.strip() == (
        "funccount: cannot count with tp-counter: the kernel's count of the events written "
        "keeps no stacks"), p.stderr
    p = tooling.run("funccount", "--stacks", "-v", "-d", "0.1", "t:syscalls:sys_enter_getppid")
    assert p.returncode == 0 and "counting 1 tracepoint with" in p.stderr, p.stderr
    assert "tp-counter" not in p.stderr and "kernel's count" not in p.stderr, p.stderr
