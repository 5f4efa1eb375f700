"""Block I/O: every request's latency, from its start (issue, or queue
insert with ``queued``) to its completion, per device.

Three ways, best first, chosen by ``open_source``:

- ``InKernel``: hist triggers and a synthetic event pair the events in
  the kernel (``kernel.triggers.KernelLatency``); nothing crosses the
  buffer. Pairs on (dev, sector).
- ``VecStream`` (numpy): issues and completions stream into two
  instances and are paired as arrays (``engines.blockarrays``).
- ``Stream``: the same, one event at a time (``queued``, or no numpy);
  the only one that knows whose each I/O is (``who``): then it keeps one
  record per I/O (``Interval.ios``) for biosnoop and iolatency ``--by``.

Request-based devices (disks, loop, nvme) are timed from their request
events; bio-based ones (device-mapper, md, zram), which have none, from
``block_bio_queue`` to ``block_bio_complete``, keyed alike by (dev,
sector, direction) (``routes``), when named with ``-d``.

The task that issued an I/O is the one current at its submission: the
start event (``block_io_start``, or ``block_rq_insert`` on kernels before
6.5, or ``block_bio_queue``) carries its pid and comm; ``block_rq_issue``
may run in a kernel worker and the completion in an interrupt. A request
issued without an insert (direct issue, before 6.5) is the issuer's own.

Each is a ``Source`` for the tracing loop; ``rotate()`` ends an interval
and returns what it saw (an ``Interval``): latencies in ns per device (or
records of each I/O), completions without a start, events lost.
"""

import bisect
import os
import struct
import time
from typing import Dict, List, Optional, Tuple

from ftracetools import switches
from ftracetools.errors import ToolError, UsageError
from ftracetools.host import devices, procs
from ftracetools.kernel import filters, triggers
from ftracetools.kernel.formats import EventFormat
from ftracetools.ring.pages import page_offsets, parse_page
from ftracetools.ring.reader import RawReader
from ftracetools.ring.source import Source

__all__ = ["RWBS", "START", "COMPLETE", "MERGE", "ISSUE", "REQUEUE", "PURGE_NS",
           "HOLD_NS", "BIO_EVENTS", "parse_devices", "bio_based", "routes", "describe",
           "iotype_filter", "op_of", "unpacker", "Interval", "Stream", "InKernel",
           "open_source"]

RWBS = "FWDERNASMU"    # the letters blk_fill_rwbs() writes
PURGE_NS = 60 * 10**9  # forget issues without a completion after this long
HOLD_NS = 5 * 10**6    # events younger than this may precede unseen ones
START, COMPLETE, MERGE, ISSUE, REQUEUE = range(5)
FIELDS = ("common_type", "dev", "sector", "nr_sector", "rwbs")
WHO = ("common_pid", "comm")
BIO_EVENTS = ("block_bio_queue", "block_bio_complete")
TASKS_KB = 256         # per CPU, for the tasks made while tracing (task_newtask)
CLONE_THREAD = 0x00010000


def parse_devices(names: List[str], duration: str = "INTERVAL COUNT (1 %s)") -> Dict[int, str]:
    """``-d`` values (vda, /dev/vda, 253,0) -> {kernel dev: name}. A number
    that names no device is told how the tool takes a ``duration``."""
    out = {}
    for d in names:
        try:
            name, dev = devices.parse_device(d)
        except UsageError as e:
            if d.strip().replace(".", "").isdigit():
                raise UsageError("-d %s: %s" % (d, e), "-d names a device here, as in "
                                 "perf-tools; for a duration give " + duration % d) from None
            raise UsageError("-d %s: %s" % (d, e), e.hint) from None
        sysd = "/sys/class/block/" + name
        if os.path.exists(sysd + "/partition"):
            disk = os.path.basename(os.path.dirname(os.path.realpath(sysd)))
            raise UsageError("-d %s: a partition: block request events carry "
                             "the whole disk; use -d %s" % (d, disk))
        out[dev] = name
    return out


def bio_based(name: str) -> bool:
    """A disk without a request queue (device-mapper, md, zram, brd): its
    I/O shows only in the bio events."""
    sysd = "/sys/class/block/" + name
    return (os.path.isdir(sysd) and not os.path.exists(sysd + "/partition")
            and not os.path.isdir(sysd + "/mq"))


def routes(devs: Dict[int, str]) -> Tuple[Optional[Dict[int, str]], Dict[int, str]]:
    """Which devices are timed from which events: (request devices, {}
    for all of them, None for none; bio-based devices). Without ``-d``:
    every request device (the disks, as perf-tools and bcc see them),
    none of the bio-based ones, whose I/O is also that of the devices
    below them: they are timed when named."""
    bio = {d: n for d, n in devs.items() if bio_based(n)}
    req = {d: n for d, n in devs.items() if d not in bio}
    return (req or None) if devs else {}, bio


def describe(bio: Dict[int, str]) -> str:
    """What the banner says of bio-based devices' events."""
    if not bio:
        return ""
    return " (bio events for %s: %s to %s)" % (", ".join(sorted(bio.values())),
                                                *BIO_EVENTS)


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


def unpacker(fmt, rw_len: int, names=FIELDS) -> str:
    """struct for ``names`` (rwbs: its first rw_len bytes) at this
    kernel's offsets: the block events' layouts differ between versions."""
    code, pos = "<", 0
    flds = sorted((fmt.field(n) for n in names), key=lambda f: f.offset)
    if tuple(f.name for f in flds) != names:
        raise ToolError("block:%s has an unexpected layout" % fmt.name)
    for f in flds:
        code += "x" * (f.offset - pos)
        n = min(rw_len, f.size) if f.name == "rwbs" else f.size
        if f.name in ("rwbs", "comm"):
            code += "%ds" % n
        else:
            code += {2: "H", 4: "i" if f.name == "common_pid" else "I", 8: "Q"}[n]
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


def latency(record, queued: bool) -> int:
    """An I/O record's latency (ns): from its issue to the driver, or
    from its submission with ``queued`` (-Q) or where it has no issue (a
    bio-based device)."""
    done, start, issue = record[0], record[5], record[6]
    return done - (start if queued or issue is None else issue)


class Interval:
    """What one interval saw: latencies (ns) and unmatched completions,
    by kernel dev; with ``Stream(who=True)``, instead of latencies, a
    record of each I/O (``ios``) and how many completed (``count``: those
    of the traced processes, the ones below ``min_ns`` too).

    A record: (completion ns, dev, sector, bytes, direction letter, start
    ns, issue ns or None, tid, tgid, comm, kernel thread?); with a
    ``cgroups`` Lookup, ``cgroup`` gives each submitter's cgroup (tid ->
    path). Times are the
    trace clock (CLOCK_MONOTONIC); start is the submission (queue insert,
    or the bio's queueing), issue the request's (last) issue to the
    driver, None for bio-based devices.
    """

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.lats: Dict[int, list] = {}  # dev -> [ns]; VecStream: dev -> [arrays of ns]
        self.unmatched: Dict[int, int] = {}
        self.lost = 0
        self.ios: List[tuple] = []
        self.count = 0
        self.cgroup: Dict[int, Optional[str]] = {}   # tid -> cgroup path (--by cgroup)

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

    ``who``: each I/O is kept as a record (``Interval.ios``) with the task
    that submitted it, its queue and service times; ``targets`` (-p, -c)
    keeps only the I/Os of those processes; ``min_ns`` keeps only the I/Os
    at least that slow (from issue, or from the start with ``queued``),
    counting the others. The tasks made while tracing are recorded
    (task:task_newtask, in an instance of its own): a thread's process is
    known from its parent and CLONE_THREAD even once it has exited (/proc
    serves the tasks that were there before), and -p/-c's processes are
    followed into every thread and child they make.

    A requeued request keeps its start and submitter (with ``queued`` or
    ``who``): its next insert or issue takes it back.
    """

    what = ""
    cgroups = None      # a host.cgroups.Lookup (--by cgroup), or None

    def __init__(self, s, queued: bool, devs: Dict[int, str], iotype: Optional[str],
                 kb: int, *, who: bool = False, targets=None, min_ns: int = 0,
                 cgroups=None) -> None:
        s.set("trace_clock", "mono")
        s.set_buffer_kb(kb)
        req, bio = routes(devs)
        self.what = describe(bio)
        filt = filters.all_of(filters.any_of("dev", req) if req else None,
                              iotype_filter(iotype))
        self.kinds: Dict[int, int] = {}
        self.codes: Dict[int, str] = {}
        # (type -> unpack of common_pid, comm): the start events, with who
        self.whos: Dict[int, object] = {}
        self.queued, self.min_ns = queued, min_ns
        # The kernel's *X* filter on a char array (strnstr) reads past the
        # NUL into stale bytes: with -i, rwbs is checked again here.
        self.glob = iotype
        self.rw_len = 16 if self.glob else 2
        self.only: Optional[set] = None        # the tids of -p, -c
        self.tgids: Dict[int, int] = {}        # tid -> its process
        self.newtasks = None
        self.cgroups = cgroups
        if who:
            self._tasks_made(s)         # first: no task missed
        if targets is not None and targets.filtered:
            self.only = set(targets.tids())     # (-c: the command, stopped)
            targets.on_join(self.only.update)   # --cgroup: tasks that join it
            targets.on_leave(self.only.difference_update)     # ... and leave it
        # Completions are enabled before starts: a start recorded while
        # its completion was not yet would stay open and close a later
        # I/O of that sector (a wrong latency and owner); a completion
        # with no start counts as unmatched instead.
        bfilt = filters.all_of(filters.any_of("dev", bio), iotype_filter(iotype)) \
            if bio else None
        if bio:
            self._event(s, bfilt, BIO_EVENTS[1], COMPLETE)
        if req is not None:
            start = start_event(s, queued or who)
            self._event(s, filt, "block_rq_complete", COMPLETE)
            self._event(s, filt, "block_rq_requeue", REQUEUE)
            if queued or who:
                self._event(s, filters.any_of("dev", req) if req else None,
                            "block_bio_frontmerge", MERGE)
                if start == "block_rq_insert" or who:  # direct issues; issue times
                    self._event(s, filt, "block_rq_issue", ISSUE, who)
            self._event(s, filt, start, START, who)
        if bio:
            self._event(s, bfilt, BIO_EVENTS[0], START, who)
        # each event's own unpack, found by its type (common_type, u16 at 0)
        self.units = {i: struct.Struct(c).unpack_from for i, c in self.codes.items()}
        self.reader = RawReader(s.dir, s.root)
        s.own(self.reader)
        self.offsets = page_offsets     # (the tests hand over pages already split)
        # (dev, sector, op) -> (start ns, nr_sector[, who]); who: [tid, comm
        # bytes, issue ns, first sector, sectors]
        self.pending: Dict[tuple, tuple] = {}
        self.orphans: Dict[tuple, int] = {}    # (dev, sector, op) -> completion ns
        self.more: Dict[tuple, list] = {}      # key -> [(ns, nr)]: same sector in flight again
        # requeued requests (queued, who): key -> its pending entry
        self.requeued: Optional[Dict[tuple, tuple]] = {} if queued or who else None
        self.held: list = []                   # (ns, offset, page) not yet paired
        self.ops: Dict[bytes, int] = {}
        self.tasks: Dict[tuple, tuple] = {}    # (tid, comm) -> (tgid, comm, kthread)
        self.lost_seen = 0
        self.cur = Interval()
        self.lost_hint = "enlarge the buffer with -b (now %d KB per CPU)" % kb

    def _event(self, s, filt, name, kind, who=False) -> int:
        fmt = EventFormat.load(s.root, "block", name)
        self.codes[fmt.id] = unpacker(fmt, self.rw_len)
        if who:
            self.whos[fmt.id] = struct.Struct(unpacker(fmt, 0, WHO)).unpack_from
        s.enable_event("block", name, filt)
        self.kinds[fmt.id] = kind
        return fmt.id

    def _tasks_made(self, s) -> None:
        """Record every task made from now on (parent, child, flags)."""
        ts_ = s.sibling("tasks")
        ts_.set("trace_clock", "mono")
        ts_.set_buffer_kb(TASKS_KB)
        ts_.enable_event("task", "task_newtask")
        fmt = EventFormat.load(s.root, "task", "task_newtask")
        r = RawReader(ts_.dir, ts_.root)
        s.own(r)
        self.newtasks = (r, fmt.id, fmt.decoder(["common_pid", "pid", "clone_flags"]))

    def born(self, made) -> None:
        """Tasks made, in time order, as (parent tid, child tid, clone
        flags): a thread is its parent's process's, anything else its own;
        a child of -p/-c's is theirs."""
        tgids, only = self.tgids, self.only
        if len(tgids) > 8192:   # (the tasks of thousands of short-lived processes)
            tgids.clear()
        for parent, child, flags in made:
            tgids[child] = self._tgid(parent) if flags & CLONE_THREAD else child
            if only is not None and parent in only:
                only.add(child)
            if self.cgroups is not None:
                self.cgroups.inherit(parent, child)

    def _tgid(self, tid: int) -> int:
        t = self.tgids.get(tid)
        if t is None:
            t = self.tgids[tid] = (procs.tgid(tid) or tid) if tid else 0
        return t

    def wait(self, timeout: float) -> object:
        return self.reader.wait(timeout)

    def drain(self, upto: int = 0) -> None:
        r = self.reader
        limit = upto or time.monotonic_ns() - HOLD_NS
        if self.newtasks:  # before the I/Os: a task is made before it submits
            nr, nid, dec = self.newtasks
            out: list = []
            for cpu, page in nr.drain_pages():
                nr.note_lost(parse_page(page, cpu, nr.layout, out))
            out.sort(key=lambda e: e[0])
            self.born(dec(e[3]) for e in out if e[2] == nid)
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
        units, lats, more = self.units, self.cur.lats, self.more
        whos = self.whos
        for ts, off, page in evs:
            typ, dev, sector, nr, rw = units[page[off] | page[off + 1] << 8](page, off)
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
                    if self.requeued is not None:   # it comes back: the same I/O
                        self.requeued[key] = v
                    continue
                if 0 < nr < v[1]:  # partial completion: the rest follows
                    pend[(dev, sector + nr, op)] = (v[0], v[1] - nr) + v[2:]
                    continue
                if whos:
                    self._record(ts, dev, op, nr, v[0], v[2])
                    continue
                lat = ts - v[0]
            elif kind == MERGE:  # a bio merged in front: new start sector
                v = pend.pop((dev, sector + nr, op), None)
                if v is not None:
                    if whos:
                        v[2][3] = sector
                        v[2][4] += nr
                    pend[key] = (v[0], v[1] + nr) + v[2:]
                continue
            else:
                x = [*whos[typ](page, off), ts if kind == ISSUE else None, sector, nr] \
                    if whos else None
                if orph:
                    t = orph.get(key)
                    if t is not None and t >= ts:
                        del orph[key]
                        if whos:
                            self._record(t, dev, op, nr, ts, x)
                            continue
                        lst = lats.get(dev)
                        if lst is None:
                            lst = lats[dev] = []
                        lst.append(t - ts)
                        continue
                if self.requeued and key in self.requeued:   # back from a requeue
                    v = self.requeued.pop(key)
                    if key in pend:
                        more.setdefault(key, []).insert(0, pend[key])
                    pend[key] = v
                    if whos and kind == ISSUE:
                        v[2][2] = ts
                    continue
                v = pend.get(key)
                if v is None:
                    pend[key] = (ts, nr, x) if whos else (ts, nr)
                elif kind == START:  # an issue after an insert keeps its time
                    more.setdefault(key, []).append((ts, nr, x) if whos else (ts, nr))
                elif whos:  # the issue of the first one in flight not yet issued
                    for w in [v] + more.get(key, []):
                        if w[2][2] is None:
                            break
                    else:
                        w = v   # issued again (after a requeue)
                    w[2][2] = ts
                    w[2][4] = max(w[2][4], nr)
                continue
            lst = lats.get(dev)
            if lst is None:
                lst = lats[dev] = []
            lst.append(lat)

    def _record(self, ts: int, dev: int, op: int, nr: int, start: int, x: list) -> None:
        """One I/O completed (who): counted, and kept unless filtered out."""
        tid = x[0]
        if self.only is not None and tid not in self.only:
            return
        cur = self.cur
        cur.count += 1
        issue = x[2]
        if self.min_ns and ts - (start if self.queued or issue is None else issue) < self.min_ns:
            return
        task = self.tasks.get((tid, x[1]))
        if task is None:
            task = self._task(tid, x[1])
        cur.ios.append((ts, dev, x[3], max(x[4], nr) << 9, op, start, issue, tid) + task)
        if self.cgroups is not None and tid not in cur.cgroup:
            cur.cgroup[tid] = self.cgroups.of(tid)

    def _task(self, tid: int, comm: bytes) -> tuple:
        """(tgid, comm, kernel thread?) of a submitter, looked up once."""
        if len(self.tasks) > 4096:     # (thousands of short-lived submitters)
            self.tasks.clear()
        name = comm.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        t = self.tasks[(tid, comm)] = (self._tgid(tid), name, procs.kthread(tid, name))
        return t

    def rotate(self, final: bool = False) -> Interval:
        """End the interval: pair all the kernel has, start a new one."""
        self.drain(1 << 63 if final else 0)
        done, self.cur = self.cur, Interval()
        if self.cgroups is not None:    # read again: a task may move
            self.cgroups.keep(())
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
        if self.requeued and len(self.requeued) > 4096:
            self.requeued = {}
        return done

    def lost(self) -> int:
        n = max(self.reader.lost(), self.reader.flagged_lost)
        if self.newtasks:
            n += max(self.newtasks[0].lost(), self.newtasks[0].flagged_lost)
        return n


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
                kb: int, stream: bool, who: bool = False, targets=None,
                min_ns: int = 0, cgroups=None) -> Source:
    """The best way this kernel offers (``stream``: never in the kernel).
    Whose I/O it was (``who``, ``targets``, ``cgroups``) only Stream
    knows; bio-based devices are streamed."""
    if who or (targets is not None and targets.filtered):
        return Stream(s, queued, devs, iotype, kb, who=True, targets=targets,
                      min_ns=min_ns, cgroups=cgroups)
    if not stream and s.features.has("hist") and s.features.has("synthetic") \
            and not routes(devs)[1]:
        return InKernel(s, queued, devs, iotype, kb)
    if queued or not numpy_usable():
        return Stream(s, queued, devs, iotype, kb)
    from ftracetools.engines.blockarrays import VecStream
    return VecStream(s, devs, iotype, kb)
