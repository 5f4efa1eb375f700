"""Snapshot every tracefs setting, and name exactly what changed.

Used by every live test (the ``tracefs_unchanged`` fixture) and by the
torture suite. A snapshot maps a path relative to tracefs to the bytes read
from it (or ``!errno`` where it could not be read).
"""

import errno
import os
import re
from typing import Dict, List

# Files that are data, logs or statistics, not settings.
_SKIP = {
    "trace", "trace_pipe", "trace_marker", "trace_marker_raw", "free_buffer",
    "README", "available_events", "available_filter_functions",
    "available_filter_functions_addrs", "available_tracers", "printk_formats",
    "saved_cmdlines", "saved_tgids", "enabled_functions", "touched_functions",
    "dyn_ftrace_total_info", "error_log", "kprobe_profile", "uprobe_profile",
    "trace_stat", "per_cpu", "hwlat_detector", "osnoise", "rv",
    "stack_trace", "stack_max_size",
    "tracing_max_latency", "snapshot", "buffer_total_size_kb", "timestamp_mode",
    "id", "format", "hist", "inject",
    "header_page", "header_event",
}


_ABSENT = "!" + os.strerror(errno.ENOENT)


def _read(path: str) -> str:
    # os.open/os.read: three or four system calls a file, where open()
    # and a stat before it took ten; under the guests' emulation a
    # snapshot of some 5,000 files took 4.5 s, and every live test takes
    # two (tests/conftest.py), every torture trial one more.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        return "!" + (os.strerror(e.errno) if e.errno else str(e))
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        text = b"".join(chunks).decode(errors="replace")
    except OSError as e:
        return "!" + (os.strerror(e.errno) if e.errno else str(e))
    finally:
        os.close(fd)
    if path.endswith("buffer_size_kb"):
        # "7 (expanded: 1408)" is a buffer not yet allocated; the first
        # user of any buffer allocates it (on 6.1, an event enabled in
        # any instance allocates the top level's), after which it
        # reads 1410: 1408 KB in whole 4080-byte pages. The same
        # setting; a plain 7 is not (the kernel will never expand it).
        m = re.match(r"^\d+ \(expanded: (\d+)\)", text)
        if m:
            text = "%d\n" % expanded_kb(int(m.group(1)))
    return text


def expanded_kb(kb: int, data_size: int = 4080) -> int:
    """What ``buffer_size_kb`` reads once ``kb`` is allocated: whole
    sub-buffer pages of ``data_size`` bytes of data (events/header_page)."""
    return -(-kb * 1024 // data_size) * data_size >> 10


def _subdirs(path: str) -> List[str]:
    """The names of the directories in ``path`` (from the directory
    entries' types: no stat each)."""
    try:
        with os.scandir(path) as it:
            return [d.name for d in it if d.is_dir()]
    except OSError:
        return []


def _events(base: str, rel: str, out: Dict[str, str]) -> None:
    ev = base + "/events"
    for s in _subdirs(ev):
        sd = ev + "/" + s
        out[rel + "events/" + s + "/enable"] = _read(sd + "/enable")
        for e in _subdirs(sd):
            ed = sd + "/" + e + "/"
            key = rel + "events/" + s + "/" + e + "/"
            for f in ("enable", "filter", "trigger"):
                v = _read(ed + f)
                if v != _ABSENT:   # (an event without triggers, say)
                    out[key + f] = v


def _level(base: str, rel: str, out: Dict[str, str]) -> None:
    for name in sorted(os.listdir(base)):
        p = os.path.join(base, name)
        if name in _SKIP or name in ("events", "instances"):
            continue
        if name == "options" and os.path.isdir(p):
            for o in sorted(os.listdir(p)):
                out[rel + "options/" + o] = _read(os.path.join(p, o))
            continue
        if os.path.isfile(p):
            out[rel + name] = _read(p)
    _events(base, rel, out)


_OWNED = re.compile(r"-(\d+)(?:-[a-z]+)?$")  # TOOL-PID, or a sibling TOOL-PID-SUFFIX


def _foreign(name: str) -> bool:
    """An instance named TOOL-PID whose PID is alive and not ours.

    Such an instance belongs to a run that is still going (another test
    session, another user): its coming and going is not a change by the
    test being checked. One whose PID is dead is a leftover and counts.
    """
    m = _OWNED.search(name)
    if not m:
        return False
    pid = int(m.group(1))
    return pid != os.getpid() and os.path.exists("/proc/%d" % pid)


def snapshot(root: str) -> Dict[str, str]:
    """Every setting of the top level and of every instance (but those of
    runs still going elsewhere, see ``_foreign``)."""
    out: Dict[str, str] = {}
    _level(root, "", out)
    inst = os.path.join(root, "instances")
    if os.path.isdir(inst):
        names = sorted(n for n in os.listdir(inst) if not _foreign(n))
        out["instances/"] = " ".join(names)
        for n in names:
            try:
                _level(os.path.join(inst, n), "instances/%s/" % n, out)
            except OSError:
                pass  # removed while we looked
    return out


def diff(before: Dict[str, str], after: Dict[str, str]) -> List[str]:
    """Lines naming every setting that differs, empty when identical."""
    lines = []
    for k in sorted(set(before) | set(after)):
        a, b = before.get(k), after.get(k)
        if a != b:
            if a is None:
                lines.append("%s: appeared: %r" % (k, b[:200]))
            elif b is None:
                lines.append("%s: vanished (was %r)" % (k, a[:200]))
            else:
                lines.append("%s: %r -> %r" % (k, a[:200], b[:200]))
    return lines
