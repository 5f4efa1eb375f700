"""Hist triggers and synthetic events: naming them, making them through a
session (so teardown removes them), and reading the kernel's tables.

Where the kernel has hist triggers and synthetic events (not on every
kernel: ask ``Features.has("hist")`` and ``has("synthetic")``) it can
count, and pair events, without a record crossing the trace buffer.
``parse_hist`` is the one reader of a ``hist`` file: one ``Table`` per
trigger, its entries as (key fields, values), and its totals, where
``Dropped`` (the table was full) is the one way to lose an event.

``name(session, kind)`` issues the names of everything a run adds to the
kernel's global lists (probes, their groups, synthetic events):
``ftt_TOOL_PID_KIND``, so that a leftover names its owner.

``KernelLatency`` times the span between two events in the kernel: a
start event stores ``common_timestamp.usecs`` in a hist variable keyed by
some fields; the end event, keyed by the same fields, takes the difference
and (``onmatch``) emits a synthetic event carrying it, which a third hist
counts by (carried fields, latency). Everything is added through the
session, so teardown removes it in the order the kernel requires: the
synthetic event's hist, the onmatch trigger, the start trigger, then the
synthetic event itself.
"""

import os
import re
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from ftracetools.kernel import tracefs

__all__ = ["Table", "parse_hist", "read_hist", "stack_frames", "name", "if_clause",
           "KernelLatency"]

_VAL = re.compile(r"([\w.]+):\s*(-?\d+)")
# a key is "name:"; a stack field of a synthetic event prints as
# "NAME.stacktrace" with its first frame on the same line, no colon
_KEY = re.compile(r"(?:^|,\s+)([A-Za-z_][\w.]*)(?::|(?<=\.stacktrace)(?=\s))")


class Table(NamedTuple):
    """One trigger's table: entries as (key fields, values), and totals."""
    entries: List[Tuple[Dict[str, str], Dict[str, int]]]
    hits: int
    dropped: int


def _key(text: str) -> Dict[str, str]:
    """``pid:   12, lat:  5`` -> {"pid": "12", "lat": "5"}; a stack key
    (``stacktrace:`` then one frame a line; a synthetic event's stack
    field: ``stack.stacktrace  FRAME`` then one frame a line) -> its
    frames, one a line."""
    out: Dict[str, str] = {}
    marks = list(_KEY.finditer(text))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        v = text[m.end():end]
        if "\n" in v:   # a stack: frames, innermost first
            v = "\n".join(l.strip() for l in v.splitlines() if l.strip())
        else:
            v = v.strip()
        out[m.group(1)] = v
    return out


def parse_hist(text: str) -> List[Table]:
    """A ``hist`` file, one ``Table`` per trigger on the event."""
    tables = []
    for section in text.split("# event histogram")[1:]:
        entries = []
        totals: Dict[str, int] = {}
        key: Optional[List[str]] = None
        for line in section.splitlines():
            s = line.strip()
            if key is None and s.startswith("{"):
                key = []
                s = s[1:]
            if key is not None:
                k, brace, rest = s.partition("}")
                key.append(k)
                if brace:
                    vals = {m.group(1): int(m.group(2)) for m in _VAL.finditer(rest)}
                    entries.append((_key("\n".join(key).strip()), vals))
                    key = None
                continue
            k, _, v = s.partition(":")
            if k in ("Hits", "Entries", "Dropped") and v.strip().isdigit():
                totals[k] = int(v)
        tables.append(Table(entries, totals.get("Hits", 0), totals.get("Dropped", 0)))
    return tables


_OFFSET = re.compile(r"\+0x[0-9a-fA-F]+(?:/0x[0-9a-fA-F]+)?")


def stack_frames(text: str) -> Tuple[str, ...]:
    """A stack key's frames (``__schedule+0x2ee/0x8b0 [mod]``, one a line,
    innermost first) -> function names."""
    out = []
    for line in text.splitlines():
        f = _OFFSET.sub("", line.strip()).split(" ", 1)[0]
        if f:
            out.append(f)
    return tuple(out)


def read_hist(session, system: str, event: str) -> List[Table]:
    """The tables of an event of the session's (its ``hist`` file)."""
    return parse_hist(tracefs.read(session.path("events", system, event, "hist")))


def name(session, kind: str) -> str:
    """The name of something this run adds to a global list of the kernel
    (a probe, its group, a synthetic event): ``ftt_TOOL_PID_KIND``."""
    if not re.match(r"^[a-z0-9_]{1,16}$", kind):
        raise ValueError("bad name kind %r" % kind)
    return "ftt_%s_%d_%s" % (session.tool, os.getpid(), kind)


def if_clause(filt: Optional[str]) -> str:
    """`` if FILTER`` for a trigger, or nothing."""
    return (" if " + filt) if filt else ""


class KernelLatency:
    """``start`` and ``end`` are (system, event, filter or None); ``keys``
    pair them (fields both events have); ``carry`` are end-event fields
    (name, synthetic type) kept beside the latency, e.g. [("dev", "u32")].
    ``usecs``: the latency in microseconds, else in the trace clock's
    units (nanoseconds with ``mono``). ``count``: a hist on the synthetic
    event counts by (carried fields, latency); without it, the synthetic
    event is there to be enabled (records of each pair).
    """

    def __init__(self, session, kind: str, start: Tuple[str, str, Optional[str]],
                 end: Tuple[str, str, Optional[str]], keys: Sequence[str],
                 carry: Sequence[Tuple[str, str]], size_bits: int = 15,
                 usecs: bool = True, count: bool = True, count_bits: Optional[int] = None
                 ) -> None:
        self.s = session
        self.name = name(session, kind)
        self.carry = [c for c, _ in carry]
        size = ":size=%d" % (1 << size_bits)
        fields = "; ".join(["%s %s" % (t, c) for c, t in carry] + ["u64 lat"])
        session.add_dynamic("synthetic_events", "%s %s" % (self.name, fields),
                            "!%s %s" % (self.name, fields))
        k = ",".join(keys)
        ts = "common_timestamp" + (".usecs" if usecs else "")
        self.start = start
        self.end = end
        self.count = count
        # clock=mono: a trigger that reads common_timestamp switches its
        # instance to the clock it names, "global" by default (local_clock,
        # per CPU: in the 6.1 guest up to 6 % of the I/Os issued on one CPU
        # and completed on the other were timed 0 us, 16-32 us by mono)
        session.add_trigger(start[0], start[1], "hist:keys=%s:ts0=%s%s:clock=mono%s"
                            % (k, ts, size, if_clause(start[2])))
        session.add_trigger(end[0], end[1],
                            "hist:keys=%s:lat=%s-$ts0%s:clock=mono:onmatch(%s.%s)"
                            ".trace(%s)%s"
                            % (k, ts, size, start[0], start[1],
                               ",".join([self.name] + self.carry + ["$lat"]),
                               if_clause(end[2])))
        if count:
            session.add_trigger("synthetic", self.name, "hist:keys=%s:vals=hitcount:size=%d"
                                % (",".join(self.carry + ["lat"]),
                                   1 << (count_bits or size_bits)))

    def ends(self) -> int:
        """End events so far, as their trigger saw them (paired or not)."""
        return sum(t.hits for t in read_hist(self.s, self.end[0], self.end[1]))

    def read(self) -> Dict[Tuple[int, ...], int]:
        """Cumulative counts by (carried fields..., latency in its unit)."""
        counts: Dict[Tuple[int, ...], int] = {}
        for t in read_hist(self.s, "synthetic", self.name):
            for key, vals in t.entries:
                counts[tuple(int(key[c]) for c in self.carry + ["lat"])] = vals.get("hitcount", 0)
        return counts

    def dropped(self) -> int:
        """Events not counted because a table was full (reads every table:
        costly with many entries, call it rarely)."""
        return sum(t.dropped for system, event in ((self.start[0], self.start[1]),
                                                   (self.end[0], self.end[1]))
                   + ((("synthetic", self.name),) if self.count else ())
                   for t in read_hist(self.s, system, event))
