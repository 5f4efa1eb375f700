"""schedtrace's summaries on arrays: the scheduler events of a round are
read as arrays (``vecpages``) and its run, wait and off-CPU accounting is
done on them with numpy.

``Rounds(tracker)`` keeps the same books as schedtrace's ``Tracker`` (the
reference: its dicts hold the state between rounds, and its ``switch``
handles what arrays do not). A round's events, in time order, are turned
into per-task entries (switch-out, switch-in, wakeup), sorted by task
and time behind one entry per task for the state it was in before the
round; each entry's predecessor then says what it closes: a switch-in
after a wakeup or a preemption is a run-queue wait, after a sleep an
off-CPU span; a switch-out after a switch-in on the same CPU is a run.
A switch that breaks a CPU's chain (its previous task is not the one the
CPU last switched to: a record the kernel did not make, or the first
switch seen on a CPU) goes through ``Tracker.switch`` on its own, between
two array segments.

``Stream`` reads the switches, wakeups, forks and run-time deltas of one
instance as arrays.
"""

import struct
from typing import Dict, List

import numpy as np

from ftracetools.ring.pages import PageLayout
from ftracetools.ring.arrays import WalkedPages

__all__ = ["COLUMNS", "Rounds", "Stream"]

SWITCH, WAKE, FORK, RUNTIME = 0, 1, 2, 3
# what a task entry is ...
_INIT, _IN, _OUT, _WAKE, _ARR = 0, 1, 2, 3, 4   # _ARR: an unrecorded switch-in
# ... and what it leaves the task as
_NONE, _RUN, _READY, _OFF = 0, 1, 2, 3
COLUMNS = ("kind", "ts", "cpu", "a", "st", "b")   # a, b: prev/next, woken/-, parent/child
# (a runtime delta: a = the task, st = the nanoseconds)


def _cat(parts: List[np.ndarray], dtype=np.int64) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype)


class Rounds:
    """Advances a Tracker by whole rounds of events."""

    def __init__(self, tracker) -> None:
        self.tr = tracker
        self.sleep = tracker.states.mask | tracker.states.dead
        self.dead = tracker.states.dead
        self.on_waits = None    # (tids, cpus, waits): arrays of a segment

    def advance(self, ev: Dict[str, np.ndarray]) -> None:
        """``ev``: arrays of COLUMNS, in time order."""
        n = len(ev["ts"])
        if not n:
            return
        tr = self.tr
        kind, a, b = ev["kind"], ev["a"], ev["b"]
        sw, wk = kind == SWITCH, kind == WAKE
        if tr.keep is None:
            kp, kn, kw = sw & (a != 0), sw & (b != 0), wk
            kr = kind == RUNTIME
        else:
            kept_a, kept_b = self._kept(ev)
            kp, kn, kw = sw & kept_a, sw & kept_b, wk & kept_a
            kr = (kind == RUNTIME) & kept_a
        lo = 0
        ts, cpu, st = ev["ts"], ev["cpu"], ev["st"]
        brk, unrec, self._lastts = self._breaks(ev)
        kn = (kn, kp & unrec)
        for i in brk.tolist():
            self._segment(ev, lo, i, kp, kn, kw)
            tr.switch(int(ts[i]), int(cpu[i]), int(a[i]), int(st[i]), int(b[i]))
            lo = i + 1
        self._segment(ev, lo, n, kp, kn, kw)
        if kr.any():
            self._runtime(ts[kr], a[kr], st[kr])

    def _runtime(self, ts, pids, d) -> None:
        """Tracker.runtime on arrays: each task's deltas summed."""
        tr = self.tr
        u, first, inv = np.unique(pids, return_index=True, return_inverse=True)
        d = d.copy()
        kseen, kcredit, start = tr.kseen, tr.kcredit, tr.start
        for pid, i in zip(u.tolist(), first.tolist()):
            if pid not in kseen:
                kseen.add(pid)
                if start is not None:
                    d[i] = min(int(d[i]), max(0, int(ts[i]) - start))
            c = kcredit.pop(pid, None)
            if c:
                d[i] -= c
                tr.kcut.pop(pid, None)
        sums = np.bincount(inv, d, len(u)).astype(np.int64)
        last = np.zeros(len(u), np.int64)
        np.maximum.at(last, inv, ts)
        tasks, task, klast = tr.tasks, tr.task, tr.klast
        for pid, s_, lt in zip(u.tolist(), sums.tolist(), last.tolist()):
            (tasks.get(pid) or task(pid)).krun += s_
            klast[pid] = lt

    def _kept(self, ev):
        """Whether a and b are traced tasks at their event's time: forks
        add the child from their own place in the round on."""
        keep = self.tr.keep
        kind, a, b = ev["kind"], ev["a"], ev["b"]
        added: Dict[int, int] = {}
        for i in np.nonzero(kind == FORK)[0].tolist():
            p, c = int(a[i]), int(b[i])
            if (p in keep or p in added) and c not in keep and c not in added:
                added[c] = i
        base = np.fromiter(keep, np.int64, len(keep))
        idx = np.arange(len(a))
        out = []
        for x in (a, b):
            m = np.isin(x, base)
            if added:
                kids = np.array(sorted(added), np.int64)
                at = np.array([added[k] for k in kids.tolist()], np.int64)
                late = np.isin(x, kids)
                pos = np.searchsorted(kids, x[late])
                late[late] = idx[late] > at[pos]
                m |= late
            out.append(m & (x != 0))
        # (a switch handed to Tracker.switch sees the round's children
        # already kept: it differs only for a pid reused within the round)
        keep.update(added)
        return out

    def _breaks(self, ev):
        """Switches whose previous task is not the one their CPU last
        switched to: (those left to Tracker.switch, those whose task's
        switch-in from idle was not recorded, the time of each switch's
        CPU's last switch). Tracker.switch takes a CPU's first switch
        (the trace's start) and a switch-out that was not recorded; a
        switch-in from idle that was not recorded (frequent: the 6.18
        development host leaves out a quarter of them under a pipe
        ping-pong) is an entry of the segment (``_ARR``)."""
        kind = ev["kind"]
        n = len(kind)
        unrec = np.zeros(n, bool)
        lastts = np.zeros(n, np.int64)
        swi = np.nonzero(kind == SWITCH)[0]
        if not len(swi):
            return swi, unrec, lastts
        c = ev["cpu"][swi]
        o = np.argsort(c, kind="stable")
        cs, prevs, nexts, tss = c[o], ev["a"][swi][o], ev["b"][swi][o], ev["ts"][swi][o]
        expect = np.empty(len(o), np.int64)
        expect[1:] = nexts[:-1]
        before = np.empty(len(o), np.int64)
        before[1:] = tss[:-1]
        first = np.ones(len(o), bool)
        first[1:] = cs[1:] != cs[:-1]
        cur, last = self.tr.cur, self.tr.last
        fc = cs[first].tolist()
        expect[first] = [-1 if cur.get(x) is None else cur[x] for x in fc]
        before[first] = [last.get(x, 0) for x in fc]
        bad = prevs != expect
        idle = bad & (expect == 0) & (prevs != 0)
        at = swi[o]
        unrec[at[idle]] = True
        lastts[at] = before
        return np.sort(at[bad & ~idle]), unrec, lastts

    def _segment(self, ev, lo, hi, kp, kn, kw) -> None:
        if hi <= lo:
            return
        tr = self.tr
        sl = slice(lo, hi)
        kind, ts, cpu = ev["kind"][sl], ev["ts"][sl], ev["cpu"][sl]
        a, st, b = ev["a"][sl], ev["st"][sl], ev["b"][sl]
        sw = kind == SWITCH
        if sw.any():    # each CPU: its last switch
            swc, swb, swt = cpu[sw], b[sw], ts[sw]
            u, ri = np.unique(swc[::-1], return_index=True)
            j = len(swc) - 1 - ri
            for c, nx, t in zip(u.tolist(), swb[j].tolist(), swt[j].tolist()):
                tr.cur[c], tr.last[c] = nx, t
        om, im, wm, am = kp[sl], kn[0][sl], kw[sl], kn[1][sl]
        tid = np.concatenate((a[om], b[im], a[wm], a[am]))
        if not len(tid):
            return
        # per event: an unrecorded arrival, its switch-out, switch-in; a wakeup
        pos = np.arange(lo, hi, dtype=np.int64) * 4
        ni, nw, na = int(im.sum()), int(wm.sum()), int(am.sum())
        no = len(tid) - ni - nw - na
        uniq = np.unique(tid)
        nu = len(uniq)
        # Each task's books before the segment (Tracker's dicts): on a CPU
        # since, runnable since, off CPU since (in a state), last CPU.
        since, ready, off, lastcpu = tr.since, tr.ready, tr.off, tr.cpu
        ul = uniq.tolist()
        i_since = [since.get(t) for t in ul]
        i_off = [off.get(t) for t in ul]
        i_has = [np.array([x is not None for x in col], bool) for col in (
            i_since, [ready.get(t) for t in ul], i_off)]
        i_nts = np.array([0 if x is None else x[0] for x in i_since], np.int64)
        i_nc = np.array([-1 if x is None else x[1] for x in i_since], np.int64)
        i_rts = np.array([ready.get(t, 0) for t in ul], np.int64)
        i_ots = np.array([0 if x is None else x[0] for x in i_off], np.int64)
        i_ost = np.array([0 if x is None else x[1] for x in i_off], np.int64)
        i_lc = np.array([lastcpu.get(t, -1) for t in ul], np.int64)
        T = np.concatenate((uniq, tid))
        key = np.concatenate((np.full(nu, -1, np.int64), pos[om] + 1, pos[im] + 2, pos[wm],
                              pos[am]))
        order = np.lexsort((key, T))
        T = T[order]
        W = np.concatenate((np.full(nu, _INIT, np.int8), np.full(no, _OUT, np.int8),
                            np.full(ni, _IN, np.int8), np.full(nw, _WAKE, np.int8),
                            np.full(na, _ARR, np.int8)))[order]
        # (an arrival's time: its CPU's last switch; its task's wakeup if later)
        TS = np.concatenate((np.zeros(nu, np.int64), ts[om], ts[im], ts[wm],
                             self._lastts[sl][am]))[order]
        C = np.concatenate((np.full(nu, -1, np.int64), cpu[om], cpu[im], cpu[wm],
                            cpu[am]))[order]
        S = np.concatenate((np.zeros(nu, np.int64), st[om],
                            np.zeros(ni + nw + na, np.int64)))[order]
        init = W == _INIT
        g = np.cumsum(init) - 1
        # On a CPU: set by a switch-in, ended by any switch-out.
        isin, isout = W == _IN, W == _OUT
        on_set, on_end = self._marks(isin, isout, init, i_has[0][g])
        NTS = np.where(init, i_nts[g], TS)
        NC = np.where(init, i_nc[g], C)
        on_set, on_end = np.roll(on_set, 1), np.roll(on_end, 1)     # before each entry
        running = on_set > on_end
        runm = isout & running & (NC[on_set] == C)
        run_dt = np.where(runm, TS - NTS[on_set], 0)
        last = np.append(np.nonzero(init)[0][1:], len(T)) - 1
        n_left = self._left(*self._marks(isin, isout, init, i_has[0][g]), init, last)
        # A wakeup of a task on a CPU changes nothing (Tracker.wakeup), nor
        # does an unrecorded arrival on the CPU the task is known to be on.
        eff = ((W != _WAKE) | ~running) & ((W != _ARR) | ~running | (NC[on_set] != C))
        if not eff.all():
            T, W, TS, C, S, init, g, isin, isout, run_dt = (
                x[eff] for x in (T, W, TS, C, S, init, g, isin, isout, run_dt))
        n = len(T)
        gs = np.nonzero(init)[0]
        iswk, isarr = W == _WAKE, W == _ARR
        deadm = isout & ((S & self.dead) != 0)
        offset = isout & ~deadm & ((S & self.sleep) != 0)
        rdyset = isout & ~deadm & ~offset
        # Runnable: since a wakeup or a switch-out in R/R+, until a switch-in.
        r_set, r_end = self._marks(rdyset | iswk, isin | isarr, init, i_has[1][g])
        le = np.append(gs[1:], n) - 1
        r_left = self._left(r_set, r_end, init, le)
        r_set, r_end = np.roll(r_set, 1), np.roll(r_end, 1)
        RTS = np.where(init, i_rts[g], TS)
        waitm = isin & (r_set > r_end)
        dt_w = np.where(waitm, TS - RTS[r_set], 0)
        isin_ = isin | isarr
        # Off CPU: since a switch-out asleep, until a wakeup or switch-in.
        o_set, o_end = self._marks(offset, isin_ | iswk, init, i_has[2][g])
        o_left = self._left(o_set, o_end, init, le)
        o_set, o_end = np.roll(o_set, 1), np.roll(o_end, 1)
        OTS = np.where(init, i_ots[g], TS)
        OST = np.where(init, i_ost[g], S)
        if na:  # an arrival: not before its task woke, nor (its wakeup unseen)
            # before it went to sleep; then its switch-out's run
            TS = np.where(isarr & (r_set > r_end), np.maximum(TS, RTS[r_set]), TS)
            TS = np.where(isarr & (o_set > o_end), np.maximum(TS, OTS[o_set]), TS)
            after = np.roll(isarr, 1) & isout
            run_dt = np.where(after, TS - np.roll(TS, 1), run_dt)
        offm = (isin_ | iswk) & (o_set > o_end)
        dt_o = np.where(offm, TS - OTS[o_set], 0)

        def total(m, v=None):
            return np.add.reduceat(m.astype(np.int64) if v is None else np.where(m, v, 0), gs)

        run, runs = np.add.reduceat(run_dt, gs), total(isin_)
        vol, invol = total(deadm | offset), total(rdyset)
        wait, waits = total(waitm, dt_w), total(waitm)
        maxw = np.maximum.reduceat(dt_w, gs)
        ii = np.nonzero(isin_)[0]
        gi, ci = g[ii], C[ii]
        firstin = np.ones(len(ii), bool)
        firstin[1:] = gi[1:] != gi[:-1]
        pc = np.roll(ci, 1)
        pc[firstin] = i_lc[gi[firstin]]
        migr = np.bincount(gi, ((pc != -1) & (pc != ci)).astype(np.float64),
                           nu).astype(np.int64)
        offs = {}
        if offm.any():
            ost = OST[o_set]
            for sv in np.unique(ost[offm]).tolist():
                m = offm & (ost == sv)
                offs[tr.states.letters(sv)] = (total(m, dt_o).tolist(), total(m).tolist())
        has = total(isin_ | isout | offm) > 0
        unr = total(isarr)
        tr.unrecorded += int(unr.sum())
        tasks, task = tr.tasks, tr.task
        cols = [x.tolist() for x in (uniq, has, run, runs, vol, invol, wait, waits, maxw, migr,
                                     unr)]
        for k, (pid, h, r_, rn, vo, iv, w_, ws, mw, mg, un) in enumerate(zip(*cols)):
            if not h:
                continue
            t = tasks.get(pid) or task(pid)
            t.unrec += un
            t.run += r_
            t.runs += rn
            t.vol += vo
            t.invol += iv
            t.wait += w_
            t.waits += ws
            if mw > t.max_wait:
                t.max_wait = mw
            t.migr += mg
            for letters, (sums, cnts) in offs.items():
                if cnts[k]:
                    t.off[letters] = t.off.get(letters, 0) + sums[k]
        if waits.any():
            wt, wc, wd = T[waitm], C[waitm], dt_w[waitm]
            if self.on_waits is not None:
                self.on_waits(wt, wc, wd)
            elif tr.on_wait is not None:
                for x in zip(wt.tolist(), wc.tolist(), wd.tolist()):
                    tr.on_wait(*x)
        # the books after the segment: what each task's marks leave
        for pid, nw_, ns, rw_, rs, ow_, os_ in zip(
                ul, *(x.tolist() for x in n_left + r_left + o_left)):
            if nw_ == 0:
                since.pop(pid, None)
            elif nw_ == 2:
                since[pid] = (int(NTS[ns]), int(NC[ns]), int(NTS[ns]))
            if rw_ == 0:
                ready.pop(pid, None)
            elif rw_ == 2:
                ready[pid] = int(RTS[rs])
            if ow_ == 0:
                off.pop(pid, None)
            elif ow_ == 2:
                off[pid] = (int(OTS[os_]), int(OST[os_]))
        if len(ii):
            lastin = np.ones(len(ii), bool)
            lastin[:-1] = gi[1:] != gi[:-1]
            for pid, c_ in zip(T[ii][lastin].tolist(), ci[lastin].tolist()):
                lastcpu[pid] = c_
        if deadm.any():
            tr.dead.extend(T[deadm].tolist())

    @staticmethod
    def _marks(sets, ends, init, init_set):
        """For each entry, the last entry up to it (itself included) that
        set a mark, and the last that ended it: the mark holds after the
        entry if the first is later. Each task's first entry (its books
        before the segment) does one or the other, so neither reaches
        into the previous task's entries."""
        idx = np.arange(len(sets))
        return (np.maximum.accumulate(np.where(sets | (init & init_set), idx, -1)),
                np.maximum.accumulate(np.where(ends | (init & ~init_set), idx, -1)))

    @staticmethod
    def _left(m_set, m_end, init, last):
        """What a mark is after each task's last entry: 0 ended, 1 as it
        was before the segment, 2 set by the entry at m_set."""
        ms, held = m_set[last], m_set[last] > m_end[last]
        return np.where(held, np.where(init[ms], 1, 2), 0), ms


def _field_reader(fmt, names):
    """A per-record decoder of the named fields (for pages walked one
    record at a time): page, offset -> tuple."""
    parts = []
    for nm in names:
        f = fmt.field(nm)
        if f.data_loc:      # (6.10+: sched_process_fork's comms)
            def dyn(page, at, _loc=struct.Struct("<I").unpack_from, _at=f.offset):
                w = _loc(page, at)[0]   # (where the string is, from the payload's start)
                o = at - _at + (w & 0xffff)
                return (bytes(page[o:o + min(w >> 16, 16)]).split(b"\0", 1)[0],)
            parts.append((f.offset, dyn))
        elif nm.endswith("comm"):
            parts.append((f.offset, struct.Struct("%ds" % f.size).unpack_from))
        else:
            code = {1: "b", 2: "h", 4: "i", 8: "q"}[f.size]
            parts.append((f.offset, struct.Struct("<" + (code if f.signed else code.upper()))
                          .unpack_from))
    return lambda page, off: tuple(u(page, off + o)[0] for o, u in parts)


class Stream:
    """sched_switch, sched_wakeup(_new), sched_process_fork and
    (``runtime``) sched_stat_runtime from one buffer, as arrays of COLUMNS
    plus ``comm`` (each switch's next_comm), in time order. Records of
    several sizes share its pages: they are walked as arrays
    (``WalkedPages``: 70 ns a record here, about what pages of switches
    alone cost decoded as one-size records), forks (rare) one by one. One
    instance where there were two: each costs the kernel some 30 ms to set
    up and 40 ms to remove. ``lines``: the switches' LINE_COLUMNS too
    (prev_comm, prev_prio, next_prio: what an event line shows)."""

    def __init__(self, root, readers, fmts, runtime: bool = False,
                 lines: bool = False) -> None:
        self.readers = readers
        self.lines = lines
        lay = PageLayout(root)
        self.layout = lay
        self.walker = WalkedPages(lay)
        sw = fmts["sched_switch"]

        def num(fmt, nm):
            f = fmt.field(nm)
            return f.offset, "<%s%d" % ("i" if f.signed else "u", f.size)
        self.sw = sw.id
        self.sw_fields = [num(sw, nm) for nm in ("prev_pid", "prev_state", "next_pid")]
        self.line_fields = [num(sw, nm) for nm in ("prev_prio", "next_prio")]
        comm, pcomm = sw.field("next_comm"), sw.field("prev_comm")
        # (comms of their own length, none of the kernels here: one by one)
        self.sw_comm = None if comm.data_loc or pcomm.data_loc else (comm.offset,
                                                                     pcomm.offset)
        sw_names = ("prev_pid", "prev_state", "next_pid", "next_comm") + \
            (("prev_comm", "prev_prio", "next_prio") if lines else ())
        self.wakes = np.array([fmts[nm].id for nm in ("sched_wakeup", "sched_wakeup_new")
                               if nm in fmts], np.int64)
        self.wake_pid = fmts["sched_wakeup"].field("pid").offset
        rt = fmts.get("sched_stat_runtime") if runtime else None
        self.rt = None if rt is None else (rt.id, rt.field("pid").offset,
                                           rt.field("runtime").offset)
        self.walk = {sw.id: (SWITCH, _field_reader(sw, sw_names))}
        for nm in ("sched_wakeup", "sched_wakeup_new"):
            if nm in fmts:
                self.walk[fmts[nm].id] = (WAKE, _field_reader(fmts[nm], ("pid",)))
        fk = fmts.get("sched_process_fork")
        if fk is not None:
            self.walk[fk.id] = (FORK, _field_reader(fk, ("parent_pid", "child_pid",
                                                         "child_comm")))
        if rt is not None:
            self.walk[rt.id] = (RUNTIME, _field_reader(rt, ("pid", "runtime")))
        self.by_one = np.array([fk.id if fk is not None else -1] +
                               ([sw.id] if self.sw_comm is None else []), np.int64)
        self.carry = self._empty()
        self.mark = 0

    def _empty(self):
        e = {c: np.empty(0, np.int64) for c in COLUMNS}
        e["comm"] = np.empty(0, "S16")
        if self.lines:
            e.update(pcomm=np.empty(0, "S16"), pprio=np.empty(0, np.int64),
                     nprio=np.empty(0, np.int64))
        return e

    def _decode(self, rd, cpu, pages):
        """A CPU's pages as arrays (forks one by one)."""
        w = self.walker
        psize = self.layout.page_size
        parts = []
        rec, lost = w.decode(pages)
        for x in lost:
            rd.note_lost(x)
        types = rec["type"]

        def part(kind, m, a, st=None, b=None, comm=None, line=None):
            n = int(m.sum())
            z = np.zeros(n, np.int64)
            e = {"kind": np.full(n, kind, np.int64), "ts": rec["ts"][m],
                 "cpu": np.full(n, cpu, np.int64), "a": a,
                 "st": z if st is None else st, "b": z if b is None else b,
                 "comm": np.zeros(n, "S16") if comm is None else comm}
            if self.lines:
                e.update(line or {"pcomm": np.zeros(n, "S16"), "pprio": z, "nprio": z})
            parts.append(e)
        m = types == self.sw
        if m.any() and self.sw_comm is not None:
            sub = {"at": rec["at"][m]}
            a, st, b = (w.field(sub, off, fmt).astype(np.int64) for off, fmt in self.sw_fields)
            line = None
            if self.lines:
                pp, np_ = (w.field(sub, off, fmt).astype(np.int64)
                           for off, fmt in self.line_fields)
                line = {"pcomm": w.field(sub, self.sw_comm[1], "S16"), "pprio": pp,
                        "nprio": np_}
            part(SWITCH, m, a, st, b, w.field(sub, self.sw_comm[0], "S16"), line)
        m = np.isin(types, self.wakes)
        if m.any():
            part(WAKE, m, w.field({"at": rec["at"][m]}, self.wake_pid, "<i4").astype(np.int64))
        if self.rt is not None:
            rt_id, poff, roff = self.rt
            m = types == rt_id
            if m.any():
                sub = {"at": rec["at"][m]}
                part(RUNTIME, m, w.field(sub, poff, "<i4").astype(np.int64),
                     w.field(sub, roff, "<u8").astype(np.int64))
        # forks (and switches whose comm has its own length): one by one
        odd = np.nonzero(np.isin(types, self.by_one))[0]
        if len(odd):
            pg, at, ts = rec["page"][odd].tolist(), rec["at"][odd].tolist(), \
                rec["ts"][odd].tolist()
            e = self.rows((t, cpu, pages[i], a - i * psize) for t, i, a in zip(ts, pg, at))
            if e is not None:
                parts.append(e)
        return parts

    def rows(self, records):
        """Arrays of records decoded one by one: (ts, cpu, buffer, offset
        of the payload) each; None if none is ours."""
        rows = []
        none = (b"", 0, 0)      # (the LINE_COLUMNS of all but switches)
        for t, cpu, page, off in records:
            typ = page[off] | (page[off + 1] << 8)
            w = self.walk.get(typ)
            if w is None:
                continue
            k, dec = w
            v = dec(page, off)
            if k == SWITCH:
                rows.append((k, t, cpu, v[0], v[1], v[2], v[3]) + v[4:])
            elif k == RUNTIME:
                rows.append((k, t, cpu, v[0], v[1], 0, b"") + none)
            elif k == FORK:     # (comm: the child's)
                rows.append((k, t, cpu, v[0], 0, v[1], v[2]) + none)
            else:
                rows.append((k, t, cpu, v[0], 0, 0, b"") + none)
        if not rows:
            return None
        cols = list(zip(*rows))
        e = {c: np.array(cols[i], np.int64) for i, c in enumerate(COLUMNS)}
        e["comm"] = np.array(cols[6], "S16")
        if self.lines:
            e.update(pcomm=np.array(cols[7], "S16"), pprio=np.array(cols[8], np.int64),
                     nprio=np.array(cols[9], np.int64))
        return e

    def _read(self, drained=None):
        parts = []
        for which, rd in enumerate(self.readers):
            by_cpu: Dict[int, list] = {}
            for c, p in (rd.drain_pages() if drained is None else drained[which]):
                by_cpu.setdefault(c, []).append(p)
            for c, pages in by_cpu.items():
                parts += self._decode(rd, c, pages)
        return parts

    def round(self, upto=None, drained=None) -> Dict[str, np.ndarray]:
        """This round's events up to ``upto`` (None: all), in time order;
        later ones wait for the next round. ``drained``: the pages, per
        reader, if the caller has read them already."""
        parts = [self.carry] + self._read(drained)
        ev = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
        ok = ev["kind"] >= 0
        if not ok.all():
            ev = {c: v[ok] for c, v in ev.items()}
        order = np.argsort(ev["ts"], kind="stable")
        ev = {c: v[order] for c, v in ev.items()}
        if upto is None:
            n = len(order)
            if n:
                self.mark = max(self.mark, int(ev["ts"][-1]))
        else:
            n = int(np.searchsorted(ev["ts"], upto, side="right"))
            self.mark = max(self.mark, upto)
        self.carry = {c: v[n:] for c, v in ev.items()}
        return {c: v[:n] for c, v in ev.items()}

    def lost(self) -> int:
        return sum(r.lost() + r.flagged_lost for r in self.readers)
