"""Kernel-side event filters, built only from validated values.

Nothing a user typed is pasted into a filter: numbers are ints, and the
one string form allowed (a glob on a string field, e.g. rwbs) is checked
against a small alphabet first.
"""

import re
from typing import Iterable, Optional

from ftracetools.errors import UsageError

__all__ = ["any_of", "glob", "mask_set", "all_of", "any_filter"]

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_GLOB = re.compile(r"^[A-Za-z0-9*?]{1,16}$")


def _field(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError("bad field name %r" % name)
    return name


def any_of(field: str, values: Iterable[int]) -> str:
    """``field == a || field == b``."""
    vals = sorted(set(int(v) for v in values))
    if not vals:
        raise ValueError("empty value list")
    return " || ".join("%s == %d" % (_field(field), v) for v in vals)


def glob(field: str, pattern: str) -> str:
    """``field ~ "PATTERN"`` for a string field (kernel glob match)."""
    if not _GLOB.match(pattern):
        raise UsageError("bad pattern %r: use letters, digits, * and ?" % pattern)
    return '%s ~ "%s"' % (_field(field), pattern)


def mask_set(field: str, mask: int) -> str:
    return "(%s & %d)" % (_field(field), int(mask))


def all_of(*parts: Optional[str]) -> Optional[str]:
    """Join filters with &&, each in parentheses; None when there are none."""
    return _join(" && ", parts)


def any_filter(*parts: Optional[str]) -> Optional[str]:
    """Join filters with ||, each in parentheses; None when there are none."""
    return _join(" || ", parts)


def _join(op: str, parts) -> Optional[str]:
    ps = [p for p in parts if p]
    if len(ps) <= 1:
        return ps[0] if ps else None
    return op.join("(%s)" % p for p in ps)
