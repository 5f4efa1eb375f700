"""Power-of-two histograms and summary statistics, perf-tools layout."""

import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

BAR = 38  # perf-tools' Distribution column: the whole line stays < 80


def bucket(value: float) -> int:
    """Bucket 0 holds [0, 1); bucket i >= 1 holds [2**(i-1), 2**i)."""
    if value < 1:
        return 0
    return int(value).bit_length()


def bounds(i: int) -> Tuple[int, int]:
    return (0, 1) if i == 0 else (1 << (i - 1), 1 << i)


class Log2Hist:
    def __init__(self) -> None:
        self.counts: Dict[int, int] = {}

    def add(self, value: float, n: int = 1) -> None:
        b = bucket(value)
        self.counts[b] = self.counts.get(b, 0) + n

    def add_bucket(self, i: int, n: int) -> None:
        self.counts[i] = self.counts.get(i, 0) + n

    def total(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: "Log2Hist") -> None:
        for i, n in other.counts.items():
            self.add_bucket(i, n)

    def buckets(self) -> List[Dict[str, int]]:
        """Every bucket from 0 to the highest non-empty one."""
        if not self.counts:
            return []
        return [{"low": bounds(i)[0], "high": bounds(i)[1],
                 "count": self.counts.get(i, 0)}
                for i in range(0, max(self.counts) + 1)]

    def render(self, unit: str = "ms", label: str = "I/O") -> List[str]:
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


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if len(sorted_values) == 0:
        return 0
    k = max(0, min(len(sorted_values) - 1, int(math.ceil(p / 100.0 * len(sorted_values))) - 1))
    return sorted_values[k]


def bucket_percentile(h: Log2Hist, p: float) -> Optional[int]:
    """The upper bound of the bucket holding the p-th percentile (in-kernel
    histograms keep no values)."""
    total = h.total()
    if not total:
        return None
    need = int(math.ceil(p / 100.0 * total))
    seen = 0
    for i in sorted(h.counts):
        seen += h.counts[i]
        if seen >= need:
            return bounds(i)[1]
    return None


def summary(values: Iterable[float]) -> Dict[str, float]:
    """count, total, avg, p50, p90, p99, max of a set of values."""
    return summary_sorted(sorted(values))


def summary_sorted(v: Sequence[float]) -> Dict[str, float]:
    """``summary`` of values already sorted (a list, or a numpy array)."""
    n = len(v)
    tot = int(v.sum()) if hasattr(v, "sum") else sum(v)
    return {"count": n, "total": tot, "avg": (tot / n) if n else 0,
            "p50": percentile(v, 50), "p90": percentile(v, 90),
            "p99": percentile(v, 99), "max": v[-1] if n else 0}
