"""funcgraph's text for large rounds, made with arrays (numpy).

A round of function_graph records is decoded as arrays
(``ring.arrays.WalkedPages``), merged across CPUs in time order as the
``Feed`` merges them, and turned into the ``Graph``'s text lines at once:
which records lie inside the wanted calls, which entry and exit make one
leaf line, which closing brace names its function, where the task on a
CPU changes. Python is left only the making of each line's string.

The text is the ``Graph``'s, byte for byte, and the ``Graph``'s state
(open calls, pending entries, last task on each CPU, open braces) is
carried on from round to round, so that the two ways take turns. A
round whose records are not the regular case (an interrupt recorded at a
wanted call's own depth, a lost exit) is handed to the ``Graph`` record
by record, as are the outputs made of call trees (JSON, folded stacks,
timelines) and the options the arrays do not make (-a, -t, -P, -s).
"""

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ftracetools.engines.callgraph import arrays_usable, fmt_duration, fmt_proc
from ftracetools.ring.arrays import WalkedPages

__all__ = ["GraphArrays"]

_NEST = "              |  "
_SEP = " ------------------------------------------\n"
# duration cells below 10 ms: mark by the kernel's thresholds (10 us,
# 100 us, 1 ms: "+", "!", "#"), padded to 8 characters after the number
_MARK_AT = np.array([10000, 10 ** 5, 10 ** 6], np.int64)
_MARKS = (" ", "+", "!", "#")
_PADS = tuple(" " * max(0, 8 - n) for n in range(16))


class GraphArrays:
    """Decodes rounds of pages and hands their text to ``graph``.

    ``ent`` and ``ext``: the entry and exit records' formats (exits with
    the kernel's call and return times); ``name(ip)``: a function's name.
    ``take(pages, upto)`` decodes (cpu, page) pairs in the ``Feed``'s
    order and returns the records up to ``upto`` (None: all) in time
    order, the rest kept for the next round; ``text(rec)`` makes their
    lines, or returns False, the ``Graph`` untouched, for the ``Graph``
    to take them record by record (``tuples(rec)``).
    """

    def __init__(self, graph, layout, ent, ext, name: Callable[[int], str],
                 note_lost: Callable[[int], None]) -> None:
        self.g, self.name, self.note_lost = graph, name, note_lost
        self.w = WalkedPages(layout)
        self.ent_id, self.ext_id = ent.id, ext.id
        self.off = {k: (ent.field(k).offset, ext.field(k).offset)
                    for k in ("common_pid", "func", "depth")}
        self.call_off = ext.field("calltime").offset
        self.ret_off = ext.field("rettime").offset
        self.pending: Optional[Dict[str, np.ndarray]] = None

    # -- decoding and merging ------------------------------------------------

    def _gather(self, rec, is_ent, key: str, fmt: str) -> np.ndarray:
        a, b = self.off[key]
        if a == b:
            return self.w.field(rec, a, fmt)
        return np.where(is_ent, self.w.field(rec, a, fmt), self.w.field(rec, b, fmt))

    def decode(self, pages: List[Tuple[int, bytes]]) -> Dict[str, np.ndarray]:
        raw, lost = self.w.decode([p for _c, p in pages])
        for n in lost:
            self.note_lost(n)
        typ = raw["type"]
        is_ent, is_ext = typ == self.ent_id, typ == self.ext_id
        mine = is_ent | is_ext
        if not mine.all():      # (another user's trace_marker lines, on the top level)
            raw = {k: v[mine] for k, v in raw.items()}
            is_ent, is_ext = is_ent[mine], is_ext[mine]
        cpus = np.array([c for c, _p in pages], np.int64)
        rec = {"ts": raw["ts"], "cpu": cpus[raw["page"]] if len(cpus) else raw["page"],
               "exit": is_ext,
               "pid": self._gather(raw, is_ent, "common_pid", "<i4").astype(np.int64),
               "ip": self._gather(raw, is_ent, "func", "<u8"),
               "depth": self._gather(raw, is_ent, "depth", "<i4").astype(np.int64)}
        x = {"at": raw["at"][is_ext]}
        call = np.zeros(len(is_ext), np.int64)
        ret = np.zeros(len(is_ext), np.int64)
        call[is_ext] = self.w.field(x, self.call_off, "<u8").astype(np.int64)
        ret[is_ext] = self.w.field(x, self.ret_off, "<u8").astype(np.int64)
        rec["calltime"], rec["dur"] = call, ret - call
        return rec

    def take(self, pages: List[Tuple[int, bytes]], upto: Optional[int],
             held: Optional[list] = None) -> Dict[str, np.ndarray]:
        """``held``: records as the Feed holds them (tuples, decoded), to
        go before the pages' (a switch from the record-by-record way)."""
        parts = []
        if self.pending is not None:
            parts.append(self.pending)
        if held:
            parts.append(self.from_tuples(held))
        if pages:
            parts.append(self.decode(pages))
        if not parts:
            return self.from_tuples([])
        rec = parts[0] if len(parts) == 1 else \
            {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        order = np.argsort(rec["ts"], kind="stable")
        rec = {k: v[order] for k, v in rec.items()}
        cut = len(order) if upto is None else int(np.searchsorted(rec["ts"], upto, "right"))
        self.pending = {k: v[cut:] for k, v in rec.items()}
        return {k: v[:cut] for k, v in rec.items()}

    def from_tuples(self, evs) -> Dict[str, np.ndarray]:
        """The Feed's records (ts, cpu, type, decoded fields) as arrays."""
        ext = self.ext_id
        evs = [e for e in evs if e[2] == self.ent_id or e[2] == ext]
        n = len(evs)
        ts = np.array([e[0] for e in evs], np.int64).reshape(n)
        is_ext = np.array([e[2] == ext for e in evs], bool).reshape(n)
        v = [e[3] for e in evs]
        call = np.array([x[3] if len(x) > 3 else 0 for x in v], np.int64).reshape(n)
        ret = np.array([x[4] if len(x) > 4 else 0 for x in v], np.int64).reshape(n)
        return {"ts": ts, "cpu": np.array([e[1] for e in evs], np.int64).reshape(n),
                "exit": is_ext,
                "pid": np.array([x[0] for x in v], np.int64).reshape(n),
                "ip": np.array([x[1] for x in v], np.uint64).reshape(n),
                "depth": np.array([x[2] for x in v], np.int64).reshape(n),
                "calltime": call, "dur": ret - call}

    def tuples(self, rec) -> list:
        """The records as ``GraphSource._handle`` takes them."""
        out = []
        ent, ext = self.ent_id, self.ext_id
        for ts, cpu, x, pid, ip, depth, call, dur in zip(
                *(rec[k].tolist() for k in ("ts", "cpu", "exit", "pid", "ip", "depth",
                                             "calltime", "dur"))):
            out.append((ts, cpu, ext, (pid, ip, depth, call, call + dur)) if x else
                       (ts, cpu, ent, (pid, ip, depth)))
        return out

    # -- the text ------------------------------------------------------------------

    def text(self, rec) -> bool:
        g = self.g
        n = len(rec["ts"])
        if not n:
            return True
        if g.stray or not arrays_usable(g):
            return False
        names: List[str] = []
        index: Dict[str, int] = {}
        uip, inv = np.unique(rec["ip"], return_inverse=True)
        fid_u = []
        for ip in uip.tolist():
            nm = self.name(ip)
            fid_u.append(index.setdefault(nm, len(index)))
            if len(names) < len(index):
                names.append(nm)
        fid = np.array(fid_u, np.int64)[inv.reshape(-1)]
        wanted_n = np.array([nm in g.wanted for nm in names], bool)
        kept = self._inside(rec, fid, wanted_n)
        if kept is None:
            return False
        keep, d, new_base = kept
        # (an exit timed below zero, its times from two CPUs' clocks, is
        # dropped by the Graph's threshold test: here too)
        ki = np.nonzero(keep & ~(rec["exit"] & (rec["dur"] < 0)))[0]
        self._lines(rec, ki, fid[ki], d[ki], names, index)
        for pid, b in new_base.items():
            if b is None:
                g.base.pop(pid, None)
            else:
                g.base[pid] = b
        return True

    def _inside(self, rec, fid, wanted_n):
        """Which records lie in the wanted calls, their depth below the
        call, and each task's open call at the end (None: none); None
        where the records are not the regular case.

        An interrupt taken as a wanted call returns comes at the call's
        own depth, before its exit (6.1 under QEMU: one in some thousands
        of calls, so in most large rounds): it and what it called are cut
        out, as the Graph drops them, and the spans found again."""
        g = self.g
        pid_r, depth_r, ext_r = rec["pid"], rec["depth"], rec["exit"]
        n = len(pid_r)
        op = np.argsort(pid_r, kind="stable")
        P, D, X = pid_r[op], depth_r[op], ext_r[op]
        F = fid[op]
        W = wanted_n[F] & ~X
        brk = np.nonzero(P[1:] != P[:-1])[0] + 1
        gs = np.concatenate(([0], brk))
        ge = np.concatenate((brk, [n]))
        gpid = P[gs].tolist()
        carried = [(k, g.base[p]) for k, p in enumerate(gpid) if p in g.base]
        cut = np.zeros(n, bool)         # the interrupts' records
        for _ in range(8):
            spans = self._spans(D, X, W, cut, gs, ge, carried, n)
            s_pos, s_dep, s_end, s_closed = spans
            bad = s_closed.copy()
            if len(s_pos):
                sc = s_end[s_closed]
                bad[s_closed] = ~(X[sc] & (D[sc] == s_dep[s_closed]))
            if not bad.any():
                break
            # each bad end must be an interrupt: an entry of another function
            # at the call's depth or above, ended by its own exit
            j = s_end[bad]
            if X[j].any() or W[j].any():
                return None     # a shallower exit, or a wanted call's exit lost
            for jj, sd in zip(j.tolist(), D[j].tolist()):
                k = jj + 1
                grp_end = ge[np.searchsorted(gs, jj, "right") - 1]
                while k < grp_end and (cut[k] or D[k] > sd):
                    k += 1
                if k == grp_end or not X[k] or D[k] != sd or F[k] != F[jj]:
                    return None     # open past the round, or its exit lost
                cut[jj:k + 1] = True
        else:
            return None
        if not len(s_pos):
            return np.zeros(n, bool), np.zeros(n, np.int64), {}
        first = (s_pos + 1) // 2        # the first record of each span
        last = np.where(s_closed, s_end, ge[np.searchsorted(gs, first, "right") - 1] - 1)
        mark = np.zeros(n + 1, np.int64)
        np.add.at(mark, first, 1)
        np.add.at(mark, last + 1, -1)
        inside = (np.cumsum(mark)[:n] > 0) & ~cut
        sid = np.searchsorted(first, np.arange(n), "right") - 1
        dd = D - s_dep[np.maximum(sid, 0)]
        if g.maxdepth:
            inside &= dd < g.maxdepth
        keep = np.zeros(n, bool)
        keep[op] = inside
        d = np.zeros(n, np.int64)
        d[op] = dd
        # each task's state at the end: its last call open, or none
        new_base: Dict[int, Optional[int]] = {}
        s_grp = np.searchsorted(gs, first, "right") - 1
        for gi, c, b in zip(s_grp.tolist(), s_closed.tolist(), s_dep.tolist()):
            new_base[gpid[gi]] = None if c else b
        return keep, d, new_base

    @staticmethod
    def _spans(D, X, W, cut, gs, ge, carried, n):
        """The outermost wanted calls of each task (records in task order,
        those ``cut`` left out): where each starts (2i for record i, 2gs-1
        for a call open from before the round), its depth, the first
        record after it at its depth or above (its end), and whether that
        end is in the round."""
        ci = np.nonzero(W & ~cut)[0]
        grp_of = np.searchsorted(gs, ci, "right") - 1
        c_pos, c_dep, c_grp_end = [ci * 2], [D[ci]], [ge[grp_of]]
        if carried:
            kk = np.array([k for k, _b in carried], np.int64)
            c_pos.append(gs[kk] * 2 - 1)
            c_dep.append(np.array([b for _k, b in carried], np.int64))
            c_grp_end.append(ge[kk])
        pos2 = np.concatenate(c_pos)
        dep = np.concatenate(c_dep)
        gend = np.concatenate(c_grp_end)
        o = np.argsort(pos2, kind="stable")
        pos2, dep, gend = pos2[o], dep[o], gend[o]
        end = np.empty(len(pos2), np.int64)
        for dv in np.unique(dep).tolist():
            sel = np.nonzero(dep == dv)[0]
            le = np.nonzero((D <= dv) & ~cut)[0]
            k = np.searchsorted(le * 2, pos2[sel], "right")
            j = le[np.minimum(k, len(le) - 1)] if len(le) else np.zeros(len(k), np.int64)
            j = np.where(k < len(le), j, n)
            end[sel] = np.minimum(j, gend[sel])
        closed = end < gend
        # the outermost: not inside an earlier candidate's span (one
        # open at the round's end reaches its task's last record)
        reach = np.where(closed, end * 2, gend * 2 - 2)
        prior = np.maximum.accumulate(np.concatenate(([-2], reach[:-1])))
        start = pos2 > prior
        return pos2[start], dep[start], end[start], closed[start]

    def _lines(self, rec, ki, f, d, names: List[str], index: Dict[str, int]) -> None:
        """The lines of the kept records (round order ``ki``), with the
        entries left pending from the last round first."""
        g = self.g
        cpu, pid = rec["cpu"][ki], rec["pid"][ki]
        ext, ts, dur = rec["exit"][ki], rec["ts"][ki], rec["dur"][ki]
        # the pending entries of CPUs that have records now go first
        here = set(np.unique(cpu).tolist())
        pend = [(c, p) for c, p in sorted(g.pending.items()) if c in here]
        if pend:
            pf = [index.setdefault(p[2], len(index)) for _c, p in pend]
            names.extend(list(index)[len(names):])
            cpu = np.concatenate((np.array([c for c, _p in pend], np.int64), cpu))
            pid = np.concatenate((np.array([p[1] for _c, p in pend], np.int64), pid))
            f = np.concatenate((np.array(pf, np.int64), f))
            d = np.concatenate((np.array([p[3] for _c, p in pend], np.int64), d))
            ext = np.concatenate((np.zeros(len(pend), bool), ext))
            ts = np.concatenate((np.array([p[0] for _c, p in pend], np.int64), ts))
            dur = np.concatenate((np.zeros(len(pend), np.int64), dur))
            for c, _p in pend:
                del g.pending[c]
        m = len(cpu)
        if not m:
            return
        oc = np.argsort(cpu, kind="stable")     # each CPU's records in order
        cc = cpu[oc]
        same_next = np.zeros(m, bool)
        same_next[:-1] = cc[1:] == cc[:-1]
        nxt = np.full(m, -1, np.int64)          # next record on the CPU (round seq)
        nxt[oc[:-1][same_next[:-1]]] = oc[1:][same_next[:-1]]
        has_next = nxt >= 0
        nx = np.maximum(nxt, 0)
        leaf_ent = (~ext & has_next & ext[nx] & (pid[nx] == pid) & (d[nx] == d)
                    & (f[nx] == f))
        leaf_ext = np.zeros(m, bool)
        leaf_ext[nxt[leaf_ent]] = True
        nest = ~ext & ~leaf_ent & has_next      # "f() {", when the next record comes
        # pending at the end: each CPU's last record, if an entry
        last_on_cpu = ~has_next & ~ext
        for i in np.nonzero(last_on_cpu)[0].tolist():
            g.pending[int(cpu[i])] = (int(ts[i]), int(pid[i]), names[int(f[i])], int(d[i]))
        # lines: (key, kind 0 nest / 1 leaf / 2 close), ordered as made
        ni = np.nonzero(nest)[0]
        xi = np.nonzero(ext)[0]
        key = np.concatenate((nxt[ni] * 2, xi * 2 + 1))
        src = np.concatenate((ni, xi))
        kind = np.concatenate((np.zeros(len(ni), np.int64),
                               np.where(leaf_ext[xi], 1, 2)))
        if not len(key):
            return
        lo = np.argsort(key, kind="stable")
        key, src, kind = key[lo], src[lo], kind[lo]
        lc, lp, ld, lf = cpu[src], pid[src], d[src], f[src]
        # closing braces: does the open brace at their depth name them?
        tail_named = self._braces(lc, ld, lf, kind, names)
        # banners: the task on a CPU changed
        ol = np.argsort(lc, kind="stable")
        oc_l = lc[ol]
        prev = np.full(len(lc), -1, np.int64)
        same = oc_l[1:] == oc_l[:-1]
        prev[ol[1:][same]] = lp[ol[:-1][same]]
        firsts = ol[np.concatenate(([True], ~same))]
        for i in firsts.tolist():
            lastp = g.last_pid.get(int(lc[i]))
            prev[i] = -1 if lastp is None else lastp
        lasts = ol[np.concatenate((~same, [True]))]
        for i in lasts.tolist():
            g.last_pid[int(lc[i])] = int(lp[i])
        banner = np.nonzero((prev != -1) & (prev != lp))[0]
        # the strings
        nf = len(names)
        code = np.where(kind == 2, np.where(tail_named, 2 * nf + lf, 3 * nf), kind * nf + lf)
        tails = np.array(["%s() {\n" % nm for nm in names] + ["%s();\n" % nm for nm in names]
                         + ["} /* %s */\n" % nm for nm in names] + ["}\n"], dtype=object)
        top = max(here) + 1
        pre = np.empty(top, dtype=object)
        for c in here:
            pre[c] = " %*d) " % (g.cw, c) if g.o_cpu else ""
        ind = np.array(["  " * k for k in range(int(ld.max()) + 1)], dtype=object)
        if g.o_dur:
            lines = (pre[lc] + _cells(dur[src], kind) + ind[ld] + tails[code]).tolist()
        else:
            lines = (pre[lc] + ind[ld] + tails[code]).tolist()
        for i in banner.tolist():
            c = int(lc[i])
            lines[i] = (_SEP + " %*d) %s => %s\n" % (g.cw, c, fmt_proc(g.comm(int(prev[i])),
                                                                        int(prev[i])),
                                                      fmt_proc(g.comm(int(lp[i])), int(lp[i])))
                        + _SEP + "\n" + lines[i])
        g._put("".join(lines))

    def _braces(self, lc, ld, lf, kind, names) -> np.ndarray:
        """Which closing braces name their function: where the open brace
        at their depth on their CPU is not theirs (or with -T), as
        ``Graph.exit`` does; ``Graph.entered`` carried on."""
        g = self.g
        nk = len(kind)
        match = np.zeros(nk, bool)
        ev = np.nonzero(kind != 1)[0]       # opens (0) set, closes (2) pop
        if len(ev):
            o = np.lexsort((ev, ld[ev], lc[ev]))
            e = ev[o]
            ec, ed = lc[e], ld[e]
            grp_first = np.ones(len(e), bool)
            grp_first[1:] = (ec[1:] != ec[:-1]) | (ed[1:] != ed[:-1])
            pe = np.concatenate(([0], e[:-1]))
            closes = kind[e] == 2
            m_in = closes & ~grp_first & (kind[pe] == 0) & (lf[pe] == lf[e])
            match[e[m_in]] = True
            for i in e[closes & grp_first].tolist():     # the brace opened before
                ent = g.entered.get(int(lc[i]))
                if ent is not None and ent.pop(int(ld[i]), None) == names[int(lf[i])]:
                    match[i] = True
            grp_last = np.ones(len(e), bool)
            grp_last[:-1] = grp_first[1:]
            for i in e[grp_last].tolist():
                c, k = int(lc[i]), int(ld[i])
                if kind[i] == 0:
                    g.entered.setdefault(c, {})[k] = names[int(lf[i])]
                else:
                    ent = g.entered.get(c)
                    if ent is not None:
                        ent.pop(k, None)
        return ~match | g.o_tail


def _cells(ns: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Duration cells (``fmt_duration``) of the lines, as an object array;
    the open braces' empty cell. Each duration is formatted once: a
    round's durations repeat (some 5,000 values in 127,000 exits)."""
    u, inv = np.unique(np.where(kind == 0, -1, ns), return_inverse=True)
    us, rem = u // 1000, u % 1000
    digits = np.where(us >= 100, 3, np.where(us >= 10, 2, 1))
    digits = np.where(us >= 1000, 4, digits)
    mk = np.searchsorted(_MARK_AT, u, "left")
    cells = []
    for v, uu, r, n, mi in zip(u.tolist(), us.tolist(), rem.tolist(), digits.tolist(),
                               mk.tolist()):
        if v == -1:
            cells.append(_NEST)
        elif 0 <= v < 10 ** 7:
            cells.append("%s %d.%03d us %s|  " % (_MARKS[mi], uu, r, _PADS[n + 4]))
        else:
            cells.append(fmt_duration(v))
    return np.array(cells, dtype=object)[inv.reshape(-1)]
