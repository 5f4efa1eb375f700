"""Running the tools as a user would, from tests: subprocesses of bin/TOOL.

``start()`` returns once the tool printed its "Tracing ..." banner (the
moment tracing is live); ``stop()`` sends a signal and collects the output.
Time limits scale with FTT_TIME_SCALE (set in the slow QEMU guests).
"""

import os
import signal
import subprocess
import sys
import threading
from typing import List

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# The tests' own scripts (workloads run as ``python test_X.py MODE``) import
# the library too, without pytest's conftest: nothing is installed.
if os.path.join(REPO, "lib") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "lib"))
SCALE = float(os.environ.get("FTT_TIME_SCALE", "1"))
# Limits only (how long to wait for a tool to start or end, never a sleep):
# under QEMU's software emulation (the VM tier sets FTT_LIMIT_SCALE)
# turning function tracing on or off re-patches every kernel function and
# takes seconds where real hardware needs milliseconds ("ends within 1 s
# of a signal" becomes 30 s there).
LIMIT_SCALE = float(os.environ.get("FTT_LIMIT_SCALE", "0")) or SCALE
# Set by the VM tier: the kernel runs under QEMU's software emulation.
EMULATED = os.environ.get("FTT_EMULATED") == "1"


def default_signals() -> None:
    """SIGINT and SIGQUIT back to their defaults where this process
    inherited them ignored. Started in the background by a non-interactive
    shell (``.ci/run &``, ``tests/bench/run &``), a run ignores them, and so
    would every tool and peer it starts: a shell script (perf-tools) cannot
    trap a signal ignored on entry and never ends on Ctrl-C (iolatency-perf
    hung 60 s in such a test run and, killed, left its lock and events
    behind; iosnoop-perf hung a benchmark). Tests and benchmarks send
    signals as a terminal would."""
    for sig, handler in ((signal.SIGINT, signal.default_int_handler),
                         (signal.SIGQUIT, signal.SIG_DFL)):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, handler)


def tool_path(tool: str) -> str:
    return os.path.join(REPO, "bin", tool)


def argv(tool: str, *args: str) -> List[str]:
    return [sys.executable, tool_path(tool)] + [str(a) for a in args]


def run(tool: str, *args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """Run a tool to its end; returns the CompletedProcess (text mode)."""
    return subprocess.run(argv(tool, *args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True,
                          timeout=timeout * LIMIT_SCALE, **kw)


class Running:
    def __init__(self, tool: str, args, env=None, stdout=subprocess.PIPE) -> None:
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(argv(tool, *args), stdout=stdout,
                                     stderr=subprocess.PIPE, text=True, env=e)
        self.err: List[str] = []
        self.out: List[str] = []
        self.live = threading.Event()
        self._t_err = threading.Thread(target=self._read_err, daemon=True)
        self._t_err.start()
        self._t_out = None
        if stdout == subprocess.PIPE:
            self._t_out = threading.Thread(target=self._read_out, daemon=True)
            self._t_out.start()

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self.err.append(line)
            if line.startswith("Tracing"):
                self.live.set()
        self.live.set()

    def _read_out(self) -> None:
        for line in self.proc.stdout:
            self.out.append(line)

    def wait_live(self, timeout: float = 30) -> None:
        if not self.live.wait(timeout * LIMIT_SCALE) or self.proc.poll() is not None \
                and not any(l.startswith("Tracing") for l in self.err):
            if self.proc.poll() is None:  # never leave it running
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(10 * LIMIT_SCALE)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            raise AssertionError("tool did not start tracing: rc=%s stderr=%s"
                                 % (self.proc.poll(), "".join(self.err)))

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30):
        """Signal the tool, wait for it; returns (rc, stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 60):
        try:
            rc = self.proc.wait(timeout * LIMIT_SCALE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("tool did not end in time; stderr=%s" % "".join(self.err))
        self._t_err.join(5)
        if self._t_out:
            self._t_out.join(5)
        return rc, "".join(self.out), "".join(self.err)


def start(tool: str, *args: str, env=None, timeout: float = 30, stdout=subprocess.PIPE) -> Running:
    """Start a tool and return once tracing is live."""
    r = Running(tool, args, env=env, stdout=stdout)
    r.wait_live(timeout)
    return r


def rss_kb(pid: int) -> int:
    """A process's resident memory (VmRSS), in kB; 0 once it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
