"""The scheduler's books: run time, run-queue waits, off-CPU time per task,
from sched_switch and the wakeups; and the sources that arm a session for
each way of looking at them.

``Tracker`` keeps the books event by event (the reference);
``engines.schedarrays`` keeps the same books on arrays, a round at a time.
Run time runs from a switch-in to the switch-out on the same CPU; a
run-queue wait from a wakeup (the enqueue) or a switch-out in state R/R+
to the next switch-in, which is what /proc/PID/schedstat's run_delay
counts.

The sources (``Source``s of the tracing loop), one per way of looking:

- ``Books``: summaries per task (-s), histograms of waits or slices (-H);
  waits come from the kernel's hist triggers where it can (``KernelHist``);
- ``Events``: a line per switch (and wakeup, migration) to ``on_switch``,
  ``on_waking``, ``on_migrate``;
- ``Timeline``: each task run as a slice (``on_slice``), each wakeup as an
  arrow (``on_flow``).
"""

import os
import re
import time
from typing import Callable, Dict, List, Optional, Set

from ftracetools import switches
from ftracetools.errors import ToolError, UsageError
from ftracetools.host import cpus as cpulib
from ftracetools.host import procs
from ftracetools.kernel import filters, triggers
from ftracetools.kernel.formats import EventFormat, print_tables
from ftracetools.ring.merge import Feed
from ftracetools.ring.pages import parse_page
from ftracetools.ring.reader import RawReader
from ftracetools.ring.source import Preload, Source, preload

__all__ = ["STATE_WORDS", "parse_states", "States", "Task", "Tracker", "Hists",
           "KernelHist", "state_filter", "Books", "Events", "Timeline", "cstr",
           "proc_comm", "buffer_kb", "next_comm"]

BUFFER_KB = 16384   # per CPU: over a second of the busiest switch rate here,
BUFFER_TOTAL_KB = 262144    # ... but no more than this on big machines
HOLD_NS = 3000000   # events younger than this wait for the other CPUs'
BACKLOG_PAGES = 1024    # read but not yet handled: at most 4 MB here
STATE_WORDS = "RSDTtXZPIKWNx"
SCHED_EVENTS = ("sched_switch", "sched_wakeup", "sched_wakeup_new", "sched_waking",
                "sched_migrate_task", "sched_process_fork", "sched_stat_runtime")


def parse_states(text: Optional[str]) -> Optional[Set[str]]:
    """``--state S,D`` (or ``R+``) -> {"S", "D"}; None when not given."""
    if text is None:
        return None
    toks = [t for t in text.replace("|", ",").split(",") if t]
    bad = [t for t in toks if t not in ("R", "R+") and (len(t) != 1 or t not in STATE_WORDS)]
    if bad or not toks:
        raise UsageError("--state %s: not task states" % text,
                         "letters as the kernel prints them: R, R+, S, D, T, t, X, Z, P, I")
    return set(toks)


def buffer_kb() -> int:
    """schedtrace's default per-CPU buffer (kernel.buffers applies the rest)."""
    return max(1024, min(BUFFER_KB, BUFFER_TOTAL_KB // (len(cpulib.online()) or 1)))


def cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def proc_comm(pid: int) -> str:
    return "swapper" if pid == 0 else procs.comm(pid)


def next_comm(fmt: EventFormat, raw: Dict[int, bytes], comm: Dict[int, str],
              field: str = "next_comm") -> Callable:
    """``name(payload, next_pid)`` for sched_switch: keeps ``comm[next_pid]``,
    decoding next_comm (or ``field``: prev_comm) only when its bytes (kept
    in ``raw``) change."""
    noff = fmt.field(field).offset

    def name(p, pid: int) -> None:
        b = bytes(p[noff:noff + 16])
        if raw.get(pid) != b:
            raw[pid] = b
            comm[pid] = cstr(b)
    return name


class States:
    """prev_state -> letters (R, R+, S, D, ...), from the event's own print fmt."""

    def __init__(self, print_fmt: str) -> None:
        tables = print_tables(print_fmt)
        self.table = tables[0] if tables else []
        # The "+" (preempted) bit: the mask tested just before ? "+";
        # TASK_REPORT_MAX since 4.14, TASK_STATE_MAX before.
        m = re.search(r"prev_state\s*&\s*([0-9a-fA-Fx|+<() ]+?)\s*\?\s*\"\+\"", print_fmt)
        self.preempt = 0
        if m:
            try:
                self.preempt = int(eval(m.group(1), {"__builtins__": {}}))  # digits and | + << only
            except Exception:
                self.preempt = 0
        if not self.preempt:
            top = max((v for v, _ in self.table), default=0x40)
            self.preempt = 1 << top.bit_length()
        self.mask = self.preempt - 1
        self.dead = 0       # a task's last switch-out: X (EXIT_DEAD), Z (EXIT_ZOMBIE)
        for v, n in self.table:
            if n in ("X", "Z"):
                self.dead |= v
        self._cache = {}

    def letters(self, state: int) -> str:
        s = self._cache.get(state)
        if s is None:
            bits = state & self.mask
            s = "|".join(n for v, n in self.table if bits & v) if bits else "R"
            if state & self.preempt:
                s += "+"
            self._cache[state] = s
        return s

    def bits(self, wanted) -> "tuple":
        """(mask of wanted letters, want R, want R+) for a kernel filter."""
        mask = 0
        for v, n in self.table:
            if n in wanted:
                mask |= v
        unknown = [w for w in wanted if w not in ("R", "R+") and
                   not any(n == w for _, n in self.table)]
        if unknown:
            raise UsageError("--state %s: this kernel's sched_switch has no such "
                             "state (it has R, R+, %s)" % (",".join(unknown),
                                                          ", ".join(n for _, n in self.table)))
        return mask, "R" in wanted, "R+" in wanted


class Task:
    __slots__ = ("pid", "run", "runs", "vol", "invol", "wait", "waits",
                 "max_wait", "off", "migr", "unrec", "krun")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.run = self.runs = self.vol = self.invol = 0
        self.wait = self.waits = self.max_wait = self.migr = 0
        self.unrec = 0      # runs whose switch-in the kernel did not record
        self.krun = 0       # run time by the kernel's own account (sched_stat_runtime)
        self.off = {}


class Tracker:
    """The scheduler's state per task, from events in time order.

    Run time: switch-in to switch-out on one CPU. Run-queue wait: from
    sched_wakeup (the enqueue) or from a switch-out in state R/R+ to the
    next switch-in, which is what /proc/PID/schedstat's run_delay counts.
    ``keep`` (None: all) limits the statistics to the traced tasks.
    """

    def __init__(self, states: States, keep=None, on_slice=None, on_wait=None,
                 start=None):
        self.states, self.keep = states, keep
        # Trace start: a task seen leaving a CPU before anything entered it
        # ran from (at least) then. Its run counts from there; its slice is
        # cut short, so on_slice hears of it only with partial_slices.
        self.start, self.partial_slices = start, False
        self.on_slice, self.on_wait = on_slice, on_wait
        # on_off(pid, switch-out ts, end ts, prev_state): a sleep ended (at
        # its wakeup, or at the switch-in when no wakeup was seen)
        self.on_off = None
        self.since = {}     # tid -> (switch-in ts, cpu)
        self.ready = {}     # tid -> runnable since
        self.off = {}       # tid -> (switch-out ts, state letters)
        self.cpu = {}       # tid -> CPU of its last run
        self.cur = {}       # CPU -> tid on it
        self.last = {}      # CPU -> time of its last switch
        self.comm = {}
        self.tasks = {}     # tid -> Task, this interval
        self.unrecorded = 0     # switch-ins known only by their switch-outs
        self.dead = []      # tasks that exited: forgotten after the next report
        # Run time as the kernel counts it (sum_exec_runtime, as in
        # /proc/PID/schedstat): sched_stat_runtime reports each delta
        # update_curr() adds. Switch-in to switch-out differs from it by
        # the wakeup-to-switch latency of every wakeup preemption (the
        # kernel skips the clock update in __schedule and charges it to
        # the woken task) and misses runs whose switch-in went unrecorded.
        self.kernel_runtime = False
        self.kseen = set()  # tasks whose runtime deltas are being counted
        self.klast = {}     # tid -> time of its last delta
        self.kcredit = {}   # tid -> time counted ahead at a cut (still on CPU)
        self.kcut = {}      # tid -> the cut it was counted up to

    def task(self, pid: int) -> Task:
        t = self.tasks.get(pid)
        if t is None:
            t = self.tasks[pid] = Task(pid)
        return t

    def switch(self, ts, cpu, prev, state, nxt):
        """Account one sched_switch; returns the run-queue wait of ``nxt``."""
        keep, since, tasks = self.keep, self.since, self.tasks
        cur = self.cur
        old = cur.get(cpu)
        if prev and old is None and self.start is not None and prev not in since \
                and (keep is None or prev in keep):
            since[prev] = (self.start, cpu, None)
        if prev and old is not None and old != prev and (keep is None or prev in keep):
            s = since.get(prev)
            if s is None or s[1] != cpu:
                # A task leaves a CPU the trace never showed it entering:
                # the kernel counted a run (schedstat) but recorded no
                # sched_switch for it. It began after this CPU's last
                # switch, after the task woke and, its wakeup unseen,
                # after it last went to sleep (not while it still ran
                # elsewhere); its wait is unknown.
                self.unrecorded += 1
                t = tasks.get(prev) or self.task(prev)
                t.unrec += 1
                o = self.off.get(prev)
                self._arrive(t, cpu, max(self.last[cpu], self.ready.pop(prev, 0),
                                         o[0] if o is not None else 0))
        self.last[cpu] = ts
        if prev and (keep is None or prev in keep):
            t = tasks.get(prev) or self.task(prev)
            s = since.pop(prev, None)
            if s is not None and s[1] == cpu:
                t.run += ts - s[0]
                if self.on_slice and (s[2] is not None or self.partial_slices):
                    self.on_slice(prev, cpu, self.start if s[2] is None else s[2], ts, state)
            if state & self.states.dead:
                t.vol += 1
                self.dead.append(prev)
            elif state & self.states.mask:
                t.vol += 1
                self.off[prev] = (ts, state)
            else:       # preempted (R+) or yielded (R): still runnable
                t.invol += 1
                self.ready[prev] = ts
        w = None
        if old is not None and old != prev:     # a switch-out was lost
            s = since.get(old)
            if s is not None and s[1] == cpu:
                del since[old]
        cur[cpu] = nxt
        if nxt and (keep is None or nxt in keep):
            t = tasks.get(nxt) or self.task(nxt)
            r = self.ready.pop(nxt, None)
            if r is not None:
                w = ts - r
                t.wait += w
                t.waits += 1
                if w > t.max_wait:
                    t.max_wait = w
                if self.on_wait:
                    self.on_wait(nxt, cpu, w)
            self._arrive(t, cpu, ts)
        return w

    def _arrive(self, t: Task, cpu, ts) -> None:
        t.runs += 1
        o = self.off.pop(t.pid, None)
        if o is not None:   # no wakeup seen: off CPU until now
            self._off(t, o, ts)
        lc = self.cpu.get(t.pid)
        if lc != cpu:
            if lc is not None:
                t.migr += 1
            self.cpu[t.pid] = cpu
        self.since[t.pid] = (ts, cpu, ts)

    def _off(self, t: Task, o, ts) -> None:
        k = self.states.letters(o[1])
        t.off[k] = t.off.get(k, 0) + ts - o[0]
        if self.on_off:
            self.on_off(t.pid, o[0], ts, o[1])

    def runtime(self, ts, pid, delta) -> None:
        """One sched_stat_runtime: ``delta`` ns more run time for ``pid``."""
        if self.keep is not None and pid not in self.keep:
            return
        if pid not in self.kseen:   # on CPU when the trace began: not before it
            self.kseen.add(pid)
            if self.start is not None and delta > ts - self.start:
                delta = max(0, ts - self.start)
        c = self.kcredit.pop(pid, None)
        if c:
            delta -= c
            self.kcut.pop(pid, None)
        t = self.tasks.get(pid) or self.task(pid)
        t.krun += delta
        self.klast[pid] = ts

    def kernel_run(self, t: Task) -> bool:
        """Whether the kernel's account of the task's run time is kept (a
        task with no deltas at all, e.g. real-time before 6.8, has only
        the switches')."""
        return self.kernel_runtime and t.pid in self.kseen

    def run_of(self, t: Task) -> int:
        """A task's run time: the kernel's account where it is kept."""
        return t.krun if self.kernel_run(t) else t.run

    def book(self, t: Task) -> Dict:
        """A task's numbers (ns), as -s --json shows them."""
        return {"pid": t.pid, "comm": self.comm.get(t.pid, "?"), "switches": t.vol + t.invol,
                "voluntary": t.vol, "involuntary": t.invol, "runs": t.runs,
                "run_ns": self.run_of(t),
                "run_from": "kernel" if self.kernel_run(t) else "switches",
                "switch_run_ns": t.run, "wait_ns": t.wait, "waits": t.waits,
                "max_wait_ns": t.max_wait, "off_ns": t.off, "migrations": t.migr,
                "unrecorded": t.unrec}

    def wakeup(self, ts, pid) -> None:
        if (self.keep is not None and pid not in self.keep) or pid in self.since:
            return
        o = self.off.pop(pid, None)
        if o is not None:
            self._off(self.tasks.get(pid) or self.task(pid), o, ts)
        # Runnable from now on. A task already runnable was preempted on
        # its way to sleep (the kernel reports no other wakeup of a queued
        # task): its wait starts again here, as bcc's runqlat has it (the
        # kernel's run_delay counts none for that run: its state was not
        # TASK_RUNNING when it was switched out).
        self.ready[pid] = ts

    def forget_dead(self) -> list:
        """Drop what is kept about tasks that exited (their last report is
        out): memory stays flat however many processes come and go."""
        dead, self.dead = self.dead, []
        for pid in dead:
            for d in (self.since, self.ready, self.off, self.cpu, self.comm,
                      self.klast, self.kcredit, self.kcut):
                d.pop(pid, None)
            self.kseen.discard(pid)
        return dead

    def cut(self, ts) -> None:
        """Count run time of tasks still on CPU up to ``ts`` (interval end)."""
        for pid, s in list(self.since.items()):
            if ts > s[0]:
                self.task(pid).run += ts - s[0]
                self.since[pid] = (ts, s[1], s[2])
            if self.kernel_runtime and pid in self.kseen:
                # on CPU: the kernel reports its time at the next update
                # (a tick at most away); count it now, take it back then
                frm = max(self.klast.get(pid, 0), s[2] or 0, self.kcut.get(pid, 0))
                if ts > frm:
                    self.task(pid).krun += ts - frm
                    self.kcredit[pid] = self.kcredit.get(pid, 0) + ts - frm
                    self.kcut[pid] = ts


class Hists:
    """Values (in whole units, as bcc's runqlat) counted per key; in-kernel
    histograms feed the same table, so both paths print the same."""

    def __init__(self, by: str, unit_ns: int) -> None:
        self.by, self.unit = by, unit_ns
        self.kernel = False
        self.vals = {}      # key -> {value: count}

    def add(self, key, ns: int, n: int = 1) -> None:
        d = self.vals.get(key)
        if d is None:
            d = self.vals[key] = {}
        v = ns // self.unit
        d[v] = d.get(v, 0) + n

    def add_array(self, keys, ns) -> None:
        """``add`` for arrays of values (numpy), keyed by ``keys`` (an
        array, or None for one histogram)."""
        import numpy as np
        v = ns // self.unit
        if keys is None:
            groups = [(None, v)]
        else:
            order = np.argsort(keys, kind="stable")
            k, v = keys[order], v[order]
            cut = np.nonzero(k[1:] != k[:-1])[0] + 1
            groups = zip(k[np.concatenate(([0], cut))].tolist(), np.split(v, cut))
        for key, vals in groups:
            u, c = np.unique(vals, return_counts=True)
            d = self.vals.get(key)
            if d is None:
                d = self.vals[key] = {}
            for x, n in zip(u.tolist(), c.tolist()):
                d[x] = d.get(x, 0) + n


class KernelHist:
    """Run-queue latency computed in the kernel (hist triggers + a
    synthetic event): the wait start is a hist variable per task, set on
    sched_wakeup(_new) or a switch-out in R/R+, dropped if the task is
    switched out first (a wakeup while still on CPU, as Tracker does), and
    turned into ``lat`` (us) on switch-in; a histogram on the synthetic
    event counts waits per (pid, lat). No event reaches the buffer."""

    def __init__(self, s, states: States, cpus, fmt) -> None:
        self.s, self.name = s, triggers.name(s, "lat")
        self.seen, self.dropped = {}, 0
        s.add_dynamic("synthetic_events", "%s pid_t pid; u64 lat" % self.name,
                      "!%s pid_t pid; u64 lat" % self.name)
        cw = filters.any_of("target_cpu", cpus) if cpus else None
        cs = filters.any_of("cpu", cpus) if cpus else None

        def trig(event, text, cond=None):
            # The clock of the streaming path: hist triggers default to
            # "global" (and switch the instance to it).
            s.add_trigger("sched", event, text + ":clock=mono" +
                          (" if " + cond if cond else ""))
        starts = [("sched_wakeup", "ts0", cw)]
        if "sched_wakeup_new" in fmt:
            starts.append(("sched_wakeup_new", "ts1", cw))
        for ev, var, cond in starts:
            trig(ev, "hist:keys=pid:%s=common_timestamp.usecs" % var, cond)
        trig("sched_switch", "hist:keys=prev_pid:ts2=common_timestamp.usecs",
             filters.all_of(cs, filters.any_of("prev_state", [0, states.preempt])))
        # A wakeup of a task still runnable (preempted on its way to sleep)
        # restarts its wait, as Tracker.wakeup does: it consumes ts2.
        trig("sched_wakeup", "hist:keys=pid:xw2=common_timestamp.usecs-$ts2", cw)
        for ev, var, cond in starts:     # read once: a switch-out consumes it
            trig("sched_switch", "hist:keys=prev_pid:x%s=common_timestamp.usecs-$%s"
                 % (var, var), cs)
        for ev, var, cond in starts + [("sched_switch", "ts2", None)]:
            trig("sched_switch", "hist:keys=next_pid:l%s=common_timestamp.usecs-$%s:"
                 "onmatch(sched.%s).trace(%s,next_pid,$l%s)"
                 % (var, var, ev, self.name, var), cs)
        s.add_trigger("synthetic", self.name,
                      "hist:keys=pid,lat:vals=hitcount:sort=pid,lat:size=32768")

    def read(self, hists: "Hists") -> int:
        """Add the waits counted since the last read; returns new drops."""
        dropped = 0
        for t in triggers.read_hist(self.s, "synthetic", self.name):
            dropped += t.dropped
            for key, vals in t.entries:
                pid, lat = int(key["pid"]), int(key["lat"])
                k = (pid, lat)
                d = vals.get("hitcount", 0) - self.seen.get(k, 0)
                if d and pid:
                    self.seen[k] = vals["hitcount"]
                    hists.add(pid if hists.by == "task" else None, lat * 1000, d)
        new, self.dropped = dropped - self.dropped, dropped
        return new


def state_filter(states: States, wanted) -> Optional[str]:
    """The kernel filter on sched_switch for switches out of these states."""
    mask, r, rp = states.bits(wanted)
    return filters.any_filter(
        filters.mask_set("prev_state", mask) if mask else None,
        filters.any_of("prev_state", [0, states.preempt]) if r else
        filters.any_of("prev_state", [states.preempt]) if rp else None)


class ArrayPath:
    """Summaries and wait histograms from arrays (engines.schedarrays):
    sched_switch and the wakeups read from their own buffers a round at a
    time, and counted into the Tracker's books. Until a round brings
    SMALL pages or more (or twice that many have come), the events go one
    by one to ``handlers`` (the same books, kept by Tracker itself) and
    numpy (70 to 140 ms to import here) is not loaded: a short or quiet
    run starts and ends without it. 256 pages: some 15,000 switches with
    their wakeups, 50 ms of Python; 512 cost about what the import does."""

    # (the tests set it to 0, and to a huge number, to check both ways)
    SMALL = int(switches.get("SMALL_ROUND", "256"))

    def __init__(self, tr: Tracker, readers, root, fmt, comm, hists, by, handlers,
                 raw: Dict[int, bytes], lines: Optional[Callable] = None) -> None:
        self.lines = lines      # (Events: each round's arrays go there, not to the books)
        self.tr, self.readers, self.root, self.fmt = tr, readers, root, fmt
        self.comm, self.hists, self.by, self.h = comm, hists, by, handlers
        self.raw = raw      # next_comm bytes last seen, per task
        self.stream = None
        self.held = []      # handled one by one: events younger than a round
        self.pages = 0      # ... and how many pages came that way
        self.mark = 0
        self.on_forks = None    # (parents, children) of each round's forks
        self.loading: Optional[Preload] = None

    def advance(self, upto, settle: bool = False) -> None:
        """Count the events up to ``upto`` (None: all there are).

        The arrays' import (numpy) runs in the background, the rounds'
        pages kept meanwhile: imported in the round, it would leave the
        kernel's buffer to fill (seconds in the emulated guests). The end
        (``upto`` None) and ``settle`` (an interval's end) wait for it."""
        drained = None
        if self.stream is None:
            drained = [r.drain_pages() for r in self.readers]
            n = sum(len(d) for d in drained)
            self.pages += n
            if self.loading is None and (n >= self.SMALL or self.pages >= 2 * self.SMALL):
                self.loading = preload("ftracetools.engines.schedarrays")
            if self.loading is None:
                self._one_by_one(drained, upto)
                return
            done = self.loading.hold(drained, upto is None or settle)
            if done is None:
                return
            self.loading = None
            schedvec = done[0]
            drained = [[p for pages in each for p in pages] for each in zip(*done[1])]  # per reader
            if schedvec is None:    # no numpy: one by one, always
                self.SMALL = 1 << 62
                self._one_by_one(drained, upto)
                return
            self.np, self.switch, self.fork = schedvec.np, schedvec.SWITCH, schedvec.FORK
            self.stream = schedvec.Stream(self.root, self.readers, self.fmt,
                                          runtime=self.tr.kernel_runtime,
                                          lines=self.lines is not None)
            self.rounds = schedvec.Rounds(self.tr)
            if self.hists is not None:
                self.rounds.on_waits = self._waits
            held = self.stream.rows((t, c, p, 0) for t, c, _typ, p in self.held)
            if held is not None:
                self.stream.carry = held
            self.held = []
        ev = self.stream.round(upto, drained)
        if self.lines is not None:
            self.lines(ev)
            self.mark = self.stream.mark
            return
        fk = ev["kind"] == self.fork
        raw, comm = self.raw, self.comm
        if fk.any() and self.on_forks is not None:
            self.on_forks(ev["a"][fk].tolist(), ev["b"][fk].tolist())
        self.rounds.advance(ev)
        self.mark = self.stream.mark
        if fk.any():
            # a traced child is named at its birth (the kernel may record
            # none of its switch-ins); its own switches, below, rename it
            keep = self.tr.keep
            for pid, b in zip(ev["b"][fk].tolist(), ev["comm"][fk].tolist()):
                if keep is None or pid in keep:
                    raw.pop(pid, None)
                    comm[pid] = cstr(b)
        sw = ev["kind"] == self.switch
        nxt, names = ev["b"][sw], ev["comm"][sw]
        pids, ri = self.np.unique(nxt[::-1], return_index=True)   # each one's latest
        for pid, b in zip(pids.tolist(), names[len(nxt) - 1 - ri].tolist()):
            if raw.get(pid) != b:
                raw[pid] = b
                comm[pid] = cstr(b)

    def _one_by_one(self, drained, upto) -> None:
        import bisect
        evs = self.held
        for r, pages in zip(self.readers, drained):
            for c, p in pages:
                r.note_lost(parse_page(p, c, r.layout, evs))
        evs.sort(key=lambda e: e[0])
        n = len(evs) if upto is None else bisect.bisect_right([e[0] for e in evs], upto)
        get = self.h.get
        for ts, cpu, typ, p in evs[:n]:
            f = get(typ)
            if f is not None:
                f(ts, cpu, p)
        self.mark = max(self.mark, upto if upto is not None else evs[n - 1][0] if n else 0)
        self.held = evs[n:]

    def _waits(self, pids, cpus, waits) -> None:
        self.hists.add_array(None if self.by == "all" else pids if self.by == "task"
                             else cpus, waits)


class _Sched(Source):
    """What every way of looking shares: the event formats, the traced
    tasks (``keep``: None for all; forks of traced tasks join), the
    handlers by event type, and the reading."""

    tick = 0.05
    backlog = BACKLOG_PAGES     # pages read ahead of handling them, at most

    def unrecorded_note(self) -> str:
        """What the tool says of the switch-ins the kernel did not record."""
        n = self.tr.unrecorded
        return ("note: %d switch-in%s of traced tasks not recorded by the kernel (seen by "
                "their switch-outs): runs counted, %s" % (
                    n, "s" if n > 1 else "", "no line printed" if isinstance(self, Events)
                    else "no run-queue wait" if self.tr.kernel_runtime else
                    "on-CPU time from the wakeup or the CPU's last switch, no run-queue wait"))

    def __init__(self, s, targets, cpus: Optional[Set[int]], kb: int,
                 states_wanted: Optional[Set[str]] = None) -> None:
        self.s, self.targets, self.cpus = s, targets, cpus
        self.fmt = {n: EventFormat.load(s.dir, "sched", n) for n in SCHED_EVENTS
                    if os.path.isdir(s.path("events", "sched", n))}
        if "sched_switch" not in self.fmt or "sched_wakeup" not in self.fmt:
            raise ToolError("this kernel has no sched:sched_switch/sched_wakeup events")
        self.states = States(self.fmt["sched_switch"].print_fmt)
        if states_wanted is not None:
            self.states.bits(states_wanted)     # letters this kernel has
        self.kb = kb
        s.set("trace_clock", "mono")
        s.set_buffer_kb(kb)
        # -p/-L/-c: every switch is read and the traced tasks picked here,
        # following forks; with set_event_pid this kernel (6.18) now and
        # then drops a switch into a traced task (about 1 in 10^4).
        self.keep: Optional[Set[int]] = set(targets.tids()) if targets.filtered else None
        if self.keep is not None:
            targets.on_join(self.keep.update)     # --cgroup: tasks that join it
            targets.on_leave(self.keep.difference_update)    # ... and leave it
        # --by cgroup: a host.cgroups.Lookup, told of the tasks seen each
        # tick (their cgroup read while they live) and of forks
        self.cgroups = None
        self.start_ns = time.monotonic_ns()
        self.h: Dict[int, Callable] = {}
        self.readers: List[RawReader] = []
        self.feed = None
        self.end_ns = 0

    def cpu_filter(self, field: str) -> Optional[str]:
        return filters.any_of(field, self.cpus) if self.cpus else None

    def enable(self, sess, name: str, flt: Optional[str], handler: Callable) -> None:
        sess.enable_event("sched", name, flt)
        self.h[self.fmt[name].id] = handler

    def follow_forks(self, sess) -> None:
        """Children of traced tasks become traced (not with -L)."""
        if self.keep is None or self.targets.tid is not None or \
                "sched_process_fork" not in self.fmt:
            return
        dec, keep = self.fmt["sched_process_fork"].decoder(["parent_pid", "child_pid",
                                                            "child_comm"]), self.keep
        comm, raw = self.tr.comm, getattr(self, "comm_raw", {})

        def on_fork(ts, cpu, p):
            pp, cp, name = dec(p)
            if pp in keep:
                keep.add(cp)
                # named at birth (the kernel may record none of its
                # switch-ins); its own switches rename it
                raw.pop(cp, None)
                comm[cp] = name
        self.enable(sess, "sched_process_fork", None, on_fork)

    def forks_to(self, sess, cgroups) -> None:
        """Each fork's child gets its parent's cgroup: a task that ends
        before a tick reads its own is still named."""
        f = self.fmt.get("sched_process_fork")
        if f is None:
            return
        dec, before = f.decoder(["parent_pid", "child_pid"]), self.h.get(f.id)

        def on_fork(ts, cpu, p):
            if before is not None:
                before(ts, cpu, p)
            cgroups.inherit(*dec(p))
        if before is None:
            self.enable(sess, "sched_process_fork", None, on_fork)
        else:
            self.h[f.id] = on_fork

    def read(self, *sessions) -> None:
        """Open the buffers of these sessions (all the events are armed)."""
        if self.targets.pid is not None and procs.alive(self.targets.pid):
            self.keep.update(procs.threads(self.targets.pid))  # made while we set up
        for sess in sessions:
            r = RawReader(sess.dir, sess.root)
            self.s.own(r)
            self.readers.append(r)
        if len(sessions) == 1:
            self.feed = Feed(self.readers[0], self.backlog)

    def wait(self, timeout: float) -> object:
        return self.readers[0].wait(timeout) if len(self.readers) == 1 else \
            Source.wait(self, timeout)

    def _handle(self, evs) -> None:
        get = self.h.get
        for ts, cpu, typ, p in evs:
            f = get(typ)
            if f is not None:
                f(ts, cpu, p)

    def drain(self) -> None:
        feed, deadline = self.feed, time.monotonic() + 0.25
        while True:
            feed.pull()
            self._handle(feed.take(time.monotonic_ns() - HOLD_NS, 16))
            if not feed.backlog() or time.monotonic() > deadline:
                break
        if self.cgroups is not None:
            self.cgroups.see(self.tr.tasks)
        if len(self.tr.dead) > 256:     # no interval ends to forget them
            self.forget(self.tr.forget_dead())

    def forget(self, pids) -> None:
        """Tasks that exited (``tr.forget_dead()``): drop what is kept
        about them here too."""
        for pid in pids:
            self.tr.tasks.pop(pid, None)

    def follow_wakeups(self, sess) -> None:
        """sched_wakeup(_new) into the Tracker: where a wait begins."""
        dec, wake = self.fmt["sched_wakeup"].decoder(["pid"]), self.tr.wakeup
        for name in ("sched_wakeup", "sched_wakeup_new"):
            if name in self.fmt:
                self.enable(sess, name, self.cpu_filter("target_cpu"),
                            lambda ts, cpu, p: wake(ts, dec(p)[0]))

    def finish(self, why: str) -> None:
        self.end_ns = time.monotonic_ns()
        while self.feed.pull():
            pass
        self._handle(self.feed.take())

    def lost(self) -> int:
        return sum(x.lost() + x.flagged_lost for x in self.readers)


CGROUP_FIELDS = ("run_ns", "voluntary", "involuntary", "wait_ns", "waits", "off_s_ns",
                 "off_d_ns", "migrations")


class Books(_Sched):
    """Summaries per task (``hist=None``) or log2 histograms of run-queue
    waits or on-CPU slices (``hist``: a ``Hists``). Waits come from the
    kernel's hist triggers where it can, unless ``stream``; else, like
    summaries, from switches and wakeups read from one instance and
    counted as arrays (``ArrayPath``)."""

    def __init__(self, s, targets, cpus, kb: int, hist: Optional["Hists"] = None,
                 slices: bool = False, stream: bool = False, cgroups=None) -> None:
        super().__init__(s, targets, cpus, kb)
        self.cgroups = cgroups
        self.hists, self.kernel = hist, None
        if hist is not None and not (slices or stream or hist.by == "cpu" or self.keep
                                     is not None) \
                and s.features.has("hist") and s.features.has("synthetic"):
            self.kernel = KernelHist(s, self.states, cpus, self.fmt)
            hist.kernel = True
        key = {"all": lambda p, c: None, "task": lambda p, c: p,
               "cpu": lambda p, c: c}[hist.by if hist else "all"]
        on_wait = (lambda p, c, w: hist.add(key(p, c), w)) \
            if hist is not None and not slices else None
        self.tr = tr = Tracker(self.states, self.keep, on_wait=on_wait, start=self.start_ns)
        if hist is not None and slices:
            tr.on_slice = lambda p, c, a, b, st: hist.add(key(p, c), b - a)
        self.vec = hist is None or (self.kernel is None and not slices)
        self.tick = 0.2 if self.vec else 0.05
        self.comm_raw: Dict[int, bytes] = {}
        if self.kernel is not None:
            self.read(s)
            return
        dec = self.fmt["sched_switch"].decoder(["prev_pid", "prev_state", "next_pid"])
        switch, raw = tr.switch, self.comm_raw
        name = next_comm(self.fmt["sched_switch"], raw, tr.comm)

        def on_switch(ts, cpu, p):
            pp, st, np_ = dec(p)
            name(p, np_)
            switch(ts, cpu, pp, st, np_)
        self.enable(s, "sched_switch", self.cpu_filter("cpu"), on_switch)
        self.follow_wakeups(s)
        self.follow_forks(s)
        if cgroups is not None:
            self.forks_to(s, cgroups)
        if hist is None:
            self.kernel_runtime(s)
        self.read(s)
        if self.vec:
            self.arrays = ArrayPath(tr, self.readers, s.root, self.fmt, tr.comm, hist,
                                    hist.by if hist else "all", self.h, raw)
            if cgroups is not None:
                self.arrays.on_forks = lambda ps, cs: [cgroups.inherit(p, c)
                                                       for p, c in zip(ps, cs)]

    def per_cgroup(self) -> Dict:
        """-s --by cgroup: the tasks' books summed per cgroup path (None
        where unknown): {path: {"tasks", "run_ns", "voluntary",
        "involuntary", "wait_ns", "waits", "off_s_ns", "off_d_ns",
        "migrations"}}."""
        tr, rows, pids = self.tr, {}, {}
        for t in tr.tasks.values():
            if not t.pid:
                continue
            k = self.cgroups.of(t.pid)
            r = rows.setdefault(k, dict.fromkeys(CGROUP_FIELDS, 0))
            for f, v in zip(CGROUP_FIELDS, (tr.run_of(t), t.vol, t.invol, t.wait, t.waits,
                                            t.off.get("S", 0), t.off.get("D", 0), t.migr)):
                r[f] += v
            pids.setdefault(k, set()).add(t.pid)
        for k, r in rows.items():
            r["tasks"] = len(pids[k])
        return rows

    def kernel_runtime(self, ws) -> None:
        """Run time as the kernel counts it, from sched_stat_runtime (each
        delta update_curr adds to sum_exec_runtime), in ``ws``. Not with
        -C: a delta can be recorded on another CPU than its task's."""
        rt = self.fmt.get("sched_stat_runtime")
        if self.cpus is not None or rt is None or not {"pid", "runtime"} <= set(rt.fields):
            return
        dec, krt = rt.decoder(["pid", "runtime"]), self.tr.runtime
        self.enable(ws, "sched_stat_runtime", None, lambda ts, cpu, p: krt(ts, *dec(p)))
        self.tr.kernel_runtime = True

    @property
    def mark(self) -> int:
        """Every event up to this time is in the books."""
        return self.arrays.mark if self.vec else self.feed.mark

    def drain(self) -> None:
        if self.kernel is not None:
            return
        if not self.vec:
            super().drain()
            return
        self.arrays.advance(time.monotonic_ns() - HOLD_NS)
        if self.cgroups is not None:
            self.cgroups.see(self.tr.tasks)

    def finish(self, why: str) -> None:
        if self.kernel is not None:
            self.end_ns = time.monotonic_ns()
        elif self.vec:
            self.end_ns = time.monotonic_ns()
            self.arrays.advance(None)
        else:
            super().finish(why)

    def interval(self, final: bool) -> int:
        """Close the books of an interval: count run time up to its end,
        name every task, and return the interval's end. Then show
        ``tr.tasks`` and ``hists``, and call ``reset``."""
        if self.kernel is not None:
            cut = time.monotonic_ns()
            self.dropped = getattr(self, "dropped", 0) + self.kernel.read(self.hists)
        elif self.vec and self.arrays.loading is not None:    # (the round waiting for it)
            self.arrays.advance(time.monotonic_ns() - HOLD_NS, settle=True)
        # a task only ever seen leaving a CPU (its switch-ins from idle not
        # recorded), or only in the kernel's histogram, has no name from
        # the events: ask /proc
        tr = self.tr
        for pid in list(tr.tasks) + (list(self.hists.vals) if self.hists is not None and
                                     self.hists.by == "task" else []):
            if pid and pid not in tr.comm:
                tr.comm[pid] = proc_comm(pid)[:15]      # (kworkers: +queue)
        if self.kernel is None:
            cut = max(self.mark, self.end_ns) if final else self.mark
        if self.hists is None:
            tr.cut(cut)
        return cut

    def reset(self) -> None:
        if self.cgroups is not None:    # read again: a task may move
            self.cgroups.keep(())
        self.tr.tasks = {}
        if self.hists is not None:
            self.hists.vals = {}
        gone = self.tr.forget_dead()
        for pid in gone:
            self.comm_raw.pop(pid, None)

    def lost(self) -> int:
        return super().lost() + getattr(self, "dropped", 0)


class Events(_Sched):
    """A line per switch to ``on_switch(ts, cpu, prev_comm, prev_pid,
    prev_prio, state letters, next_comm, next_pid, next_prio, wait)``;
    with ``wakeups``, each wakeup to ``on_waking(ts, cpu, waker_pid,
    waker_comm, comm, pid, prio, target_cpu)`` and each switch-in's wait;
    with ``migrations``, ``on_migrate(ts, cpu, comm, pid, prio, orig,
    dest)``. ``states``: only switches out of these states (in the kernel
    where it can).

    ``on_switches`` (without wakeups and migrations): busy rounds go to it
    as arrays instead, one per field of ``on_switch`` but the wait ("ts",
    "cpu", "prev_comm", ..., "next_prio"; comms as raw bytes, "state" an
    index into the letters "states"), in time order: from the first round that brings ArrayPath.SMALL pages,
    the pages are decoded as arrays (engines.schedarrays) and filtered
    there, and the lines made in bulk."""

    def __init__(self, s, targets, cpus, kb: int, states: Optional[Set[str]],
                 on_switch: Callable, on_waking: Optional[Callable] = None,
                 on_migrate: Optional[Callable] = None,
                 on_switches: Optional[Callable] = None) -> None:
        super().__init__(s, targets, cpus, kb, states)
        self.tr = tr = Tracker(self.states, self.keep, start=self.start_ns)
        keep, letters = self.keep, self.states.letters
        sw_f = self.cpu_filter("cpu")
        if states is not None and on_waking is None:
            sw_f = filters.all_of(sw_f, state_filter(self.states, states))
        dec = self.fmt["sched_switch"].decoder(
            ["prev_comm", "prev_pid", "prev_prio", "prev_state", "next_comm",
             "next_pid", "next_prio"])
        track = on_waking is not None
        # without -w (and without a --state filter, which hides switches)
        # only unrecorded switch-ins are looked for
        seen = None if track or states is not None else tr.cur

        def on_sw(ts, cpu, p):
            pc, pp, ppr, st, nc, np_, npr = dec(p)
            w = None
            if track:
                tr.comm[np_] = nc
                tr.comm[pp] = pc
                w = tr.switch(ts, cpu, pp, st, np_)
            elif seen is not None:
                old = seen.get(cpu)
                seen[cpu] = np_
                if pp and old is not None and old != pp and (keep is None or pp in keep):
                    tr.unrecorded += 1
            if keep is None or pp in keep or np_ in keep:
                lt = letters(st)
                if states is None or lt in states or (lt == "R+" and "R" in states):
                    on_switch(ts, cpu, pc, pp, ppr, lt, nc, np_, npr, w)
        self.enable(s, "sched_switch", sw_f, on_sw)
        if track:
            self.follow_wakeups(s)
            if "sched_waking" in self.fmt:
                kdec = self.fmt["sched_waking"].decoder(["common_pid", "comm", "pid", "prio",
                                                         "target_cpu"])

                def on_wk(ts, cpu, p):
                    v = kdec(p)
                    if keep is None or v[2] in keep:
                        on_waking(ts, cpu, v[0], tr.comm.get(v[0]) or proc_comm(v[0]), *v[1:])
                self.enable(s, "sched_waking", self.cpu_filter("target_cpu"), on_wk)
        if on_migrate is not None:
            mdec = self.fmt["sched_migrate_task"].decoder(["comm", "pid", "prio", "orig_cpu",
                                                           "dest_cpu"])

            def on_mg(ts, cpu, p):
                v = mdec(p)
                if keep is None or v[1] in keep:
                    on_migrate(ts, cpu, *v)
            self.enable(s, "sched_migrate_task", filters.any_filter(
                self.cpu_filter("orig_cpu"), self.cpu_filter("dest_cpu")), on_mg)
        self.follow_forks(s)
        self.read(s)
        self.arrays = None
        if on_switches is not None and not track and on_migrate is None:
            self.on_switches, self.seen, self.wanted = on_switches, seen, states
            self.arrays = ArrayPath(tr, self.readers, s.root, self.fmt, tr.comm, None, "all",
                                    self.h, {}, lines=self._lines)

    def drain(self) -> None:
        if self.arrays is None:
            super().drain()
            return
        self.arrays.advance(time.monotonic_ns() - HOLD_NS)
        if len(self.tr.dead) > 256:
            self.forget(self.tr.forget_dead())

    def finish(self, why: str) -> None:
        if self.arrays is None:
            super().finish(why)
            return
        self.end_ns = time.monotonic_ns()
        self.arrays.advance(None)

    def _lines(self, ev) -> None:
        """A round's events as arrays: forks of traced tasks make their
        children traced from then on (the switches between two such forks
        go together), the rest are switches."""
        np, fork = self.arrays.np, self.arrays.fork
        fk = np.nonzero(ev["kind"] == fork)[0].tolist() if self.keep is not None else []
        lo = 0
        for i in fk:
            self._switches(ev, lo, i)
            if int(ev["a"][i]) in self.keep:
                self.keep.add(int(ev["b"][i]))
            lo = i + 1
        self._switches(ev, lo, len(ev["ts"]))

    def _switches(self, ev, lo: int, hi: int) -> None:
        """Switches lo..hi-1 of a round: those of the traced tasks, out of
        the states wanted, to ``on_switches``; switch-ins the kernel did
        not record counted as on_sw does one by one."""
        np, keep = self.arrays.np, self.keep
        sw = ev["kind"][lo:hi] == self.arrays.switch
        col = {c: v[lo:hi][sw] for c, v in ev.items()}
        n = len(col["ts"])
        if not n:
            return
        cpu, pp, nx = col["cpu"], col["a"], col["b"]
        kp = np.fromiter(keep, np.int64, len(keep)) if keep is not None else None
        if self.seen is not None:
            # per CPU in time order: a switch whose prev is not the task
            # the CPU last switched to follows a switch-in not recorded
            order = np.argsort(cpu, kind="stable")
            c, p, x = cpu[order], pp[order], nx[order]
            first = np.ones(n, bool)
            first[1:] = c[1:] != c[:-1]
            old = np.empty(n, np.int64)
            old[1:] = x[:-1]
            known = ~first
            for i in np.nonzero(first)[0].tolist():
                o = self.seen.get(int(c[i]))
                if o is not None:
                    old[i], known[i] = o, True
            miss = known & (p != 0) & (old != p)
            if kp is not None:
                miss &= np.isin(p, kp)
            self.tr.unrecorded += int(miss.sum())
            last = np.ones(n, bool)
            last[:-1] = c[:-1] != c[1:]
            self.seen.update(zip(c[last].tolist(), x[last].tolist()))
        vals, inv = np.unique(col["st"], return_inverse=True)
        letters = [self.states.letters(v) for v in vals.tolist()]
        m = np.isin(pp, kp) | np.isin(nx, kp) if kp is not None else None
        if self.wanted is not None:
            w = self.wanted
            ok = np.array([lt in w or (lt == "R+" and "R" in w) for lt in letters])[inv]
            m = ok if m is None else m & ok
        if m is not None:
            col = {k: v[m] for k, v in col.items()}
            inv = inv[m]
        self.on_switches({"ts": col["ts"], "cpu": col["cpu"], "prev_comm": col["pcomm"],
                          "prev_pid": col["a"], "prev_prio": col["pprio"], "state": inv,
                          "states": letters, "next_comm": col["comm"], "next_pid": col["b"],
                          "next_prio": col["nprio"]})


class Timeline(_Sched):
    """Each run of a task as ``on_slice(cpu, pid, comm, start, end, state
    letters or "running")`` and each wakeup as ``on_flow(waker_cpu,
    waker_ts, cpu, ts)`` (sched_waking, or a new task's sched_wakeup_new,
    to switch-in)."""

    def __init__(self, s, targets, cpus, kb: int, on_slice: Callable,
                 on_flow: Callable) -> None:
        super().__init__(s, targets, cpus, kb)
        self.tr = tr = Tracker(self.states, self.keep, start=self.start_ns)
        tr.partial_slices = True    # draw runs from the trace's start too
        self.on_slice = on_slice
        tr.on_slice = lambda p, c, a, b, st: on_slice(c, p, tr.comm.get(p, "?"), a, b,
                                                      self.states.letters(st))
        keep, wakers, last_sw = self.keep, {}, {}
        sw = self.fmt["sched_switch"]
        dec = sw.decoder(["prev_pid", "prev_state", "next_pid"])
        noff, poff = sw.field("next_comm").offset, sw.field("prev_comm").offset
        comm = tr.comm

        def on_sw(ts, cpu, p):
            pp, st, np_ = dec(p)
            comm[np_] = cstr(bytes(p[noff:noff + 16]))
            if pp and cpu not in last_sw:   # on CPU since the start
                comm.setdefault(pp, cstr(bytes(p[poff:poff + 16])))
            last_sw[cpu] = ts
            w = tr.switch(ts, cpu, pp, st, np_)
            wk = wakers.pop(np_, None)
            if wk is not None and w is not None and (keep is None or np_ in keep):
                on_flow(wk[1], wk[0], cpu, ts)
        self.enable(s, "sched_switch", self.cpu_filter("cpu"), on_sw)
        self.follow_wakeups(s)
        if "sched_waking" in self.fmt:
            kdec = self.fmt["sched_waking"].decoder(["pid"])

            def on_wk(ts, cpu, p):
                wakers[kdec(p)[0]] = (ts, cpu)
            self.enable(s, "sched_waking", self.cpu_filter("target_cpu"), on_wk)
        if "sched_wakeup_new" in self.fmt:
            # a new task's first wakeup has no sched_waking: its arrow (and
            # the wait it shows) starts at the fork's wakeup, on the forking CPU
            nf = self.fmt["sched_wakeup_new"]
            ndec, wake_new = nf.decoder(["pid"]), self.h[nf.id]

            def on_new(ts, cpu, p):
                wake_new(ts, cpu, p)
                wakers[ndec(p)[0]] = (ts, cpu)
            self.h[nf.id] = on_new
        self.follow_forks(s)
        self.read(s)

    def finish(self, why: str) -> None:
        super().finish(why)
        tr = self.tr
        for pid, sn in tr.since.items():     # still on CPU
            self.on_slice(sn[1], pid, tr.comm.get(pid, "?"),
                          self.start_ns if sn[2] is None else sn[2], self.end_ns, "running")
