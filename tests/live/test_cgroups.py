"""--cgroup, --by cgroup and --pidns against the kernel's own accounting.

Child cgroups are made under the cgroup2 mount (found in
/proc/self/mountinfo here, independently of the tools) and removed at
the end of each test, however it ends; workloads are moved in by writing
their PID to cgroup.procs. What a tool reports per task or per cgroup is
compared with the deltas of /proc/PID/status (voluntary and nonvoluntary
context switches) and /proc/PID/stat (minflt, majflt), as in
test_schedtrace.py and test_pagefaults.py, whose workloads these are.
PID namespaces are made with ``unshare --pid --fork --mount-proc``.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import loopdev
import tooling
from test_pagefaults import WORKLOAD, Workload as FaultWorkload
from test_schedtrace import Workload as PingPong, settled

# How long to wait after moving a task into or out of a traced cgroup
# before it works: the tools read the cgroup's threads again every tick
# of their loop (0.05-0.25 s) and a change takes effect from then on.
# Measured on the 6.18 host with a task faulting, sleeping or switching
# once a millisecond: a joining task's first 0.19 s at most went
# uncounted (schedtrace -s; pagefaults 0.10 s, offcputime 0.05 s,
# funccount 0.20 s), a leaving task's first 0.16 s at most was still
# counted (pagefaults 0.13 s).
JOIN_WINDOW = 0.5 * tooling.SCALE


def first_mount(fstype: str):
    """Where the first file system of this type is mounted (mountinfo:
    the mount point is field 5, the type follows the "-")."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-", 6)
            if fields[sep + 1] == fstype:
                return fields[4]
    return None


class Cgroups:
    """Child cgroups of the cgroup2 root made by one test; ``remove``
    moves what is left in them back to the root and removes them."""

    def __init__(self, top: str) -> None:
        self.top, self.made = top, []

    def make(self, name: str) -> str:
        path = os.path.join(self.top, "ftt-test-%d-%s" % (os.getpid(), name))
        os.mkdir(path)
        self.made.append(path)
        return path

    @staticmethod
    def move(path: str, pid: int) -> None:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    @staticmethod
    def procs(path: str):
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]

    def rel(self, path: str) -> str:
        """As /proc/PID/cgroup names it."""
        return "/" + os.path.relpath(path, self.top)

    def remove(self) -> None:
        for path in reversed(self.made):
            if not os.path.isdir(path):
                continue
            for pid in self.procs(path):
                try:
                    self.move(self.top, pid)
                except OSError:
                    pass
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except OSError:
                    time.sleep(0.1)


@pytest.fixture
def cg():
    top, mounted = first_mount("cgroup2"), None
    if top is None:     # (a machine without one: mounted for the test, as a user would)
        mounted = tempfile.mkdtemp(prefix="ftt-cgroup2-")
        r = subprocess.run(["mount", "-t", "cgroup2", "none", mounted],
                           stderr=subprocess.PIPE, text=True)
        if r.returncode:
            os.rmdir(mounted)
            pytest.fail("no cgroup2 file system, and none can be mounted: " + r.stderr)
        top = mounted
    c = Cgroups(top)
    try:
        yield c
    finally:
        c.remove()
        if mounted:
            subprocess.run(["umount", mounted])
            os.rmdir(mounted)
    assert not [p for p in c.made if os.path.isdir(p)], "cgroups left behind"


@contextlib.contextmanager
def closing(*workloads):
    """The workloads, closed however the block ends."""
    try:
        yield workloads
    finally:
        for w in workloads:
            w.close()


class Holder:
    """A sleeping process that keeps a cgroup non-empty."""

    def __init__(self, cg: Cgroups, path: str) -> None:
        self.p = subprocess.Popen(["sleep", "600"])
        cg.move(path, self.p.pid)

    def close(self) -> None:
        self.p.kill()
        self.p.wait()


def summaries(out: str):
    rows = [json.loads(l) for l in out.splitlines() if l.strip()]
    assert len(rows) == 1, out
    assert rows[0]["lost"] == 0
    return rows[0]


def sched_traced(w, *args, join=None):
    """schedtrace -s --json ARGS around one run of the ping-pong ``w``
    (with ``join``, a cgroup, moved into it once tracing runs): the
    tool's tasks, the kernel's deltas per task, and stderr."""
    t = tooling.start("schedtrace", "-s", "--json", *args)
    if join is not None:
        Cgroups.move(join, w.pid)
        time.sleep(JOIN_WINDOW)
    before = settled(w.pid)
    w.run()
    after = {w.pid: settled(w.pid), w.child: settled(w.child)}
    rc, out, err = t.stop(signal.SIGINT)
    assert rc == 0, err
    delta = {w.pid: {k: after[w.pid][k] - before[k] for k in before},
             w.child: after[w.child]}
    return {x["pid"]: x for x in summaries(out)["tasks"]}, delta, err


def same_switches(tasks, delta) -> None:
    for pid, k in delta.items():
        assert tasks[pid]["voluntary"] == k["voluntary"], (pid, tasks[pid], k)
        assert tasks[pid]["involuntary"] == k["involuntary"], (pid, tasks[pid], k)


def test_schedtrace_counts_exactly_the_cgroups_tasks(cg):
    """A ping-pong in the cgroup (the child forked in it once tracing
    runs), a busy task outside: the switches of exactly the two, equal to
    /proc/PID/status's."""
    path = cg.make("sched")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    w = PingPong()
    try:
        cg.move(path, w.pid)
        settled(w.pid)
        tasks, delta, err = sched_traced(w, "--cgroup", cg.rel(path)[1:])
    finally:
        w.close()
        busy.kill()
        busy.wait()
    assert "of cgroup %s." % path in err, err
    assert set(tasks) == {w.pid, w.child}, tasks
    same_switches(tasks, delta)
    assert busy.pid not in tasks


def test_pagefaults_counts_equal_minflt(cg):
    path = cg.make("faults")
    w = FaultWorkload()
    try:
        cg.move(path, w.pid)
        outside = FaultWorkload()
        try:
            t = tooling.start("pagefaults", "--json", "--cgroup", path)
            minflt, majflt = w.measured("touch 300 700")
            outside.measured("touch 0 500")
            rc, out, err = t.stop(signal.SIGINT)
        finally:
            outside.close()
    finally:
        w.close()
    assert rc == 0, err
    rows = {p["pid"]: p for p in summaries(out)["processes"]}
    assert minflt >= 1000
    assert set(rows) == {w.pid}, rows
    assert rows[w.pid]["faults"] == minflt + majflt


def test_pagefaults_by_cgroup_splits_two(cg):
    a, b = cg.make("a"), cg.make("b")
    wa, wb = FaultWorkload(), FaultWorkload()
    try:
        cg.move(a, wa.pid)
        cg.move(b, wb.pid)
        t = tooling.start("pagefaults", "--json", "--by", "cgroup")
        ka = wa.measured("touch 0 700")
        kb = wb.measured("touch 200 100")
        rc, out, err = t.stop(signal.SIGINT)
        t = tooling.start("pagefaults", "--by", "cgroup")
        wa.measured("touch 0 10")
        rc2, text, err2 = t.stop(signal.SIGINT)
    finally:
        wa.close()
        wb.close()
    assert rc == 0 and rc2 == 0, err + err2
    rows = {r["cgroup"]: r for r in summaries(out)["rows"]}
    assert rows[cg.rel(a)]["faults"] == sum(ka)
    assert rows[cg.rel(b)]["faults"] == sum(kb)
    assert rows[cg.rel(a)]["name"] == os.path.basename(a)
    # text: the short name in the last column
    assert any(l.split()[-1] == os.path.basename(a) for l in text.splitlines()[1:]), text


def test_schedtrace_by_cgroup_splits_two(cg):
    a, b = cg.make("sa"), cg.make("sb")
    with closing(PingPong(1000), PingPong(2000)) as (wa, wb):
        cg.move(a, wa.pid)
        cg.move(b, wb.pid)
        settled(wa.pid)
        settled(wb.pid)
        t = tooling.start("schedtrace", "-s", "--json", "--by", "cgroup")
        before = {w.pid: settled(w.pid) for w in (wa, wb)}
        wa.run()
        wb.run()
        after = {w: (settled(w.pid), settled(w.child)) for w in (wa, wb)}
        rc, out, err = t.stop(signal.SIGINT)
    assert rc == 0, err
    rows = {r["cgroup"]: r for r in summaries(out)["cgroups"]}
    for w, path in ((wa, a), (wb, b)):
        p, c = after[w]
        k = sum(p[x] - before[w.pid][x] + c[x] for x in ("voluntary", "involuntary"))
        r = rows[cg.rel(path)]
        assert r["tasks"] == 2, r
        assert r["switches"] == k, (r, k)
        assert r["name"] == os.path.basename(path)


SPAWNER = r"""
import subprocess, sys
print("ready", flush=True)
n = int(sys.stdin.readline())
for _ in range(n):
    subprocess.run(["/bin/true"], env={})
print("done", flush=True)
sys.stdin.readline()
"""


def cpu_usage_ns(path: str) -> int:
    """The cgroup's own account of its tasks' run time (cpu.stat, kept
    by cgroup v2 without any controller)."""
    with open(os.path.join(path, "cpu.stat")) as f:
        return 1000 * int(dict(l.split() for l in f)["usage_usec"])


def spawned(cg, name: str, n: int, measure, tool: str, *args):
    """SPAWNER, moved into a new cgroup, makes n short-lived processes
    while ``tool args`` traces: the tool's summary, the cgroup as
    /proc/PID/cgroup names it, and the delta of ``measure(path, pid)``
    around the spawning."""
    path = cg.make(name)
    w = subprocess.Popen([sys.executable, "-c", SPAWNER], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert w.stdout.readline() == "ready\n"
        cg.move(path, w.pid)
        t = tooling.start(tool, *args)
        before = measure(path, w.pid)
        w.stdin.write("%d\n" % n)
        w.stdin.flush()
        assert w.stdout.readline() == "done\n"
        k = measure(path, w.pid) - before
        rc, out, err = t.stop(signal.SIGINT)
    finally:
        w.kill()
        w.wait()
    assert rc == 0, err
    return summaries(out), cg.rel(path), k


def test_by_cgroup_names_short_lived_tasks(cg):
    """200 processes that each live a millisecond or so, in a cgroup:
    --by cgroup puts them all in its row (by their parent's cgroup, read
    at the fork), and the row's run time is what the cgroup's cpu.stat
    counted meanwhile."""
    s, rel, used = spawned(cg, "spawn", 200, lambda path, pid: cpu_usage_ns(path),
                           "schedtrace", "-s", "--json", "--by", "cgroup")
    r = {r["cgroup"]: r for r in s["cgroups"]}[rel]
    assert r["tasks"] == 201, r
    assert abs(r["run_ns"] - used) <= 0.01 * used + 10**6, (r, used)


def all_faults(pid: int) -> int:
    """minflt + majflt of a process and of its children it has reaped
    (/proc/PID/stat fields 10 to 13)."""
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    return sum(int(x) for x in data[data.rfind(")") + 2:].split()[7:11])


def test_pagefaults_by_cgroup_names_short_lived_tasks(cg):
    """The faults of 100 processes that each live a millisecond or so,
    all in their cgroup's row: equal to their parent's minflt and majflt
    with its reaped children's, less one per exec. execve copies its
    arguments and environment into the new stack through
    get_user_pages: a fault the kernel counts in min_flt
    (mm_account_fault) that raises no exception, hence no event; one page
    each here (measured: 100 of 100 execs, twice)."""
    s, rel, k = spawned(cg, "pspawn", 100, lambda path, pid: all_faults(pid),
                        "pagefaults", "--json", "--by", "cgroup")
    rows = {r["cgroup"]: r for r in s["rows"]}
    assert rows[rel]["faults"] == k - 100, (rows, k)


def test_schedtrace_follows_a_task_moved_in_and_its_child(cg):
    path = cg.make("sjoin")
    h = Holder(cg, path)
    w = PingPong()
    try:
        tasks, delta, err = sched_traced(w, "--cgroup", path, join=path)
    finally:
        w.close()
        h.close()
    same_switches(tasks, delta)


@pytest.mark.parametrize("way", ["joins", "leaves"])
def test_pagefaults_follows_a_task_that(cg, way):
    """Faults a task makes in the cgroup are counted, those it makes
    outside are not: before it joins, or JOIN_WINDOW after it leaves
    (another task stays in the cgroup: an emptied PID filter is never
    written)."""
    path = cg.make("pf" + way)
    with closing(Holder(cg, path), FaultWorkload()) as (_, w):
        if way == "leaves":
            cg.move(path, w.pid)
        t = tooling.start("pagefaults", "--json", "--cgroup", path)
        if way == "joins":
            w.measured("touch 0 300")      # outside: not counted
            cg.move(path, w.pid)
            time.sleep(JOIN_WINDOW)
        minflt, majflt = w.measured("touch 0 500")
        if way == "leaves":
            cg.move(cg.top, w.pid)
            time.sleep(JOIN_WINDOW)
            w.measured("touch 0 300")
        rc, out, err = t.stop(signal.SIGINT)
    assert rc == 0, err
    rows = {p["pid"]: p for p in summaries(out)["processes"]}
    assert rows[w.pid]["faults"] == minflt + majflt


def test_schedtrace_drops_a_task_moved_out(cg):
    path = cg.make("sleave")
    with closing(Sleeper()) as (w,):
        cg.move(path, w.pid)
        t = tooling.start("schedtrace", "-s", "--json", "--cgroup", path)
        before = settled(w.pid)
        w.sleep(300)
        inside = settled(w.pid)
        cg.move(cg.top, w.pid)
        time.sleep(JOIN_WINDOW)
        w.sleep(200)
        settled(w.pid)
        rc, out, err = t.stop(signal.SIGINT)
    assert rc == 0, err
    tasks = {x["pid"]: x for x in summaries(out)["tasks"]}
    same_switches(tasks, {w.pid: {k: inside[k] - before[k] for k in before}})


def test_cgroup_removed_while_tracing(cg):
    path = cg.make("gone")
    h = Holder(cg, path)
    try:
        t = tooling.start("pagefaults", "--cgroup", path)
        cg.move(cg.top, h.p.pid)
        os.rmdir(path)
        rc, out, err = t.wait(10)
    finally:
        h.close()
    assert rc == 1, err
    lines = [l for l in err.splitlines() if not l.startswith("Tracing")
             and "MAJOR/MINOR" not in l]
    assert lines == ["pagefaults: --cgroup %s: the cgroup was removed while tracing: "
                     "traced until then" % path], err
    assert "Traceback" not in err


@pytest.mark.parametrize("what", ["not-a-cgroup", "v1", "missing", "a-file"])
def test_bad_cgroup_paths(cg, what, tmp_path):
    path = {"not-a-cgroup": str(tmp_path), "v1": first_mount("cgroup"), "missing": "ftt-no-such",
            "a-file": os.path.join(cg.top, "cgroup.procs")}[what]
    if path is None:
        pytest.skip("no cgroup v1 hierarchy mounted")
    why = {"not-a-cgroup": "not a cgroup", "v1": "a cgroup v1 hierarchy",
           "missing": "no such cgroup", "a-file": "not a cgroup"}[what]
    for tool in ("schedtrace", "pagefaults"):
        p = tooling.run(tool, "--cgroup", path, "-d", "1")
        lines = p.stderr.splitlines()
        assert p.returncode == 2, p.stderr
        assert len(lines) == 2 and lines[0].startswith("%s: --cgroup %s: %s"
                                                       % (tool, path, why)), p.stderr


def test_empty_cgroup_is_refused(cg):
    path = cg.make("empty")
    p = tooling.run("pagefaults", "--cgroup", path, "-d", "1")
    assert p.returncode == 1
    assert p.stderr.splitlines() == ["pagefaults: --cgroup %s: no tasks in it: nothing to "
                                     "trace; start one in it first" % path], p.stderr


SLEEPER = r"""
import re, sys, time
def vol():
    with open("/proc/self/status") as f:
        return int(re.search(r"\nvoluntary_ctxt_switches:\s+(\d+)", f.read()).group(1))
print("ready", flush=True)
for line in sys.stdin:
    before = vol()
    for _ in range(int(line)):
        time.sleep(0.001)
    print(vol() - before, flush=True)
"""


class Told:
    """A Python worker (``script``) that prints "ready", then for each
    number it is sent does its work and answers with one line."""

    def __init__(self, script: str) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline() == "ready\n"
        self.pid = self.p.pid

    def tell(self, n: int) -> str:
        self.p.stdin.write("%d\n" % n)
        self.p.stdin.flush()
        return self.p.stdout.readline()

    def close(self) -> None:
        self.p.kill()
        self.p.wait()


class Sleeper(Told):
    """Sleeps N times a millisecond (N clock_nanosleep calls) when told,
    and says how many voluntary switches the kernel counted meanwhile."""

    def __init__(self) -> None:
        super().__init__(SLEEPER)

    def sleep(self, n: int) -> int:
        return int(self.tell(n))


def test_offcputime_sleeps_of_the_cgroup(cg):
    """Each sleep of the task in the cgroup is one voluntary switch of
    /proc/self/status; a task sleeping as often outside is absent."""
    path = cg.make("off")
    with closing(Sleeper(), Sleeper()) as (w, outside):
        cg.move(path, w.pid)
        t = tooling.start("offcputime", "--json", "--cgroup", path)
        k = w.sleep(300)
        outside.sleep(300)
        rc, out, err = t.stop(signal.SIGINT)
    assert rc == 0, err
    stacks = json.loads(out.splitlines()[-1])["stacks"]
    assert {s["pid"] for s in stacks} == {w.pid}, stacks
    assert sum(s["sleeps"] for s in stacks if "do_nanosleep" in s["frames"]) == k >= 300


def test_offcputime_by_cgroup_splits_two(cg):
    """Two tasks sleeping 300 and 200 times in two cgroups: each cgroup's
    nanosleep row holds its task's sleeps, its voluntary switches."""
    a, b = cg.make("oa"), cg.make("ob")
    with closing(Sleeper(), Sleeper()) as (wa, wb):
        cg.move(a, wa.pid)
        cg.move(b, wb.pid)
        t = tooling.start("offcputime", "--json", "--by", "cgroup")
        ka, kb = wa.sleep(300), wb.sleep(200)
        rc, out, err = t.stop(signal.SIGINT)
    assert rc == 0, err
    stacks = json.loads(out.splitlines()[-1])["stacks"]
    for path, k in ((a, ka), (b, kb)):
        rows = [s for s in stacks if s["cgroup"] == cg.rel(path)]
        assert sum(s["sleeps"] for s in rows if "do_nanosleep" in s["frames"]) == k, rows
        assert {s["name"] for s in rows} == {os.path.basename(path)}


def test_funccount_tracepoint_hits_of_the_cgroup(cg):
    """clock_nanosleep entered 300 times by the task in the cgroup and
    joined later by a task that enters it 200 times more; a task outside
    entering it as often is not counted."""
    path = cg.make("fc")
    with closing(Sleeper(), Sleeper(), Sleeper()) as (w, late, outside):
        cg.move(path, w.pid)
        t = tooling.start("funccount", "--json", "--cgroup", path,
                          "t:syscalls:sys_enter_clock_nanosleep")
        w.sleep(300)
        outside.sleep(300)
        cg.move(path, late.pid)
        time.sleep(JOIN_WINDOW)
        late.sleep(200)
        rc, out, err = t.stop(signal.SIGINT)
    assert rc == 0, err
    counts = json.loads(out.splitlines()[-1])["counts"]
    assert counts == {"syscalls:sys_enter_clock_nanosleep": 500}, out


CALLER = r"""
import os, sys
print("ready", flush=True)
for line in sys.stdin:
    for _ in range(int(line)):
        os.getppid()
    print("done", flush=True)
"""


class Caller(Told):
    """Calls getppid() N times when told."""

    def __init__(self) -> None:
        super().__init__(CALLER)

    def call(self, n: int) -> None:
        assert self.tell(n) == "done\n"


@pytest.mark.vm
@pytest.mark.needs("function", "function_graph")
def test_function_tools_count_the_calls_of_the_cgroup(cg):
    """The function tools in the guests (function tracing is forbidden on
    the host): funccount counts exactly the 300 getppid() calls of the task
    in the cgroup and funcgraph draws 300 trees, none of the 300 calls of a
    task outside."""
    from test_funcgraph import getppid_function, text_trees
    func = getppid_function()
    path = cg.make("fn")
    for tool, args in (("funccount", ["--json", func]), ("funcgraph", [func])):
        with closing(Caller(), Caller()) as (w, outside):
            cg.move(path, w.pid)
            t = tooling.start(tool, "--cgroup", path, *args, timeout=600)
            w.call(300)
            outside.call(300)
            rc, out, err = t.stop(signal.SIGINT, timeout=600)
        assert rc == 0, err
        if tool == "funccount":
            assert json.loads(out.splitlines()[-1])["counts"] == {func: 300}, out + err
        else:
            trees = text_trees(out)
            assert len(trees) == 300 and all(t[0] == (0, func) for t in trees), out[-3000:]


NO_LOOP = pytest.mark.skipif(loopdev.have_tools() is not None,
                             reason=str(loopdev.have_tools()))


def two_fios(cg, tmp_path, tool, *args):
    """Two fio processes, each started in a cgroup of its own (io1, which
    a sleeping task holds, and io2), on a private loop device, while
    ``tool --json ARGS -d DEV`` traces (CG in ARGS: io1): (the tool's JSON objects, [(cgroup, fio's count of its I/Os)],
    the device's stat delta)."""
    made = [cg.make("io1"), cg.make("io2")]
    with loopdev.LoopDevice() as dev, closing(Holder(cg, made[0])):
        dev.settle()
        t = tooling.start(tool, "--json", *[a.replace("CG", made[0]) for a in args],
                          "-d", dev.name)
        before = dev.stat()
        fios = []
        for path, rate in zip(made, (2000, 1000)):
            out = str(tmp_path / (os.path.basename(path) + ".json"))
            argv = dev.fio_argv("randrw", 1, 8, ["--rate_iops=%d" % rate], output=out)
            fios.append((path, out, subprocess.Popen(
                ["sh", "-c", 'echo $$ > "$0"/cgroup.procs && exec "$@"', path] + argv,
                stdout=subprocess.DEVNULL)))
        for _, _, p in fios:
            assert p.wait(60) == 0
        dev.settle()
        d = loopdev.delta(before, dev.stat())
        rc, out, err = t.stop(signal.SIGINT)
    assert rc == 0, err
    return ([json.loads(l) for l in out.splitlines()],
            [(path, loopdev.fio_ios(o)) for path, o, _ in fios], d)


@NO_LOOP
def test_iolatency_by_cgroup_splits_two(cg, tmp_path):
    """Each cgroup's histogram counts the I/Os its fio counted, and
    together what the device's stat counted."""
    objs, fios, d = two_fios(cg, tmp_path, "iolatency", "--by", "cgroup", "30")
    got = {}
    for o in objs:
        got[o.get("cgroup")] = got.get(o.get("cgroup"), 0) + o["count"]
    for path, n in fios:
        assert got[cg.rel(path)] == n, (got, path)
    assert sum(got.values()) == d["read_ios"] + d["write_ios"], (got, d)


@NO_LOOP
def test_biosnoop_shows_the_ios_of_the_cgroup(cg, tmp_path):
    """A line for each I/O the fio in the cgroup counted, none of the
    other's."""
    objs, fios, d = two_fios(cg, tmp_path, "biosnoop", "--cgroup", "CG")
    assert len(objs) == fios[0][1] and fios[1][1] > 0, (len(objs), fios)
    assert len({o["pid"] for o in objs}) >= 1


class NsWorkload(FaultWorkload):
    """The fault workload as PID 1 of a new PID namespace."""

    def __init__(self):
        self.outer = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", WORKLOAD],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.p = self.outer
        end = time.monotonic() + 10
        kids = ""
        while not kids and time.monotonic() < end:
            with open("/proc/%d/task/%d/children" % (self.outer.pid, self.outer.pid)) as f:
                kids = f.read().split()
            time.sleep(0.01)
        self.pid = int(kids[0])
        self.do("touch 1 1")


@pytest.mark.skipif(shutil.which("unshare") is None, reason="no unshare(1)")
def test_pidns_pid_1_is_the_right_host_task():
    w = NsWorkload()
    try:
        with open("/proc/%d/status" % w.pid) as f:
            nspid = [l.split()[1:] for l in f if l.startswith("NSpid:")][0]
        assert nspid[-1] == "1" and int(nspid[0]) == w.pid
        t = tooling.start("pagefaults", "--json", "--pidns", str(w.pid), "-p", "1")
        minflt, majflt = w.measured("touch 0 400")
        rc, out, err = t.stop(signal.SIGINT)
    finally:
        w.close()
    assert rc == 0, err
    assert "of PID %d (1 in the PID namespace of %d)." % (w.pid, w.pid) in err, err
    rows = summaries(out)["processes"]
    assert [(r["pid"], r["nspid"]) for r in rows] == [(w.pid, 1)], rows
    assert rows[0]["faults"] == minflt + majflt


@pytest.mark.skipif(shutil.which("unshare") is None, reason="no unshare(1)")
def test_pidns_in_offcputime_json():
    """The task's sleeps under its host PID, with "nspid": 1."""
    w = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
                          sys.executable, "-c", SLEEPER],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert w.stdout.readline() == "ready\n"
        with open("/proc/%d/task/%d/children" % (w.pid, w.pid)) as f:
            inner = int(f.read().split()[0])
        t = tooling.start("offcputime", "--json", "--pidns", str(inner), "-p", "1")
        w.stdin.write("100\n")
        w.stdin.flush()
        k = int(w.stdout.readline())
        rc, out, err = t.stop(signal.SIGINT)
    finally:
        w.kill()
        w.wait()
    assert rc == 0, err
    obj = json.loads(out.splitlines()[-1])
    rows = [s for s in obj["stacks"] if "do_nanosleep" in s["frames"]]
    assert {(s["pid"], s["nspid"]) for s in rows} == {(inner, 1)}, rows
    assert sum(s["sleeps"] for s in rows) == k
    assert [(x["pid"], x["nspid"]) for x in obj["tasks"]] == [(inner, 1)]
