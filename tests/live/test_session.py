"""The session leaves tracefs exactly as found, whatever ends the run.

Each test runs tests/live/victim.py (a minimal tool made only of the
library: a private instance, buffer size, clock, two events with a filter)
and the autouse fixture compares every tracefs setting before and after.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

import tooling

VICTIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "victim.py")


def start(*args, env=None):
    tooling_argv = [sys.executable, VICTIM] + list(args)
    r = tooling.Running.__new__(tooling.Running)
    e = dict(os.environ)
    e.update(env or {})
    # Same as tooling.Running but for a script outside bin/.
    tooling.Running.__init__(r, "victim", (), env=e)
    return r


@pytest.fixture(autouse=True)
def _victim_path(monkeypatch):
    monkeypatch.setattr(tooling, "argv", lambda tool, *a: [sys.executable, VICTIM] + list(a))


def instances(root):
    return sorted(os.listdir(os.path.join(root, "instances")))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                                 signal.SIGQUIT, signal.SIGPIPE])
def test_signal_while_streaming_restores_everything(sig, tracefs_root):
    r = tooling.start("victim", "-s", "60")
    assert "victim-%d" % r.proc.pid in instances(tracefs_root)
    time.sleep(0.3)
    t0 = time.monotonic()
    rc, out, err = r.stop(sig)
    assert time.monotonic() - t0 < 1.0 * tooling.SCALE, "did not end within 1 s"
    assert "Traceback" not in err
    if sig in (signal.SIGINT, signal.SIGTERM):
        assert rc == 0 and out.startswith("events "), (rc, out, err)
    else:
        assert rc == 128 + sig, (rc, err)


def test_second_sigint_during_cleanup_does_not_cut_it_short(tracefs_root):
    r = tooling.start("victim", "-s", "60", "--slow-cleanup")
    r.proc.send_signal(signal.SIGINT)
    time.sleep(0.3)  # now inside the (slowed) teardown
    r.proc.send_signal(signal.SIGINT)
    rc, out, err = r.wait(10)
    assert "Traceback" not in err
    assert "victim-%d" % r.proc.pid not in instances(tracefs_root)


def test_pipe_closed_by_head(tracefs_root):
    p = subprocess.run("%s %s --print -s 30 | head -1" % (sys.executable, VICTIM),
                       shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=20 * tooling.SCALE)
    assert p.stdout.startswith("read ")
    assert "Traceback" not in p.stderr and "Error" not in p.stderr, p.stderr


def test_sigkill_is_restored_at_once_by_the_guardian(tracefs_root):
    """kill -9: the guardian the run forked as it began replays its journal
    the moment it is gone, before any other run, and says so."""
    r = tooling.start("victim", "-s", "60")
    name = "victim-%d" % r.proc.pid
    assert name in instances(tracefs_root)
    r.proc.kill()
    r.proc.wait(10)
    r._t_err.join(30 * tooling.LIMIT_SCALE)     # stderr's EOF: the guardian has ended
    assert not r._t_err.is_alive(), "the guardian did not end"
    err = "".join(r.err)
    assert name not in instances(tracefs_root), err
    assert "restored" in err and ("pid %d" % r.proc.pid) in err and "was killed" in err, err
    p = tooling.run("victim", "-s", "0.2")
    assert p.returncode == 0 and "restored" not in p.stderr, p.stderr


def test_sigkill_of_the_process_group_is_recovered_by_the_next_run(tracefs_root):
    """kill -9 of the whole process group takes the guardian too: the
    kernel-side backstop stops the instance, and the next run replays the
    journal."""
    p = subprocess.Popen(tooling.argv("victim", "-s", "60"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = p.stderr.readline()
        assert line.startswith("Tracing"), line + p.stderr.read()
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    p.stderr.read()     # EOF: the guardian is gone too
    p.stderr.close()
    killed = p.pid
    name = "victim-%d" % killed
    assert name in instances(tracefs_root)
    # The kernel-side backstop: closing free_buffer stopped the instance.
    with open(os.path.join(tracefs_root, "instances", name, "tracing_on")) as f:
        assert f.read().strip() == "0"
    p = tooling.run("victim", "-s", "0.2")
    assert p.returncode == 0, p.stderr
    assert "restored" in p.stderr and ("pid %d" % killed) in p.stderr, p.stderr
    assert p.stderr.count("\n") == 2  # the restore line, the banner
    assert name not in instances(tracefs_root)


def test_two_sessions_at_once(tracefs_root):
    a = tooling.start("victim", "-s", "60")
    b = tooling.start("victim", "-s", "60")
    assert {"victim-%d" % a.proc.pid, "victim-%d" % b.proc.pid} <= set(instances(tracefs_root))
    ra, oa, ea = a.stop()
    rb, ob, eb = b.stop()
    assert ra == rb == 0, (ea, eb)
    assert int(oa.split()[1]) > 0 and int(ob.split()[1]) > 0


def test_foreign_instance_is_not_touched(tracefs_root):
    d = os.path.join(tracefs_root, "instances", "foreign-test")
    os.mkdir(d)
    try:
        with open(os.path.join(d, "events/sched/sched_switch/enable"), "w") as f:
            f.write("1")
        with open(os.path.join(d, "buffer_size_kb"), "w") as f:
            f.write("512")
        before = open(os.path.join(d, "buffer_size_kb")).read()
        p = tooling.run("victim", "-s", "0.5")
        assert p.returncode == 0, p.stderr
        assert open(os.path.join(d, "buffer_size_kb")).read() == before
        assert open(os.path.join(d, "events/sched/sched_switch/enable")).read().strip() == "1"
        assert open(os.path.join(d, "tracing_on")).read().strip() == "1"
    finally:
        os.rmdir(d)


def test_busy_top_level_is_refused_and_left_alone(tracefs_root):
    en = os.path.join(tracefs_root, "events/sched/sched_wakeup/enable")
    with open(en, "w") as f:
        f.write("1")
    try:
        p = tooling.run("victim", "-t", "-s", "0.2")
        assert p.returncode == 1
        assert "in use" in p.stderr and "set_event" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr
        assert open(en).read().strip() == "1"
    finally:
        with open(en, "w") as f:
            f.write("0")


def test_top_level_lock_names_the_holder(tracefs_root):
    a = tooling.start("victim", "-t", "-s", "60")
    try:
        p = tooling.run("victim", "-t", "-s", "0.2")
        assert p.returncode == 1
        assert "victim (pid %d)" % a.proc.pid in p.stderr, p.stderr
    finally:
        rc, out, err = a.stop()
    assert rc == 0, err


def test_top_level_session_restores_the_top_level(tracefs_root):
    p = tooling.run("victim", "-t", "-s", "0.3")
    assert p.returncode == 0, p.stderr
    assert int(p.stdout.split()[1]) > 0


@pytest.mark.parametrize("err", ["EBUSY", "ENOMEM", "EINVAL", "EPERM"])
def test_setup_failing_half_way_rolls_back(err, tracefs_root):
    """Fail the 1st, 2nd, ... tracefs write until set-up gets through."""
    import tracestate
    before = tracestate.snapshot(tracefs_root)
    for n in range(1, 50):
        env = dict(os.environ, FTT_FAIL_WRITE="%d:%s" % (n, err))
        p = tooling.run("victim", "-s", "0.2", env=env)
        if p.returncode == 0:
            break
        assert p.returncode == 1, (n, p.returncode, p.stderr)
        assert p.stderr.startswith("victim: ") and len(p.stderr.splitlines()) == 1, p.stderr
        assert tracestate.diff(before, tracestate.snapshot(tracefs_root)) == [], n
    assert n > 5  # the victim makes six changes: each one was failed once


def test_process_filter_ends_with_the_process(tracefs_root):
    child = subprocess.Popen(["sleep", "1"])
    t0 = time.monotonic()
    p = tooling.run("victim", "-p", str(child.pid), "-s", "30")
    child.wait()
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t0 < 5 * tooling.SCALE
