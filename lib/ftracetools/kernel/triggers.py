"""Latency between two events, histogrammed inside the kernel.

Where the kernel has hist triggers and synthetic events (4.17+; not on
every kernel: ask ``Features.has("hist")`` and ``has("synthetic")``), a
start event stores ``common_timestamp.usecs`` in a hist variable keyed by
some fields; the end event, keyed by the same fields, computes the
difference and (``onmatch``) emits a synthetic event carrying it, which a
third hist counts by (carried fields, latency). Nothing crosses the trace
buffer, so nothing can be lost there; ``Dropped`` in a table's totals (the
table was full) is the one way to lose a pair, and is reported.

Everything is added through the session, so teardown removes it in the
order the kernel requires: the synthetic event's hist, the onmatch
trigger, the start trigger, then the synthetic event itself.
"""

import re
from typing import Dict, List, Optional, Sequence, Tuple

from ftracetools.kernel import tracefs

_ENTRY = re.compile(r"^\{ (.*) \}\s+(.*)$")


def parse_hist(text: str) -> List[Tuple[Dict[str, Dict[str, int]], Dict[str, int]]]:
    """A ``hist`` file: per trigger, (entries keyed by key tuple -> vals,
    totals). Entries are ``{"k1=v1,k2=v2": {"hitcount": n, ...}}``."""
    out = []
    for section in text.split("# event histogram")[1:]:
        entries: Dict[str, Dict[str, int]] = {}
        totals: Dict[str, int] = {}
        for line in section.splitlines():
            m = _ENTRY.match(line.strip())
            if m:
                key = ",".join("%s=%s" % tuple(p.strip() for p in kv.split(":", 1))
                               for kv in m.group(1).split(","))
                vals = m.group(2).replace(":", " ").split()
                entries[key] = {vals[i]: int(vals[i + 1]) for i in range(0, len(vals) - 1, 2)}
                continue
            k, _, v = line.strip().partition(":")
            if k in ("Hits", "Entries", "Dropped") and v.strip().isdigit():
                totals[k] = int(v)
        out.append((entries, totals))
    return out


class KernelLatency:
    """``start`` and ``end`` are (system, event, filter or None); ``keys``
    pair them (fields both events have); ``carry`` are end-event fields
    (name, synthetic type) kept beside the latency, e.g. [("dev", "u32")].
    """

    def __init__(self, session, name: str, start: Tuple[str, str, Optional[str]],
                 end: Tuple[str, str, Optional[str]], keys: Sequence[str],
                 carry: Sequence[Tuple[str, str]], size_bits: int = 15) -> None:
        self.s = session
        self.name = name
        self.carry = [c for c, _ in carry]
        size = ":size=%d" % (1 << size_bits)
        fields = "; ".join("%s %s" % (t, c) for c, t in carry) + "; u64 lat"
        session.add_dynamic("synthetic_events", "%s %s" % (name, fields),
                            "!%s %s" % (name, fields))
        k = ",".join(keys)
        self.start = start
        self.end = end
        session.add_trigger(start[0], start[1], "hist:keys=%s:ts0=common_timestamp.usecs%s%s"
                            % (k, size, _if(start[2])))
        session.add_trigger(end[0], end[1],
                            "hist:keys=%s:lat=common_timestamp.usecs-$ts0%s:onmatch(%s.%s)"
                            ".trace(%s,%s,$lat)%s"
                            % (k, size, start[0], start[1], name, ",".join(self.carry),
                               _if(end[2])))
        session.add_trigger("synthetic", name, "hist:keys=%s,lat:vals=hitcount%s"
                            % (",".join(self.carry), size))

    def read(self) -> Dict[Tuple[int, ...], int]:
        """Cumulative counts by (carried fields..., latency in us)."""
        counts: Dict[Tuple[int, ...], int] = {}
        text = tracefs.read(self.s.path("events", "synthetic", self.name, "hist"))
        for entries, _ in parse_hist(text):
            for key, vals in entries.items():
                kv = dict(p.split("=", 1) for p in key.split(","))
                counts[tuple(int(kv[c]) for c in self.carry + ["lat"])] = vals.get("hitcount", 0)
        return counts

    def dropped(self) -> int:
        """Events not counted because a table was full (reads every table:
        costly with many entries, call it rarely)."""
        n = 0
        for system, event in ((self.start[0], self.start[1]), (self.end[0], self.end[1]),
                              ("synthetic", self.name)):
            for _, totals in parse_hist(tracefs.read(self.s.path("events", system, event, "hist"))):
                n += totals.get("Dropped", 0)
        return n


def _if(filt: Optional[str]) -> str:
    return (" if " + filt) if filt else ""
