"""The command of -c, the same in every tool (cli.targets): a command that
cannot run is an error before any output (126/127), a failing command's
status is the tool's, a command still running when tracing ends is ended
and the user told, its output never mixes into --json, and Ctrl-C at a
terminal (SIGINT to the whole process group) still gives the last report,
every time.

The tools that run on every kernel carry it: pagefaults, schedtrace -s,
offcputime, funccount on a tracepoint (function tracing may be forbidden).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import tooling

# each tool's arguments before -c: a mode that prints one report at the end
TOOLS = {
    "pagefaults": [],
    "schedtrace": ["-s"],
    "offcputime": [],
    "funccount": ["t:syscalls:sys_enter_getppid"],
}
PARAMS = sorted(TOOLS)


def run(tool, *args, **kw):
    return tooling.run(tool, *(TOOLS[tool] + list(args)), **kw)


@pytest.mark.parametrize("tool", PARAMS)
@pytest.mark.parametrize("cmd,status,why", [
    ("TMP/data", 126, "permission denied"),
    ("TMP", 126, "is a directory"),
    ("/nonexistent/prog", 127, "command not found"),
    ("no-such-command-anywhere", 127, "command not found"),
])
def test_a_command_that_cannot_run(tool, cmd, status, why, tmp_path):
    (tmp_path / "data").write_text("not a program\n")     # mode 644
    cmd = cmd.replace("TMP", str(tmp_path))
    p = run(tool, "-c", cmd)
    assert p.returncode == status, p.stderr
    assert p.stderr == "%s: cannot run %s: %s\n" % (tool, cmd, why)
    assert p.stdout == ""


@pytest.mark.parametrize("tool", PARAMS)
def test_a_command_whose_exec_fails_gives_no_report(tool, tmp_path):
    """Found and executable, but its interpreter is missing: the exec fails
    once tracing is live: exit 127 and no summary of the tool's own fork."""
    script = tmp_path / "script"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    p = run(tool, "-c", str(script))
    assert p.returncode == 127, p.stderr
    assert p.stderr.splitlines()[-1] == "%s: cannot run %s: No such file or directory" % (
        tool, script)
    assert p.stdout == "", p.stdout


@pytest.mark.parametrize("tool", PARAMS)
@pytest.mark.parametrize("cmd,status", [("false", 1), ("sh -c 'exit 3'", 3), ("true", 0)])
def test_the_command_status_is_the_tools(tool, cmd, status):
    p = run(tool, "--json", "-c", cmd)
    assert p.returncode == status, p.stderr
    json.loads(p.stdout)        # the report is there all the same


@pytest.mark.parametrize("tool", PARAMS)
def test_a_command_still_running_is_ended_and_said(tool):
    cmd = "sleep 35.%d" % os.getpid()        # a name no other process has
    t0 = time.monotonic()
    p = run(tool, "-d", "1", "-c", cmd)
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    assert "tracing ended before sleep (pid" in p.stderr and "ended it" in p.stderr
    assert took < 10 * tooling.LIMIT_SCALE
    left = subprocess.run(["pgrep", "-f", cmd], stdout=subprocess.PIPE, text=True).stdout
    assert left == "", "the command was left running: " + left


@pytest.mark.parametrize("tool", PARAMS)
def test_the_commands_output_stays_out_of_json(tool):
    code = "import os; print('not json'); os.getppid()"
    p = run(tool, "--json", "-c", "%s -c %r" % (sys.executable, code))
    assert p.returncode == 0, p.stderr
    for line in p.stdout.splitlines():
        json.loads(line)
    assert "not json" in p.stderr


@pytest.mark.parametrize("tool", PARAMS)
def test_ctrl_c_at_a_terminal_gives_the_last_report_every_time(tool):
    """SIGINT to the tool and its command at once (a terminal's Ctrl-C), five
    times: each run prints its report and exits 0."""
    for _ in range(5):
        p = subprocess.Popen(tooling.argv(tool, *(TOOLS[tool] + ["--json", "-c", "sleep 30"])),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        try:
            err = p.stderr.readline()
            assert err.startswith("Tracing"), err + p.stderr.read()
            time.sleep(0.2)
            os.killpg(p.pid, signal.SIGINT)
            out, rest = p.communicate(timeout=30 * tooling.LIMIT_SCALE)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        assert p.returncode == 0, err + rest
        assert "Traceback" not in rest
        json.loads(out.splitlines()[-1])
