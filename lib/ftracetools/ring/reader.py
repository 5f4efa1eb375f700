"""Reading every CPU's binary buffer (``trace_pipe_raw``) of one trace
buffer, and what the kernel says it lost (``per_cpu/cpuN/stats``).
"""

import errno
import os
import select
from typing import Dict, Iterable, List, Optional, Tuple

from ftracetools.kernel import signals
from ftracetools.ring.pages import Event, PageLayout, parse_page

__all__ = ["read_stats", "lost_from_stats", "RawReader"]


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
