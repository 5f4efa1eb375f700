"""How large a trace buffer to ask for: one rule for every tool.

``per_cpu_kb(default_kb, requested)``: ``-b KB`` when the user gave it;
else the tool's default (what its busiest workload needs for a second or
two of events, measured per tool), but never more than an eighth of the
memory available, shared by the CPUs, nor less than 1 MB.
"""

import os
from typing import Optional

from ftracetools.host import cpus

__all__ = ["MIN_KB", "MAX_KB", "per_cpu_kb", "available_kb"]

MIN_KB = 1024
MAX_KB = 1 << 21        # 2 GB per CPU: past that -b is a typo


def available_kb(meminfo: str = "/proc/meminfo") -> int:
    """MemAvailable in KB (0 where it cannot be read)."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def per_cpu_kb(default_kb: int, requested: Optional[int] = None,
               avail_kb: Optional[int] = None, ncpus: Optional[int] = None) -> int:
    """The per-CPU buffer size in KB; see the module docstring."""
    if requested:
        return int(requested)
    if avail_kb is None:
        avail_kb = available_kb()
    if ncpus is None:
        ncpus = len(cpus.online()) or os.cpu_count() or 1
    if not avail_kb:
        return default_kb
    return max(MIN_KB, min(default_kb, avail_kb // (8 * ncpus)))
