"""What every tool's ``main`` shares: parsing, errors, signals, targets,
the banner and the tracing loop.

A tool is ``def main(argv=None): return cli.run(TOOL, __doc__, body, argv)``
where ``body(args)`` does the tracing. ``run`` turns the exceptions a user
can cause into one line and an exit status: 2 with the usage for bad input,
1 for runtime errors, never a traceback.
"""

import os
import signal
import sys
import time
from typing import Callable, Dict, List, Optional, Set

from ftracetools.host import cpus as cpulib
from ftracetools.host import procs
from ftracetools.errors import Interrupted, Status, ToolError, UsageError
from ftracetools.kernel import signals


def _usage(doc: str) -> str:
    u = doc.split("Usage:", 1)[-1]
    u = u.split("\n\n", 1)[0]
    return "Usage:" + u


def run(tool: str, doc: str, body: Callable[[Dict], int],
        argv: Optional[List[str]] = None) -> int:
    try:
        from docopt import DocoptExit, docopt
    except ImportError:
        sys.stderr.write("%s: the docopt-ng module is missing: python3 -m pip "
                         "install docopt-ng\n" % tool)
        return 1
    signals.install()
    try:
        try:
            args = docopt(doc, argv=sys.argv[1:] if argv is None else argv,
                          default_help=True, version=None)
        except DocoptExit:
            sys.stderr.write("%s: bad usage\n%s\n" % (tool, _usage(doc)))
            return 2
        except SystemExit as e:  # -h / --help printed the help
            return 0 if not e.code else 2
        rc = body(args) or 0
        if rc == 0 and Status.restore_failed:
            rc = 1
        sig = signals.pending()
        if sig is not None and sig not in (signal.SIGINT, signal.SIGTERM):
            return 128 + sig
        return rc
    except UsageError as e:
        sys.stderr.write("%s: %s\n%s\n" % (tool, e, _usage(doc)))
        return 2
    except ToolError as e:
        sys.stderr.write("%s: %s\n" % (tool, e))
        return 1
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    except Interrupted as e:
        if e.signum == signal.SIGPIPE:
            _quiet_stdout()
        return 128 + e.signum
    except KeyboardInterrupt:
        return 130


def _quiet_stdout() -> None:
    # stdout is a closed pipe: flushing at exit would print an error.
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except OSError:
        pass


def banner(what: str, ending: str = "Ctrl-C to end.") -> None:
    """"Tracing ... Ctrl-C to end." on stderr, once tracing is live."""
    sys.stderr.write("Tracing %s. %s\n" % (what, ending))
    sys.stderr.flush()


def preload(module: str) -> None:
    """Import ``module`` in a background thread while the tool waits for
    its first round (numpy takes 70 to 140 ms to import here); the
    round's own import then finds it loaded, or waits for it."""
    import importlib
    import threading

    def load():
        try:
            importlib.import_module(module)
        except Exception:   # the round's own import reports it
            pass
    threading.Thread(target=load, name="preload", daemon=True).start()


def warn(tool: str, msg: str) -> None:
    sys.stderr.write("%s: %s\n" % (tool, msg))
    sys.stderr.flush()


# -- arguments ---------------------------------------------------------------

def number(text: Optional[str], what: str, minimum: float = 0,
           integer: bool = False, maximum: float = 1e9) -> Optional[float]:
    """A number option (``-d 5``, ``-t 10``) or None when absent."""
    if text is None:
        return None
    t = str(text).strip()
    try:
        v = int(t) if integer else float(t)
    except ValueError:
        raise UsageError("bad %s %r: expected a %snumber" % (
            what, text, "whole " if integer else "")) from None
    if not (v == v) or v < minimum or v > maximum or (not integer and v in (float("inf"),)):
        raise UsageError("bad %s %r: must be between %g and %g" % (what, text, minimum, maximum))
    if minimum > 0 and v < minimum:
        raise UsageError("bad %s %r: must be at least %g" % (what, text, minimum))
    return v


def positive(text: Optional[str], what: str, integer: bool = False) -> Optional[float]:
    v = number(text, what, 0, integer)
    if v is not None and v <= 0:
        raise UsageError("bad %s %r: must be greater than 0" % (what, text))
    return v


class Targets:
    """What to trace: ``-p PID`` (all threads, and new ones), ``-L TID``,
    ``-c COMMAND`` (from its start), ``-C CPUS``; or everything."""

    def __init__(self, args: Dict) -> None:
        pid, tid, cmd, cpus = (args.get("-p"), args.get("-L"),
                               args.get("-c"), args.get("-C"))
        if sum(x is not None for x in (pid, tid, cmd)) > 1:
            raise UsageError("-p, -L and -c exclude each other")
        self.pid = procs.parse_pid(pid) if pid is not None else None
        self.tid = procs.parse_pid(tid, "TID") if tid is not None else None
        self.cpus: Optional[Set[int]] = cpulib.parse_cpulist(cpus) if cpus is not None else None
        self.cmdline = cmd
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
                self.command = procs.Command(self.cmdline)
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
        """Tracing is live: let the command run."""
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

    def end(self) -> None:
        if self.command is not None:
            self.command.end()

    def describe(self) -> str:
        if self.pid is not None:
            return "PID %d" % self.pid
        if self.tid is not None:
            return "TID %d" % self.tid
        if self.cmdline is not None:
            return "command %s" % self.cmdline
        return ""


# -- the loop ----------------------------------------------------------------

def trace_loop(drain: Callable[[], None], *,
               wait: Optional[Callable[[float], object]] = None,
               duration: Optional[float] = None,
               interval: Optional[float] = None,
               count: Optional[int] = None,
               on_interval: Optional[Callable[[], None]] = None,
               alive: Optional[Callable[[], bool]] = None,
               tick: float = 0.1) -> str:
    """Read until the end; return why: duration, count, exited or signal.

    ``drain()`` reads what the kernel has; it runs at least every ``tick``
    seconds. ``on_interval()`` runs every ``interval`` seconds, ``count``
    times at most. SIGINT and SIGTERM end the loop normally (the tool then
    prints its last summary); other end signals propagate.
    """
    start = time.monotonic()
    next_iv = start + interval if interval else None
    end = start + duration if duration else None
    n = 0
    try:
        while True:
            signals.check()
            now = time.monotonic()
            t = tick
            for d in (next_iv, end):
                if d is not None:
                    t = min(t, max(0.0, d - now))
            if wait is not None:
                wait(t)
            else:
                signals.sleep(t)
            drain()
            now = time.monotonic()
            if next_iv is not None and now >= next_iv:
                if on_interval:
                    on_interval()
                n += 1
                next_iv += interval
                if count and n >= count:
                    return "count"
            if end is not None and now >= end:
                return "duration"
            if alive is not None and not alive():
                drain()
                return "exited"
            signals.check()
    except Interrupted as e:
        if e.signum in (signal.SIGINT, signal.SIGTERM):
            return "signal"
        raise
