"""The guardian (kernel.guardian): a tool killed by SIGKILL has its
tracing settings undone at once, by the process it forked as it began,
against a fake tracefs; a tool that ends normally leaves it nothing to do."""

import json
import os
import re
import signal
import subprocess
import sys


from ftracetools.kernel import guardian, journal, lock, rundir

from test_session import fake  # noqa: F401  (the fake tracefs fixture)

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "lib")

TOOL = r'''
import os, signal, sys, time
sys.path.insert(0, %(lib)r)
from ftracetools.kernel import guardian, session, tracefs
from ftracetools.kernel.features import Features
tracefs.require_root = lambda: None
guardian.start("t")
s = session.Session("t", top_level=True, features=Features(%(root)r))
s.__enter__()
s.set("current_tracer", "function")
s.set("tracing_on", "0")
%(end)s
'''


def run_tool(root, end, **kw):
    return subprocess.run([sys.executable, "-c", TOOL % {"lib": LIB, "root": str(root),
                                                         "end": end}],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=60, **kw)


def test_a_killed_tool_is_restored_at_once(fake):
    # (run returns once stderr closes: once the guardian, which holds it, has ended)
    p = run_tool(fake, "os.kill(os.getpid(), signal.SIGKILL)")
    assert p.returncode == -signal.SIGKILL
    assert (fake / "current_tracer").read_text() == "nop"
    assert (fake / "tracing_on").read_text() == "1"
    assert re.fullmatch(r"t: restored \d+ tracing settings left by t \(pid \d+\), which was "
                        r"killed\n", p.stderr), p.stderr
    assert [n for n in os.listdir(rundir.path()) if n.startswith("journal.")] == []


def test_a_tool_that_ends_normally_leaves_the_guardian_nothing(fake):
    p = run_tool(fake, "s.__exit__(None, None, None)")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert (fake / "current_tracer").read_text() == "nop"
    assert [n for n in os.listdir(rundir.path()) if n.startswith("journal.")] == []


def test_the_guardian_holds_none_of_the_tools_files(fake, tmp_path):
    """Only its stderr and its end of the pipe: stdin and stdout are
    /dev/null (a shell reading the tool's output is not kept waiting), and
    the tool's files (the journal, its flock) are closed in it; it ignores
    Ctrl-C, which reaches the whole process group."""
    out = tmp_path / "guard"
    end = ("kids = open('/proc/self/task/%%d/children' %% os.getpid()).read().split()\n"
           "open(%r, 'w').write(kids[0])\n"
           "time.sleep(30)\n") % str(out)
    tool = subprocess.Popen([sys.executable, "-c", TOOL % {"lib": LIB, "root": str(fake),
                                                           "end": end}],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            if out.exists() and out.read_text():
                break
            tool.poll()
            assert tool.returncode is None, tool.stderr.read()
            import time
            time.sleep(0.05)
        gpid = int(out.read_text())
        fds = {int(fd): os.readlink("/proc/%d/fd/%s" % (gpid, fd))
               for fd in os.listdir("/proc/%d/fd" % gpid)}
        assert fds[0] == fds[1] == "/dev/null", fds
        assert all(fd <= 2 or t.startswith("pipe:") for fd, t in fds.items()), fds
        assert len(fds) == 4, fds
        with open("/proc/%d/comm" % gpid) as f:
            assert f.read().strip() == "t-guard"
        os.kill(gpid, signal.SIGINT)    # ignored
        assert os.path.exists("/proc/%d" % gpid)
    finally:
        tool.kill()
        tool.communicate(timeout=60)
    assert (fake / "current_tracer").read_text() == "nop"


def test_top_level_steps_wait_for_a_free_top_level(fake):
    """Another run took the top level since the tool died: its settings
    are not the guardian's to overwrite; the next run restores them."""
    other = lock.TopLevelLock("other")
    other.acquire()
    said = []
    top = guardian._TopLevel("t", 4242, said.append)
    try:
        assert top.take([{"op": "write", "path": "instances/t-4242/tracing_on"},
                         {"op": "expand", "path": "buffer_size_kb"}])
        assert not top.take([{"op": "write", "path": "current_tracer"}])
        assert "pid 4242 was killed" in said[0] and "other" in said[0], said
    finally:
        other.release()
    assert top.take([{"op": "write", "path": "current_tracer"}])
    top.release()


def test_unfinished_business_is_left_to_the_next_run(fake):
    """A run that could not finish said so itself and kept its journal
    (unfinished): the guardian leaves it; the next run restores it."""
    d = rundir.ensure()
    (fake / "current_tracer").write_text("function")
    with open(os.path.join(d, "journal.999998"), "w") as f:
        f.write(json.dumps({"tool": "t", "pid": 999998, "root": str(fake),
                            "unfinished": True}) + "\n")
        f.write(json.dumps({"op": "write", "path": "current_tracer", "value": "nop"}) + "\n")
    said = []
    assert journal.recover_one("journal.999998", said.append, finished_only=True) is None
    assert (fake / "current_tracer").read_text() == "function" and said == []
    journal.recover(said.append)
    assert (fake / "current_tracer").read_text() == "nop"
    assert "could not finish" in said[0]


def test_a_closed_stdin_does_not_become_the_pipe(fake):
    """With fd 0 free the pipe's read end would be 0, which the guardian
    points at /dev/null: it would read EOF at once and leave."""
    p = run_tool(fake, "os.kill(os.getpid(), signal.SIGKILL)", stdin=subprocess.DEVNULL,
                 preexec_fn=lambda: os.close(0))
    assert (fake / "current_tracer").read_text() == "nop", p.stderr
    assert "restored" in p.stderr
