"""Addresses to names: a process's mappings (/proc/PID/maps) and kernel
functions (/proc/kallsyms), looked up by bisection and cached.
"""

import bisect
from typing import Dict, List, Optional, Tuple

__all__ = ["EXITED", "UNMAPPED", "ANON", "Mapping", "parse_maps", "ProcessMaps", "Kallsyms"]

#: Names given where no mapping is known.
EXITED = "[exited]"
UNMAPPED = "[unmapped]"
ANON = "[anon]"

Mapping = Tuple[int, int, int, str]   # start, end, file offset, name


def parse_maps(text: str) -> List[Mapping]:
    """``/proc/PID/maps`` lines -> sorted (start, end, offset, name).

    Anonymous mappings are named ``[anon]``; ``[heap]``, ``[stack]``,
    ``[vdso]`` and file paths are kept as the kernel prints them (a
    deleted file keeps its `` (deleted)`` suffix).
    """
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5 or "-" not in parts[0]:
            continue
        lo, _, hi = parts[0].partition("-")
        try:
            start, end, off = int(lo, 16), int(hi, 16), int(parts[2], 16)
        except ValueError:
            continue
        name = parts[5].strip() if len(parts) > 5 else ""
        out.append((start, end, off, name or ANON))
    out.sort()
    return out


class ProcessMaps:
    """Mappings of many processes, read once and re-read on a miss.

    ``lookup(pid, addr)`` -> (name, offset in the file or mapping). A
    process that exited before its maps were read gives ``[exited]``.
    """

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self._maps: Dict[int, Tuple[List[int], List[Mapping]]] = {}
        self._fresh: Dict[int, bool] = {}

    def _load(self, pid: int) -> Optional[Tuple[List[int], List[Mapping]]]:
        try:
            with open("%s/%d/maps" % (self.proc, pid), errors="surrogateescape") as f:
                m = parse_maps(f.read())
        except OSError:
            return None
        entry = ([s for s, _, _, _ in m], m)
        self._maps[pid] = entry
        self._fresh[pid] = True
        return entry

    def new_round(self) -> None:
        """Allow one re-read per process again (call once per batch)."""
        self._fresh = {}

    def lookup(self, pid: int, addr: int) -> Tuple[str, int]:
        entry = self._maps.get(pid)
        if entry is None:
            entry = self._load(pid)
            if entry is None:
                return EXITED, 0
        hit = _find(entry, addr)
        if hit is None and not self._fresh.get(pid):
            entry = self._load(pid) or entry
            hit = _find(entry, addr)
        if hit is None:
            return UNMAPPED, 0
        start, _, off, name = hit
        return name, addr - start + (off if name[:1] == "/" else 0)

    def forget(self, pid: int) -> None:
        self._maps.pop(pid, None)


def _find(entry: Tuple[List[int], List[Mapping]], addr: int) -> Optional[Mapping]:
    starts, maps = entry
    i = bisect.bisect_right(starts, addr) - 1
    if i >= 0 and addr < maps[i][1]:
        return maps[i]
    return None


class Kallsyms:
    """Kernel text symbols from /proc/kallsyms (root sees addresses)."""

    def __init__(self, path: str = "/proc/kallsyms") -> None:
        syms: List[Tuple[int, str]] = []
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3 and parts[1] in "tTwW":
                        a = int(parts[0], 16)
                        if a:
                            syms.append((a, parts[2]))
        except OSError:
            pass
        syms.sort()
        self.addrs = [a for a, _ in syms]
        self.names = [n for _, n in syms]

    def name(self, addr: int) -> str:
        """``func`` containing addr, or ``[unknown]`` (no symbols readable)."""
        i = bisect.bisect_right(self.addrs, addr) - 1
        return self.names[i] if i >= 0 else "[unknown]"
