"""What to trace: ``-p PID`` (every thread, and the threads and children
it makes), ``-L TID`` (one thread), ``-c COMMAND`` (run from its start),
``--cgroup PATH`` (the tasks of a cgroup v2 and its descendants),
``-C CPUS``; or everything. ``--pidns PID``: the PID of ``-p`` or ``-L``
is as seen inside the PID namespace of process PID. The same options,
words and rules in every tool.

A cgroup is followed through the PID filter: the kernel adds the
children its tasks fork (the fork options); ``follow()``, every tick of
the tracing loop, reads ``cgroup.threads`` of the subtree again and
hands the tasks that joined to the PID filter and to what the engines
keep (``on_join``), and takes out those that left it alive
(``on_leave``; the kernel's filter is refilled, unless it would be
empty). A task that joins is traced from the next tick on, one that
leaves up to the next; a cgroup removed while tracing ends the run
(exit 1, after the last report).

A command (``-c``) runs with the tool's stdin and stderr; its stdout is
the tool's, except with ``--json``, where it goes to stderr so that the
tool's stdout stays JSON. It is started stopped and let go once tracing
is live; one that cannot run is an error before any output (exit 127 not
found, 126 not executable). When tracing ends first (``-d``, a count, a
signal), the command is ended (SIGTERM, then SIGKILL after 2 s) and the
user told. The tool exits with the command's status when the command
failed on its own (as ``time`` and ``strace`` do).
"""

import os
import signal
from typing import Callable, Dict, List, Optional, Set, Tuple

from ftracetools.errors import ToolError, UsageError
from ftracetools.host import cgroups
from ftracetools.host import cpus as cpulib
from ftracetools.host import procs

__all__ = ["Targets"]

TARGET_OPTIONS = ("-p", "-L", "-c", "--cgroup")


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
        self.cgroup = args.get("--cgroup")
        self.cgroup_dir = cgroups.resolve(self.cgroup) if self.cgroup is not None else None
        self.known: Set[int] = set()     # threads of the cgroup handed on so far
        self.gone = False
        self._joiners: List[Callable[[List[int]], None]] = []
        self._leavers: List[Callable[[List[int]], None]] = []
        self.pidns: Optional[int] = None
        self.ns_level = 0
        self.ns_given = ""      # -p/-L as given with --pidns, for the banner
        if args.get("--pidns") is not None:
            self.pidns = procs.parse_pid(args["--pidns"], "--pidns")
            if self.pid is None and self.tid is None:
                raise UsageError("--pidns needs -p%s" % (" or -L" if "-L" in args else ""),
                                 "--pidns PID -p NSPID: NSPID as seen inside the PID "
                                 "namespace of process PID")
            self.ns_level = cgroups.ns_level(self.pidns)[1]
            self.ns_given = " (%s in the PID namespace of %d)" % (pid or tid, self.pidns)
            if self.pid is not None:
                self.pid = cgroups.host_pid(self.pid, self.pidns, "-p")
            if self.tid is not None:
                self.tid = cgroups.host_pid(self.tid, self.pidns, "-L", threads=True)
        if self.pid is not None:
            procs.threads(self.pid)  # exists now, or a clear error
        if self.tid is not None:
            procs.check_tid(self.tid)
        if self.cmdline is not None:
            procs.parse_command(self.cmdline)
        if self.cgroup_dir is not None and not self._cgroup_threads():
            self._empty()       # before anything touches tracefs

    def _empty(self) -> None:
        raise ToolError("--cgroup %s: no tasks in it: nothing to trace; start one in it "
                        "first" % self.cgroup_dir)

    @property
    def filtered(self) -> bool:
        return self.pid is not None or self.tid is not None or self.cmdline is not None \
            or self.cgroup_dir is not None

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
        if self.cgroup_dir is not None:
            found = self._cgroup_threads()
            if not found:
                self._empty()
            self.known.update(found)
            return sorted(found)
        return []

    def _cgroup_threads(self) -> Set[int]:
        found = cgroups.subtree_threads(self.cgroup_dir)
        if found is None:
            self.gone = True
            return set()
        return set(found)

    def on_join(self, add: Callable[[List[int]], None]) -> None:
        """``add(tids)`` is told of the threads that join the cgroup (or
        are forked in it) after ``tids()`` listed it."""
        if self.cgroup_dir is not None:
            self._joiners.append(add)

    def on_leave(self, drop: Callable[[List[int]], None]) -> None:
        """``drop(tids)`` is told of the threads that left the cgroup alive
        (moved elsewhere; those that ended keep their last events)."""
        if self.cgroup_dir is not None:
            self._leavers.append(drop)

    def follow(self) -> Tuple[List[int], List[int]]:
        """Read the cgroup's threads again (every tick of the loop), hand
        on those not seen before and those that left alive; returns both."""
        if self.cgroup_dir is None or self.gone:
            return [], []
        now = self._cgroup_threads()
        if self.gone:
            return [], []
        new = sorted(now - self.known)
        left = sorted(t for t in self.known - now if procs.alive(t))
        self.known = now
        for tids, tell in ((new, self._joiners), (left, self._leavers)):
            if tids:
                for f in tell:
                    f(tids)
        return new, left

    def ns_pid(self, pid: int) -> Optional[int]:
        """With --pidns: the task's PID inside that namespace (None if it
        has none there, or is gone)."""
        if self.pidns is None:
            return None
        chain = cgroups.nspid_of(pid)
        return chain[self.ns_level] if chain and len(chain) > self.ns_level else None

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
        if self.cgroup_dir is not None:
            self.on_join(lambda new: session.add_pids(pid_file, new))
            self.on_leave(lambda left: session.replace_pids(pid_file, sorted(self.known)))
            self.follow()   # the same, and what joined meanwhile

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
        if self.cgroup_dir is not None:
            self.gone = self.gone or not os.path.isdir(self.cgroup_dir)
            return not self.gone
        return True

    def end(self, warn: Callable[[str], None], signalled: bool = False) -> int:
        """Tracing is over: a command still running is ended, and the user
        told. Returns the exit status the tool should give: the command's
        own when it failed by itself, else 0. ``signalled``: the tool was
        ended by a signal, which a command in its process group had too
        (Ctrl-C at a terminal): its death by that signal is no failure."""
        c = self.command
        if self.gone:
            warn("--cgroup %s: the cgroup was removed while tracing: traced until then"
                 % self.cgroup_dir)
            return 1
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
            return "PID %d%s" % (self.pid, self.ns_given)
        if self.tid is not None:
            return "TID %d%s" % (self.tid, self.ns_given)
        if self.cmdline is not None:
            return "command %s" % self.cmdline
        if self.cgroup_dir is not None:
            return "cgroup %s" % self.cgroup_dir
        return ""
