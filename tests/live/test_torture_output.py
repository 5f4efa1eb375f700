"""The torture suite: output: processes with hostile names (terminal
escapes, a name cut in the middle of a UTF-8 character), output that
cannot be written (a full disk), and output files that are symlinks,
FIFOs, /dev/stdout or directories.

Every trial snapshots all tracefs settings before and compares after (and
the autouse fixture checks each test as a whole); see tests/torture.py.
"""

import json
import os
import subprocess
import sys
import threading

import pytest

import loopdev
import tooling
import torture_stats as stats
import tracestate
from torture import check_same, no_traceback

# (how each tool runs briefly, system-wide)
BRIEF = {"schedtrace": [["-d", "1"], ["-s", "-d", "1"], ["-s", "-d", "1", "--json"],
                        ["-d", "1", "--json"]],
         "offcputime": [["-d", "1"], ["-d", "1", "--json"], ["-d", "1", "--folded"],
                        ["-d", "1", "--by", "comm"]],
         "pagefaults": [["-d", "1"], ["-d", "1", "--json"], ["-d", "1", "-e"],
                        ["-d", "1", "-e", "--json"], ["-d", "1", "--by", "mapping"]]}
# (--by mapping shows no process names: it must only survive them)

NAMED = ("import ctypes,mmap,sys,time\n"
         "ctypes.CDLL(None).prctl(15, sys.argv[1].encode('latin-1'), 0, 0, 0)\n"
         "print('named', flush=True)\n"
         "end=time.time()+float(sys.argv[2])\n"
         "while time.time()<end:\n"
         "    m=mmap.mmap(-1,1<<20); m[::4096]=b'x'*256; m.close(); time.sleep(0.001)\n")

# a name with terminal escapes; and 16 bytes the kernel cuts to 15, in the
# middle of the 2-byte UTF-8 n-tilde
NAMES = {"escapes": ("\x1b[31mEVIL\x07", "EVIL"),
         "cut utf-8": ("abcdefghijklmn\xc3\xb1", "abcdefghijklmn")}


@pytest.mark.parametrize("name", sorted(NAMES))
@pytest.mark.parametrize("tool", sorted(BRIEF))
def test_hostile_process_names(tool, name, tracefs_root):
    """Printed escaped, kept in JSON, never ending the tool: system-wide
    (where pagefaults crashed) and in every output mode."""
    raw, shown = NAMES[name]
    for args in BRIEF[tool]:
        before = tracestate.snapshot(tracefs_root)
        w = subprocess.Popen([sys.executable, "-c", NAMED, raw, "3"], stdout=subprocess.PIPE,
                             text=True)
        try:
            assert w.stdout.readline() == "named\n"
            p = tooling.run(tool, *args, timeout=60)
        finally:
            w.kill()
            w.wait()
        stats.add("hostile names")
        no_traceback(p.stderr, "%s %s" % (tool, args))
        assert p.returncode == 0, (args, p.stderr)
        assert "--by" in args or shown in p.stdout, (tool, args, p.stdout[-500:])
        assert "\x1b" not in p.stdout and "\x07" not in p.stdout
        if "--json" in args:
            for line in p.stdout.splitlines():
                json.loads(line)
        check_same(tracefs_root, before, "%s %s" % (tool, args))


# a named process reading a block device (O_DIRECT, page-aligned buffer)
READER = ("import ctypes,mmap,os,random,sys,time\n"
          "ctypes.CDLL(None).prctl(15, sys.argv[1].encode('latin-1'), 0, 0, 0)\n"
          "fd=os.open(sys.argv[3], os.O_RDONLY|os.O_DIRECT); buf=mmap.mmap(-1, 4096)\n"
          "print('named', flush=True)\n"
          "end=time.time()+float(sys.argv[2])\n"
          "while time.time()<end:\n"
          "    os.preadv(fd, [buf], random.randrange(4096)*4096); time.sleep(0.001)\n")


@pytest.mark.skipif(loopdev.have_tools() is not None, reason=str(loopdev.have_tools()))
@pytest.mark.parametrize("name", sorted(NAMES))
def test_hostile_names_of_block_io_submitters(name, tracefs_root):
    """biosnoop names the submitter of each I/O: escaped in its lines and
    kept in JSON, in both modes, never ending the tool."""
    raw, shown = NAMES[name]
    with loopdev.LoopDevice(size_mb=16) as dev:
        for args in (["-d", dev.name, "1"], ["--json", "-d", dev.name, "1"]):
            before = tracestate.snapshot(tracefs_root)
            w = subprocess.Popen([sys.executable, "-c", READER, raw, "3", dev.path],
                                 stdout=subprocess.PIPE, text=True)
            try:
                assert w.stdout.readline() == "named\n"
                p = tooling.run("biosnoop", *args, timeout=60)
            finally:
                w.kill()
                w.wait()
            stats.add("hostile names")
            no_traceback(p.stderr, "biosnoop %s" % args)
            assert p.returncode == 0, (args, p.stderr)
            assert shown in p.stdout and "\x1b" not in p.stdout and "\x07" not in p.stdout
            if "--json" in args:
                comms = {json.loads(l)["comm"] for l in p.stdout.splitlines()}
                assert len(comms) == 1 and shown in comms.pop(), p.stdout[:300]
            check_same(tracefs_root, before, "biosnoop %s" % args)


@pytest.mark.parametrize("tool,args", [
    ("schedtrace", ["-s", "-d", "0.5"]), ("schedtrace", ["-d", "0.5"]),
    ("pagefaults", ["-d", "0.5"]), ("iolatency", ["0.3", "1"]), ("biosnoop", ["0.5"]),
    ("funccount", ["-d", "0.5", "t:sched:sched_switch"]),
])
def test_a_full_disk_ends_quietly(tool, args, tracefs_root):
    """stdout on /dev/full: one line, exit 1, the kernel restored."""
    before = tracestate.snapshot(tracefs_root)
    with open("/dev/full", "w") as full:
        p = subprocess.run(tooling.argv(tool, *args), stdout=full, stderr=subprocess.PIPE,
                           text=True, timeout=60 * tooling.LIMIT_SCALE)
    stats.add("full-disk runs")
    no_traceback(p.stderr, tool)
    assert p.returncode == 1, p.stderr
    assert p.stderr.splitlines()[-1] == \
        "%s: cannot write the output: No space left on device" % tool, p.stderr
    check_same(tracefs_root, before, tool + " on /dev/full")


def _timeline(args, **kw):
    p = subprocess.run(tooling.argv("schedtrace", "-d", "0.3", *args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60 * tooling.LIMIT_SCALE, **kw)
    stats.add("output-file runs")
    no_traceback(p.stderr.decode(), "schedtrace " + " ".join(args))
    return p


def test_output_file_through_a_symlink(tmp_path, tracefs_root):
    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("old")
    os.symlink("real.json", link)
    p = _timeline(["--perfetto", str(link)])
    assert p.returncode == 0, p.stderr
    assert os.path.islink(link) and json.loads(target.read_text())["traceEvents"]
    assert sorted(os.listdir(tmp_path)) == ["link.json", "real.json"]


def test_output_file_is_a_fifo(tmp_path, tracefs_root):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
    reader.start()
    try:
        p = _timeline(["--perfetto", str(fifo)])
    finally:
        if reader.is_alive():       # never left waiting on the FIFO
            with open(fifo, "w"):
                pass
        reader.join(10)
    assert p.returncode == 0, p.stderr
    assert json.loads(got[0])["traceEvents"]
    assert os.listdir(tmp_path) == ["fifo"]


def test_output_file_without_a_reader_is_refused_at_once(tmp_path, tracefs_root):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    before = tracestate.snapshot(tracefs_root)
    p = _timeline(["--perfetto", str(fifo)])
    assert p.returncode == 1 and b"FIFO with no reader" in p.stderr, p.stderr
    assert b"Tracing" not in p.stderr
    check_same(tracefs_root, before, "a FIFO without reader")


def test_output_file_is_dev_stdout():
    """The case that replaced the /dev/stdout symlink with a file."""
    p = _timeline(["--perfetto", "/dev/stdout"])
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["traceEvents"]
    assert os.path.islink("/dev/stdout")


@pytest.mark.parametrize("where", ["DIR", "DIR/no/such/t.json"])
def test_output_file_in_no_place_is_refused_before_tracing(where, tmp_path, tracefs_root):
    before = tracestate.snapshot(tracefs_root)
    p = _timeline(["--perfetto", where.replace("DIR", str(tmp_path))])
    assert p.returncode == 2 and p.stderr.startswith(b"schedtrace: cannot write"), p.stderr
    assert b"Tracing" not in p.stderr and os.listdir(tmp_path) == []
    check_same(tracefs_root, before, "--perfetto " + where)
