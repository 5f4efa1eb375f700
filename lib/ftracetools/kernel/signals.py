"""End signals, turned into an exception only at safe points.

Python runs a signal handler between any two bytecodes, including the
first bytecode of a ``__exit__`` that is about to restore the kernel's
settings: a handler that raised there would skip the cleanup. So the
handler only records the signal, and ``check()`` raises ``Interrupted``
where the library knows it is safe: between set-up steps and on every turn
of the tracing loop (which never blocks longer than a tick). Cleanup never
calls ``check()``, so no signal, first or second, can cut it short.

A handler that only records does not end a wait: Python resumes a
``sleep`` or ``poll`` that a signal interrupts. So the kernel also writes
each signal to a pipe (``signal.set_wakeup_fd``) that ``sleep`` and the
readers' ``wait`` watch: Ctrl-C ends a wait at once, not after the tick.
"""

import os
import select
import signal
import time
from typing import List, Optional

from ftracetools.errors import Interrupted

__all__ = ["END_SIGNALS", "install", "wakeup_fd", "drain_wakeup", "sleep", "pending", "forget", "check"]

#: Signals that end a run.
END_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
               signal.SIGPIPE)

_pending: List[int] = []
_wake: List[int] = []     # the pipe's read end, once made


def _handler(signum, frame):
    _pending.append(signum)


def install() -> None:
    del _pending[:]
    for s in END_SIGNALS:
        signal.signal(s, _handler)
    if not _wake:
        try:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return
        try:
            signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except ValueError:  # not the main thread: waits end at their tick
            os.close(r)
            os.close(w)
            return
        _wake.append(r)


def wakeup_fd() -> Optional[int]:
    """A descriptor that turns readable when an end signal arrives."""
    return _wake[0] if _wake else None


def drain_wakeup() -> None:
    try:
        while os.read(_wake[0], 512):
            pass
    except (OSError, IndexError):
        pass


def sleep(seconds: float) -> None:
    """Sleep, but no longer than until an end signal arrives."""
    fd = wakeup_fd()
    if fd is None:
        time.sleep(max(0.0, seconds))
        return
    if not _pending:
        select.select([fd], [], [], max(0.0, seconds))
    drain_wakeup()


def pending() -> Optional[int]:
    """The first end signal received and not yet acted on, if any."""
    return _pending[0] if _pending else None


def forget(*sigs: int) -> None:
    """Drop these signals, received and not yet acted on: the end they
    ask for is already under way."""
    _pending[:] = [s for s in _pending if s not in sigs]


def check() -> None:
    """Raise ``Interrupted`` if an end signal has arrived."""
    if _pending:
        sig = _pending[0]
        del _pending[:]
        raise Interrupted(sig)
