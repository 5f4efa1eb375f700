"""CPU lists (``3``, ``0,2-3``) and the kernel's hex cpumasks."""

import re
from typing import Iterable, List, Set

from ftracetools.errors import UsageError

__all__ = ["online", "possible", "parse_cpulist", "format_cpulist", "to_cpumask"]


def _read_list(path: str) -> Set[int]:
    try:
        with open(path) as f:
            return parse_cpulist(f.read().strip(), check=False)
    except OSError:
        return set()


def online() -> Set[int]:
    return _read_list("/sys/devices/system/cpu/online")


def possible() -> Set[int]:
    return _read_list("/sys/devices/system/cpu/possible")


_ITEM = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")


def parse_cpulist(text: str, check: bool = True) -> Set[int]:
    """``0,2-3`` -> {0, 2, 3}; with ``check``, every CPU must be online."""
    cpus: Set[int] = set()
    if not text or not text.strip():
        raise UsageError("-C: empty CPU list", "CPUs as 3, or 0,2-3")
    for item in text.split(","):
        m = _ITEM.match(item.strip())
        if not m:
            raise UsageError("-C %s: not a CPU list" % text, "CPUs as 3, or 0,2-3")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise UsageError("-C %s: a range from high to low (%s)" % (text, item),
                             "CPUs as 3, or 0,2-3")
        cpus.update(range(lo, hi + 1))
    if check:
        on = online()
        bad = sorted(cpus - on) if on else []
        if bad:
            raise UsageError("-C %s: CPU %s not online" % (text, format_cpulist(bad)),
                             "online: %s" % format_cpulist(sorted(on)))
    return cpus


def format_cpulist(cpus: Iterable[int]) -> str:
    """{0, 2, 3} -> ``0,2-3``."""
    out: List[str] = []
    run: List[int] = []
    for c in sorted(set(cpus)):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else "%d-%d" % (run[0], run[-1]))
        run = [c]
    if run:
        out.append(str(run[0]) if len(run) == 1 else "%d-%d" % (run[0], run[-1]))
    return ",".join(out)


def to_cpumask(cpus: Iterable[int], like: str = "") -> str:
    """The hex mask for ``tracing_cpumask``, as wide as the current one.

    ``like`` is the current value (e.g. ``3`` or ``ffffffff,ffffffff``):
    large machines group 32 bits per comma-separated word.
    """
    mask = 0
    for c in cpus:
        mask |= 1 << c
    groups = like.strip().split(",") if like.strip() else ["0"]
    if len(groups) == 1:
        width = max(len(groups[0]), 1)
        return "%0*x" % (width, mask)
    words = []
    for i in range(len(groups)):
        words.append("%08x" % ((mask >> (32 * i)) & 0xFFFFFFFF))
    return ",".join(reversed(words))
