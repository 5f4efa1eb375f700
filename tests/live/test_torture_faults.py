"""The torture suite: faults from outside: each set-up write failing, a reader
holding the instance open, no space for the journal, a process that exits
during set-up, a CPU going offline.

Every trial snapshots all tracefs settings before and compares after (and
the autouse fixture checks each test as a whole); see tests/torture.py.
"""

import os
import random
import re
import signal
import subprocess
import time

import pytest

import tooling
import torture_stats as stats
import tracestate
from torture import (LEAN, SEED, TRIALS, TOOLS, tool_params, check_same, no_traceback,
                     ended_within, instance_of, trials)


ERRNOS = ["EBUSY", "ENOMEM", "EINVAL", "EPERM"]


def fault_params():
    """(errno, tool): every pair, or under emulation one errno per tool."""
    out = []
    for p in tool_params():
        tool = p.values[0]
        errs = ERRNOS if not LEAN else [random.Random("%s-%d" % (tool, SEED)).choice(ERRNOS)]
        out += [pytest.param(e, tool, marks=p.marks, id="%s-%s" % (e, tool)) for e in errs]
    return out


@pytest.mark.parametrize("err,tool", fault_params())
def test_every_setup_write_failing(tool, err, tracefs_root):
    """Fail the 1st, 2nd, ... tracefs write of a tool's set-up: each time a
    clear one-line error, exit 1, and everything rolled back."""
    before = tracestate.snapshot(tracefs_root)
    args = list(TOOLS[tool][0])
    for n in range(1, 100):
        env = dict(os.environ, FTT_FAIL_WRITE="%d:%s" % (n, err))
        r = tooling.Running(tool, args, env=env, stdout=subprocess.DEVNULL)
        r.live.wait(20 * tooling.LIMIT_SCALE)
        rc, out, e = r.stop(signal.SIGINT)
        no_traceback(e, "%s write %d %s" % (tool, n, err))
        check_same(tracefs_root, before, "%s with write %d failing (%s)" % (tool, n, err))
        if rc == 0:
            break
        stats.add("injected faults")
        assert rc == 1, (n, rc, e)
        assert e.strip().splitlines()[-1].startswith(tool + ": "), e
    assert n > 1, "no tracefs write was failed: the injection switch is not wired"


@pytest.fixture
def full_rundir(tmp_path):
    """A run directory on a tmpfs with no space left."""
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=700", "tmpfs", mnt], check=True)
    try:
        run = os.path.join(mnt, "run")
        os.mkdir(run, 0o700)
        fd = os.open(os.path.join(mnt, "fill"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096) > 0:
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield run
    finally:
        subprocess.run(["umount", mnt], check=True)


@pytest.mark.parametrize("tool", tool_params())
def test_trace_pipe_held_open_by_someone_else(tool, tracefs_root):
    """Someone opens the tool's trace_pipe: the instance cannot be removed
    while they hold it. The tool still ends at once, says who holds it, exits
    1, and the next run removes it once it is free. On the top level, a
    foreign trace_pipe reader would take events: the tool refuses."""
    before = tracestate.snapshot(tracefs_root)
    r = tooling.start(tool, *TOOLS[tool][0], stdout=subprocess.DEVNULL)
    inst = instance_of(tool, r.proc.pid, tracefs_root)
    if inst is None:
        # the top level: stop, then start again beside a foreign reader
        rc, out, err = r.stop(signal.SIGINT)
        assert rc == 0, err
        fd = os.open(os.path.join(tracefs_root, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        try:
            p = tooling.run(tool, *TOOLS[tool][0], timeout=60)
        finally:
            os.close(fd)
        no_traceback(p.stderr, tool + " beside a trace_pipe reader")
        assert p.returncode == 1, p.stderr
        assert "pid %d" % os.getpid() in p.stderr and "trace_pipe" in p.stderr, p.stderr
    else:
        fd = os.open(os.path.join(inst, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        try:
            r.proc.send_signal(signal.SIGINT)
            assert ended_within(r.proc, 1.0), "%s did not end while its trace_pipe was held" % tool
            rc, out, err = r.wait(5)
            no_traceback(err, tool + " with its trace_pipe held")
            assert rc == 1, err
            assert "pid %d" % os.getpid() in err and "held open" in err, err
        finally:
            os.close(fd)
        assert os.path.isdir(inst), "the instance vanished while held"
        nxt = tooling.start(tool, *TOOLS[tool][0], stdout=subprocess.DEVNULL)
        rc, out, err = nxt.stop(signal.SIGINT)
        assert rc == 0, err
        assert "restored" in err and "pid %d" % r.proc.pid in err, err
    stats.add("injected faults")
    check_same(tracefs_root, before, tool + " with a held trace_pipe")


@pytest.mark.parametrize("tool", tool_params())
def test_no_space_for_the_journal(tool, tracefs_root, full_rundir):
    """With no space under /run for the undo journal nothing may change:
    one clear line, exit 1."""
    before = tracestate.snapshot(tracefs_root)
    env = dict(os.environ, FTT_RUNDIR=full_rundir)
    p = subprocess.run(tooling.argv(tool, *TOOLS[tool][0]), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=env,
                       timeout=30 * tooling.LIMIT_SCALE)
    no_traceback(p.stderr, tool + " with /run full")
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith(tool + ": ") and "No space left" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    stats.add("injected faults")
    check_same(tracefs_root, before, tool + " with /run full")


# Tools that take -p, and how they run on a PID.
BY_PID = {"schedtrace": ["-s", "0.2"], "pagefaults": ["0.2"], "offcputime": ["0.2"],
          "funccount": ["-i", "0.2", "vfs_read"], "funcgraph": ["vfs_read"],
          "iolatency": ["0.2"], "biosnoop": []}


@pytest.mark.parametrize("tool", [p for p in tool_params() if p.values[0] in BY_PID])
def test_pid_that_exits_during_setup(tool, tracefs_root):
    """The traced process ends at a random moment of the tool's set-up (each
    write slowed): the tool ends by itself with exit 0 (it saw the end) or 1
    with one line (the PID was gone before tracing began), state unchanged."""
    rng = random.Random("%s-pidexit-%d" % (tool, SEED))
    before = tracestate.snapshot(tracefs_root)
    for _ in range(trials(TRIALS * 2)):
        victim = subprocess.Popen(["sleep", "%.3f" % rng.uniform(0.0, 0.5)])
        env = dict(os.environ, FTT_SLOW="0.02")
        p = subprocess.Popen(tooling.argv(tool, "-p", str(victim.pid), *BY_PID[tool]),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, env=env)
        victim.wait()  # reaped at once: the PID is really gone
        try:
            err = p.communicate(timeout=30 * tooling.LIMIT_SCALE)[1]
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise AssertionError("%s -p did not end after its process exited" % tool)
        no_traceback(err, tool + " -p with an exiting PID")
        assert p.returncode in (0, 1), (p.returncode, err)
        if p.returncode == 1:
            assert err.strip().splitlines()[-1].startswith(tool + ": ") and \
                str(victim.pid) in err, err
        stats.add("injected faults")
        check_same(tracefs_root, before, "%s -p with an exiting PID" % tool)


def hotplug_cpu():
    for c in sorted(cpulib_online(), reverse=True):
        f = "/sys/devices/system/cpu/cpu%d/online" % c
        if c and os.path.exists(f):
            return c, f
    return None, None


def cpulib_online():
    from ftracetools.host import cpus
    return cpus.online()


@pytest.mark.parametrize("tool", tool_params())
def test_offline_cpu(tool, tracefs_root):
    """A CPU that is offline (its buffer in a new instance does not exist,
    and reads ENODEV): the tool runs on the others, reads the CPU once it
    comes back online mid-run, and refuses -C on it with one line."""
    cpu, f = hotplug_cpu()
    if cpu is None:
        pytest.skip("no CPU here can go offline (one CPU, or no CPU hotplug)")
    args = ["-s", "0.2"] if tool == "schedtrace" else list(TOOLS[tool][0])
    before = tracestate.snapshot(tracefs_root)
    load = subprocess.Popen(["sh", "-c", "while :; do cat /proc/self/stat >/dev/null; done"])
    try:
        with open(f, "w") as fh:
            fh.write("0")
        r = tooling.start(tool, *args, stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        with open(f, "w") as fh:
            fh.write("1")
        time.sleep(0.5)
        rc, out, err = r.stop(signal.SIGINT)
        no_traceback(err, tool + " with CPU %d offline" % cpu)
        assert rc == 0, err
        if re.search(r"^\s+-C\b", subprocess.run(tooling.argv(tool, "-h"), stdout=subprocess.PIPE,
                                                  text=True).stdout, re.M):
            with open(f, "w") as fh:
                fh.write("0")
            p = tooling.run(tool, "-C", str(cpu), *[a for a in args if a not in ("-C", "0")],
                            timeout=30)
            no_traceback(p.stderr, tool + " -C offline CPU")
            assert p.returncode == 2 and "not online" in p.stderr.splitlines()[0], p.stderr
    finally:
        with open(f, "w") as fh:
            fh.write("1")
        load.kill()
        load.wait()
    stats.add("injected faults")
    check_same(tracefs_root, before, tool + " with CPU %d offline" % cpu)
