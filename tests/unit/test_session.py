"""The session, its undo journal, the lock and the run directory
(kernel.session, journal, lock, rundir) against a fake tracefs."""

import json
import os

import pytest

from ftracetools.kernel import journal
from ftracetools.kernel import lock
from ftracetools.kernel import rundir
from ftracetools.kernel import session
from ftracetools.kernel import tracefs
from ftracetools.errors import ToolError
from ftracetools.kernel.features import Features
from ftracetools.kernel.session import undo_value


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake tracefs and a private run directory."""
    root = tmp_path / "tracing"
    for d in ("instances", "events/sched/sched_switch", "options"):
        (root / d).mkdir(parents=True)
    files = {"current_tracer": "nop\n", "tracing_on": "1\n", "trace": "",
             "buffer_size_kb": "7 (expanded: 1408)\n", "set_event": "",
             "set_ftrace_filter": "#### all functions enabled ####\n",
             "set_event_pid": "", "trace_clock": "[local] global mono\n",
             "events/sched/sched_switch/enable": "0\n",
             "events/sched/sched_switch/filter": "none\n",
             "options/event-fork": "0\n"}
    for k, v in files.items():
        (root / k).write_text(v)
    run = tmp_path / "run"
    monkeypatch.setenv("FTT_RUNDIR", str(run))
    monkeypatch.setattr(tracefs, "require_root", lambda: None)
    return root


def fake_instance(root, name):
    d = root / "instances" / name
    (d / "events/sched/sched_switch").mkdir(parents=True)
    (d / "options").mkdir()
    for k, v in {"tracing_on": "1\n", "trace_clock": "[local] mono\n",
                 "events/sched/sched_switch/enable": "0\n",
                 "events/sched/sched_switch/filter": "none\n"}.items():
        (d / k).write_text(v)
    return d


def test_rundir_is_private(fake):
    d = rundir.ensure()
    assert os.stat(d).st_mode & 0o777 == 0o700


def test_rundir_refuses_a_symlink(fake, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    os.symlink(str(target), os.environ["FTT_RUNDIR"])
    with pytest.raises(ToolError, match="symlink"):
        rundir.ensure()


def test_rundir_refuses_an_open_directory(fake):
    os.mkdir(os.environ["FTT_RUNDIR"], 0o700)
    os.chmod(os.environ["FTT_RUNDIR"], 0o777)
    with pytest.raises(ToolError, match="not private"):
        rundir.ensure()


def test_planted_symlink_file_is_not_followed(fake, tmp_path):
    d = rundir.ensure()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(str(victim), os.path.join(d, lock.NAME))
    with pytest.raises(ToolError, match="symlink"):
        lock.TopLevelLock("t").acquire()
    assert victim.read_text() == "precious"


def test_lock_is_exclusive_and_names_its_holder(fake):
    a = lock.TopLevelLock("funcgraph")
    a.acquire()
    with pytest.raises(ToolError, match=r"funcgraph \(pid %d\)" % os.getpid()):
        lock.TopLevelLock("other").acquire()
    a.release()
    b = lock.TopLevelLock("other")
    b.acquire()
    b.release()


def test_session_undoes_everything_on_error(fake):
    with pytest.raises(RuntimeError):
        with session.Session("t", features=Features(str(fake))) as s:
            inst = fake_instance(fake, s.instance)
            assert s.dir == str(inst)
            s.set("trace_clock", "mono")
            s.enable_event("sched", "sched_switch", "prev_pid == 1")
            assert (inst / "events/sched/sched_switch/filter").read_text() == "prev_pid == 1"
            j = os.path.join(os.environ["FTT_RUNDIR"], "journal.%d" % os.getpid())
            steps = [json.loads(l) for l in open(j)]
            assert steps[0]["tool"] == "t" and steps[1]["op"] == "expand"
            assert steps[2]["op"] == "rmdir"
            raise RuntimeError("boom")
    # The fake instance directory holds files, so rmdir fails there; the
    # settings inside it were restored first, in reverse.
    assert (inst / "trace_clock").read_text() == "local"
    assert (inst / "events/sched/sched_switch/filter").read_text() == "0"
    assert (inst / "events/sched/sched_switch/enable").read_text() == "0"


def test_top_level_session_restores_and_unlocks(fake):
    with session.Session("t", top_level=True, features=Features(str(fake))) as s:
        s.set("current_tracer", "function")
        s.set_pids("set_event_pid", [3, 4])
        s.set_option("event-fork")
        with pytest.raises(ToolError, match="in use"):
            lock.TopLevelLock("x").acquire()
    assert (fake / "current_tracer").read_text() == "nop"
    assert (fake / "set_event_pid").read_text() == "\n"
    assert (fake / "options/event-fork").read_text() == "0"
    assert os.listdir(os.environ["FTT_RUNDIR"]) == [lock.NAME]


def test_busy_top_level_is_refused(fake):
    (fake / "current_tracer").write_text("function_graph\n")
    with pytest.raises(ToolError, match="current_tracer is function_graph"):
        with session.Session("t", top_level=True, features=Features(str(fake))):
            pass
    assert (fake / "current_tracer").read_text() == "function_graph\n"


def test_recover_replays_a_dead_runs_journal(fake):
    d = rundir.ensure()
    (fake / "current_tracer").write_text("function")
    (fake / "tracing_on").write_text("0")
    with open(os.path.join(d, "journal.999999"), "w") as f:
        f.write(json.dumps({"tool": "funccount", "pid": 999999, "root": str(fake)}) + "\n")
        f.write(json.dumps({"op": "write", "path": "current_tracer", "value": "nop"}) + "\n")
        f.write(json.dumps({"op": "write", "path": "tracing_on", "value": "1"}) + "\n")
        f.write('{"op": "write", "pa')  # torn by SIGKILL: never applied
    said = []
    journal.recover(said.append)
    assert (fake / "current_tracer").read_text() == "nop"
    assert (fake / "tracing_on").read_text() == "1"
    assert said == ["restored 2 tracing settings left by funccount (pid 999999), which was killed"]
    assert os.listdir(d) == []


def test_recover_leaves_a_live_runs_journal_alone(fake):
    j = journal.Journal("live", str(fake))
    j.record({"op": "write", "path": "current_tracer", "value": "nop"})
    (fake / "current_tracer").write_text("function")
    said = []
    journal.recover(said.append)
    assert said == [] and (fake / "current_tracer").read_text() == "function"
    j.close()
    assert os.listdir(rundir.path()) == []


def test_fault_injection_rolls_back(fake, monkeypatch):
    monkeypatch.setenv("FTT_FAIL_WRITE", "2:EBUSY")
    with pytest.raises(ToolError, match="busy"):
        with session.Session("t", top_level=True, features=Features(str(fake))) as s:
            s.set("current_tracer", "function")
            s.set("tracing_on", "0")
    assert (fake / "current_tracer").read_text() == "nop"


def test_an_instance_is_removed_before_its_settings_are_restored(fake, monkeypatch):
    """Removing a private instance takes its settings with it: they are not
    written back one by one (each costs the kernel a synchronisation), but
    a setting outside it still is, after the instance is gone."""
    real, applied = journal.apply, []

    def spy(root, step):
        applied.append(step["path"])
        return real(root, step)
    monkeypatch.setattr(journal, "apply", spy)
    steps = [{"op": "write", "path": "trace_clock", "value": "local"},
             {"op": "rmdir", "path": "instances/a", "value": ""},
             {"op": "write", "path": "instances/a/trace_clock", "value": "local"},
             {"op": "write", "path": "instances/a/events/sched/sched_switch/enable",
              "value": "0"}]
    (fake / "instances" / "a").mkdir()     # empty: rmdir works, as on tracefs
    (fake / "trace_clock").write_text("mono")
    assert journal.undo(str(fake), steps) == ([], [])
    assert applied == ["trace_clock"]
    assert not (fake / "instances" / "a").exists()
    assert (fake / "trace_clock").read_text() == "local"
    # held open (here: not empty): its steps are undone one by one, then
    # its removal fails and is all that is left
    d = fake_instance(fake, "a")
    applied.clear()
    errors, failed = journal.undo(str(fake), steps)
    assert applied == ["instances/a/events/sched/sched_switch/enable",
                       "instances/a/trace_clock", "instances/a", "trace_clock"]
    assert failed == [steps[1]] and len(errors) == 1
    assert (d / "trace_clock").read_text() == "local"


def test_a_failed_undo_leaves_only_itself_for_the_next_run(fake, monkeypatch):
    """Steps that were undone are never replayed later (they would clobber
    what someone set since); the one that failed is, and only it."""
    real = journal.apply

    def flaky(root, step):
        if step["path"] == "tracing_on":
            return "tracing_on: Device or resource busy"
        return real(root, step)
    monkeypatch.setattr(journal, "apply", flaky)
    warned = []
    with session.Session("t", top_level=True, features=Features(str(fake)),
                         warn=warned.append) as s:
        s.set("current_tracer", "function")
        s.set("tracing_on", "0")
    assert (fake / "current_tracer").read_text() == "nop"
    assert any("could not restore: tracing_on" in w for w in warned), warned
    from ftracetools.errors import Status
    assert Status.restore_failed
    Status.restore_failed = False
    (fake / "current_tracer").write_text("function_graph")   # someone else, later
    monkeypatch.setattr(journal, "apply", real)
    said = []
    journal.recover(said.append)
    assert (fake / "current_tracer").read_text() == "function_graph"
    assert (fake / "tracing_on").read_text() == "1"
    assert said == ["restored 1 tracing setting left by t (pid %d), which could not finish"
                    % os.getpid()]
    assert os.listdir(rundir.path()) == ["toplevel.lock"] or \
        not [n for n in os.listdir(rundir.path()) if n.startswith("journal.")]


def test_a_full_run_directory_changes_nothing(fake, monkeypatch):
    real = os.write

    def full(fd, data):
        if os.readlink("/proc/self/fd/%d" % fd).startswith(rundir.path()):
            raise OSError(28, os.strerror(28))
        return real(fd, data)
    monkeypatch.setattr(os, "write", full)
    with pytest.raises(ToolError, match="cannot write the undo journal.*No space left"):
        with session.Session("t", top_level=True, features=Features(str(fake))) as s:
            s.set("current_tracer", "function")
    monkeypatch.setattr(os, "write", real)
    assert (fake / "current_tracer").read_text() == "nop\n"
    assert not [n for n in os.listdir(rundir.path()) if n.startswith(("journal.", "new."))]


def test_an_unexpanded_top_level_buffer_is_left_expandable(fake):
    """6.1 marks the buffers expanded when an instance sets a tracer or a
    buffer size, without growing the top level's 7 KB: the session gives
    it the size it was to get (the guests check it on the real kernel)."""
    with session.Session("t", features=Features(str(fake))):
        (fake / "buffer_size_kb").write_text("7\n")   # the kernel's doing
    assert (fake / "buffer_size_kb").read_text() == "1408"
    # still unexpanded at the end: nothing is written (nothing allocated)
    (fake / "buffer_size_kb").write_text("7 (expanded: 1408)\n")
    with session.Session("t", features=Features(str(fake))):
        pass
    assert (fake / "buffer_size_kb").read_text() == "7 (expanded: 1408)\n"


def test_a_top_level_buffer_size_is_restored_expanded(fake):
    with session.Session("t", top_level=True, features=Features(str(fake))) as s:
        s.set_buffer_kb(4096)
        assert (fake / "buffer_size_kb").read_text() == "4096"
    assert (fake / "buffer_size_kb").read_text() == "1408"


def test_recovery_expands_what_a_killed_run_left(fake):
    d = rundir.ensure()
    (fake / "buffer_size_kb").write_text("7\n")
    with open(os.path.join(d, "journal.999999"), "w") as f:
        f.write(json.dumps({"tool": "funcgraph", "pid": 999999, "root": str(fake)}) + "\n")
        f.write(json.dumps({"op": "expand", "path": "buffer_size_kb",
                            "value": "7 1408"}) + "\n")
    journal.recover(lambda m: None)
    assert (fake / "buffer_size_kb").read_text() == "1408"


def test_undo_values():
    assert undo_value("set_ftrace_filter", "#### all functions enabled ####\n") == ""
    assert undo_value("set_ftrace_filter", "vfs_read\nvfs_write\n") == "vfs_read\nvfs_write"
    assert undo_value("set_event_pid", "no pid\n") == ""
    assert undo_value("set_event_pid", "1\n2\n") == "1 2"
    assert undo_value("trace_clock", "[local] global counter mono\n") == "local"
    assert undo_value("events/sched/sched_switch/filter", "none\n") == "0"
    assert undo_value("buffer_size_kb", "7 (expanded: 1408)\n") == "1408"
    assert undo_value("buffer_size_kb", "4096\n") == "4096"
    assert undo_value("tracing_on", "1\n") == "1"


def test_instance_probe_failures_are_said(fake, monkeypatch):
    """The throw-away instance that learns which tracers instances allow:
    one that cannot be made is the kernel's refusal, said as such (not
    "not allowed inside an instance"), and one that cannot be removed is
    named for the user, never left silently."""
    import errno
    from ftracetools.kernel import features
    feat = Features(str(fake))
    (fake / "available_tracers").write_text("function nop\n")
    assert features.instance_tracers(feat) == []       # a plain directory here
    assert os.listdir(str(fake / "instances")) == []

    def refuse(path, *a):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(features.os, "mkdir", refuse)
    with pytest.raises(ToolError, match=r"cannot make a trace instance .*ftracetools-probe-%d.*"
                       "No space" % os.getpid()):
        features.instance_tracers(feat)
    monkeypatch.undo()
    monkeypatch.setattr(tracefs, "require_root", lambda: None)

    def busy(path):
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
    monkeypatch.setattr(tracefs.os, "rmdir", busy)
    monkeypatch.setattr(tracefs.time, "sleep", lambda s: None)
    with pytest.raises(ToolError, match="busy; remove it with rmdir once its reader closes it"):
        features.instance_tracers(feat)
