"""Events of all CPUs in time order, read as soon as the kernel has them.

``f = Feed(reader, backlog_pages)``; each round ``f.pull()`` then
``f.take(time.monotonic_ns() - HOLD, max_pages)``; at the end ``while
f.pull(): pass`` and ``f.take()`` for the rest. Events are
``(ts, cpu, type, payload)`` tuples as ``reader.parse_page`` makes them
(``decode``: the payload decoded, for the types it names).
"""

import struct
from collections import deque
from operator import itemgetter

from ftracetools.ring.pages import parse_page

__all__ = ["Feed"]

_u64 = struct.Struct("<Q").unpack_from
_time = itemgetter(0)


class Feed:
    """Pages are read as soon as the kernel has them, so that its buffer
    never fills while we are busy (a burst waits here, in memory), parsed
    oldest first, and handed on in time order across CPUs: an event is
    released once no CPU can still hand on an older one: no page read
    but not yet parsed starts before it, and it is older than what the
    caller holds back for pages the kernel has not yet let us read."""

    def __init__(self, reader, backlog_pages: int, decode=None) -> None:
        self.r, self.room, self.decode = reader, backlog_pages, decode
        self.pages = {c: deque() for c in reader.cpus}
        self.pending = []
        self.mark = 0       # every event up to here was handed on

    def pull(self) -> int:
        room = self.room - self.backlog()
        if room <= 0:   # behind: the kernel's buffer holds the rest (or counts the loss)
            return 0
        got = self.r.drain_pages(max(1, room // len(self.pages)))
        for cpu, page in got:
            self.pages[cpu].append(page)
        return len(got)

    def backlog(self) -> int:
        return sum(len(q) for q in self.pages.values())

    def take(self, upto=None, max_pages=None):
        """Parse up to max_pages; return the events up to ``upto`` (None:
        all of them) that no unparsed page can precede."""
        out = []
        layout, decode, note = self.r.layout, self.decode, self.r.note_lost
        pages, upto = self.take_pages(upto, max_pages)
        for cpu, page in pages:
            note(parse_page(page, cpu, layout, out, decode))
        return self._release(out, upto)

    def take_pages(self, upto=None, max_pages=None):
        """``take``'s pages, (cpu, page) oldest first, not parsed, and the
        time up to which their events may be handed on (None: all): for a
        caller that decodes pages its own way (arrays)."""
        u64 = _u64
        got, n = [], 0
        while max_pages is None or n < max_pages:
            heads = [(u64(q[0])[0], c) for c, q in self.pages.items() if q]
            if not heads:
                break
            cpu = min(heads)[1]
            got.append((cpu, self.pages[cpu].popleft()))
            n += 1
        for q in self.pages.values():
            if q:
                t = u64(q[0])[0] - 1
                upto = t if upto is None else min(upto, t)
        return got, upto

    def _release(self, events, upto):
        p = self.pending
        if events:
            p.extend(events)
            p.sort(key=_time)
        if upto is None:
            self.pending = []
            if p:
                self.mark = max(self.mark, p[-1][0])
            return p
        lo, hi = 0, len(p)
        while lo < hi:
            mid = (lo + hi) // 2
            if p[mid][0] <= upto:
                lo = mid + 1
            else:
                hi = mid
        out, self.pending = p[:lo], p[lo:]
        self.mark = max(self.mark, upto)
        return out

    def discard(self) -> int:
        """Drop what is read but not handed on; return how many events."""
        out = []
        for cpu, q in self.pages.items():
            while q:
                parse_page(q.popleft(), cpu, self.r.layout, out)
        n, self.pending = len(out) + len(self.pending), []
        return n
