"""Counters of the torture suite, printed as a table at the end of a run."""

import collections
import json
import os

COUNTS = collections.Counter()
ORDER = ["signal trials", "SIGKILL trials", "injected faults", "fuzzed inputs",
         "neighbour scenarios", "soak minutes", "state differences found",
         "tracebacks seen"]


def add(key: str, n: float = 1) -> None:
    COUNTS[key] += n


def table():
    if not COUNTS:
        return []
    lines = ["%-26s %10s" % ("TORTURE", "COUNT")]
    per_signal = sorted(k for k in COUNTS if k.startswith("  "))
    keys = ORDER[:1] + per_signal + ORDER[1:]
    for k in keys + sorted(set(COUNTS) - set(keys)):
        v = COUNTS.get(k, 0)
        lines.append("%-26s %10s" % (k, ("%.1f" % v) if isinstance(v, float) else v))
    return lines


def save(path: str) -> None:
    with open(path, "w") as f:
        json.dump(dict(COUNTS), f)
