"""funcgraph against the kernel: a workload calling the getppid syscall body
exactly N times, traced under -p, must show exactly N calls with the
callee the kernel's source gives it; trace-cmd must see the same tree; the
top level is never taken from another user.

Enabling function_graph takes a minute or more in the QEMU guests (the
kernel patches every function under software emulation): keep the number
of funcgraph runs small.
"""

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

import tooling

N = 200
FUNCS = ("__do_sys_getppid", "__se_sys_getppid", "__x64_sys_getppid")
CALLEE = "__task_pid_nr_ns"   # getppid -> task_tgid_vnr -> __task_pid_nr_ns

WORKLOAD = r"""
import os, signal, sys
n = int(sys.argv[1])
if sys.argv[2] == "wait":
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    signal.sigwait([signal.SIGUSR1])
for _ in range(n):
    os.getppid()
if sys.argv[2] == "wait":   # stay alive: an exit's teardown is no part of the test
    print("done", flush=True)
    signal.sigwait([signal.SIGUSR1])
"""


def _root():
    from ftracetools.kernel.features import Features
    return Features().root


def getppid_function() -> str:
    with open(os.path.join(_root(), "available_filter_functions")) as f:
        have = {l.split()[0] for l in f if "sys_getppid" in l}
    for name in FUNCS:
        if name in have:
            return name
    pytest.fail("no getppid syscall body is traceable here")
    return ""


def traced(*args: str, n: int = N, env=None):
    """Run funcgraph -p on a workload that calls getppid() n times once
    tracing is live; returns (rc, stdout, stderr)."""
    w = subprocess.Popen([sys.executable, "-c", WORKLOAD, str(n), "wait"],
                         stdout=subprocess.PIPE, text=True)
    try:
        t = tooling.start("funcgraph", "-p", str(w.pid), *args, timeout=600, env=env)
        os.kill(w.pid, signal.SIGUSR1)
        assert w.stdout.readline() == "done\n"
        # every record of the loop is in the buffer now: funcgraph's last
        # read, after SIGINT, takes in what it has not read yet
        res = t.stop(signal.SIGINT, timeout=600)
        os.kill(w.pid, signal.SIGUSR1)
        assert w.wait(120 * tooling.SCALE) == 0
        return res
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()


def aliases() -> dict:
    """Kernel function name -> the first name (sorted) at its address, for
    the names that share one (/proc/kallsyms)."""
    at = collections.defaultdict(set)
    with open("/proc/kallsyms") as f:
        for line in f:
            addr, kind, name = line.split()[:3]
            if kind in "tT" and int(addr, 16):
                at[addr].add(name)
    return {n: min(names) for names in at.values() if len(names) > 1 for n in names}


def text_trees(text: str, marker: str = ""):
    """(depth, name) sequences of each top-level call in function_graph text
    (ours, or trace-cmd report's lines after ``marker``)."""
    trees, cur = [], None
    for line in text.splitlines():
        if marker and marker not in line:
            continue
        if "|" not in line:
            continue
        body = line.split("|", 1)[1] if not marker else line.split(marker, 1)[1].split("|", 1)[-1]
        m = re.match(r"^  ( *)([A-Za-z0-9_.$]+)\(\)( \{|;)\s*$", body)
        if not m:
            continue
        depth = len(m.group(1)) // 2
        if depth == 0:
            cur = []
            trees.append(cur)
        if cur is not None:
            cur.append((depth, m.group(2)))
    return [tuple(t) for t in trees]


# -- every kernel -----------------------------------------------------------

def test_refuses_clearly_and_changes_nothing():
    """EPERM kernels (like the development host): one line, exit 1.
    Elsewhere: an unknown name is refused with close matches."""
    from ftracetools.kernel.features import Features
    why = Features().why_not("function_graph")
    if why:
        r = tooling.run("funcgraph", "vfs_read")
        assert r.returncode == 1, r.stderr
        assert r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith("funcgraph: ") and why in r.stderr
        assert "Tracing" not in r.stderr and r.stdout == ""
    else:
        r = tooling.run("funcgraph", "__do_sys_getppidd")
        assert r.returncode == 2, r.stderr
        assert "no traceable function matches" in r.stderr
        assert "__do_sys_getppid" in r.stderr   # the suggestion


# -- kernels with function_graph (the QEMU guests) ---------------------------

@pytest.mark.needs("function_graph")
def test_json_exact_calls_callees_and_durations(tmp_path):
    func = getppid_function()
    tef = str(tmp_path / "tef.json")
    rc, out, err = traced("--json", "--tef", tef, func)
    assert rc == 0, err
    calls = [json.loads(l) for l in out.splitlines()]
    assert not any("lost" in c for c in calls), err
    top = [c for c in calls if c["depth"] == 0]
    # (twice in a 6.1 guest, 199 of 200 at depth 0, nothing lost: an
    # interrupt recorded at depth 0 as the call returned was taken for the
    # call's lost exit; see the unit tests. What the others were is shown,
    # to tell where a missing one went)
    assert len(top) == N and all(c["function"] == func for c in top), (
        len(top), collections.Counter((c["depth"], c["function"]) for c in calls
                                      if c["function"] == func or c["depth"] == 0), err)
    kids = collections.defaultdict(list)
    for c in calls:
        if c["parent"] is not None:
            kids[c["parent"]].append(c)
    # the known direct callee, under every call
    assert all(any(k["function"] == CALLEE and k["depth"] == 1 for k in kids[c["id"]])
               for c in top)
    for c in calls:
        assert c["duration_ns"] >= sum(k["duration_ns"] for k in kids[c["id"]]), c
        assert set(c) >= {"time", "cpu", "pid", "comm", "depth", "function", "duration_ns"}
    assert {c["comm"] for c in top} == {"python3"} or len({c["pid"] for c in top}) == 1
    with open(tef) as f:
        slices = [e for e in json.load(f)["traceEvents"] if e["ph"] == "X"]
    assert sum(1 for e in slices if e["name"] == func) == N
    assert len(slices) == len(calls)


@pytest.mark.needs("function_graph")
def test_folded_total_is_the_top_level_time(tmp_path):
    func = getppid_function()
    tef = str(tmp_path / "tef.json")
    rc, out, err = traced("--folded", "--tef", tef, func)
    assert rc == 0, err
    folded = {}
    for line in out.splitlines():
        stack, _, v = line.rpartition(" ")
        folded[stack] = int(v)
    assert all(k.split(";")[0] == func for k in folded), \
        [k for k in folded if k.split(";")[0] != func] + [err]
    assert any(k == func + ";" + CALLEE for k in folded)
    with open(tef) as f:
        top_us = sum(e["dur"] for e in json.load(f)["traceEvents"]
                     if e["ph"] == "X" and e["name"] == func)
    assert abs(sum(folded.values()) - top_us * 1000) <= N   # float rounding


@pytest.mark.needs("function_graph")
def test_maxdepth_and_the_top_level_shared():
    """-m 1 shows the function alone. Meanwhile another ftrace-tools user
    holds the top level: on kernels with function_graph in instances both
    run; elsewhere funcgraph refuses and changes nothing."""
    import tracestate
    from ftracetools.kernel.features import Features
    from ftracetools.kernel.session import Session
    func = getppid_function()
    inst = Features().has("function_graph_instance")
    size = os.path.join(_root(), "buffer_size_kb")
    found = tracestate.snapshot(_root())["buffer_size_kb"]
    with Session("holder", top_level=True) as s:
        s.set("set_event", "sched:sched_process_exit")
        before = tracestate.snapshot(s.root)
        if not inst:
            r = tooling.run("funcgraph", "-m", "1", func, timeout=300)
            assert r.returncode == 1 and "in use" in r.stderr, r.stderr
            assert r.stderr.count("\n") == 1
            assert tracestate.diff(before, tracestate.snapshot(s.root)) == []
        else:
            rc, out, err = traced("-m", "1", func)
    if not inst:
        rc, out, err = traced("-m", "1", func)
    assert rc == 0, err
    lines = [l for l in out.splitlines() if "|" in l]
    assert sum(1 for l in lines if l.endswith("|  %s();" % func)) == N, out[-2000:]
    assert CALLEE not in out and "LOST" not in out
    # On 6.1 funcgraph resizes the top level's buffer; found unexpanded
    # ("7 (expanded: 1408)", the cold 6.1 guest) it is left at the size
    # the kernel would give (1410), never at 7 KB (tests/vm/runvm.py
    # checks the guest's last reading too)
    assert tracestate.snapshot(_root())["buffer_size_kb"] == found, open(size).read()


@pytest.mark.needs("function_graph")
@pytest.mark.parametrize("rounds", ["records", "arrays"])
def test_same_tree_as_trace_cmd(tmp_path, rounds):
    """The text, made record by record or as arrays (numpy, from the first
    record on), holds the trees trace-cmd shows of the same calls."""
    tc = shutil.which("trace-cmd")
    if tc is None:
        pytest.fail("trace-cmd is not installed (apt-get install trace-cmd)")
    func = getppid_function()
    rc, out, err = traced("-T", func, env={
        "FTT_SMALL_ROUND": "0" if rounds == "arrays" else "1000000000"})
    assert rc == 0, err
    ours = text_trees(out)
    assert len(ours) == N
    dat = os.path.join(tempfile.mkdtemp(), "t.dat")
    r = subprocess.run([tc, "record", "-q", "-p", "function_graph", "-g", func,
                        "-o", dat, "-F", sys.executable, "-c", WORKLOAD, str(N), "go"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=900 * tooling.SCALE)
    assert r.returncode == 0, r.stderr
    rep = subprocess.run([tc, "report", "-i", dat], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=300 * tooling.SCALE)
    theirs = text_trees(rep.stdout, marker="funcgraph_")
    assert len(theirs) == N, rep.stdout[-2000:]
    # Names at one address are one function: trace-cmd resolves an address
    # itself and may print another alias than the kernel (6.1, once in
    # three runs: __ia32_sys_getppid for __do_sys_getppid).
    alias = aliases()
    a = collections.Counter(tuple((d, alias.get(n, n)) for d, n in t) for t in ours)
    b = collections.Counter(tuple((d, alias.get(n, n)) for d, n in t) for t in theirs)
    assert a.most_common(1)[0][0] == b.most_common(1)[0][0], (a, b)
    a = collections.Counter(ours)
    assert (0, func) == a.most_common(1)[0][0][0]
    assert (1, CALLEE) in a.most_common(1)[0][0]
