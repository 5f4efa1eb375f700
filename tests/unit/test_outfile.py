"""Output files behave as a shell redirection would (ftracetools.outfile)."""

import os
import stat
import subprocess
import sys
import threading

import pytest

from ftracetools.errors import ToolError, UsageError
from ftracetools.report.outfile import OutFile


def test_a_new_file_is_written(tmp_path):
    p = tmp_path / "t.json"
    OutFile(str(p)).write("{}")
    assert p.read_text() == "{}"
    assert os.listdir(tmp_path) == ["t.json"]


def test_a_regular_file_is_replaced_keeping_its_mode(tmp_path):
    p = tmp_path / "t.json"
    p.write_text("old, and longer than the new")
    os.chmod(p, 0o600)
    OutFile(str(p)).write("new")
    assert p.read_text() == "new"
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["t.json"]


def test_a_symlink_is_followed_not_replaced(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    os.symlink("real.json", link)
    OutFile(str(link)).write("new")
    assert os.path.islink(link) and os.readlink(link) == "real.json"
    assert target.read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["link.json", "real.json"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.json"
    os.symlink("made.json", link)
    OutFile(str(link)).write("x")
    assert os.path.islink(link) and (tmp_path / "made.json").read_text() == "x"


def test_a_fifo_is_written_in_place(tmp_path):
    p = tmp_path / "fifo"
    os.mkfifo(p)
    got = []
    r = threading.Thread(target=lambda: got.append(open(p).read()))
    r.start()
    for _ in range(200):     # the reader opens its end first, as a shell's would
        try:
            out = OutFile(str(p))
            break
        except ToolError:
            threading.Event().wait(0.01)
    out.write("through the pipe")
    r.join(5)
    assert got == ["through the pipe"]
    assert stat.S_ISFIFO(os.stat(p).st_mode) and os.listdir(tmp_path) == ["fifo"]


def test_a_fifo_without_reader_is_refused_at_once(tmp_path):
    p = tmp_path / "fifo"
    os.mkfifo(p)
    with pytest.raises(ToolError, match="FIFO with no reader"):
        OutFile(str(p))


def test_dev_stdout_to_a_pipe_is_written_in_place():
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from ftracetools.report.outfile import OutFile\n"
            "OutFile('/dev/stdout').write('timeline')\n" % os.path.join(
                os.path.dirname(__file__), "..", "..", "lib"))
    r = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, timeout=30)
    assert r.returncode == 0 and r.stdout == b"timeline"
    assert os.path.islink("/dev/stdout")


def test_dev_stdout_to_a_file_appends_to_it(tmp_path):
    out = tmp_path / "out"
    code = ("import sys; sys.path.insert(0, %r)\n"
            "print('before', flush=True)\n"
            "from ftracetools.report.outfile import OutFile\n"
            "OutFile('/dev/stdout').write('timeline')\n" % os.path.join(
                os.path.dirname(__file__), "..", "..", "lib"))
    with open(out, "w") as f:
        r = subprocess.run([sys.executable, "-c", code], stdout=f, timeout=30)
    assert r.returncode == 0 and out.read_text() == "before\ntimeline"
    assert os.listdir(tmp_path) == ["out"]


def test_a_character_device_is_written_in_place():
    OutFile("/dev/null").write("x" * 10000)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("where, why", [
    ("DIR", "it is a directory"),
    ("DIR/no/such/x.json", "no such directory"),
])
def test_bad_places_are_refused_before_anything(tmp_path, where, why):
    with pytest.raises(UsageError, match=why):
        OutFile(where.replace("DIR", str(tmp_path)))
    assert os.listdir(tmp_path) == []


def test_a_full_disk_leaves_nothing_beside_the_file(tmp_path, monkeypatch):
    p = tmp_path / "t.json"
    p.write_text("old")
    out = OutFile(str(p))
    real = os.write

    def full(fd, data):
        if os.readlink("/proc/self/fd/%d" % fd).startswith(str(tmp_path)):
            raise OSError(28, os.strerror(28))
        return real(fd, data)
    monkeypatch.setattr(os, "write", full)
    with pytest.raises(ToolError, match="cannot write .*No space left on device"):
        out.write("new")
    monkeypatch.setattr(os, "write", real)
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["t.json"]


def test_dev_full_is_an_error_not_a_traceback():
    with pytest.raises(ToolError, match="No space left"):
        OutFile("/dev/full").write("x")


# A tool's stdout under signals: long JSON lines into a pipe read slowly,
# SIGINTs arriving at random (the handler only records them, as every
# tool's does), and a second thread alive as numpy's or the metrics
# server's are. Python's own stdout, unbuffered (PYTHONUNBUFFERED=1, as on
# the development host and in the guests), lost or spliced 44 to 70 of
# 300 such lines (CPython 3.11); the soak's schedtrace -s --json met it at
# its Ctrl-C.
WRITER = r"""
import json, os, signal, sys, threading, time
from ftracetools.kernel import signals
from ftracetools.report import outfile, text
signals.install()
outfile.whole_stdout()
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
sys.stderr.write("ready\n")
sys.stderr.flush()
for i in range(int(sys.argv[1])):
    text.json_line({"i": i, "tasks": [{"comm": "sh", "run_ns": 123456789}] * 12000})
    signals.forget(signal.SIGINT)
sys.stdout.flush()
os._exit(0)     # as the tools end (cli.leave): no SIGINT at the interpreter's teardown
"""


def _lines_under_signals(n: int, unbuffered: bool):
    import json
    import random
    import signal
    import time
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))), "lib"))
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(n)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    assert p.stderr.readline() == b"ready\n", p.stderr.read()
    lines = []

    def read():
        for line in p.stdout:
            lines.append(line)
            time.sleep(0.002)
    t = threading.Thread(target=read)
    t.start()
    sent = 0
    while p.poll() is None:
        time.sleep(random.random() * 0.01)
        try:
            p.send_signal(signal.SIGINT)
            sent += 1
        except ProcessLookupError:
            pass
    t.join()
    assert p.wait() == 0, p.stderr.read()
    got = []
    for line in lines:
        try:
            got.append(json.loads(line)["i"])
        except ValueError:
            got.append(None)
    return got, sent


@pytest.mark.parametrize("unbuffered", [True, False], ids=["unbuffered", "buffered"])
def test_stdout_lines_stay_whole_under_signals(unbuffered):
    got, sent = _lines_under_signals(100, unbuffered)
    assert sent >= 20, "too few signals to test anything: %d" % sent
    assert got == list(range(100))


# Under PYTHONUNBUFFERED a tool's lines would go out a write each: 42,000
# writes for funcgraph's 5,000 calls in the emulated guests, most of its
# CPU. They are held until the tool flushes (after each round of records
# and each report), then go out in a few writes.
BATCHER = r"""
import os, sys
from ftracetools.report import outfile
outfile.whole_stdout()
writes = [0]
real = outfile.os.write
def counted(fd, data):
    writes[0] += 1
    return real(fd, data)
outfile.os.write = counted
for i in range(2000):
    sys.stdout.write("  1)   0.250 us    |    line %d();\n" % i)
sys.stderr.write("held %d\n" % writes[0])
sys.stderr.flush()
sys.stdin.read(1)
sys.stdout.flush()
sys.stderr.write("writes %d\n" % writes[0])
sys.stderr.flush()
os._exit(0)
"""


def test_unbuffered_stdout_is_written_in_batches_at_each_flush():
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lib"))
    p = subprocess.Popen([sys.executable, "-c", BATCHER], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    got = []
    reader = threading.Thread(target=lambda: got.append(p.stdout.read()))
    reader.start()      # a write a line would fill the pipe before the flush
    held = int(p.stderr.readline().split()[1])
    p.stdin.write(b"x")
    p.stdin.flush()
    writes = int(p.stderr.readline().split()[1])
    assert p.wait(30) == 0
    reader.join(30)
    out = got[0]
    lines = out.decode().splitlines()
    assert lines == ["  1)   0.250 us    |    line %d();" % i for i in range(2000)]
    # ~76 kB in buffer-sized writes, not 2,000 (one a line)
    assert writes <= 20, writes
    assert held < writes, (held, writes)
