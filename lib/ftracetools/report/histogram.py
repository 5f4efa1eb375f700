"""Power-of-two histograms and their summary, printed one way everywhere.

A distribution is given either as sorted values (a list, or a numpy
array: every value kept) or as counts of values (``{value: n}``: values
already rounded to whole units, as the kernel's and schedtrace's tables
keep them). ``Histogram`` holds one, in the tool's display unit, and gives

- ``render()``: perf-tools' layout, a row per log2 bucket;
- ``summary_line()``: ``count 12  avg 1.5  p50 1.2  p90 3.1  p99 4  max 4.2 ms``;
- ``json()``: ``{"unit", "count", "avg", "p50", "p90", "p99", "max",
  "total", "buckets": [{"low", "high", "count"}]}``, in the unit.

Percentiles are nearest-rank: the smallest value with at least p % of the
values at or below it.
"""

import bisect
import math
from typing import Dict, List, Sequence, Tuple

__all__ = ["BAR", "UNITS", "bucket", "bounds", "Log2Hist", "Histogram", "fmt_num"]

BAR = 38  # perf-tools' Distribution column: the whole line stays < 80
PERCENTILES = (50, 90, 99)
#: display unit -> nanoseconds
UNITS = {"ns": 1, "us": 1000, "ms": 1000000, "s": 1000000000}


def bucket(value: float) -> int:
    """Bucket 0 holds [0, 1); bucket i >= 1 holds [2**(i-1), 2**i)."""
    if value < 1:
        return 0
    return int(value).bit_length()


def bounds(i: int) -> Tuple[int, int]:
    return (0, 1) if i == 0 else (1 << (i - 1), 1 << i)


class Log2Hist:
    """Counts per log2 bucket."""

    def __init__(self) -> None:
        self.counts: Dict[int, int] = {}

    def add(self, value: float, n: int = 1) -> None:
        b = bucket(value)
        self.counts[b] = self.counts.get(b, 0) + n

    def add_bucket(self, i: int, n: int) -> None:
        self.counts[i] = self.counts.get(i, 0) + n

    def total(self) -> int:
        return sum(self.counts.values())

    def buckets(self) -> List[Dict[str, int]]:
        """Every bucket from 0 to the highest non-empty one."""
        if not self.counts:
            return []
        return [{"low": bounds(i)[0], "high": bounds(i)[1],
                 "count": self.counts.get(i, 0)}
                for i in range(0, max(self.counts) + 1)]

    def render(self, unit: str = "us", label: str = "COUNT") -> List[str]:
        """perf-tools' iolatency layout:

        ``  >=(ms) .. <(ms)   : I/O      |Distribution                          |``
        """
        lines = ["  >=(%s) .. <(%s)   : %-8s |%-*s|" % (unit, unit, label, BAR, "Distribution")]
        rows = self.buckets()
        peak = max((r["count"] for r in rows), default=0)
        for r in rows:
            n = r["count"]
            bar = int(math.ceil(BAR * n / peak)) if peak and n else 0
            lines.append("%8d -> %-7d : %-8d |%-*s|" % (r["low"], r["high"], n, BAR, "#" * bar))
        return lines


def fmt_num(v: float) -> str:
    """Three significant digits (``0.236``, ``12.3``, ``5``), whole numbers
    from 1000 up."""
    if v >= 999.5:
        return "%.0f" % v
    if v < 0.001:
        return "0" if v == 0 else "%.3f" % v
    return "%.3g" % v


class Histogram:
    """A distribution shown in ``unit``; see the module docstring.

    ``Histogram.of_sorted(values, unit, scale)``: every value, sorted,
    ``scale`` of them to one unit (1000 for ns shown in us);
    ``Histogram.of_counts({value: n}, unit, scale)`` likewise for counts.
    """

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.log2 = Log2Hist()
        self.stats: Dict[str, float] = {"count": 0, "total": 0, "avg": 0, "max": 0}
        for p in PERCENTILES:
            self.stats["p%d" % p] = 0

    @classmethod
    def of_sorted(cls, values: Sequence[float], unit: str, scale: float = 1) -> "Histogram":
        h = cls(unit)
        n = len(values)
        if not n:
            return h
        i = 0
        while i < n:        # sorted: count each log2 bucket by bisection
            b = bucket(values[i] / scale)
            hi = bounds(b)[1] * scale
            j = bisect.bisect_left(values, hi, i)
            h.log2.add_bucket(b, j - i)
            i = j
        tot = int(values.sum()) if hasattr(values, "sum") else sum(values)
        st = h.stats
        st.update(count=n, total=tot / scale, avg=tot / n / scale, max=values[-1] / scale)
        for p in PERCENTILES:
            st["p%d" % p] = values[_rank(n, p)] / scale
        return h

    @classmethod
    def of_counts(cls, counts: Dict[float, int], unit: str, scale: float = 1) -> "Histogram":
        h = cls(unit)
        n = sum(counts.values())
        if not n:
            return h
        for v, c in counts.items():
            h.log2.add(v / scale, c)
        tot = sum(v * c for v, c in counts.items())
        st = h.stats
        st.update(count=n, total=tot / scale, avg=tot / n / scale, max=max(counts) / scale)
        need = {p: _rank(n, p) for p in PERCENTILES}
        seen = 0
        for v in sorted(counts):
            seen += counts[v]
            for p, k in list(need.items()):
                if seen > k:
                    st["p%d" % p] = v / scale
                    del need[p]
            if not need:
                break
        return h

    @property
    def count(self) -> int:
        return int(self.stats["count"])

    def render(self, label: str = "COUNT") -> List[str]:
        return self.log2.render(self.unit, label)

    def summary_line(self, tail: str = "") -> str:
        """``count N  avg X  p50 X  p90 X  p99 X  max X UNIT``, then ``tail``
        (on the same line if it fits 80 columns)."""
        st = self.stats
        line = "count %d  %s %s" % (st["count"], "  ".join(
            "%s %s" % (k, fmt_num(st[k])) for k in
            ["avg"] + ["p%d" % p for p in PERCENTILES] + ["max"]), self.unit)
        if not tail:
            return line
        return line + "  " + tail if len(line) + len(tail) < 78 else line + "\n" + tail

    def json(self) -> Dict[str, object]:
        out: Dict[str, object] = {"unit": self.unit, "count": self.count}
        for k in ["avg"] + ["p%d" % p for p in PERCENTILES] + ["max", "total"]:
            out[k] = round(self.stats[k], 3)
        out["buckets"] = self.log2.buckets()
        return out


def _rank(n: int, p: float) -> int:
    """Index of the nearest-rank p-th percentile among n sorted values."""
    return max(0, min(n - 1, int(math.ceil(p / 100.0 * n)) - 1))

