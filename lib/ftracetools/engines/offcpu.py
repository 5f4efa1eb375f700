"""Off-CPU time by kernel stack: where tasks block, and for how long.

A task is off CPU, blocked, from a switch-out in a sleep state (S, D, I,
...; not R or R+, which leave it runnable) until its wakeup (sched_wakeup:
the enqueue, where /proc/PID/schedstat's run_delay begins). From the
wakeup to its switch-in it waits on a run queue: that wait is not
blocking, and is counted apart, per task, with the waits after a
preemption, as the kernel keeps run_delay apart. The stack is the task's
kernel stack at its switch-out: where it blocked.

Two ways (``DESCRIBE``):

- ``Stream`` (every kernel with the ``stacktrace`` trigger): the trigger on
  sched_switch, its condition on prev_state (and -C's CPUs), records
  ftrace's ``kernel_stack`` event right after each switch-out into sleep,
  on the same CPU, in the same instance (interrupts are off in between);
  sched_switch and the wakeups are read here (with -p/-L/-c only those of
  the traced tasks: the instance's PID filter, following forks) and
  ``sched.Tracker`` pairs each sleep with its wakeup. A sleep still going
  when tracing ends is counted up to then; a task asleep when tracing
  began is counted up to its wakeup, without a stack (``before_ns``).
  Addresses are named from /proc/kallsyms.
- ``Kernel`` (hist triggers whose variables hold a stack, 6.5+; not with
  -p/-L/-c, which the triggers cannot follow): a switch-out into sleep
  keeps its time and ``common_stacktrace`` in variables keyed by the task;
  its wakeup emits a synthetic event (pid, blocked ns, stack), which a
  hist keyed by (pid, stack) sums. No event reaches the buffer. Only
  sleeps that end are counted, and run-queue waits are not measured.

``take(final)`` closes an interval and returns its ``Books``: plain
numbers, stacks as function names, innermost first.
"""

import struct
import time
from typing import Dict, List, NamedTuple, Optional, Set, Tuple

from ftracetools.engines import sched
from ftracetools.errors import UsageError
from ftracetools.kernel import filters, symbols, triggers
from ftracetools.kernel.formats import stack_record

__all__ = ["DESCRIBE", "NO_STACK", "Books", "parse_states", "sleep_mask", "trim",
           "hist_frames", "Stream", "Kernel", "open_source"]

DESCRIBE = {
    "kernel": "summed per stack in the kernel (hist triggers keep each switch-out's "
              "stack; its wakeup emits a synthetic event): no event read, finished "
              "sleeps only, run-queue waits not measured",
    "stream": "stacks recorded at each switch-out into sleep (the stacktrace trigger "
              "on sched_switch) and paired with the wakeups here",
}
NO_STACK = ("[no stack recorded]",)
DEAD = ("X", "Z")
VARS_SIZE = 8192        # tasks asleep at once (hist variables)
TABLE_SIZE = 32768      # (task, stack) pairs in the kernel's table


class Books(NamedTuple):
    """One interval. ``stacks``: (pid, frames) -> [sleeps, ns, state
    letters]; ``tasks``: pid -> off_ns, sleeps, before_ns (asleep since
    before tracing began: no stack), wait_ns and waits (run-queue waits;
    None where not measured); ``lost``, ``nostack`` (sleeps whose stack
    was not recorded), ``unrecorded`` (switch-ins the kernel did not
    record: their wait is not measured) and ``unended`` (sleeps whose
    wakeup and switch-in the kernel did not record: their end is
    estimated) in the interval."""
    start_ns: int
    end_ns: int
    stacks: Dict[Tuple[int, Tuple[str, ...]], list]
    tasks: Dict[int, Dict[str, Optional[int]]]
    comm: Dict[int, str]
    lost: int
    nostack: int
    unrecorded: int
    unended: int
    cgroup: Dict[int, Optional[str]] = {}   # pid -> cgroup path, with --by cgroup


def parse_states(text: Optional[str]) -> Optional[Set[str]]:
    """``--state D`` or ``S,D``: sleep states only (R and R+ are waits)."""
    wanted = sched.parse_states(text)
    bad = sorted(w for w in (wanted or ()) if w in ("R", "R+") or w in DEAD)
    if bad:
        raise UsageError("--state %s: %s is no sleep" % (text, bad[0]),
                         "sleep states: S, D, T, t, P, I (waits to run, R and R+, "
                         "are counted apart)")
    return wanted


def sleep_mask(states: sched.States, wanted: Optional[Set[str]]) -> int:
    """prev_state bits of the sleeps counted: the wanted letters, or every
    state a task wakes from (not X, Z: it ended)."""
    if wanted:
        return states.bits(wanted)[0]
    return states.mask & ~states.dead


def trim(frames: Tuple[str, ...]) -> Tuple[str, ...]:
    """Without the frames of the tracing machinery on top (the stack
    trigger's, the tracepoint's): from __schedule, which calls the
    sched_switch tracepoint, or past the tracing functions."""
    if "__schedule" in frames[:8]:
        return tuple(frames[frames.index("__schedule"):])
    return symbols.trim_tracing(frames)


def hist_frames(text: str) -> Tuple[str, ...]:
    """A hist key's stack -> function names, trimmed."""
    return trim(triggers.stack_frames(text))


class _Rows:
    """Sleeps per (task, stack), and per task, in one interval."""

    def __init__(self, min_ns: Optional[int], max_ns: Optional[int]) -> None:
        self.min, self.max = min_ns, max_ns
        self.stacks: Dict[Tuple[int, object], list] = {}
        self.off: Dict[int, List[int]] = {}     # pid -> [ns, sleeps]

    def add(self, pid: int, stack, ns: int, state: int) -> None:
        if (self.min is not None and ns < self.min) or (self.max is not None and ns > self.max):
            return
        r = self.stacks.get((pid, stack))
        if r is None:
            r = self.stacks[(pid, stack)] = [0, 0, 0]
        r[0] += 1
        r[1] += ns
        r[2] |= state
        t = self.off.get(pid)
        if t is None:
            t = self.off[pid] = [0, 0]
        t[0] += ns
        t[1] += 1


class Stream(sched._Sched):
    """The stacktrace trigger's stacks, paired here; see the module
    docstring."""

    method = "stream"
    # (a burst waits in the kernel's buffer, 16 MB per CPU, rather than in
    # this process: its memory stays flat, as the soak holds it)
    backlog = 256
    lost_hint = "enlarge the buffer with -b, or trace fewer tasks (-p, -c) or CPUs (-C)"

    def __init__(self, s, targets, cpus, kb: int, wanted: Optional[Set[str]] = None,
                 min_ns: Optional[int] = None, max_ns: Optional[int] = None,
                 cgroups=None) -> None:
        super().__init__(s, targets, cpus, kb, wanted)
        self.cgroups = cgroups
        st = self.states
        self.mask = mask = sleep_mask(st, wanted)
        self.rows = _Rows(min_ns, max_ns)
        self.tr = tr = sched.Tracker(st, self.keep, start=self.start_ns)
        tr.on_off = self._slept
        self.expect: Dict[int, int] = {}        # CPU -> task whose stack comes next
        self.pending: Dict[int, bytes] = {}     # task -> its stack, asleep
        self.stacks: Dict[bytes, bytes] = {}    # one copy of each stack
        self.named = symbols.StackNames(trim)
        self.seen: Set[int] = set()             # tasks with an event so far
        self.before: Dict[int, int] = {}
        self.comm_raw: Dict[int, bytes] = {}
        self.nostack = self.unended = 0
        self.marks = [self.start_ns, 0, 0, 0, 0]    # last report: time and the counts
        if targets.filtered:    # only the traced tasks' switches and wakeups
            targets.arm(s)
        keep, seen, expect, pending = self.keep, self.seen, self.expect, self.pending
        sw = self.fmt["sched_switch"]
        dec = sw.decoder(["prev_pid", "prev_state", "next_pid"])
        switch = tr.switch
        # (the name a task has now: a command of -c execs once it is traced)
        name = sched.next_comm(sw, self.comm_raw, tr.comm)
        name_prev = sched.next_comm(sw, self.comm_raw, tr.comm, "prev_comm")

        def on_switch(ts, cpu, p):
            pp, state, np_ = dec(p)
            name(p, np_)
            name_prev(p, pp)
            seen.add(pp)
            seen.add(np_)
            if pp in tr.off:    # leaves a CPU asleep by our books: the kernel
                self.unended += 1   # recorded neither its wakeup nor its switch-in
            switch(ts, cpu, pp, state, np_)
            if pp and state & mask and (keep is None or pp in keep):
                expect[cpu] = pp
                pending.pop(pp, None)
            else:
                expect.pop(cpu, None)
        ks_id, addrs = stack_record(s.root)
        i32, stacks = struct.Struct("<i").unpack_from, self.stacks

        def on_stack(ts, cpu, p):
            pid = expect.pop(cpu, None)
            if pid is None or i32(p, 4)[0] != pid:     # common_pid: whose stack
                return
            b = addrs(p)
            pending[pid] = stacks.setdefault(b, b)
        self.h[ks_id] = on_stack
        # the stack right after each switch-out into a counted sleep (the
        # condition is the trigger's own: the event's filter does not gate it)
        # (set before the event is enabled: no switch-out goes without it)
        s.add_trigger("sched", "sched_switch", "stacktrace" + triggers.if_clause(
            filters.all_of(filters.mask_set("prev_state", mask), self.cpu_filter("cpu"))))
        self.enable(s, "sched_switch", self.cpu_filter("cpu"), on_switch)
        wdec, wake, before = self.fmt["sched_wakeup"].decoder(["pid"]), tr.wakeup, self.before
        # how long a task slept before tracing began is known, not in which
        # state nor how long in all: not with --state, -m, -M
        count_before = wanted is None and min_ns is None and max_ns is None
        # (a command of -c waits for tracing to go live: not a sleep of its own)
        no_before = {targets.command.pid} if getattr(targets, "command", None) else set()

        def on_wakeup(ts, cpu, p):
            pid = wdec(p)[0]
            if pid not in seen:     # asleep since before tracing began
                seen.add(pid)
                if count_before and (keep is None or pid in keep) and ts > tr.start \
                        and pid not in no_before:
                    before[pid] = before.get(pid, 0) + ts - tr.start
            wake(ts, pid)

        def on_new(ts, cpu, p):
            pid = wdec(p)[0]
            seen.add(pid)
            wake(ts, pid)
        self.enable(s, "sched_wakeup", None, on_wakeup)
        if "sched_wakeup_new" in self.fmt:
            self.enable(s, "sched_wakeup_new", None, on_new)
        self.follow_forks(s)
        if cgroups is not None:
            self.forks_to(s, cgroups)
        self.read(s)

    def _slept(self, pid: int, t0: int, t1: int, state: int) -> None:
        if not state & self.mask:
            return
        stack = self.pending.pop(pid, None)
        if stack is None:
            self.nostack += 1
        # (a sleep whose end the kernel did not record ends where the CPU's
        # last switch was, or where it began, never before)
        self.rows.add(pid, stack, max(0, t1 - t0), state & self.states.mask)

    def _name(self, stack: Optional[bytes]) -> Tuple[str, ...]:
        return NO_STACK if stack is None else self.named.names(stack)

    def take(self, final: bool) -> Books:
        """Close the interval up to every event handled (the end of
        tracing when ``final``) and return it."""
        tr, rows = self.tr, self.rows
        cut = max(self.feed.mark, self.end_ns) if final else self.feed.mark
        if final and rows.min is None and rows.max is None:
            for pid, (t0, state) in tr.off.items():     # still asleep
                if state & self.mask and (self.keep is None or pid in self.keep) \
                        and cut > t0:
                    rows.add(pid, self.pending.get(pid), cut - t0, state & self.states.mask)
        stacks: Dict[Tuple[int, Tuple[str, ...]], list] = {}
        for (pid, stack), (n, ns, bits) in rows.stacks.items():
            k = (pid, self._name(stack))
            r = stacks.get(k)
            if r is None:
                stacks[k] = [n, ns, bits]
            else:
                r[0] += n
                r[1] += ns
                r[2] |= bits
        for r in stacks.values():
            r[2] = self.states.letters(r[2])
        pids = set(rows.off) | set(self.before) | {p for p, t in tr.tasks.items() if t.waits}
        pids.discard(0)
        tasks = {}
        for pid in pids:
            off, t = rows.off.get(pid, (0, 0)), tr.tasks.get(pid)
            tasks[pid] = {"off_ns": off[0], "sleeps": off[1],
                          "before_ns": self.before.get(pid, 0),
                          "wait_ns": t.wait if t else 0, "waits": t.waits if t else 0}
        comm = {pid: tr.comm.get(pid) or sched.proc_comm(pid)[:15] for pid in pids}
        lost = self.lost()
        books = Books(self.marks[0], cut, stacks, tasks, comm, lost - self.marks[1],
                      self.nostack - self.marks[2], tr.unrecorded - self.marks[3],
                      self.unended - self.marks[4], cgroups_of(self.cgroups, pids))
        self.marks = [cut, lost, self.nostack, tr.unrecorded, self.unended]
        rows.stacks, rows.off, self.before, tr.tasks = {}, {}, {}, {}
        self.forget(tr.forget_dead())
        return books

    def forget(self, pids) -> None:
        super().forget(pids)
        for pid in pids:
            for d in (self.pending, self.comm_raw):
                d.pop(pid, None)
            self.seen.discard(pid)


def cgroups_of(lookup, pids) -> Dict[int, Optional[str]]:
    """The cgroup of each task of an interval (none without --by cgroup);
    read again in the next (a task may move)."""
    if lookup is None:
        return {}
    out = {pid: lookup.of(pid) for pid in pids}
    lookup.keep(())
    return out


class Kernel(sched._Sched):
    """Blocked time summed per (task, stack) by hist triggers; see the
    module docstring. Nothing is read but the kernel's table."""

    method = "kernel"
    tick = 0.25

    def __init__(self, s, targets, cpus, kb: int, wanted: Optional[Set[str]] = None,
                 min_ns: Optional[int] = None, max_ns: Optional[int] = None) -> None:
        super().__init__(s, targets, cpus, kb, wanted)
        mask = sleep_mask(self.states, wanted)
        self.name = name = triggers.name(s, "off")
        fields = "pid_t pid; long state; u64 delta; unsigned long[] stack"
        s.add_dynamic("synthetic_events", "%s %s" % (name, fields), "!%s %s" % (name, fields))
        s.add_trigger("sched", "sched_switch",
                      "hist:keys=prev_pid:oft=common_timestamp,ofs=common_stacktrace,"
                      "ost=prev_state:size=%d:clock=mono%s" % (VARS_SIZE, triggers.if_clause(
                          filters.all_of(filters.mask_set("prev_state", mask),
                                         self.cpu_filter("cpu")))))
        # the wakeup reads (and so clears) the switch-out's variables: a
        # wakeup of a task that did not sleep finds none and emits nothing
        s.add_trigger("sched", "sched_wakeup",
                      "hist:keys=pid:ofd=common_timestamp-$oft,ofk=$ofs,ofx=$ost:size=%d:"
                      "onmatch(sched.sched_switch).trace(%s,pid,$ofx,$ofd,$ofk):clock=mono"
                      % (VARS_SIZE, name))
        span = filters.all_of("delta >= %d" % int(min_ns) if min_ns is not None else None,
                              "delta <= %d" % int(max_ns) if max_ns is not None else None)
        s.add_trigger("synthetic", name, "hist:keys=pid,state,stack.stacktrace:vals=hitcount,"
                      "delta:sort=pid:size=%d%s" % (TABLE_SIZE, triggers.if_clause(span)))
        self.seen: Dict[Tuple[int, int, str], Tuple[int, int]] = {}
        self.names: Dict[int, str] = {}
        self.dropped = 0
        self.marks = [self.start_ns, 0]

    def drain(self) -> None:
        pass

    def finish(self, why: str) -> None:
        self.end_ns = time.monotonic_ns()

    def lost(self) -> int:
        return self.dropped

    def _count_dropped(self) -> int:
        """Sleeps the kernel's tables had no room for (every table)."""
        return sum(t.dropped for sysname, ev in (("sched", "sched_switch"),
                                                 ("sched", "sched_wakeup"),
                                                 ("synthetic", self.name))
                   for t in triggers.read_hist(self.s, sysname, ev))

    def take(self, final: bool) -> Books:
        cut = self.end_ns if final and self.end_ns else time.monotonic_ns()
        stacks: Dict[Tuple[int, Tuple[str, ...]], list] = {}
        tasks: Dict[int, Dict[str, Optional[int]]] = {}
        for t in triggers.read_hist(self.s, "synthetic", self.name):
            for key, vals in t.entries:
                pid, state = int(key["pid"]), int(key.get("state", 0))
                raw = key.get("stack.stacktrace", "")
                n, ns = vals.get("hitcount", 0), vals.get("delta", 0)
                n0, ns0 = self.seen.get((pid, state, raw), (0, 0))
                if n <= n0 or not pid:
                    continue
                self.seen[(pid, state, raw)] = (n, ns)
                k = (pid, hist_frames(raw) or NO_STACK)
                r = stacks.setdefault(k, [0, 0, 0])
                r[0] += n - n0
                r[1] += ns - ns0
                r[2] |= state & self.states.mask
                tk = tasks.setdefault(pid, {"off_ns": 0, "sleeps": 0, "before_ns": None,
                                            "wait_ns": None, "waits": None})
                tk["off_ns"] += ns - ns0
                tk["sleeps"] += n - n0
        for r in stacks.values():
            r[2] = self.states.letters(r[2])
        for pid in tasks:
            if pid not in self.names:
                self.names[pid] = sched.proc_comm(pid)[:15]
        self.dropped = self._count_dropped()
        books = Books(self.marks[0], cut, stacks, tasks, dict(self.names),
                      self.dropped - self.marks[1], 0, 0, 0, cgroups_of(self.cgroups, tasks))
        self.marks = [cut, self.dropped]
        return books


def open_source(s, targets, cpus, kb: int, wanted: Optional[Set[str]] = None,
                min_ns: Optional[int] = None, max_ns: Optional[int] = None,
                stream: bool = False, cgroups=None):
    """The kernel's tables where it can keep stacks in hist variables
    (and no -p/-L/-c/--cgroup, which they cannot follow), unless
    ``stream``; else the stacktrace trigger's stacks, paired here.
    ``cgroups`` (a host.cgroups.Lookup, --by cgroup): each task's cgroup
    in the Books, forks followed where the events are read."""
    if not stream and not targets.filtered and s.features.has("hist_stacktrace"):
        k = Kernel(s, targets, cpus, kb, wanted, min_ns, max_ns)
        k.cgroups = cgroups
        return k
    return Stream(s, targets, cpus, kb, wanted, min_ns, max_ns, cgroups)
