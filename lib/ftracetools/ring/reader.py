"""Reading every CPU's binary buffer (``trace_pipe_raw``) of one trace
buffer, and what the kernel says it lost (``per_cpu/cpuN/stats``).
"""

import errno
import fcntl
import os
import select
from typing import Dict, Iterable, List, Optional, Tuple

from ftracetools.kernel import signals
from ftracetools.ring.pages import LEN_MASK, Event, PageLayout, parse_page, whole_records

__all__ = ["read_stats", "lost_from_stats", "RawReader"]

_F_SETPIPE_SZ, _F_GETPIPE_SZ = 1031, 1032
#: the pipe ``drain_joined`` splices pages into: 256 pages of 4 KB a call
_PIPE_BYTES = 1 << 20


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
        self._buf: Optional[bytearray] = None   # drain_joined's, made at its first call
        self._pipe = None       # (read end, write end, bytes) it splices through
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
        return self.events(self.drain_pages(max_pages))

    def events(self, pages: List[Tuple[int, bytes]]) -> List[Event]:
        """The events of (cpu, page) pairs as ``drain`` returns them, their
        losses noted."""
        out: List[Event] = []
        for cpu, page in pages:
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
                page = self._read(cpu, fd, os.read, fd, size)
                if not page:
                    break
                n += 1
                out.append((cpu, page))
            self.pages += n
        return out

    def drain_joined(self) -> Tuple[memoryview, List[Tuple[int, int]]]:
        """The pages ready now, joined: (a buffer of whole pages, each
        ``page_size`` long, per CPU in order; (cpu, pages) for each CPU
        read). The buffer is this reader's and the next call reuses it.

        Full pages come by ``splice`` into a pipe, up to 256 a call, and
        one read of the pipe straight into the buffer; the page the kernel
        is still writing by a read of its own (as ``drain_pages`` reads
        every page). Where splice fails (a kernel or file that refuses
        it), page by page. At 100k I/Os a second, iolatency read 8,000
        pages a second: one read(), a bytes object and a join each."""
        psize = self.layout.page_size
        if self._buf is None:
            self._buf = bytearray(psize * 64)
            self._pipe = self._open_pipe(psize) if hasattr(os, "splice") else None
        used, runs = 0, []
        for cpu, fd in self.fds.items():
            n0 = used
            if self._pipe is not None and cpu not in self.parked:
                used = self._splice(fd, used, psize)
            while True:    # the rest: the page being written, or no splice
                used = self._room(used, psize)
                got = self._read(cpu, fd, os.readv, fd, [memoryview(self._buf)[used:used + psize]])
                if not got:
                    break
                if got < psize:     # (never seen: a read gives the whole page)
                    self._shorten(used, got, psize)
                used += psize
                if self._pipe is not None:
                    break   # whole pages came by splice: this was the last
            k = (used - n0) // psize
            if k:
                runs.append((cpu, k))
                self.pages += k
        return memoryview(self._buf)[:used], runs

    def _read(self, cpu: int, fd: int, read, *args):
        """``read(*args)`` of CPU ``cpu``'s ``fd``: what it returns, or None
        when there is nothing now (an offline CPU's buffer is parked; one
        that reads again is polled again)."""
        try:
            got = read(*args)
        except OSError as e:
            if e.errno == errno.ENODEV:
                self._park(cpu, fd)
            elif e.errno not in (errno.EAGAIN, errno.EINTR):
                raise
            return None
        if got and cpu in self.parked:
            self.parked.discard(cpu)
            self._poll.register(fd, select.POLLIN)
        return got

    def _open_pipe(self, psize: int):
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            fcntl.fcntl(w, _F_SETPIPE_SZ, _PIPE_BYTES)
        except OSError:
            pass
        cap = fcntl.fcntl(w, _F_GETPIPE_SZ) // psize * psize
        if cap < psize:
            os.close(r)
            os.close(w)
            return None
        return r, w, cap

    def _splice(self, fd: int, used: int, psize: int) -> int:
        """Whole pages from ``fd`` into the buffer at ``used``, through the
        pipe; returns the new end."""
        r, w, cap = self._pipe
        while True:
            try:
                got = os.splice(fd, w, cap, flags=os.SPLICE_F_NONBLOCK)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EINTR, errno.ENODEV):
                    self._close_pipe()     # refused: page by page from now on
                return used
            if not got:
                return used
            used = self._room(used, got)
            view = memoryview(self._buf)[used:used + got]
            while len(view):
                n = os.readv(r, [view])
                view = view[n:]
            used += got
            if got < cap:
                return used

    def _room(self, used: int, more: int) -> int:
        """Room for ``more`` bytes after ``used``: a larger buffer, the
        pages so far copied over (never resized in place: a round's arrays
        may still view the old one)."""
        if used + more > len(self._buf):
            new = bytearray(max(2 * len(self._buf), used + more))
            new[:used] = memoryview(self._buf)[:used]
            self._buf = new
        return used

    def _shorten(self, at: int, got: int, psize: int) -> None:
        """A page read short: the rest zeros, its commit no further than
        its last whole record."""
        lay = self.layout
        b = self._buf
        b[at + got:at + psize] = bytes(psize - got)
        csize = lay.commit_size
        commit = int.from_bytes(b[at + lay.commit_off:at + lay.commit_off + csize], "little")
        d1 = min(lay.data_off + (commit & LEN_MASK), psize)
        if d1 > got:
            whole = whole_records(bytes(b[at:at + got]), lay.data_off, d1)[1]
            commit = (commit & ~LEN_MASK) | max(0, whole - lay.data_off)
            b[at + lay.commit_off:at + lay.commit_off + csize] = commit.to_bytes(csize, "little")

    def _close_pipe(self) -> None:
        if self._pipe is not None:
            for fd in self._pipe[:2]:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._pipe = None

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
        self._close_pipe()
        for fd in self.fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = {}
        self._poll = select.poll()
