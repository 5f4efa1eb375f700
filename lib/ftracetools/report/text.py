"""Printing: terminal-safe strings, JSON lines, aligned tables."""

import json
import sys
from typing import IO, Any, Dict, Iterable, List, Optional, Sequence

__all__ = ["escape", "json_safe", "json_value", "json_line", "table", "count_table"]

# Control characters (C0, DEL, C1) would let a process that names itself
# with escape sequences drive the user's terminal.
_ESC = {i: "\\x%02x" % i for i in list(range(0x20)) + [0x7f] + list(range(0x80, 0xa0))}
_ESC[ord("\\")] = "\\\\"


def escape(s: str) -> str:
    """Kernel-supplied text, safe to print: control characters escaped.

    Undecodable bytes (surrogate escapes from ``events``) are shown as
    ``\\xNN`` too.
    """
    if s.isprintable() and "\\" not in s:
        return s
    out = []
    for ch in s:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append("\\x%02x" % (o - 0xDC00))
        elif o in _ESC:
            out.append(_ESC[o])
        elif not ch.isprintable() and ch != " ":
            out.append("\\u%04x" % o if o < 0x10000 else "\\U%08x" % o)
        else:
            out.append(ch)
    return "".join(out)


def json_safe(obj: Any) -> Any:
    """Strings with undecodable bytes made valid for JSON."""
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
            return obj
        except UnicodeEncodeError:
            return escape(obj)
    if isinstance(obj, dict):
        return {json_safe(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def json_value(v: Any) -> str:
    """One value as JSON text, made safe as in ``json_line`` (for tools
    that write many objects of one shape and format them themselves)."""
    return json.dumps(json_safe(v), separators=(",", ":"))


def json_line(obj: Dict[str, Any], out: Optional[IO[str]] = None) -> None:
    """One JSON object per line (control characters are \\u-escaped by json)."""
    out = out or sys.stdout
    out.write(json.dumps(json_safe(obj), separators=(",", ":")) + "\n")
    out.flush()


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
          align: str = "") -> List[str]:
    """Rows under UPPERCASE headers; ``align`` is ``l``/``r`` per column."""
    rows = [[escape(str(c)) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    align = align or "l" * len(headers)

    def fmt(cells):
        parts = []
        for i, c in enumerate(cells):
            last = i == len(cells) - 1
            if align[i] == "r":
                parts.append(c.rjust(widths[i]))
            else:
                parts.append(c if last else c.ljust(widths[i]))
        return " ".join(parts).rstrip()
    return [fmt(list(headers))] + [fmt(r) for r in rows]


def count_table(counts: Dict[str, int], top: Optional[int] = None,
                heads: Sequence[str] = ("FUNC", "COUNT"), width: int = 80) -> List[str]:
    """perf-tools' funccount table: NAME COUNT rows, ascending (the
    largest last, next to the prompt); ``top``: only the largest rows."""
    rows = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))
    if top:
        rows = rows[-top:]
    w = min(max([30] + [len(escape(f)) for f, _ in rows]), width - 12)
    return ["%-*s %10s" % (w, heads[0], heads[1])] + \
        ["%-*s %10d" % (w, escape(f), n) for f, n in rows]
