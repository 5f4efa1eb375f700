"""Reading events from the per-CPU binary buffers (``trace_pipe_raw``).

One ``read()`` returns one sub-buffer page: a header (timestamp, commit
word with the data length and lost-event flags, read from
``events/header_page``) and compressed event headers (``header_event``).
Only the payload bytes of each event are handed on; tools decode the fields
they asked for with ``events.EventFormat.decoder``.
"""

import errno
import os
import select
import struct
from typing import Dict, Iterable, List, Optional, Tuple

from . import signals

_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from
_S64 = struct.Struct("<q").unpack_from
_U16 = struct.Struct("<H").unpack_from

_LEN_MASK = (1 << 27) - 1
_MISSED = 1 << 31
_MISSED_STORED = 1 << 30

# An event as handed on: (timestamp ns, cpu, common_type, payload).
Event = Tuple[int, int, int, memoryview]


class PageLayout:
    """Offsets of the sub-buffer header, from ``events/header_page``."""

    def __init__(self, root: str) -> None:
        text = ""
        try:
            with open(os.path.join(root, "events", "header_page")) as f:
                text = f.read()
        except OSError:
            pass
        self.ts_off, self.commit_off, self.commit_size = 0, 8, 8
        self.data_off, self.data_size = 16, 4080
        for line in text.splitlines():
            parts = dict(p.strip().split(":", 1) for p in line.split(";")
                         if ":" in p)
            field = parts.get("field", "")
            if not field:
                continue
            off, size = int(parts.get("offset", 0)), int(parts.get("size", 0))
            if field.endswith(" commit"):
                self.commit_off, self.commit_size = off, size
            elif field.endswith(" data"):
                self.data_off, self.data_size = off, size
        self.page_size = self.data_off + self.data_size


def page_header(page: bytes, layout: PageLayout) -> Tuple[int, int, int, int]:
    """(timestamp, data start, data end, events lost before the page).

    The lost count is -1 when the kernel flagged a loss without its count.
    """
    commit = (_S64 if layout.commit_size == 8 else _U32)(page, layout.commit_off)[0]
    size = commit & _LEN_MASK
    lost = 0
    if commit & _MISSED:
        lost = -1
        if commit & _MISSED_STORED:
            lost = _S64(page, layout.data_off + size)[0]
    return _U64(page, 0)[0], layout.data_off, layout.data_off + size, lost


def _walk(page: bytes, layout: PageLayout, out: list, cpu: int, views: bool) -> int:
    ts, pos, end, lost = page_header(page, layout)
    mv = memoryview(page) if views else None
    append = out.append
    while pos < end:
        w = _U32(page, pos)[0]
        tl = w & 31
        if tl <= 28:
            ts += w >> 5
            if tl:
                start, nxt = pos + 4, pos + 4 + tl * 4
            else:
                start, nxt = pos + 8, pos + 4 + _U32(page, pos + 4)[0]
            if views:
                append((ts, cpu, _U16(page, start)[0], mv[start:nxt]))
            else:
                append((ts, start, page))
            pos = nxt
        elif tl == 29:  # padding: no time of its own
            if (w >> 5) == 0:
                break
            pos += 4 + _U32(page, pos + 4)[0]
        elif tl == 30:  # time extend
            ts += (_U32(page, pos + 4)[0] << 27) + (w >> 5)
            pos += 8
        else:  # absolute timestamp; the top bits come from the page's
            abs_ts = (_U32(page, pos + 4)[0] << 27) | (w >> 5)
            ts = (ts & ~((1 << 59) - 1)) | abs_ts
            pos += 8
    return lost


def parse_page(page: bytes, cpu: int, layout: PageLayout,
               out: List[Event]) -> int:
    """Append the page's events to ``out``; return events lost before it.

    Returns -1 when the kernel flagged a loss but did not store its count.
    """
    return _walk(page, layout, out, cpu, True)


def page_offsets(page: bytes, layout: PageLayout,
                 out: List[Tuple[int, int, bytes]]) -> int:
    """Like ``parse_page``, but appends (timestamp, payload offset, page)
    and leaves decoding to the caller: cheaper per event than building
    payload views, for tools that unpack their fields with one ``struct``
    call at the offset (common_type is at 0). Events of several pages can
    be merged by time (sort) and still be unpacked.
    """
    return _walk(page, layout, out, 0, False)


def read_stats(cpu_dir: str) -> Dict[str, int]:
    """``per_cpu/cpuN/stats`` as a dict of integers (timestamps skipped)."""
    out: Dict[str, int] = {}
    try:
        with open(os.path.join(cpu_dir, "stats")) as f:
            for line in f:
                k, _, v = line.partition(":")
                v = v.strip()
                if v.isdigit():
                    out[k.strip()] = int(v)
    except OSError:
        pass
    return out


def lost_from_stats(stats: Dict[str, int]) -> int:
    """Events the kernel could not keep: overwritten or dropped."""
    return (stats.get("overrun", 0) + stats.get("commit overrun", 0)
            + stats.get("dropped events", 0))


class RawReader:
    """Non-blocking reader of every CPU's ``trace_pipe_raw`` in one buffer.

    ``drain()`` reads what is there on every CPU and returns the events
    (per CPU in order; sort by timestamp where order across CPUs matters).
    ``wait(timeout)`` sleeps until the kernel says data is ready.

    A CPU that is offline has no buffer in an instance made while it was
    down: its ``trace_pipe_raw`` opens, polls as an error at once and reads
    ENODEV. Such a CPU is parked (left out of ``poll``) and tried again at
    every drain, so its events are read once it comes online.
    """

    def __init__(self, buffer_dir: str, root: str,
                 cpus: Optional[Iterable[int]] = None) -> None:
        self.dir = buffer_dir
        self.layout = PageLayout(root)
        if cpus is None:
            cpus = sorted(int(d[3:]) for d in os.listdir(os.path.join(buffer_dir, "per_cpu"))
                          if d.startswith("cpu") and d[3:].isdigit())
        self.cpus = list(cpus)
        self.fds: Dict[int, int] = {}
        self.flagged_lost = 0   # from page headers
        self.unknown_loss = False
        self.pages = 0
        self.parked: set = set()   # CPUs whose buffer reads ENODEV (offline)
        self._poll = select.poll()
        self._wake = signals.wakeup_fd()    # an end signal ends a wait
        if self._wake is not None:
            self._poll.register(self._wake, select.POLLIN)
        try:
            for c in self.cpus:
                fd = os.open(os.path.join(buffer_dir, "per_cpu", "cpu%d" % c,
                                          "trace_pipe_raw"),
                             os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                self.fds[c] = fd
                self._poll.register(fd, select.POLLIN)
        except BaseException:
            self.close()
            raise

    def drain(self, max_pages: int = 1 << 30) -> List[Event]:
        out: List[Event] = []
        for cpu, page in self.drain_pages(max_pages):
            self.note_lost(parse_page(page, cpu, self.layout, out))
        return out

    def drain_pages(self, max_pages: int = 1 << 30) -> List[Tuple[int, bytes]]:
        """The sub-buffer pages ready now, as (cpu, page), per CPU in order.

        The fast path for tools that unpack fields straight from the page
        (``page_offsets``); they hand each page's loss count to ``note_lost``.
        """
        out: List[Tuple[int, bytes]] = []
        size = self.layout.page_size
        for cpu, fd in self.fds.items():
            n = 0
            while n < max_pages:
                try:
                    page = os.read(fd, size)
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.EINTR):
                        break
                    if e.errno == errno.ENODEV:
                        self._park(cpu, fd)
                        break
                    raise
                if not page:
                    break
                if cpu in self.parked:
                    self.parked.discard(cpu)
                    self._poll.register(fd, select.POLLIN)
                n += 1
                out.append((cpu, page))
            self.pages += n
        return out

    def _park(self, cpu: int, fd: int) -> None:
        if cpu not in self.parked:
            self.parked.add(cpu)
            try:
                self._poll.unregister(fd)
            except KeyError:
                pass

    def note_lost(self, lost: int) -> None:
        """Account a page's loss count (as returned by the page parsers)."""
        if lost > 0:
            self.flagged_lost += lost
        elif lost < 0:
            self.unknown_loss = True

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for data; True if some is ready."""
        if self._wake is not None and signals.pending():
            return False
        ready = self._poll.poll(max(0, int(timeout * 1000)))
        if self._wake is not None and any(fd == self._wake for fd, _ in ready):
            signals.drain_wakeup()
            ready = [(fd, ev) for fd, ev in ready if fd != self._wake]
        for fd, ev in ready:
            if ev & select.POLLERR:
                # An offline CPU: park it now, or poll would spin on it.
                for c, f in self.fds.items():
                    if f == fd:
                        self._park(c, f)
        return bool(ready)

    def lost(self) -> int:
        """Events lost so far on the CPUs read, from the kernel's counters."""
        return sum(lost_from_stats(read_stats(os.path.join(self.dir, "per_cpu", "cpu%d" % c)))
                   for c in self.cpus)

    def close(self) -> None:
        for fd in self.fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = {}
        self._poll = select.poll()
