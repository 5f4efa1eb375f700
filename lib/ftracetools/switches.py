"""Switches for tests, in one place and under one prefix (``FTT_``).

A user never needs these; the tests set them to reach a path the machine
would not take by itself, or to point the library at a fake tracefs.
Each is read where it acts, through ``get``.
"""

import os
from typing import Optional

__all__ = ["PREFIX", "SWITCHES", "get"]

PREFIX = "FTT_"

#: name (after the prefix) -> what it does
SWITCHES = {
    "TRACEFS": "tracefs root to use instead of the mounted one (unit tests' fake)",
    "RUNDIR": "run directory for the lock and the undo journals (instead of /run/ftrace-tools)",
    "FAIL_WRITE": "N:ERRNO: the session's Nth tracefs write fails with that errno",
    "SLOW": "SECS: sleep before each tracefs write and undo step, and say 'setting up' "
            "and 'tearing down' (then sleep once more)",
    "METHOD": "funccount: count with this method or refuse",
    "NO_NUMPY": "1: the engines' pure-Python paths even where numpy is installed",
    "SMALL_ROUND": "PAGES: schedtrace's and funccount's rounds below this size go event by "
                   "event; funcgraph goes record by record until it has read this many",
}


def get(name: str, default: Optional[str] = None) -> Optional[str]:
    """The switch's value, or ``default`` when it is not set (or empty)."""
    if name not in SWITCHES:
        raise KeyError("no test switch %s%s" % (PREFIX, name))
    return os.environ.get(PREFIX + name) or default
