"""Processes: PIDs to thread lists, names, liveness; tracing a command."""

import errno
import os
import shlex
import shutil
import signal
import time
from typing import Callable, Dict, List, Optional

from ftracetools.errors import CommandError, ToolError, UsageError
from ftracetools.host import cpus

__all__ = ["PID_MAX", "PF_KTHREAD", "parse_pid", "state", "alive", "threads", "check_tid",
           "comm", "tgid", "kthread", "parse_command", "Command", "Comms"]


PID_MAX = 1 << 22     # the kernel's limit (pid_max at most)
PF_KTHREAD = 0x00200000     # include/linux/sched.h: the task is a kernel thread


def parse_pid(text: str, option: str = "-p") -> int:
    """A process or thread id given with ``option``."""
    t = (text or "").strip()
    if not t.isdigit() or len(t) > 10 or not 0 < int(t) <= PID_MAX:
        raise UsageError("%s %s: not a process id (a whole number from 1 to %d)"
                         % (option, text, PID_MAX))
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
        with open("/proc/%d/status" % tid, errors="surrogateescape") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def kthread(pid: int, name: str = "") -> bool:
    """Whether ``pid`` is a kernel thread: PF_KTHREAD in /proc/PID/stat's
    flags; for a task gone, guessed from its name (``kworker/*`` and the
    like, or pid 0: interrupt context or the idle task)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
        return bool(int(data[data.rfind(b")") + 2:].split()[6]) & PF_KTHREAD)
    except (OSError, ValueError, IndexError):
        return pid == 0 or name.startswith(("kworker/", "kswapd", "jbd2/", "kthreadd"))


def parse_command(cmdline: str) -> List[str]:
    """Split a command line like a shell would (no shell ever runs it) and
    check that its program can run: before anything touches tracefs. A
    program not found is exit 127, one that cannot be executed 126, as
    shells say."""
    try:
        argv = shlex.split(cmdline)
    except ValueError as e:
        raise UsageError("-c %s: %s" % (cmdline, e)) from None
    if not argv:
        raise UsageError("-c: empty command")
    found = shutil.which(argv[0])
    if found is None:
        if "/" in argv[0] and os.path.exists(argv[0]):
            why = "is a directory" if os.path.isdir(argv[0]) else "permission denied"
            raise CommandError("cannot run %s: %s" % (argv[0], why), 126)
        raise CommandError("cannot run %s: command not found" % argv[0], 127)
    return argv


class Command:
    """A command started stopped, so tracing can be armed before it runs.

    ``Command("ls -l /")`` forks a child that waits on a pipe; the caller
    sets its PID filters, then ``go()`` lets it exec, and learns whether
    the exec worked (a second pipe, closed by a successful exec, carries
    its errno otherwise). The command line is split like a shell would
    (``shlex``) but never run by a shell. ``stdout_to_stderr``: the
    command's output goes to our stderr (``--json`` keeps stdout ours).
    """

    def __init__(self, cmdline: str, stdout_to_stderr: bool = False) -> None:
        argv = parse_command(cmdline)
        self.argv = argv
        path = shutil.which(argv[0]) or argv[0]
        r, w = os.pipe()
        er, ew = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # the child: wait for go, then exec; never return
            code = 127
            try:
                os.close(w)
                os.close(er)
                for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM,
                            signal.SIGHUP, signal.SIGQUIT):
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, [])
                if stdout_to_stderr:
                    os.dup2(2, 1)
                if os.read(r, 1) == b"g":
                    os.close(r)
                    cpus.unguard_env()   # the user's environment, not ours
                    os.execv(path, argv)
            except OSError as e:
                code = 126 if e.errno in (errno.EACCES, errno.ENOEXEC, errno.EISDIR) else 127
                try:
                    os.write(ew, str(e.errno or 0).encode())
                except OSError:
                    pass
            except BaseException:
                pass
            os._exit(code)
        os.close(r)
        os.close(ew)
        self._w, self._err = w, er
        self.pid = pid
        self.status: Optional[int] = None
        self.ended_by_us = False

    def go(self) -> None:
        """Let the command run; a CommandError if it could not."""
        if self._w < 0:
            return
        os.write(self._w, b"g")
        os.close(self._w)
        self._w = -1
        try:
            got = os.read(self._err, 32)   # EOF: the exec worked
        finally:
            os.close(self._err)
            self._err = -1
        if got:
            _, st = os.waitpid(self.pid, 0)
            self.status = os.waitstatus_to_exitcode(st)
            raise CommandError("cannot run %s: %s" % (self.argv[0], os.strerror(int(got))),
                               self.status)

    def done(self) -> bool:
        """True once the command has exited (and been reaped)."""
        if self.status is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st)
        return self.status is not None

    def end(self, grace: float = 2.0) -> bool:
        """Tracing ended: a command never let go is reaped; one still
        running is sent SIGTERM (SIGKILL after ``grace`` seconds) and
        reaped. True if it had to be ended."""
        if self._w >= 0:
            os.close(self._w)  # EOF: the child exits without exec
            self._w = -1
            os.close(self._err)
            self._err = -1
            os.waitpid(self.pid, 0)
            self.status = 127
            return False
        if self.done():
            return False
        self.ended_by_us = True
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if self.done():
                    return True
                time.sleep(0.01)
        _, st = os.waitpid(self.pid, 0)
        self.status = os.waitstatus_to_exitcode(st)
        return True


class Comms:
    """Task names by PID, kept once seen: /proc while the task lives, else
    ``gone()`` (PID -> name; a tool passes the kernel's saved_cmdlines),
    asked again for each PID not found before."""

    def __init__(self, gone: Callable[[], Dict[int, str]]) -> None:
        self.gone = gone
        self.known: Dict[int, str] = {}

    def __call__(self, pid: int) -> str:
        c = self.known.get(pid)
        if c is None:
            c = comm(pid) if pid else "<idle>"
            if c == "?":
                c = self.gone().get(pid, "<...>")
            self.known[pid] = c
        return c
