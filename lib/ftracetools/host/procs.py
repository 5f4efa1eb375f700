"""Processes: PIDs to thread lists, names, liveness; tracing a command."""

import os
import shlex
import shutil
import signal
from typing import List, Optional

from ftracetools.errors import ToolError, UsageError


def parse_pid(text: str, what: str = "PID") -> int:
    t = (text or "").strip()
    if not t.isdigit() or len(t) > 10 or int(t) <= 0 or int(t) > 2 ** 22:
        raise UsageError("bad %s %r: expected a positive number" % (what, text))
    return int(t)


def state(pid: int) -> Optional[str]:
    """The one-letter state from /proc/PID/stat, None if gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2:][:1].decode()


def alive(pid: int) -> bool:
    s = state(pid)
    return s is not None and s not in ("Z", "X")


def threads(pid: int) -> List[int]:
    """All thread ids of a live process (refusing zombies and the unknown)."""
    if not alive(pid):
        raise ToolError("no such process: %d" % pid)
    try:
        tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid))
    except OSError:
        raise ToolError("no such process: %d" % pid) from None
    return tids


def check_tid(tid: int) -> int:
    """A live thread id (``-L``); /proc/TID works for any thread."""
    if not alive(tid):
        raise ToolError("no such thread: %d" % tid)
    return tid


def comm(pid: int) -> str:
    try:
        with open("/proc/%d/comm" % pid, "rb") as f:
            return f.read().rstrip(b"\n").decode("utf-8", "surrogateescape")
    except OSError:
        return "?"


def tgid(tid: int) -> Optional[int]:
    try:
        with open("/proc/%d/status" % tid) as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def parse_command(cmdline: str) -> List[str]:
    """Split a command line like a shell would (no shell ever runs it) and
    check that its program exists: before anything touches tracefs."""
    try:
        argv = shlex.split(cmdline)
    except ValueError as e:
        raise UsageError("bad command %r: %s" % (cmdline, e)) from None
    if not argv:
        raise UsageError("empty command")
    if shutil.which(argv[0]) is None:
        raise UsageError("command not found: %s" % argv[0])
    return argv


class Command:
    """A command started stopped, so tracing can be armed before it runs.

    ``Command("ls -l /")`` forks a child that waits on a pipe; the caller
    sets its PID filters, then ``go()`` lets it exec. The command line is
    split like a shell would (``shlex``) but never run by a shell.
    """

    def __init__(self, cmdline: str) -> None:
        argv = parse_command(cmdline)
        path = shutil.which(argv[0]) or argv[0]
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: wait for go, then exec; never return
            try:
                os.close(w)
                for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM,
                            signal.SIGHUP, signal.SIGQUIT):
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, [])
                if os.read(r, 1) == b"g":
                    os.close(r)
                    os.execv(path, argv)
            except BaseException as e:
                try:
                    os.write(2, ("cannot run %s: %s\n" % (argv[0], e)).encode())
                except OSError:
                    pass
            os._exit(127)
        os.close(r)
        self._w = w
        self.pid = pid
        self.status: Optional[int] = None

    def go(self) -> None:
        if self._w >= 0:
            os.write(self._w, b"g")
            os.close(self._w)
            self._w = -1

    def done(self) -> bool:
        """True once the command has exited (and been reaped)."""
        if self.status is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st) \
                    if hasattr(os, "waitstatus_to_exitcode") else st
        return self.status is not None

    def end(self) -> None:
        """Tracing ended: a command never let go is reaped; a running one
        goes on (as it would without the tool)."""
        if self._w >= 0:
            os.close(self._w)  # EOF: the child exits without exec
            self._w = -1
            os.waitpid(self.pid, 0)
            self.status = 127
