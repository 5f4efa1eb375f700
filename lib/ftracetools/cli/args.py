"""Numbers on the command line, checked the same way in every tool: the
option is named, and a number out of range is told its range.

``seconds(args["-d"], "-d")`` -> float > 0 or None;
``count(args["-t"], "-t")`` -> int >= 1 or None;
``number(text, "-s", unit="microseconds", low=0)`` for the rest.
"""

import math
from typing import Optional

from ftracetools.errors import UsageError

__all__ = ["number", "seconds", "count", "MAX"]

MAX = 1e9


def number(text: Optional[str], option: str, *, unit: str = "", integer: bool = False,
           low: float = 0, high: float = MAX, above: bool = False) -> Optional[float]:
    """``text`` as a number in [low, high] (``above``: greater than low),
    or None when the option was not given."""
    if text is None:
        return None
    t = str(text).strip()
    kind = ("a whole number" if integer else "a number") + (" of %s" % unit if unit else "")
    try:
        v = int(t) if integer else float(t)
    except ValueError:
        raise UsageError("%s %s: not %s" % (option, text, kind)) from None
    if math.isnan(v) or math.isinf(v) or v < low or v > high or (above and v == low):
        rng = ("more than %s and at most %s" if above else "from %s to %s") % (_g(low), _g(high))
        raise UsageError("%s %s: must be %s%s" % (option, text, rng, " " + unit if unit else ""))
    return v


def _g(x: float) -> str:
    return "%d" % x if x == int(x) else "%g" % x


def seconds(text: Optional[str], option: str) -> Optional[float]:
    """A duration or interval in seconds (greater than 0)."""
    return number(text, option, unit="seconds", above=True, high=1e7)


def count(text: Optional[str], option: str) -> Optional[int]:
    """A count of things (1 or more)."""
    v = number(text, option, integer=True, low=1)
    return None if v is None else int(v)
