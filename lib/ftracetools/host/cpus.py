"""CPU lists (``3``, ``0,2-3``) and the kernel's hex cpumasks; numpy's
environment (``guard_numpy``): one OpenBLAS thread, and kept from the one
CPU emulation whose AVX2 gathers fault."""

import os
import re
from typing import Dict, Iterable, List, Set

from ftracetools.errors import UsageError

__all__ = ["online", "possible", "parse_cpulist", "format_cpulist", "to_cpumask",
           "emulated", "guard_numpy", "unguard_env", "NUMPY_OFF"]

#: numpy's CPU features left off under QEMU's software emulation (TCG):
#: QEMU 7.2's TCG raises a general protection fault on AVX2 gathers a real
#: CPU completes (seen in a guest's core: ``vpgatherqq`` in numpy's AVX2
#: argsort, every lane's address mapped, trap 13). numpy's argsort and
#: ``unique(..., return_inverse=True)`` use them; the tool dies mid-run.
#: numpy 2 names its x86 targets by level (X86_V3 holds its AVX2 code),
#: numpy 1 by feature; each ignores the other's names (an ImportWarning,
#: hidden by default), so both are named.
NUMPY_OFF = ("X86_V3 X86_V4 AVX512_ICL AVX512_SPR "
             "AVX2 FMA3 AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL")
_NPY_ENV = "NPY_DISABLE_CPU_FEATURES"
#: OpenBLAS, which numpy loads with itself, starts a thread per CPU at
#: import and keeps them spinning a while: 70 ms of CPU on this 2-CPU
#: host, as much as the rest of numpy's import (measured: 137 -> 67 ms
#: beyond a bare interpreter). The tools do no linear algebra: one thread.
_BLAS_ENV = "OPENBLAS_NUM_THREADS"
#: what ``guard_numpy`` set (name -> value), so that a command we run does
#: not inherit it
guarded: Dict[str, str] = {}


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


def emulated(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """The CPU is QEMU's software emulation: TCG names its CPU models so
    ("QEMU TCG CPU version 2.5+"); under KVM the model is the host's."""
    try:
        with open(cpuinfo, "rb") as f:
            head = f.read(2048)   # the first CPU's model name is near the top
    except OSError:
        return False
    return b"QEMU TCG CPU" in head


def guard_numpy(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Before numpy is imported: OpenBLAS with one thread (``_BLAS_ENV``);
    under TCG, numpy without its AVX2 and later code (``NUMPY_OFF``). A
    user's own setting of either stands (``procs.Command`` keeps ours from
    the command it runs). True when the TCG guard was set."""
    if _BLAS_ENV not in os.environ:
        os.environ[_BLAS_ENV] = guarded[_BLAS_ENV] = "1"
    if _NPY_ENV in os.environ or not emulated(cpuinfo):
        return False
    os.environ[_NPY_ENV] = guarded[_NPY_ENV] = NUMPY_OFF
    return True


#: glibc's mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_heap_kept: List[bool] = []


def keep_heap() -> bool:
    """Once arrays are to be made round after round: glibc's malloc keeps
    what is freed (up to 256 MB at the top of its heap) and serves blocks
    up to 32 MB from that heap, instead of taking blocks of 128 KB and
    more from the kernel afresh (mmap) and handing them back when freed:
    each array of a round then cost a page fault per 4 KB it filled (77
    faults for a sum over 28,000 numbers here, 217 us against 34; 0 with
    this). The heap stays at its largest round's size while the tool
    runs. False where the C library has no mallopt (not glibc)."""
    if not _heap_kept:
        try:
            import ctypes   # (numpy has loaded it already)
            mallopt = ctypes.CDLL(None).mallopt
            _heap_kept.append(bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20))
                              and bool(mallopt(_M_TRIM_THRESHOLD, 256 << 20)))
        except (ImportError, OSError, AttributeError):
            _heap_kept.append(False)
    return _heap_kept[0]


def unguard_env() -> None:
    """In a child about to exec a user's command: our settings gone."""
    for name, value in guarded.items():
        if os.environ.get(name) == value:
            del os.environ[name]


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
