"""What every tool does with its command line, before it touches tracefs:
help, usage mistakes (exit 2: the first line names what is wrong, one
hint line, the same words in every tool, never the whole usage nor a
traceback), not root (one line, exit 1), a stdout that is closed.
"""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = sorted(t for t in os.listdir(os.path.join(REPO, "bin")) if not t.startswith("."))
# tools with process targets (-p -L -c -C)
TARGETED = ("funccount", "funcgraph", "funclatency", "offcputime", "pagefaults",
            "schedtrace")
# a pattern for those that need one
NEED = {"funccount": ["vfs_read"], "funcgraph": ["vfs_read"], "funclatency": ["vfs_read"]}


def run(tool, *args, user=None, python=sys.executable, env=None, **kw):
    pre = None
    if user is not None:
        def pre():
            os.setgid(user)
            os.setuid(user)
    return subprocess.run([python, os.path.join(REPO, "bin", tool)] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=60, preexec_fn=pre, cwd="/", env=env, **kw)


@pytest.fixture(scope="module")
def nobody_python():
    """A Python that user nobody can run, with docopt where it can read it
    (root's own Python may live under /root, closed to others)."""
    import docopt
    import pathlib
    import tempfile
    d = pathlib.Path(tempfile.mkdtemp(prefix="ftt-nobody-"))
    src = os.path.dirname(docopt.__file__) if docopt.__file__.endswith("__init__.py") \
        else docopt.__file__
    shutil.copytree(src, str(d / "docopt")) if os.path.isdir(src) \
        else shutil.copy(src, str(d))
    for p in [str(d)] + [os.path.join(str(d), x) for x in os.listdir(str(d))]:
        os.chmod(p, 0o755)
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    yield py, dict(os.environ, PYTHONPATH=str(d), PYTHONDONTWRITEBYTECODE="1")
    shutil.rmtree(str(d))


@pytest.mark.parametrize("tool", TOOLS)
def test_help(tool):
    p = run(tool, "-h")
    assert p.returncode == 0 and "Usage:" in p.stdout and "Examples:" in p.stdout


def usage_error(tool, args, first):
    """Exit 2, ``TOOL: FIRST...`` then one hint line, nothing else."""
    p = run(tool, *args)
    lines = p.stderr.splitlines()
    assert p.returncode == 2, (args, p.returncode, p.stderr)
    assert lines and lines[0].startswith("%s: %s" % (tool, first)), (args, p.stderr)
    assert len(lines) <= 2 and all(l.startswith(tool + ": ") for l in lines), p.stderr
    assert all(len(l) <= 100 for l in lines), p.stderr
    assert "Traceback" not in p.stderr and "Usage:" not in p.stderr and p.stdout == ""
    return lines


# (argv, how the first line starts): every tool
COMMON = [
    (["--no-such-option"], "--no-such-option: no such option"),
    (["--jsn"], "--jsn: no such option (did you mean --json?)"),
]
# tools with process targets: the same words in each
TARGET_MISTAKES = [
    (["-p"], "-p: needs a value (PID)"),
    (["-p", "x1"], "-p x1: not a process id (a whole number from 1 to 4194304)"),
    (["-p", "-5"], "-p -5: not a process id"),
    (["-p", "1", "-L", "1"], "-p and -L exclude each other"),
    (["-p", "1", "-c", "ls"], "-p and -c exclude each other"),
    (["-C", "a-b"], "-C a-b: not a CPU list"),
    (["-C", "999"], "-C 999: CPU 999 not online"),
    (["-d", "0"], "-d 0: must be more than 0"),
    (["-d", "x"], "-d x: not a number of seconds"),
    (["-c", "/nonexistent/prog"], "cannot run"),
    (["-p", "1", "--cgroup", "/"], "-p and --cgroup exclude each other"),
    (["--cgroup", "/tmp"], "--cgroup /tmp: not a cgroup (not under the cgroup2 mount"),
    (["--cgroup", "ftt-no-such"], "--cgroup ftt-no-such: no such cgroup"),
    (["--cgroup", ""], "--cgroup: empty path"),
    (["--pidns", "1"], "--pidns needs -p or -L"),
    (["--pidns", "x", "-p", "1"], "--pidns x: not a process id"),
]
# each tool's own
OWN = {
    "schedtrace": [
        (["-t", "3"], "-t: needs -s"), (["--slices"], "--slices: needs -H"),
        (["-m"], "-m: needs -H"), (["-s", "-H"], "-s and -H exclude each other"),
        (["-H", "--by", "pid"], "--by pid: no such key"), (["--state", "Q"], "--state Q: not"),
        (["-s", "0"], "<interval> 0: must be more than 0"), (["-s", "1", "2", "3"], "'3': unexpected"),
        (["-s", "-t", "-1"], "-t -1: must be from 1"), (["-w", "-s"], "-w and -s exclude each other"),
        (["--perfetto", "/nonexistent/dir/x.json"], "cannot write /nonexistent/dir/x.json"),
        (["--perfetto", "/tmp"], "cannot write /tmp: it is a directory"),
        (["-H", "--by", "cgroup"], "--by cgroup: no such key"),
        (["-s", "--by", "cpu"], "--by cpu: no such key with -s"),
    ],
    "offcputime": [
        (["--state", "R"], "--state R: R is no sleep"), (["--state", "S,Z"], "--state S,Z: Z is no"),
        (["--state", "Q"], "--state Q: not"), (["--by", "pid"], "--by pid: no such key"),
        (["-m", "x"], "-m x: not a whole number of microseconds"),
        (["-m", "10", "-M", "5"], "-m 10: more than -M 5"), (["-t", "0"], "-t 0: must be from 1"),
        (["--json", "--folded"], "--json and --folded exclude"), (["0"], "<interval> 0: must be"),
        (["1", "2", "3"], "'3': unexpected argument"), (["-b", "0"], "-b 0: must be from 1"),
    ],
    "iolatency": [
        (["-p", "1", "--cgroup", "/"], "-p and --cgroup exclude each other"),
        (["--pidns", "1"], "--pidns needs -p"), (["--cgroup", "/tmp"], "--cgroup /tmp: not a"),
        (["-d", "5"], "-d 5: no block device '5'"), (["--by", "tid"], "--by tid: no such key"),
        (["-p", "1", "-c", "ls"], "-p and -c exclude each other"),
        (["-p", "x1"], "-p x1: not a process id"), (["-L", "1"], "-L: no such option"),
        (["0"], "<interval> 0: must be more than 0"), (["1", "-3"], "<count> -3: must be from 1"),
        (["-i", "*w*"], "-i *w*: can never match"), (["-i", "*R;*"], "bad pattern"),
        (["-b", "0"], "-b 0: must be from 1"), (["1", "2", "3"], "'3': unexpected argument"),
    ],
    "biosnoop": [
        (["-p", "1", "--cgroup", "/"], "-p and --cgroup exclude each other"),
        (["--pidns", "1"], "--pidns needs -p"), (["--cgroup", "/tmp"], "--cgroup /tmp: not a"),
        (["-d", "5"], "-d 5: no block device '5'"), (["0"], "<duration> 0: must be more than 0"),
        (["-m", "-1"], "-m -1: must be from 0"), (["-m", "x"], "-m x: not a number of milli"),
        (["-i", "*w*"], "-i *w*: can never match"), (["-b", "0"], "-b 0: must be from 1"),
        (["-p", "1", "-c", "ls"], "-p and -c exclude each other"),
        (["-p", "x1"], "-p x1: not a process id"), (["1", "2"], "'2': unexpected argument"),
        (["-D"], "-D: no such option"), (["-c", ""], "-c: empty command"),
    ],
    "pagefaults": [
        (["--by", "colour"], "--by colour: no such key"), (["-k", "up"], "-k up: no kind"),
        (["-k", "user,kernel"], "-k user,kernel: these kinds exclude each other"),
        (["1", "0"], "COUNT 0: must be from 1"), (["-t", "0"], "-t 0: must be from 1"),
        (["1", "2", "3"], "'3': unexpected argument"), (["-c", ""], "-c: empty command"),
    ],
    "funccount": [
        ([], "missing PATTERN"), (["-m", "-3", "f"], "-m -3: must be from 0"),
        (["a b"], "a b: not a function pattern"), (["-r", "a b"], "a b: not a regular expression"),
        (["vfs_read", "t:sched:x"], "count functions or tracepoints"),
        (["t:sched"], "t:sched: not a tracepoint pattern"),
        (["t:nosuch:*"], "t:nosuch:* matches no tracepoint"),
    ],
    "funclatency": [
        ([], "missing PATTERN"), (["a b"], "a b: not a function pattern"),
        (["-r", "a b"], "a b: not a regular expression"),
        (["-u", "-m", "f"], "-u and -m exclude each other"),
        (["--slower", "x", "f"], "--slower x: not a number of microseconds"),
        (["--slower", "-1", "f"], "--slower -1: must be from 0"),
        (["--slower", "5", "-i", "1", "f"], "--slower prints calls, not histograms"),
        (["--errors", "-m", "f"], "--errors prints calls, not histograms"),
        (["--probes", "x", "f"], "--probes x: not a whole number"),
        (["-i", "0", "f"], "-i 0: must be more than 0"),
    ],
    "funcgraph": [
        ([], "missing FUNCTION"), (["-m", "0", "f"], "-m 0: must be from 1"),
        (["-s", "-1", "f"], "-s -1: must be from 0"), (["--json", "--folded", "f"],
                                                            "--json and --folded exclude"),
        (["f:traceoff"], "f:traceoff: not a function pattern"),
        (["!f"], "!f: not a function pattern"),
        (["--tef", "/tmp", "f"], "cannot write /tmp: it is a directory"),
    ],
}


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("args,first", COMMON)
def test_common_mistakes(tool, args, first):
    usage_error(tool, NEED.get(tool, []) + args, first)


@pytest.mark.parametrize("args,first", TARGET_MISTAKES)
def test_the_same_mistake_gets_the_same_words(args, first):
    said = {}
    for tool in TARGETED:
        lines = usage_error(tool, NEED.get(tool, []) + args, first) \
            if "cannot run" not in first else _cannot_run(tool, args)
        said[tool] = lines[0].split(": ", 1)[1]
    assert len(set(said.values())) == 1, said


def _cannot_run(tool, args):
    p = run(tool, *NEED.get(tool, []) + args)
    assert p.returncode == 127 and p.stderr.startswith(tool + ": cannot run"), p.stderr
    return p.stderr.splitlines()


@pytest.mark.parametrize("tool,args,first", [(t, a, f) for t, cases in OWN.items()
                                             for a, f in cases])
def test_own_mistakes(tool, args, first):
    usage_error(tool, args, first)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
@pytest.mark.parametrize("tool", TOOLS)
def test_not_root(tool, nobody_python):
    py, env = nobody_python
    p = run(tool, *NEED.get(tool, []), user=65534, python=py, env=env)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "root" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("tool", TOOLS)
def test_a_closed_stdout_is_refused_before_anything(tool):
    """With fd 1 closed, the next file opened would take it: the tool must
    not run (it could print into a tracefs file or its journal)."""
    p = subprocess.run([sys.executable, os.path.join(REPO, "bin", tool)] + NEED.get(tool, []),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       timeout=60, preexec_fn=lambda: os.close(1))
    assert p.returncode == 1 and "standard output is closed" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_help_and_usage_mistakes_start_no_guardian(monkeypatch, capsys):
    """The guardian (a forked process) is for a run that may change the
    kernel's settings: the help and a usage mistake do not start one."""
    from ftracetools import cli
    started = []
    monkeypatch.setattr(cli.guardian, "start", lambda tool: started.append(tool) or True)
    monkeypatch.setattr(cli.signals, "install", lambda: None)
    doc = "Usage: t [-h] N\n\nOptions:\n  -h, --help  This help.\n"
    assert cli.run("t", doc, lambda a: 0, ["-h"]) == 0
    assert cli.run("t", doc, lambda a: 0, ["--bogus"]) == 2
    assert started == []
    assert cli.run("t", doc, lambda a: 0, ["3"]) == 0
    assert started == ["t"]
