"""What to trace: ``-p PID`` (every thread, and the threads and children
it makes), ``-L TID`` (one thread), ``-c COMMAND`` (run from its start),
``-C CPUS``; or everything. The same options, words and rules in every
tool.

A command (``-c``) runs with the tool's stdin and stderr; its stdout is
the tool's, except with ``--json``, where it goes to stderr so that the
tool's stdout stays JSON. It is started stopped and let go once tracing
is live; one that cannot run is an error before any output (exit 127 not
found, 126 not executable). When tracing ends first (``-d``, a count, a
signal), the command is ended (SIGTERM, then SIGKILL after 2 s) and the
user told. The tool exits with the command's status when the command
failed on its own (as ``time`` and ``strace`` do).
"""

import signal
from typing import Callable, Dict, List, Optional, Set

from ftracetools.errors import UsageError
from ftracetools.host import cpus as cpulib
from ftracetools.host import procs

__all__ = ["Targets"]

TARGET_OPTIONS = ("-p", "-L", "-c")


class Targets:
    """The targets of one run; see the module docstring."""

    def __init__(self, args: Dict, json: bool = False) -> None:
        given = [o for o in TARGET_OPTIONS if args.get(o) is not None]
        if len(given) > 1:
            raise UsageError("%s and %s exclude each other" % tuple(given[:2]),
                             "give one of %s" % ", ".join(TARGET_OPTIONS))
        pid, tid, cmd, cpus = (args.get("-p"), args.get("-L"),
                               args.get("-c"), args.get("-C"))
        self.pid = procs.parse_pid(pid, "-p") if pid is not None else None
        self.tid = procs.parse_pid(tid, "-L") if tid is not None else None
        self.cpus: Optional[Set[int]] = cpulib.parse_cpulist(cpus) if cpus is not None else None
        self.cmdline = cmd
        self.json = json
        self.command: Optional[procs.Command] = None
        if self.pid is not None:
            procs.threads(self.pid)  # exists now, or a clear error
        if self.tid is not None:
            procs.check_tid(self.tid)
        if self.cmdline is not None:
            procs.parse_command(self.cmdline)

    @property
    def filtered(self) -> bool:
        return self.pid is not None or self.tid is not None or self.cmdline is not None

    def tids(self) -> List[int]:
        """The thread ids to put in a PID filter (starts the command)."""
        if self.pid is not None:
            return procs.threads(self.pid)
        if self.tid is not None:
            return [self.tid]
        if self.cmdline is not None:
            if self.command is None:
                self.command = procs.Command(self.cmdline, stdout_to_stderr=self.json)
            return [self.command.pid]
        return []

    def arm(self, session, pid_file: str = "set_event_pid",
            fork_option: Optional[str] = "event-fork") -> None:
        """Set the session's PID filter and CPU mask from the targets.

        With ``-p`` and ``-c`` the fork option makes the kernel add new
        threads and children to the filter; ``-L`` is one thread only.
        """
        if self.cpus is not None:
            like = session.read("tracing_cpumask")
            session.set("tracing_cpumask", cpulib.to_cpumask(self.cpus, like))
        if not self.filtered:
            return
        tids = self.tids()
        if fork_option and self.tid is None:
            session.set_option(fork_option, True)
        session.set_pids(pid_file, tids)
        if self.pid is not None:
            # Threads made between listing and arming the fork option.
            extra = sorted(set(procs.threads(self.pid)) - set(tids)) if procs.alive(self.pid) else []
            if extra:
                session.add_pids(pid_file, extra)

    def go(self) -> None:
        """Tracing is live: let the command run (a CommandError if it cannot)."""
        if self.command is not None:
            self.command.go()

    def alive(self) -> bool:
        """False once the traced process, thread or command has ended."""
        if self.command is not None:
            return not self.command.done()
        if self.pid is not None:
            return procs.alive(self.pid)
        if self.tid is not None:
            return procs.alive(self.tid)
        return True

    def end(self, warn: Callable[[str], None], signalled: bool = False) -> int:
        """Tracing is over: a command still running is ended, and the user
        told. Returns the exit status the tool should give: the command's
        own when it failed by itself, else 0. ``signalled``: the tool was
        ended by a signal, which a command in its process group had too
        (Ctrl-C at a terminal): its death by that signal is no failure."""
        c = self.command
        if c is None:
            return 0
        if c.end():
            warn("tracing ended before %s (pid %d): ended it" % (c.argv[0], c.pid))
            return 0
        st = c.status or 0
        if st < 0 and signalled and -st in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            return 0
        return 128 - st if st < 0 else st

    def describe(self) -> str:
        if self.pid is not None:
            return "PID %d" % self.pid
        if self.tid is not None:
            return "TID %d" % self.tid
        if self.cmdline is not None:
            return "command %s" % self.cmdline
        return ""
