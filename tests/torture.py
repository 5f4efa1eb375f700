"""Shared by the torture suite (tests/live/test_torture_*.py): the tools as
they run there, snapshots compared, hand-made neighbours.

Trials are seeded (FTT_TORTURE_SEED) and their number scales with
FTT_TORTURE_TRIALS. Counters are printed as a table at the end of the run
(torture_stats).
"""

import contextlib
import os
import subprocess

import pytest

import tooling
import torture_stats as stats
import tracestate
from ftracetools.kernel import tracefs

SEED = int(os.environ.get("FTT_TORTURE_SEED", "1"))


TRIALS = int(os.environ.get("FTT_TORTURE_TRIALS", "3"))

# Under emulation (the VM tier's guests) each start of a function tracer
# patches the whole kernel text: 15-40 s a trial for funcgraph, and a
# guest's run was 2100 s. There the trial loops run half as often, the
# signal matrix sends one gentle and one other signal per phase, and the
# set-up faults use one errno per tool (all chosen from SEED, so a new
# seed covers others); every path a tool takes is still tried.
LEAN = tooling.EMULATED


def trials(n):
    """How many times to repeat a trial loop of n here."""
    return n if not LEAN else max(1, n // 2)


# How each tool runs in the torture suite (a streaming or interval mode
# that runs until signalled), and what the kernel must offer for it.
TOOLS = {
    "schedtrace": (["-C", "0"], ()),
    "offcputime": (["0.2"], ()),
    "pagefaults": (["0.2"], ()),
    "iolatency": (["0.2"], ()),
    "biosnoop": ([], ()),
    "funccount": (["-i", "0.2", "vfs_read"], ("function",)),
    "funcgraph": (["vfs_read"], ("function_graph",)),
    "funclatency": (["-i", "0.2", "vfs_read"], ("function",)),
}


def tool_params():
    return [pytest.param(t, marks=pytest.mark.needs(*TOOLS[t][1]) if TOOLS[t][1] else ())
            for t in sorted(TOOLS)]


def check_same(root, before, what):
    diff = tracestate.diff(before, tracestate.snapshot(root))
    if diff:
        stats.add("state differences found", len(diff))
    assert diff == [], "%s changed tracefs:\n  %s" % (what, "\n  ".join(diff[:20]))


def no_traceback(err, what):
    if "Traceback" in err:
        stats.add("tracebacks seen")
    assert "Traceback" not in err, "%s: %s" % (what, err)


@contextlib.contextmanager
def hand_made_instance(root, name, settings=(("events/sched/sched_switch/enable", "1"),)):
    """A foreign user: an instance made by hand with the given settings
    (recording sched_switch unless told), removed at the end. It is named
    NAME-PID after this test process, so two test sessions at once do not
    collide. Yields its path."""
    path = os.path.join(root, "instances", "%s-%d" % (name, os.getpid()))
    os.mkdir(path)
    try:
        for f, v in settings:
            with open(os.path.join(path, f), "w") as fh:
                fh.write(v)
        yield path
    finally:
        # (another test session's snapshot may hold its files briefly)
        tracefs.rmdir(path, tries=100)


def recorded(instance):
    """Events in an instance's buffers (the kernel's own per-CPU stats)."""
    from ftracetools.ring import reader
    return sum(reader.read_stats(os.path.join(instance, "per_cpu", c)).get("entries", 0)
               for c in os.listdir(os.path.join(instance, "per_cpu")))


def spawn(tool, args, slow=0.0):
    env = dict(os.environ, FTT_SLOW=str(slow)) if slow else None
    return subprocess.Popen(tooling.argv(tool, *args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


def read_to_eof(f, seconds):
    """All a pipe gives until EOF (every holder gone: a killed tool's
    guardian holds its stderr until it has restored), within ``seconds``."""
    import select
    import time
    fd, chunks = f.fileno(), []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "no EOF within %g s (a guardian still running?): %s" % (
            seconds, b"".join(chunks).decode(errors="replace"))
        if select.select([fd], [], [], left)[0]:
            b = os.read(fd, 65536)
            if not b:
                return b"".join(chunks).decode(errors="replace")
            chunks.append(b)


def ended_within(p, seconds):
    try:
        p.wait(seconds * tooling.LIMIT_SCALE)
        return True
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return False


def instance_of(tool, pid, root):
    d = os.path.join(root, "instances", "%s-%d" % (tool, pid))
    return d if os.path.isdir(d) else None
