"""The tracing loop every tool runs, from the banner to the last report.

``trace(session, source, targets, what=..., report=..., duration=...,
interval=..., count=...)``: say "Tracing WHAT. Ctrl-C to end." once
tracing is live, let the command of ``-c`` run, drain the source until the
duration, the count of intervals, the traced process's end or an end
signal, calling ``report(False)`` every interval; then stop tracing, take
in the rest, call ``report(True)`` (unless the count of intervals was
reached), warn once about lost events, and end the command. Returns the
exit status (the command's, when it failed by itself). With ``metrics``
(a ``report.metrics.Metrics``), its textfile is written after each report.
"""

import gc
import signal
import sys
import time
from contextlib import contextmanager
from typing import Callable, Optional

from ftracetools.errors import Interrupted
from ftracetools.kernel import signals

__all__ = ["trace_loop", "trace", "banner", "warn"]


def banner(what: str, ending: str = "Ctrl-C to end.") -> None:
    """"Tracing ... Ctrl-C to end." on stderr, once tracing is live."""
    sys.stderr.write("Tracing %s. %s\n" % (what, ending))
    sys.stderr.flush()


def warn(tool: str, msg: str) -> None:
    sys.stderr.write("%s: %s\n" % (tool, msg))
    sys.stderr.flush()


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


@contextmanager
def quiet_collector():
    """Python's cycle collector, seldom within: what is built while
    tracing is records (tuples of numbers and views) and the tools' own
    tables, without cycles, yet a young collection every 700 allocations
    scans them all: 15 to 22 % of funcgraph's CPU on records replayed
    from the guests. What was built before is frozen out of every later
    collection; the collector still runs, every 50,000 allocations, and
    is put back as it was at the end."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50000, 20, 100)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*old)


@quiet_collector()
def trace(session, source, targets, *, tool: str, what: str,
          report: Optional[Callable[[bool], None]] = None,
          header: Optional[str] = None,
          duration: Optional[float] = None, interval: Optional[float] = None,
          count: Optional[int] = None, metrics=None) -> int:
    """One run, banner to last report; see the module docstring."""
    say = lambda m: warn(tool, m)    # noqa: E731
    if metrics is not None and report is not None:
        shown = report

        def report(final: bool) -> None:
            with metrics.batch():
                shown(final)
            metrics.publish()
    where = targets.describe()
    source.live()
    banner(what + (" of " + where if where else "") +
           (" on CPU %s" % _cpus(targets.cpus) if targets.cpus is not None else ""))
    if header:
        sys.stdout.write(header + "\n")
        sys.stdout.flush()
    targets.go()
    why = "signal"

    def drain() -> None:
        source.drain()
        targets.follow()        # a cgroup's tasks that joined or left it, from now on
        sys.stdout.flush()      # what a streaming source printed

    def interval_report() -> None:
        report(False)
        sys.stdout.flush()      # now, not at the next round
    try:
        why = trace_loop(drain, wait=source.wait, duration=duration,
                         interval=interval, count=count,
                         on_interval=interval_report if report and interval else None,
                         alive=targets.alive if targets.filtered else None,
                         tick=source.tick)
    except BaseException:
        targets.end(lambda m: None, True)
        raise
    # SIGINT or SIGTERM after the loop ended (Ctrl-C reaches a command of
    # -c too, which may end first): the end is under way, not cut short
    signalled = why == "signal" or signals.pending() in (signal.SIGINT, signal.SIGTERM)
    signals.forget(signal.SIGINT, signal.SIGTERM)
    session.stop()
    source.finish(why)
    if report and (not interval or why != "count"):
        report(True)
    sys.stdout.flush()
    lost, unread = source.lost(), source.unread()
    if lost:
        say("warning: %d events lost in all: results are incomplete; %s"
            % (lost, source.lost_hint))
    if unread:
        say("warning: %d events left unread: ended by a signal before they "
            "were read" % unread)
    return targets.end(say, signalled)


def _cpus(cpus) -> str:
    from ftracetools.host.cpus import format_cpulist
    return format_cpulist(cpus)
