"""Block devices: ``vda``, ``/dev/vda`` or ``253,0`` to the kernel's dev."""

import os
import re
import stat
from typing import Dict, Tuple

from ftracetools.errors import UsageError

__all__ = ["MINORBITS", "block_devices", "kernel_dev", "split_dev", "name_of", "parse_device"]

MINORBITS = 20  # block tracepoints carry dev as major << 20 | minor


def block_devices() -> Dict[str, Tuple[int, int]]:
    """Name -> (major, minor) of every block device and partition."""
    out = {}
    base = "/sys/class/block"
    try:
        names = os.listdir(base)
    except OSError:
        return out
    for n in names:
        try:
            with open(os.path.join(base, n, "dev")) as f:
                ma, mi = f.read().strip().split(":")
            out[n] = (int(ma), int(mi))
        except (OSError, ValueError):
            continue
    return out


def kernel_dev(major: int, minor: int) -> int:
    return (major << MINORBITS) | minor


def split_dev(dev: int) -> Tuple[int, int]:
    return dev >> MINORBITS, dev & ((1 << MINORBITS) - 1)


def name_of(dev: int, table: Dict[str, Tuple[int, int]] = None) -> str:
    table = block_devices() if table is None else table
    mm = split_dev(dev)
    for n, v in table.items():
        if v == mm:
            return n
    return "%d,%d" % mm


def parse_device(text: str) -> Tuple[str, int]:
    """A device given as ``vda``, ``/dev/vda`` or ``253,0``: (name, dev)."""
    table = block_devices()
    t = (text or "").strip()
    m = re.match(r"^(\d{1,4})[,:](\d{1,7})$", t)
    if m:
        mm = (int(m.group(1)), int(m.group(2)))
        for n, v in table.items():
            if v == mm:
                return n, kernel_dev(*mm)
        raise UsageError("no block device %s,%s" % mm, "devices: " + _names(table))
    name = t[5:] if t.startswith("/dev/") else t
    if name in table:
        return name, kernel_dev(*table[name])
    if t.startswith("/"):
        try:
            st = os.stat(t)
        except OSError:
            st = None
        if st and stat.S_ISBLK(st.st_mode):
            mm = (os.major(st.st_rdev), os.minor(st.st_rdev))
            for n, v in table.items():
                if v == mm:
                    return n, kernel_dev(*mm)
    raise UsageError("no block device %r" % text, "devices: " + _names(table))


def _names(table) -> str:
    names = sorted(table)
    out = ", ".join(names[:12]) or "(none)"
    return out + (" and %d more (ls /sys/block)" % (len(names) - 12) if len(names) > 12 else "")
