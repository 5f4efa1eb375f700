"""What every tool does with its command line, before it touches tracefs:
help, bad usage (exit 2, usage, no traceback), not root (one line, exit 1).
"""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = sorted(t for t in os.listdir(os.path.join(REPO, "bin")) if not t.startswith("."))


def run(tool, *args, user=None, python=sys.executable, env=None):
    pre = None
    if user is not None:
        def pre():
            os.setgid(user)
            os.setuid(user)
    return subprocess.run([python, os.path.join(REPO, "bin", tool)] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=60, preexec_fn=pre, cwd="/", env=env)


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


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("args", [["--no-such-option"], ["-p"], ["-p", "x1"], ["-C", "a-b"],
                                  ["-p", "1", "-L", "1"], ["-p", "-5"]])
def test_bad_usage(tool, args):
    p = run(tool, *args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.startswith(tool + ": ") and "Usage:" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
@pytest.mark.parametrize("tool", TOOLS)
def test_not_root(tool, nobody_python):
    args = {"funccount": ["vfs_read"], "funcgraph": ["vfs_read"]}.get(tool, [])
    py, env = nobody_python
    p = run(tool, *args, user=65534, python=py, env=env)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "root" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr
