"""`pip install .` puts the tools on PATH and the man pages where man finds
them, in a fresh virtual environment, from a copy of the tracked files."""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = sorted(t for t in os.listdir(os.path.join(REPO, "bin")) if not t.startswith("."))


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    d = tmp_path_factory.mktemp("pkg")
    src = d / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           stdout=subprocess.PIPE, text=True, check=True).stdout.split()
    for f in files:
        if os.path.exists(os.path.join(REPO, f)):
            os.makedirs(str(src / os.path.dirname(f)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, f), str(src / f))
    env = d / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    p = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", str(src)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert p.returncode == 0, p.stdout
    return env


@pytest.mark.parametrize("tool", TOOLS)
def test_installed_tool_runs(venv, tool):
    path = dict(os.environ, PATH="%s:%s" % (venv / "bin", os.environ["PATH"]))
    p = subprocess.run([tool, "-h"], env=path, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, cwd="/")
    assert p.returncode == 0 and "Usage:" in p.stdout, p.stderr
    assert shutil.which(tool, path=path["PATH"]) == str(venv / "bin" / tool)


@pytest.mark.skipif(shutil.which("man") is None, reason="man-db is not installed")
@pytest.mark.parametrize("tool", TOOLS)
def test_man_finds_the_installed_page(venv, tool):
    # man-db maps each PATH directory DIR/bin to DIR/share/man.
    env = {k: v for k, v in os.environ.items() if k != "MANPATH"}
    env["PATH"] = "%s:%s" % (venv / "bin", os.environ["PATH"])
    p = subprocess.run(["man", "-w", tool], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    assert p.stdout.strip() == str(venv / "share" / "man" / "man8" / (tool + ".8")), p.stderr
