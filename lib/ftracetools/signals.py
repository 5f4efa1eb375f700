"""End signals, turned into an exception only at safe points.

Python runs a signal handler between any two bytecodes, including the
first bytecode of a ``__exit__`` that is about to restore the kernel's
settings: a handler that raised there would skip the cleanup. So the
handler only records the signal, and ``check()`` raises ``Interrupted``
where the library knows it is safe: between set-up steps and on every turn
of the tracing loop (which never blocks longer than a tick). Cleanup never
calls ``check()``, so no signal, first or second, can cut it short.
"""

import signal
from typing import List, Optional

from .errors import Interrupted

#: Signals that end a run.
END_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
               signal.SIGPIPE)

_pending: List[int] = []


def _handler(signum, frame):
    _pending.append(signum)


def install() -> None:
    del _pending[:]
    for s in END_SIGNALS:
        signal.signal(s, _handler)


def pending() -> Optional[int]:
    """The first end signal received and not yet acted on, if any."""
    return _pending[0] if _pending else None


def check() -> None:
    """Raise ``Interrupted`` if an end signal has arrived."""
    if _pending:
        sig = _pending[0]
        del _pending[:]
        raise Interrupted(sig)
