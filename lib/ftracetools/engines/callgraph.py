"""Call graphs from the function_graph tracer: its text layout, redrawn
from the binary records (``Graph``), and the call trees of completed
calls (``Call``: for JSON, folded stacks and timelines); ``GraphSource``
arms a session for function_graph and reads its records in time order.

The layout is the kernel's own (trace_print_graph_duration and friends):
a line per call that made no traced call (``func();``), else an opening
``func() {`` and a closing ``}`` carrying the duration.
"""

import os
import time
from typing import Callable, Dict, List, Optional, Set, Tuple

from ftracetools import switches
from ftracetools.host import procs
from ftracetools.kernel import symbols, tracefs
from ftracetools.kernel.formats import EventFormat
from ftracetools.ring.merge import Feed
from ftracetools.ring.reader import RawReader, lost_from_stats, read_stats
from ftracetools.ring.source import Preload, Source, preload

__all__ = ["fmt_duration", "fmt_proc", "Call", "Graph", "walk", "fold", "GraphSource",
           "arrays_usable", "numpy_for_text", "HOLD_NS", "MAX_FUNCS", "DEFAULT_KB", "INSTANCE_KB"]

DEFAULT_KB = 4096
INSTANCE_KB = 16384     # an instance records every function of the traced threads
MAX_FUNCS = 2000  # set_graph_function entries; more is a mistake, not a graph
CHUNK_PAGES = 64  # per CPU and read: signals are looked at between reads
ARRAY_CHUNK_PAGES = 256     # as arrays: some 30,000 records, a tenth of a
                            # second in the emulated guests
BACKLOG_PAGES = 1024    # read but not yet handled: at most 4 MB
HOLD_NS = 50000000  # records younger than this wait for the other CPUs' (a
                    # record becomes readable once written: microseconds,
                    # but a guest's vCPU can be held up for milliseconds)

# Overhead marks of the kernel's function_graph output (trace_find_mark).
_MARKS = ((10 ** 9, "$"), (10 ** 8, "@"), (10 ** 7, "*"), (10 ** 6, "#"),
          (10 ** 5, "!"), (10 ** 4, "+"))


_PAD = tuple(" " * max(0, 8 - n) for n in range(16))


def fmt_duration(ns: int) -> str:
    """Mark and duration cells, as trace_print_graph_duration lays them out."""
    if 0 <= ns < 10 ** 7:   # the common case, faster: three decimals
        s = "%d.%03d" % (ns // 1000, ns % 1000)
        mark = " " if ns <= 10000 else "+" if ns <= 10 ** 5 else "!" if ns <= 10 ** 6 else "#"
        return "%s %s us %s|  " % (mark, s, _PAD[len(s)])
    mark = " " if ns <= 10000 else next((m for v, m in _MARKS if ns > v), " ")
    us, rem = divmod(ns, 1000)
    s = str(us)
    if len(s) < 7:
        s += "." + ("%03d" % rem)[:7 - len(s)]
    return "%s %s us %s|  " % (mark, s, " " * max(0, 8 - len(s)))


def fmt_proc(comm: str, pid: int) -> str:
    """The TASK/PID column: comm (7 characters, escaped by the caller) and
    PID, centred in 14."""
    txt = "%s-%d" % (comm[:7], pid)
    sp = max(0, 14 - len(txt))
    return " " * (sp // 2) + txt + " " * (sp - sp // 2)


# how far a child's recorded times may stray outside its parent's: a call
# without the kernel's call time in its exit record starts at the record's
# time less the duration, late by whatever delayed the record
SLACK_NS = 1000


class Call:
    __slots__ = ("func", "depth", "start", "dur", "cpu", "pid", "kids", "entered")

    def __init__(self, func: str, depth: int, start: int, dur: int,
                 cpu: int, pid: int, entered: Optional[int] = None) -> None:
        self.func, self.depth, self.start, self.dur = func, depth, start, dur
        self.cpu, self.pid, self.kids = cpu, pid, []  # type: List[Call]
        # the kernel's own call time (graph clock) where the exit record
        # has it: exact for nesting, where start (the record's time less
        # the duration) drifts by whatever delayed the exit record
        self.entered = start if entered is None else entered


class Graph:
    """Turns funcgraph_entry/exit records into the kernel's text layout,
    and completed calls into call trees (JSON, folded stacks, timelines).

    ``entry(ts, cpu, pid, func, depth)`` and ``exit(ts, cpu, pid, func,
    depth, dur)`` take records in time order. With ``wanted`` set only
    calls under those functions are kept, depths counted from them (the
    instance path, where the kernel cannot filter by graph function, and
    strays the kernel records outside them on the top level); with
    ``maxdepth`` / ``thresh_ns`` the depth and threshold filters are
    applied here too.
    """

    def __init__(self, write: Callable[[str], None], comm: Callable[[int], str],
                 text: bool = True, cpu: bool = True, proc: bool = False,
                 abstime: bool = False, duration: bool = True,
                 tail: bool = False, ncpu_width: int = 1,
                 wanted: Optional[Set[str]] = None, maxdepth: int = 0,
                 thresh_ns: int = 0,
                 on_root: Optional[Callable[[Call], None]] = None) -> None:
        self.write, self.comm, self.text = write, comm, text
        self.o_cpu, self.o_proc, self.o_abs = cpu, proc, abstime
        self.o_dur, self.o_tail, self.cw = duration, tail, ncpu_width
        self.wanted, self.maxdepth, self.thresh = wanted, maxdepth, thresh_ns
        self.on_root = on_root
        self.pending: Dict[int, tuple] = {}   # cpu -> entry awaiting its exit
        self.last_pid: Dict[int, int] = {}
        self.entered: Dict[int, Dict[int, str]] = {}  # cpu -> depth -> func
        self.base: Dict[int, int] = {}         # pid -> depth of the wanted call
        self.stray: Dict[int, tuple] = {}      # pid -> (depth, func) of an interrupt at it
        self.kids: Dict[int, Dict[int, List[Call]]] = {}  # pid -> depth -> calls
        self._cpu_cell: Dict[int, str] = {}
        self._lines: List[str] = []     # until flush_lines: one write a round
        self._put = self._lines.append

    # -- filtering (instance path) -----------------------------------------

    def _rebase(self, pid: int, func: str, depth: int, is_entry: bool) -> int:
        """Depth below the wanted function, or -1 to drop the record."""
        if self.wanted is None:
            d = depth
        else:
            s = self.stray.get(pid)
            if s is not None:
                if depth > s[0] or (depth == s[0] and not is_entry and func == s[1]):
                    if depth == s[0]:
                        del self.stray[pid]     # its end
                    return -1
                del self.stray[pid]     # its exit was lost
            b = self.base.get(pid)
            if b is not None and depth <= b and (is_entry or depth < b):
                if is_entry and func not in self.wanted:
                    # An interrupt taken as the wanted call returns, after
                    # the kernel stepped its depth back but before it
                    # recorded the exit, comes at the call's own depth (6.1
                    # under QEMU): neither part of the call nor its end.
                    self.stray[pid] = (depth, func)
                    return -1
                del self.base[pid]   # its exit was lost
                b = None
            if b is None:
                if not is_entry or func not in self.wanted:
                    return -1
                self.base[pid] = b = depth
            d = depth - b
            if not is_entry and d == 0:
                del self.base[pid]
        if self.maxdepth and d >= self.maxdepth:
            return -1
        return d

    def entry(self, ts: int, cpu: int, pid: int, func: str, depth: int) -> None:
        d = self._rebase(pid, func, depth, True)
        if d < 0 or self.thresh:
            return
        if self.text:
            self._flush(cpu)
            self.pending[cpu] = (ts, pid, func, d)

    def exit(self, ts: int, cpu: int, pid: int, func: str, depth: int,
             dur: int, calltime: Optional[int] = None) -> None:
        d = self._rebase(pid, func, depth, False)
        if d < 0 or dur < self.thresh:
            return
        if self.text:
            p = self.pending.pop(cpu, None)
            cell = fmt_duration(dur) if self.o_dur else ""
            if p is not None and p[1] == pid and p[3] == d and p[2] == func:
                self._line(p[0], cpu, pid, cell + "  " * d + func + "();")
            else:
                if p is not None:
                    self._nested(cpu, p)
                match = self.entered.get(cpu, {}).pop(d, None) == func
                tail = "}" if match and not self.o_tail else "} /* %s */" % func
                self._line(ts, cpu, pid, cell + "  " * d + tail)
        if self.on_root is not None:    # trees only for the outputs made of them
            self._complete(Call(func, d, ts - dur, dur, cpu, pid, calltime))

    def _nested(self, cpu: int, p: tuple) -> None:
        ts, pid, func, d = p
        self.entered.setdefault(cpu, {})[d] = func
        self._line(ts, cpu, pid, ("              |  " if self.o_dur else "") + "  " * d
                   + func + "() {")

    def _flush(self, cpu: int) -> None:
        p = self.pending.pop(cpu, None)
        if p is not None:
            self._nested(cpu, p)

    def flush_all(self) -> None:
        """Entries whose exit has not come: print them as opened calls."""
        for cpu in sorted(self.pending):
            self._flush(cpu)

    def _line(self, ts: int, cpu: int, pid: int, rest: str) -> None:
        last = self.last_pid.get(cpu)
        if last != pid:
            self.last_pid[cpu] = pid
            if last is not None:
                self._put(" ------------------------------------------\n"
                           " %*d) %s => %s\n ------------------------------------------\n\n"
                           % (self.cw, cpu, fmt_proc(self.comm(last), last),
                              fmt_proc(self.comm(pid), pid)))
        pre = self._cpu_cell.get(cpu)
        if pre is None:
            pre = self._cpu_cell[cpu] = " %*d) " % (self.cw, cpu) if self.o_cpu else ""
        if self.o_abs:
            pre = "%5d.%06d |  " % (ts // 10 ** 9, ts % 10 ** 9 // 1000) + pre
        if self.o_proc:
            pre += fmt_proc(self.comm(pid), pid) + " | "
        self._put(pre + rest + "\n")

    def flush_lines(self) -> None:
        """Hand the lines made so far to ``write``, in one string."""
        if self._lines:
            self.write("".join(self._lines))
            self._lines.clear()

    def headers(self) -> str:
        a, b = "#", "#"
        if self.o_abs:
            a, b = a + "     TIME       ", b + "      |         "
        if self.o_cpu:
            a, b = a + " CPU", b + " |  "
        if self.o_proc:
            a, b = a + "  TASK/PID       ", b + "   |    |        "
        if self.o_dur:
            a, b = a + "  DURATION   ", b + "   |   |      "
        return "%s               FUNCTION CALLS\n%s               |   |   |   |\n" % (a, b)

    # -- call trees ----------------------------------------------------------

    def _complete(self, c: Call) -> None:
        """Exits come children first: a call adopts the finished calls
        below it that ran within it; depth 0 ends a tree.

        Not only the level just below: an interrupt taken in the function
        itself can be recorded two levels down (seen on 6.12: its first
        traced function at depth 2 under a depth-0 call), so a call
        whose parent level has no call around it waits for an ancestor.
        Containment is checked at both ends: an interrupt that began a
        moment before a short sibling's call time is not that sibling's.
        """
        levels = self.kids.setdefault(c.pid, {})
        lo, hi = c.entered - SLACK_NS, c.entered + c.dur + SLACK_NS
        kids: List[Call] = []
        for d in [d for d in levels if d > c.depth]:
            rest = []
            for k in levels[d]:
                (kids if lo <= k.entered and k.entered + k.dur <= hi else rest).append(k)
            if rest:
                levels[d] = rest
            else:
                del levels[d]
        c.kids = _nest(kids)
        if c.depth == 0:
            # what is left began before this tree: its parent was lost
            for k in sorted((k for d in levels for k in levels[d]), key=lambda k: k.entered):
                self._root(k)
            levels.clear()
            self._root(c)
        else:
            levels.setdefault(c.depth, []).append(c)

    def _root(self, c: Call) -> None:
        if self.on_root:
            self.on_root(c)

    def finish(self) -> None:
        """Calls whose parent never returned (still running, or lost)."""
        self.flush_all()
        self.flush_lines()
        for pid in sorted(self.kids):
            for d in sorted(self.kids[pid], reverse=True):
                for c in self.kids[pid][d]:
                    self._root(c)
        self.kids = {}


def arrays_usable(g: Graph) -> bool:
    """The Graph makes only what ``engines.grapharrays`` makes too: text
    lines, without -a, -t, -P or (in an instance) -s."""
    return (g.text and g.on_root is None and not g.o_abs and not g.o_proc
            and not g.thresh and g.wanted is not None)


def numpy_for_text(text: bool) -> Optional[Preload]:
    """numpy's import, begun in the background for a run whose text the
    arrays can make (``text``: no trees, no -a, -t or -P), as the tool
    starts: it ends while the function names load, before function_graph
    is on. Once it is on every kernel function goes through its
    trampoline, and the same import took two and a half times the CPU
    (3.2 s against 1.3 in the 6.1 guest). A run that never gets busy
    pays it all the same (70 to 140 ms of CPU on the 6.18 host)."""
    if not text or switches.get("NO_NUMPY") == "1":
        return None
    return preload("ftracetools.engines.grapharrays")


def _inside(k: Call, p: Call) -> bool:
    """k ran within p, deeper (a sibling a moment after p is not p's)."""
    return p.depth < k.depth and p.entered - SLACK_NS <= k.entered and \
        k.entered + k.dur <= p.entered + p.dur + SLACK_NS


def _nest(calls: List[Call]) -> List[Call]:
    """The calls a parent adopts, as a forest: one that ran within another
    goes under it. Normally a call has adopted its own callees when its
    exit came; but under emulation a vCPU stalled between writing a
    record and committing it hands records on late, out of order (a CI
    run on 6.1: a callee's exit read after its caller's, both then adopted
    by the root as siblings, their time counted twice)."""
    out: List[Call] = []
    stack: List[Call] = []
    for k in sorted(calls, key=lambda k: (k.entered, -k.dur, k.depth)):
        while stack and not _inside(k, stack[-1]):
            stack.pop()
        if stack:
            p = stack[-1]
            p.kids = sorted(p.kids + [k], key=lambda x: x.entered)
        else:
            out.append(k)
        stack.append(k)
    return out


def walk(c: Call, parents=()):
    """Pre-order: (call, stack of function names above it)."""
    yield c, parents
    for k in c.kids:
        yield from walk(k, parents + (c.func,))


def fold(c: Call, into: Dict[str, int]) -> None:
    """Add a tree's self times to folded stacks (``a;b;c`` -> ns); they
    add up to the tree's time, each nanosecond counted once.

    A call's children are counted within its own time and one after
    another: a child that strays outside it (up to ``SLACK_NS``) or
    overlaps a sibling counts only the time no other has. Records handed
    on late and out of order (a vCPU stalled under emulation: a CI run on
    6.1 gave a tree whose calls' times overlapped by 527 us, the folded
    stacks adding up to 6.80 ms where the calls took 6.28) would
    otherwise count that time twice."""
    _fold(c, (), c.entered, c.entered + c.dur, into)


def _fold(n: Call, up: Tuple[str, ...], lo: int, hi: int, into: Dict[str, int]) -> int:
    """n's time within [lo, hi), with its children's; returns it."""
    s, e = max(n.entered, lo), min(n.entered + n.dur, hi)
    path = up + (n.func,)
    key = ";".join(path)
    if e <= s:
        into.setdefault(key, 0)
        return 0
    inner, at = 0, s
    for k in sorted(n.kids, key=lambda k: k.entered):
        inner += _fold(k, path, at, e, into)
        at = max(at, min(k.entered + k.dur, e))
    into[key] = into.get(key, 0) + (e - s) - inner
    return e - s


def functions(funcs, patterns: List[str]) -> List[str]:
    """The traceable functions the patterns match (a usage error naming a
    pattern that matches nothing, with close names)."""
    from ftracetools.errors import UsageError
    names: Set[str] = set()
    for p in patterns:
        got = symbols.match(funcs, p)
        if not got:
            near = symbols.suggest(funcs, p)
            raise UsageError("%s matches no traceable function" % p,
                             ("close: %s" % ", ".join(near)) if near else
                             "see available_filter_functions")
        names.update(got)
    if len(names) > MAX_FUNCS:
        raise UsageError("the patterns match %d functions (more than %d)"
                         % (len(names), MAX_FUNCS), "name fewer")
    return sorted(names)


class GraphSource(Source):
    """function_graph armed in the session (an instance where the kernel
    allows it, else the top level under the lock), its records read from
    every CPU in time order and handed to ``graph``.

    ``in_instance``: the session is an instance, where the kernel cannot
    keep to the calls under the functions (it records every function of
    the traced threads: the graph filters, and the buffer is larger).
    ``on_lost(cpu, n)``: events lost on a CPU since the last call, as soon
    as they are known (the kernel's text shows ``CPU:N [LOST M EVENTS]``).
    ``every``: the names of every traceable function, to name the callees.
    ``numpy``: its import begun for the text of busy rounds
    (``numpy_for_text``).
    """

    lost_hint = "use a larger -b, fewer functions, or -m"

    def __init__(self, s, graph: Graph, names: List[str], targets, *, in_instance: bool,
                 maxdepth: int, thresh_ns: int, kb: int, oncpu: bool, noirqs: bool,
                 warn: Callable[[str], None], on_lost: Callable[[int, int], None],
                 every: List[str], numpy: Optional[Preload] = None) -> None:
        self.s, self.g, self.on_lost = s, graph, on_lost
        self.loading = numpy if arrays_usable(graph) else None
        s.set("tracing_on", "0")
        s.set_buffer_kb(kb)
        s.set("trace_clock", "mono")
        # When the buffer fills, drop new records rather than overwrite the
        # oldest unread ones: the trees read so far stay whole, and every
        # drop is counted ("dropped events" in per_cpu stats).
        s.set_option("overwrite", False)
        if in_instance:
            for w in _global_graph_settings(s.root):
                warn(w)
            if not targets.filtered and maxdepth != 1:
                warn("warning: in an instance this kernel cannot limit "
                     "function_graph to the calls under FUNCTION: every "
                     "kernel function is recorded; -p, -L or -c cost less")
            if maxdepth == 1:  # only the functions: filter in the kernel
                s.set("set_ftrace_filter", "\n".join(names))
        else:
            s.set("set_graph_function", "\n".join(names))
            if maxdepth:
                s.set("max_graph_depth", str(maxdepth))
            if thresh_ns:
                s.set("tracing_thresh", str(thresh_ns // 1000 or 1))
        if noirqs:
            s.set_option("funcgraph-irqs", False)
        if oncpu:
            s.set_option("sleep-time", False)
        # Every traceable function (the callees are recorded too); loaded
        # before tracing starts: reading kallsyms takes seconds in the
        # emulated guests, which the first records would wait for (and
        # before the tracer is on, which slows every kernel function).
        self.amap = symbols.AddrMap.load(s.root, every)
        if self.loading is not None:    # (see numpy_for_text)
            self.loading.module()
        targets.arm(s, pid_file="set_ftrace_pid", fork_option="function-fork")
        s.set("current_tracer", "function_graph")
        ent = EventFormat.load(s.root, "ftrace", "funcgraph_entry")
        ext = EventFormat.load(s.root, "ftrace", "funcgraph_exit")
        self.ent_id, self.ext_id = ent.id, ext.id
        self.dec_ent = ent.decoder(["common_pid", "func", "depth"])
        self.timed = "calltime" in ext.fields
        self.dec_ext = ext.decoder(["common_pid", "func", "depth"]
                                   + (["calltime", "rettime"] if self.timed else []))
        self.r = r = RawReader(s.dir, s.root,
                               cpus=sorted(targets.cpus) if targets.cpus else None)
        s.own(r)
        self.base = {c: self._dropped(c) for c in r.cpus}
        self.lost_cpu = dict.fromkeys(r.cpus, 0)
        self.labels: Dict[int, str] = {}    # ip -> name or "0x..", for the hot loop
        # (pid, depth) -> entry time, where exits lack the kernel's call time
        self.starts: Dict[tuple, int] = {}
        # decoded as the pages are walked (numbers only: pid, ip, depth, times)
        self.feed = Feed(r, BACKLOG_PAGES, decode={ent.id: self.dec_ent, ext.id: self.dec_ext})
        self.formats = (ent, ext)
        self.arrays = None      # engines.grapharrays.GraphArrays, once busy
        self.holding = False    # pages read wait for numpy's import
        self._unread = 0
        self.comms = procs.Comms(lambda: tracefs.saved_cmdlines(s.root))

    def live(self) -> None:
        self.s.start()

    def comm(self, pid: int) -> str:
        """A task's name: /proc, or the kernel's saved names once it is gone."""
        return self.comms(pid)

    def _dropped(self, cpu: int) -> int:
        return lost_from_stats(read_stats(os.path.join(self.s.dir, "per_cpu", "cpu%d" % cpu)))

    def _name(self, ip: int) -> str:
        n = self.labels[ip] = self.amap.name(ip) or "0x%x" % ip
        return n

    def _handle(self, evs) -> None:
        g, ent_id, ext_id = self.g, self.ent_id, self.ext_id
        starts = None if self.timed else self.starts
        timed, name, known = self.timed, self._name, self.labels.get
        # A task outside the wanted calls (most records on the instance
        # path, which records every function of the traced threads):
        # its exits are dropped and its entries looked at for the name
        # alone, before any of the graph's work (Graph._rebase drops the
        # same records, later and at several times the cost).
        inside, wanted = (g.base, g.wanted) if g.wanted is not None else (None, None)
        for ts, cpu, typ, v in evs:     # v: the fields, decoded by the Feed
            if typ == ent_id:
                pid, ip, depth = v
                f = known(ip) or name(ip)
                if inside is not None and pid not in inside and f not in wanted:
                    continue
                if starts is not None:
                    starts[(pid, depth)] = ts
                g.entry(ts, cpu, pid, f, depth)
            elif typ == ext_id:
                if inside is not None and v[0] not in inside:
                    continue
                if timed:
                    g.exit(ts, cpu, v[0], known(v[1]) or name(v[1]), v[2], v[4] - v[3], v[3])
                else:   # the entry's record time (it may have come in an earlier round)
                    g.exit(ts, cpu, v[0], known(v[1]) or name(v[1]), v[2],
                           ts - starts.pop((v[0], v[2]), ts))

    def wait(self, timeout: float) -> object:
        if self.holding:    # the pages wait for numpy: so do we
            return self.loading.wait(timeout)
        return self.r.wait(timeout)

    def drain(self, final: bool = False) -> int:
        """Hand on what the CPUs have, in time order across CPUs (a task
        that moves between CPUs mid-call has its records on both), in
        bounded chunks (the loop checks for signals between them), record
        by record or, once busy, as arrays; return how many records are
        left to hand on."""
        feed, n, deadline = self.feed, 0, time.monotonic() + 0.25
        while True:
            feed.pull()
            self.holding = self._arrays_when_busy(final)
            if self.holding:
                break   # numpy's import runs: the pages read wait for it
            upto = None if final else time.monotonic_ns() - HOLD_NS
            if self.arrays is not None:
                pages, upto = feed.take_pages(upto, ARRAY_CHUNK_PAGES)
                held, feed.pending = feed.pending, []   # (from before the switch)
                rec = self.arrays.take(pages, upto, held)
                if not self.arrays.text(rec):
                    self._handle(self.arrays.tuples(rec))
                k = len(rec["ts"])
            else:
                evs = feed.take(upto, CHUNK_PAGES)
                self._handle(evs)
                k = len(evs)
            self.g.flush_lines()
            n += k
            if not feed.backlog() or time.monotonic() > deadline:
                break
        for c in self.r.cpus:
            k = self._dropped(c) - self.base[c]
            if k > self.lost_cpu[c]:
                self.on_lost(c, k - self.lost_cpu[c])
                self.lost_cpu[c] = k
        return n + feed.backlog()

    # Once this many pages are read (some 30,000 records), the text is made
    # as arrays (numpy: engines.grapharrays), where the options allow it;
    # should numpy's import (begun as the tool started) still run, the
    # pages read wait for it, not decoded one by one (the kernel's buffer
    # keeps what does not fit). (The tests set SMALL to 0: arrays from the
    # first record on; and to a huge number: never.)
    SMALL = 256
    no_arrays = False

    def _arrays_when_busy(self, wait: bool = False) -> bool:
        """Switch to arrays once busy; True while the pages wait for numpy."""
        if self.arrays is not None or self.no_arrays:
            return False
        small = int(switches.get("SMALL_ROUND", str(self.SMALL)))
        if self.r.pages < small:
            return False
        if self.loading is None or not self.timed:
            self.no_arrays = True   # (the options, an old kernel's exits, or no numpy)
            return False
        if small and not wait and not self.loading.ready():
            return True
        mod, self.loading = self.loading.module(), None
        if mod is None:
            self.no_arrays = True
            return False
        known, name = self.labels.get, self._name
        self.arrays = mod.GraphArrays(self.g, self.r.layout, *self.formats,
                                      name=lambda ip: known(ip) or name(ip),
                                      note_lost=self.r.note_lost)
        return False

    def finish(self, why: str) -> None:
        """All that is left in the buffer; after Ctrl-C at most half a
        second's worth (a full buffer takes seconds to decode), the rest
        counted as unread."""
        until = time.monotonic() + 0.5 if why == "signal" else None
        while self.drain(final=True) and (until is None or time.monotonic() < until):
            pass
        held = self.arrays.pending if self.arrays is not None else None
        self._unread = self.feed.discard() + (len(held["ts"]) if held else 0) + sum(
            read_stats(os.path.join(self.s.dir, "per_cpu", "cpu%d" % c)).get("entries", 0)
            for c in self.r.cpus)
        self.g.finish()

    def lost(self) -> int:
        n = max(sum(self.lost_cpu.values()), self.r.flagged_lost)
        return n or (1 if self.r.unknown_loss else 0)

    def unread(self) -> int:
        return self._unread


def _global_graph_settings(root: str) -> List[str]:
    """Top-level graph settings that this kernel applies to instances too."""
    out = []
    for f, empty in (("set_graph_function", ""), ("set_graph_notrace", ""),
                     ("max_graph_depth", "0"), ("tracing_thresh", "0")):
        v = (tracefs.read_opt(os.path.join(root, f)) or "").strip()
        if v and not v.startswith("#") and v != empty:
            out.append("warning: %s is set at the top level by someone else "
                       "(%s); this kernel applies it to every function_graph "
                       "user, so it limits what is shown" % (f, v.split()[0]))
    return out
