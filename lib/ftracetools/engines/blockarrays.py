"""Block I/O pairing on arrays: ``VecStream``, the numpy twin of
``engines.blockio.Stream`` (the two agree event for event: tests/unit).
"""

import time
from typing import Dict, Optional

from ftracetools.engines.blockio import (BIO_EVENTS, COMPLETE, HOLD_NS, PURGE_NS, REQUEUE,
                                         START, Interval, Stream, describe, iotype_filter,
                                         op_of, routes)
from ftracetools.kernel import filters
from ftracetools.kernel.formats import EventFormat
from ftracetools.ring.pages import PageLayout
from ftracetools.ring.reader import RawReader
from ftracetools.ring.source import preload

__all__ = ["VecStream"]


class VecStream(Stream):
    """The streaming path with numpy: issues, completions and requeues of
    request- and bio-based devices in one instance (completions enabled
    first, as Stream has them), a round's pages decoded as arrays
    (ring.arrays.WalkedPages: records of every size at once). Pairing is
    the same as Stream's, done on arrays: events sorted by (device,
    sector, direction, time); in each run of one key, completions close
    issues first in, first out; a completion with no open issue is an
    orphan, kept for a second (an issue may become visible later) and
    then counted as unmatched. Not for -Q (merges change keys) nor for
    whose I/O it was: Stream does that. One instance where there were
    two (four with bio-based devices): each costs the kernel some 30 ms
    to set up and 40 ms to remove."""

    def __init__(self, s, devs: Dict[int, str], iotype: Optional[str], kb: int) -> None:
        # numpy (70 ms to import here) is loaded once tracing runs and the
        # banner is out (the buffers hold the events): in the background,
        # while the loop waits for the first round, which uses it
        self.np = None
        self.root = s.root
        req, bio = routes(devs)
        self.what = describe(bio)
        self.glob = iotype
        self.kinds = {}
        self.fields = {}    # event ID -> {field: (offset, numpy format)}
        events = []
        if bio:
            bfilt = filters.all_of(filters.any_of("dev", bio), iotype_filter(iotype))
            events.append((BIO_EVENTS[1], COMPLETE, bfilt))
        if req is not None:
            filt = filters.all_of(filters.any_of("dev", req) if req else None,
                                  iotype_filter(iotype))
            events += [("block_rq_complete", COMPLETE, filt),
                       ("block_rq_requeue", REQUEUE, filt), ("block_rq_issue", START, filt)]
        if bio:
            events.append((BIO_EVENTS[0], START, bfilt))
        s.set("trace_clock", "mono")
        s.set_buffer_kb(kb)
        for name, kind, filt in events:
            fmt = EventFormat.load(s.root, "block", name)
            s.enable_event("block", name, filt)
            self.kinds[fmt.id] = kind
            fields = {}
            for f in ("dev", "sector", "nr_sector"):
                fl = fmt.field(f)
                fields[f] = (fl.offset, "<u%d" % fl.size)
            fl = fmt.field("rwbs")
            if iotype:      # (-i: the whole rwbs, matched as a glob)
                fields["rwbs"] = (fl.offset, "S%d" % min(fl.size, 16))
            else:           # its first two letters only
                fields["rw0"] = (fl.offset, "u1")
                fields["rw1"] = (fl.offset + 1, "u1")
            self.fields[fmt.id] = fields
        r = RawReader(s.dir, s.root)
        s.own(r)
        self.readers = [r]
        self.lost_seen = 0
        self.cur = Interval()
        self.lost_hint = "enlarge the buffer with -b (now %d KB per CPU)" % kb
        # Each round has a fixed cost (some dozens of array operations):
        # fewer, larger rounds. The buffer holds seconds of events at the
        # rates a loop device reaches, and a buffer half full wakes us.
        self.tick = 0.25

    def wait(self, timeout: float) -> object:
        return self.readers[0].wait(timeout)   # the (first) completions

    def live(self) -> None:
        preload("numpy")    # loaded by the first round: tracing is live

    def _load(self) -> None:
        if self.np is not None:
            return
        import numpy as np
        from ftracetools.ring.arrays import WalkedPages
        self.np = np
        self.walker = WalkedPages(PageLayout(self.root))
        self.groups, self.kind_of = self._groups()
        self.carry = self._events([], [], [], [], [], [])

    @property
    def pending(self):
        self._load()
        return self.carry["ts"][self.carry["kind"] == START].tolist()

    @property
    def orphans(self):
        self._load()
        return self.carry["ts"][self.carry["kind"] != START].tolist()

    def _events(self, kind, ts, dev, sector, nr, op):
        np = self.np
        return {"kind": np.asarray(kind, np.int8), "ts": np.asarray(ts, np.int64),
                "dev": np.asarray(dev, np.int64),
                # (u64)-1 for requests without a sector (flushes): wraps to -1
                "sector": np.asarray(sector, np.uint64).astype(np.int64),
                "nr": np.asarray(nr, np.int64), "op": np.asarray(op, np.int16)}

    def _ops(self, recs):
        """Direction letters of the records' rwbs (-1: not -i's)."""
        np = self.np
        if self.glob is None:  # as _op: a leading F is a preflush flag
            r0, r1 = recs["rw0"].astype(np.int16), recs["rw1"].astype(np.int16)
            flush = (r0 == 70) & ((r1 == 87) | (r1 == 68) | (r1 == 82) | (r1 == 78))
            return np.where(flush, r1, r0)
        uniq, inv = np.unique(recs["rwbs"], return_inverse=True)
        table = np.array([op_of(bytes(u), self.glob) for u in uniq.tolist()], np.int16)
        return table[inv.reshape(-1)] if len(uniq) else np.empty(0, np.int16)

    def _groups(self):
        """The event IDs by field layout (an issue's fields lie where a
        completion's do: one gathering serves both), each with its
        fields, and a table of each ID's kind."""
        np = self.np
        by = {}
        for typ, fields in self.fields.items():
            by.setdefault(tuple(sorted(fields.items())), []).append(typ)
        kind_of = np.full(1 << 16, -1, np.int8)
        for typ, kind in self.kinds.items():
            kind_of[typ] = kind
        return [(ids, self.fields[ids[0]]) for ids in by.values()], kind_of

    def _read(self):
        """This round's events, as arrays."""
        np, w = self.np, self.walker
        parts = []
        for rd in self.readers:
            buf, runs = rd.drain_joined()
            rec, lost = w.decode_joined(buf, sum(k for _c, k in runs))
            for n in lost:
                rd.note_lost(n)
            types = rec["type"]
            for ids, fields in self.groups:
                m = types == ids[0]
                for typ in ids[1:]:
                    m |= types == typ
                hit = np.count_nonzero(m)
                if not hit:
                    continue
                sub = rec if hit == len(m) else {k: rec[k][m] for k in ("at", "ts", "type")}
                f = {k: w.field(sub, off, fmt) for k, (off, fmt) in fields.items()}
                parts.append(self._events(self.kind_of[sub["type"]], sub["ts"], f["dev"],
                                          f["sector"], f["nr_sector"], self._ops(f)))
        return parts

    def _cat(self, parts):
        np = self.np
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _take(self, ev, mask):
        return {k: v[mask] for k, v in ev.items()}

    def drain(self, upto: int = 0) -> None:
        self._load()
        np = self.np
        limit = upto or time.monotonic_ns() - HOLD_NS
        parts = self._read()
        ev = self._cat([self.carry] + parts) if parts else self.carry
        mine = ev["op"] >= 0
        if np.count_nonzero(mine) < len(mine):
            ev = self._take(ev, mine)
        for _ in range(8):  # the rest of a partial completion pairs again
            ev, rest = self._pair(ev, limit)
            if not len(rest["ts"]):
                break
            ev = self._cat([ev, rest])
        self.carry = ev

    def _pair(self, ev, limit: int):
        """Pair what can be; return (what stays open, partial rests).
        Events after ``limit`` (they may precede events not yet seen)
        close nothing and stay."""
        np = self.np
        n = len(ev["ts"])
        if not n:
            return ev, ev
        # by key, then time; at one time an issue before a completion
        start = ev["kind"] == START
        ts2 = ev["ts"] * 2 + ~start
        so = ev["sector"] * 64 + (ev["op"] & 63)   # op: an ASCII letter
        dev = ev["dev"]
        one_dev = not len(dev) or (dev == dev[0]).all()
        if one_dev and -(1 << 62) // n < so.min() and so.max() < (1 << 62) // n:
            # as lexsort((ts2, so)), a quarter of its time: rank by time
            # (the pages come in runs already in time order), then sort the
            # key and the rank made one number; the rank is its remainder.
            # (A sort of values, not argsort: numpy's AVX2 argsort gathers,
            # which QEMU 7.2's emulation faults on: tests/vm/runvm.py.)
            by_time = np.argsort(ts2, kind="stable")
            order = by_time[np.sort(so[by_time] * n + np.arange(n)) % n]
        else:
            order = np.lexsort((ts2, so) if one_dev else (ts2, so, dev))
        # (positions below are in that order; order[] maps them back: the
        # arrays themselves are not sorted, only what is taken from them)
        so = so[order]
        same = np.empty(n, bool)     # the same key as the event before
        same[0] = False
        np.equal(so[1:], so[:-1], out=same[1:])
        if not one_dev:
            dev = dev[order]
            same[1:] &= dev[1:] == dev[:-1]
        is_issue = start[order]
        late = ev["ts"][order] > limit
        closer = ~is_issue & ~late
        shut = np.nonzero(closer)[0]
        # The common case: in each key an issue, its completion, the next
        # issue... A closer first in its key's run is an orphan (nothing
        # before it to close); any other closes the event before it, an
        # issue of its key that does not itself follow one (first in,
        # first out: that issue is the oldest open). The keys where that
        # does not hold (two in flight, a requeue, a completion twice)
        # are paired by _fifo.
        first = ~same[shut]
        lone = shut[first]
        shut = shut[~first]
        opened = shut - 1   # (not first: shut > 0)
        ok = is_issue[opened]
        ok &= ~(same[opened] & is_issue[np.maximum(opened - 1, 0)])
        if not ok.all():
            grp = np.cumsum(~same) - 1
            bad = np.zeros(grp[-1] + 1, bool)
            bad[grp[shut[~ok]]] = True
            in_bad = bad[grp]
            sub = np.nonzero(in_bad)[0]
            o_b, s_b, l_b = self._fifo(len(sub), same[sub], is_issue[sub], closer[sub])
            good = ~in_bad[shut]
            opened = np.concatenate((opened[good], sub[o_b]))
            shut = np.concatenate((shut[good], sub[s_b]))
            lone = np.concatenate((lone[~in_bad[lone]], sub[l_b]))
        o_i, o_c = order[opened], order[shut]   # (in the arrays)
        done = ev["kind"][o_c] == COMPLETE
        c_nr, i_nr = ev["nr"][o_c], ev["nr"][o_i]
        partial = done & (c_nr > 0) & (c_nr < i_nr)
        whole = done & ~partial
        lat = ev["ts"][o_c[whole]] - ev["ts"][o_i[whole]]
        devs = ev["dev"][o_c[whole]]
        if len(lat):
            lats = self.cur.lats
            one = devs[0] == devs[-1] and (devs == devs[0]).all()
            for dv in ([int(devs[0])] if one else np.unique(devs).tolist()):
                lats.setdefault(dv, []).append(lat if one else lat[devs == dv])
        keep = is_issue | late
        keep[opened] = False
        keep[lone] = True   # orphans: kept a while (see rotate)
        # the rest of a partial completion: an issue at the next sector,
        # with the same start
        p_o, p_s = o_i[partial], o_c[partial]
        rest = self._events(
            np.full(len(p_o), START, np.int8), ev["ts"][p_o], ev["dev"][p_o],
            ev["sector"][p_o] + ev["nr"][p_s], ev["nr"][p_o] - ev["nr"][p_s],
            ev["op"][p_o])
        return self._take(ev, order[keep]), rest

    def _fifo(self, n: int, same, is_issue, closer):
        """In each run of one key (in time order): which closers close an
        issue, first in, first out, and which are orphans (no open issue
        before them). Returns (the issues closed, their closers, the
        orphans), positions in the run order."""
        np = self.np
        key_change = ~same
        grp = np.cumsum(key_change) - 1
        starts = np.nonzero(key_change)[0]
        bal = np.cumsum(np.where(is_issue, 1, np.where(closer, -1, 0)))
        bal = bal - np.concatenate(([0], bal))[starts][grp]  # within each key
        # Running minimum of the balance within each key (an offset per
        # key keeps earlier keys out of it): a closer taking it below
        # every earlier value (and below 0) finds no open issue: an orphan.
        span = 2 * n + 2
        runmin = np.minimum.accumulate(bal - grp * span) + grp * span
        prevmin = np.minimum(np.concatenate(([0], runmin[:-1])), 0)
        prevmin[starts] = 0
        orphan = closer & (bal < prevmin)
        closing = closer & ~orphan
        # First in, first out within each key: the k-th closing event
        # closes the k-th issue. Both lists run key by key, in time order.
        n_close = np.bincount(grp[closing], minlength=len(starts))
        iss = np.nonzero(is_issue)[0]
        rank = np.arange(len(iss)) - np.searchsorted(iss, starts)[grp[iss]]
        opened = iss[rank < n_close[grp[iss]]]
        return opened, np.nonzero(closing)[0], np.nonzero(orphan)[0]

    def rotate(self, final: bool = False) -> Interval:
        """End the interval: pair all the kernel has, start a new one."""
        self.drain(1 << 62 if final else 0)
        np = self.np    # loaded by drain (a signal can come before any round)
        done, self.cur = self.cur, Interval()
        now = time.monotonic_ns()
        c = self.carry
        old = (1 << 62) if final else now - 10**9
        gone = (c["kind"] != START) & (c["ts"] < old)
        for dv, n in zip(*np.unique(c["dev"][gone], return_counts=True)):
            done.unmatched[int(dv)] = done.unmatched.get(int(dv), 0) + int(n)
        stale = (c["kind"] == START) & (c["ts"] < now - PURGE_NS) \
            if len(c["ts"]) > 4096 else np.zeros(len(c["ts"]), bool)
        self.carry = self._take(c, ~(gone | stale))
        lost = self.lost()
        done.lost, self.lost_seen = lost - self.lost_seen, lost
        return done

    def lost(self) -> int:
        return sum(max(r.lost(), r.flagged_lost) for r in self.readers)
