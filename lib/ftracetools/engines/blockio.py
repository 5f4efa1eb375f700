"""Block I/O: every request's latency, from its start (issue, or queue
insert with ``queued``) to its completion, per device.

Three ways, best first, chosen by ``open_source``:

- ``InKernel``: hist triggers and a synthetic event pair the events in
  the kernel (``kernel.triggers.KernelLatency``); nothing crosses the
  buffer. Pairs on (dev, sector).
- ``VecStream`` (numpy): issues and completions stream into two
  instances and are paired as arrays (``engines.blockarrays``).
- ``Stream``: the same, one event at a time (``queued``, or no numpy).

Each is a ``Source`` for the tracing loop; ``rotate()`` ends an interval
and returns what it saw (an ``Interval``): latencies in ns per device,
completions without an issue, events lost.
"""

import bisect
import os
import struct
import time
from typing import Dict, List, Optional

from ftracetools import switches
from ftracetools.errors import ToolError, UsageError
from ftracetools.host import devices
from ftracetools.kernel import filters, triggers
from ftracetools.kernel.formats import EventFormat
from ftracetools.ring.pages import page_offsets
from ftracetools.ring.reader import RawReader
from ftracetools.ring.source import Source

__all__ = ["RWBS", "START", "COMPLETE", "MERGE", "ISSUE", "REQUEUE", "PURGE_NS",
           "HOLD_NS", "parse_devices", "iotype_filter", "op_of", "unpacker",
           "Interval", "Stream", "InKernel", "open_source"]

RWBS = "FWDERNASMU"    # the letters blk_fill_rwbs() writes
PURGE_NS = 60 * 10**9  # forget issues without a completion after this long
HOLD_NS = 5 * 10**6    # events younger than this may precede unseen ones
START, COMPLETE, MERGE, ISSUE, REQUEUE = range(5)
FIELDS = ("common_type", "dev", "sector", "nr_sector", "rwbs")


def parse_devices(names: List[str]) -> Dict[int, str]:
    """``-d`` values (vda, /dev/vda, 253,0) -> {kernel dev: name}."""
    out = {}
    for d in names:
        try:
            name, dev = devices.parse_device(d)
        except UsageError as e:
            if d.strip().replace(".", "").isdigit():
                raise UsageError("-d %s: %s" % (d, e), "-d names a device here, as in "
                                 "perf-tools; for a duration give INTERVAL COUNT "
                                 "(1 %s)" % d) from None
            raise UsageError("-d %s: %s" % (d, e), e.hint) from None
        sysd = "/sys/class/block/" + name
        if os.path.exists(sysd + "/partition"):
            disk = os.path.basename(os.path.dirname(os.path.realpath(sysd)))
            raise UsageError("-d %s: a partition: block request events carry "
                             "the whole disk; use -d %s" % (d, disk))
        if not os.path.isdir(sysd + "/mq"):
            raise UsageError("-d %s: no request queue (device-mapper, md, ...): "
                             "its I/O never shows in block request events; "
                             "trace the devices below it" % d)
        out[dev] = name
    return out


def iotype_filter(glob: Optional[str]) -> Optional[str]:
    """The kernel filter for ``-i`` (a glob on rwbs), checked."""
    if glob is None:
        return None
    f = filters.glob("rwbs", glob)
    if set(glob) - set(RWBS + "*?"):
        raise UsageError("-i %s: can never match: rwbs uses only the letters %s"
                         % (glob, RWBS))
    return f


def op_of(rwbs: bytes, glob=None) -> int:
    """The direction letter of rwbs (a leading F is a preflush flag), or
    -1 when rwbs does not match the -i glob."""
    rwbs = rwbs.split(b"\0", 1)[0]
    if glob is not None:
        import fnmatch
        if not fnmatch.fnmatchcase(rwbs.decode("ascii", "replace"), glob):
            return -1
    if rwbs[:1] == b"F" and rwbs[1:2] in (b"W", b"D", b"R", b"N"):
        return rwbs[1]
    return rwbs[0] if rwbs else 0


def unpacker(fmt, rw_len: int) -> str:
    """struct for FIELDS (rwbs: its first rw_len bytes) at this kernel's
    offsets: the block events' layouts differ between versions."""
    code, pos = "<", 0
    flds = sorted((fmt.field(n) for n in FIELDS), key=lambda f: f.offset)
    if tuple(f.name for f in flds) != FIELDS:
        raise ToolError("block:%s has an unexpected layout" % fmt.name)
    for f in flds:
        code += "x" * (f.offset - pos)
        n = min(rw_len, f.size) if f.name == "rwbs" else f.size
        code += "%ds" % n if f.name == "rwbs" else {2: "H", 4: "I", 8: "Q"}[n]
        pos = f.offset + n
    return code


def start_event(s, queued: bool) -> str:
    """``queued``: block_io_start (6.5+) marks every request where the
    kernel's own accounting starts; block_rq_insert (older) misses direct
    issues."""
    if not queued:
        return "block_rq_issue"
    if s.features.has_event("block", "block_io_start"):
        return "block_io_start"
    return "block_rq_insert"


class Interval:
    """What one interval saw: latencies (ns) and unmatched completions,
    by kernel dev."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.lats: Dict[int, list] = {}  # dev -> [ns]; VecStream: dev -> [arrays of ns]
        self.unmatched: Dict[int, int] = {}
        self.lost = 0

    def sorted_values(self, devs) -> "list":
        """The latencies of these devices, sorted (a list, or a numpy
        array from VecStream: both index and bisect alike)."""
        parts = [self.lats[d] for d in devs if d in self.lats]
        if any(p and not isinstance(p[0], int) for p in parts):
            import numpy as np
            v = np.concatenate([a for p in parts for a in p])
            v.sort()
            return v
        return sorted(x for p in parts for x in p)


class Stream(Source):
    """Pair start and completion events read from the trace buffer.

    Events of all CPUs are paired in time order (a sector is reused
    often: order decides which issue a completion closes). Events from the
    last few ms are held back for the next round; should the kernel make
    an issue visible later still, its completion waits as an orphan and
    counts as unmatched only once it is a second old.
    """

    what = ""

    def __init__(self, s, queued: bool, devs: Dict[int, str], iotype: Optional[str],
                 kb: int) -> None:
        s.set("trace_clock", "mono")
        s.set_buffer_kb(kb)
        filt = filters.all_of(filters.any_of("dev", devs) if devs else None,
                              iotype_filter(iotype))
        self.kinds: Dict[int, int] = {}
        self.codes: Dict[int, str] = {}
        # The kernel's *X* filter on a char array (strnstr) reads past the
        # NUL into stale bytes: with -i, rwbs is checked again here.
        self.glob = iotype
        self.rw_len = 16 if self.glob else 2
        start = start_event(s, queued)
        if queued:
            if start == "block_rq_insert":  # misses direct issues: add issue
                self._event(s, filt, "block_rq_issue", ISSUE)
            self._event(s, filters.any_of("dev", devs) if devs else None,
                        "block_bio_frontmerge", MERGE)
        main = self.codes[self._event(s, filt, start, START)]
        self._event(s, filt, "block_rq_complete", COMPLETE)
        if not queued:  # a requeued request is timed from its next issue
            self._event(s, filt, "block_rq_requeue", REQUEUE)
        self.unpack = struct.Struct(main).unpack_from
        self.alt = {i: struct.Struct(c).unpack_from
                    for i, c in self.codes.items() if c != main}
        self.reader = RawReader(s.dir, s.root)
        s.own(self.reader)
        self.offsets = page_offsets     # (the tests hand over pages already split)
        self.pending: Dict[tuple, tuple] = {}  # (dev, sector, op) -> (start ns, nr_sector)
        self.orphans: Dict[tuple, int] = {}    # (dev, sector, op) -> completion ns
        self.more: Dict[tuple, list] = {}      # key -> [(ns, nr)]: same sector in flight again
        self.held: list = []                   # (ns, offset, page) not yet paired
        self.ops: Dict[bytes, int] = {}
        self.lost_seen = 0
        self.cur = Interval()
        self.lost_hint = "enlarge the buffer with -b (now %d KB per CPU)" % kb

    def _event(self, s, filt, name, kind) -> int:
        fmt = EventFormat.load(s.root, "block", name)
        self.codes[fmt.id] = unpacker(fmt, self.rw_len)
        s.enable_event("block", name, filt)
        self.kinds[fmt.id] = kind
        return fmt.id

    def wait(self, timeout: float) -> object:
        return self.reader.wait(timeout)

    def drain(self, upto: int = 0) -> None:
        r = self.reader
        limit = upto or time.monotonic_ns() - HOLD_NS
        evs = self.held
        for _cpu, page in r.drain_pages():
            r.note_lost(self.offsets(page, r.layout, evs))
        evs.sort()
        n = len(evs)
        if evs and evs[-1][0] > limit:
            n = bisect.bisect_right(evs, (limit, 1 << 30))
        self._pair(evs[:n] if n < len(evs) else evs)
        self.held = evs[n:]

    def finish(self, why: str) -> None:
        pass    # rotate(final=True) takes in the rest

    def _pair(self, evs) -> None:
        pend, orph, ops, kinds = self.pending, self.orphans, self.ops, self.kinds
        unpack, alt, lats, more = self.unpack, self.alt, self.cur.lats, self.more
        for ts, off, page in evs:
            typ, dev, sector, nr, rw = unpack(page, off)
            if typ in alt:
                typ, dev, sector, nr, rw = alt[typ](page, off)
            kind = kinds[typ]
            op = ops.get(rw)
            if op is None:
                if len(ops) > 4096:
                    ops.clear()
                op = ops[rw] = op_of(rw, self.glob)
            if op < 0:
                continue
            key = (dev, sector, op)
            if kind == COMPLETE or kind == REQUEUE:
                v = pend.pop(key, None)
                if v is None:
                    if kind == COMPLETE:
                        if key in orph:  # an older orphan there stays one
                            self.cur.unmatched[dev] = self.cur.unmatched.get(dev, 0) + 1
                        orph[key] = ts
                    continue
                if more and key in more:  # the next one in flight waits
                    nxt = more[key]
                    pend[key] = nxt.pop(0)
                    if not nxt:
                        del more[key]
                if kind == REQUEUE:
                    continue
                if 0 < nr < v[1]:  # partial completion: the rest follows
                    pend[(dev, sector + nr, op)] = (v[0], v[1] - nr)
                    continue
                lat = ts - v[0]
            elif kind == MERGE:  # a bio merged in front: new start sector
                v = pend.pop((dev, sector + nr, op), None)
                if v is not None:
                    pend[key] = (v[0], v[1] + nr)
                continue
            else:
                if orph:
                    t = orph.get(key)
                    if t is not None and t >= ts:
                        del orph[key]
                        lst = lats.get(dev)
                        if lst is None:
                            lst = lats[dev] = []
                        lst.append(t - ts)
                        continue
                if key not in pend:
                    pend[key] = (ts, nr)
                elif kind == START:  # an issue after an insert keeps its time
                    more.setdefault(key, []).append((ts, nr))
                continue
            lst = lats.get(dev)
            if lst is None:
                lst = lats[dev] = []
            lst.append(lat)

    def rotate(self, final: bool = False) -> Interval:
        """End the interval: pair all the kernel has, start a new one."""
        self.drain(1 << 63 if final else 0)
        done, self.cur = self.cur, Interval()
        now = time.monotonic_ns()
        old = (1 << 63) if final else now - 10**9
        for key, t in list(self.orphans.items()):
            if t < old:
                del self.orphans[key]
                done.unmatched[key[0]] = done.unmatched.get(key[0], 0) + 1
        lost = self.lost()
        done.lost, self.lost_seen = lost - self.lost_seen, lost
        if len(self.pending) > 4096:
            old = now - PURGE_NS
            self.pending = {k: v for k, v in self.pending.items() if v[0] > old}
            self.more = {}
        return done

    def lost(self) -> int:
        return max(self.reader.lost(), self.reader.flagged_lost)


class InKernel(Source):
    """Pair in the kernel: hist triggers and a synthetic event, read every
    interval. Pairs on (dev, sector) only."""

    what = " (in-kernel histograms)"

    def __init__(self, s, queued: bool, devs: Dict[int, str], iotype: Optional[str],
                 kb: int) -> None:
        s.set("trace_clock", "mono")
        start = start_event(s, queued)
        f = filters.all_of(filters.any_of("dev", devs) if devs else None,
                           iotype_filter(iotype))
        self.s, self.cur = s, Interval()
        self.lat = triggers.KernelLatency(s, "lat", ("block", start, f),
                                          ("block", "block_rq_complete", f),
                                          ("dev", "sector"), [("dev", "u32")], size_bits=14)
        s.add_trigger("block", "block_rq_complete", "hist:keys=dev:vals=hitcount"
                      + triggers.if_clause(f))
        self.seen: Dict[tuple, int] = {}    # cumulative (dev, us) -> n
        self.matched: Dict[int, int] = {}   # dev -> pairs counted so far
        self.unmatched: Dict[int, int] = {}  # dev -> unmatched said so far
        self.lost_hint = ("an in-kernel table was full (%d entries): rerun with "
                          "--stream" % (1 << 14))
        self.tick = 0.25

    def rotate(self, final: bool = False) -> Interval:
        # The completions first, then the pairs: every completion counted is
        # then either paired in the second read or truly unmatched (the
        # second read may hold later pairs too: unmatched is never said
        # too early, only perhaps late; after tracing stops both agree).
        comp = {}
        for t in triggers.read_hist(self.s, "block", "block_rq_complete"):
            for key, vals in t.entries:
                if list(key) == ["dev"]:  # the keys=dev counter
                    comp[int(key["dev"])] = vals.get("hitcount", 0)
        counts = self.lat.read()
        done, self.cur = self.cur, Interval()
        for (dev, us), n in counts.items():
            d = n - self.seen.get((dev, us), 0)
            if d:
                done.lats.setdefault(dev, []).extend([us * 1000] * d)
                self.matched[dev] = self.matched.get(dev, 0) + d
        # Unmatched completions, counted on the running totals (reading a
        # table takes time: 12,613 of 14,155 I/Os were called unmatched in
        # a 6.12 guest when each interval was counted on its own).
        for dev, n in comp.items():
            u = max(0, n - self.matched.get(dev, 0)) - self.unmatched.get(dev, 0)
            if u > 0:
                done.unmatched[dev] = u
                self.unmatched[dev] = self.unmatched.get(dev, 0) + u
        self.seen = counts
        if final:
            done.lost = self.lost()
        return done

    def lost(self) -> int:
        return self.lat.dropped()


def numpy_usable() -> bool:
    """numpy for the streaming path, unless absent (or a test says no)."""
    if switches.get("NO_NUMPY") == "1":
        return False
    import importlib.util
    return importlib.util.find_spec("numpy") is not None


def open_source(s, *, queued: bool, devs: Dict[int, str], iotype: Optional[str],
                kb: int, stream: bool) -> Source:
    """The best way this kernel offers (``stream``: never in the kernel)."""
    if not stream and s.features.has("hist") and s.features.has("synthetic"):
        return InKernel(s, queued, devs, iotype, kb)
    if queued or not numpy_usable():
        return Stream(s, queued, devs, iotype, kb)
    from ftracetools.engines.blockarrays import VecStream
    return VecStream(s, devs, iotype, kb)

