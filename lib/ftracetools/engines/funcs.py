"""Counting calls of kernel functions, and hits of tracepoints, exactly.

Functions: the best counting method this kernel offers, chosen by
``choose`` and said with ``-v``: the function profiler (top level), kprobe
hit counts, fprobes or kprobes feeding hist triggers (all in the kernel),
else the function tracer in an instance, one record per call read here.

Tracepoints (``t:SUBSYS:EVENT``): a hist trigger per event where the
kernel has them; else the kernel's own count of the events written to a
buffer of their own (one small instance per event: what was written is
``entries + overrun + read events`` of its per-CPU stats, whatever the
buffer's size, with nothing read here), for up to ``COUNTER_EVENTS``
events; else one instance for all, its records counted by type here.

Each counter is a ``Source`` whose ``take()`` returns the counts since
the last take, by name, and ``lost()`` the events lost or missed so far.

With ``stacks`` (bcc's stackcount), the paths that can carry a kernel stack
count per stack too (``take_stacks()``: (name, frames) -> calls): the hist
triggers key on the stack as well as the CPU (kprobe-hist, fprobe-hist,
tp-hist); tp-records has the ``stacktrace`` trigger write each event's
stack right after it, on the same CPU. The others refuse (``NO_STACKS``).
"""

import os
import struct
from typing import Callable, Dict, List, Optional, Set, Tuple

from ftracetools import switches
from ftracetools.errors import ToolError, UsageError
from ftracetools.host import cpus as cpulib
from ftracetools.kernel import buffers, symbols, tracefs, triggers
from ftracetools.kernel.formats import EventFormat, stack_record
from ftracetools.ring.reader import RawReader, read_stats
from ftracetools.ring.source import Preload, Source, preload

__all__ = ["METHODS", "TRACEPOINT_METHODS", "DESCRIBE", "TOP_LEVEL", "PROBE_COST_MS",
           "COUNTER_EVENTS", "NO_STACKS", "NO_STACK", "Refused", "ProbeFailed", "why_not",
           "choose", "traceable", "match_tracepoints", "only_functions", "open_counter"]

METHODS = ("profiler", "kprobe", "fprobe-hist", "kprobe-hist", "function")
TRACEPOINT_METHODS = ("tp-hist", "tp-counter", "tp-records")
DESCRIBE = {
    "profiler": "the function profiler, in the kernel",
    "kprobe": "kprobe hit counts, in the kernel",
    "fprobe-hist": "fprobes and hist triggers, in the kernel",
    "kprobe-hist": "kprobes and hist triggers, in the kernel",
    "function": "the function tracer, one record per call read by funccount",
    "tp-hist": "hist triggers on the tracepoints, in the kernel",
    "tp-counter": "the kernel's count of events written, a buffer per tracepoint",
    "tp-records": "the tracepoints' records, counted by funccount",
}
TOP_LEVEL = {"profiler"}
NO_STACKS = {
    "profiler": "the function profiler counts calls, not stacks",
    "kprobe": "kprobe_profile counts hits, not stacks",
    "function": "the function tracer's records carry no stack here (counting with probes "
                "and hist triggers does: fewer functions, or a larger -m)",
    "tp-counter": "the kernel's count of the events written keeps no stacks",
}
NO_STACK = ("[no stack recorded]",)
STACK_TABLE = 16384     # (CPU, stack) pairs per event in the kernel's table
PROBE_COST_MS = 5       # set-up + teardown per probe, measured (see the man page)
COUNTER_EVENTS = 8      # an instance each (about 40 ms to remove): more are read
RECORDS_KB = 4096


class Refused(Exception):
    """A counting path that cannot serve this request, and why."""


class ProbeFailed(Exception):
    """The kernel refused a probe (a function kprobes must not touch)."""


def why_not(method: str, feat, targets, names: List[str], dups: Set[str],
            max_probes: int, stacks: bool = False) -> Optional[str]:
    """None if ``method`` can count ``names`` exactly here (per stack with
    ``stacks``), else the reason."""
    if stacks and method in NO_STACKS:
        return NO_STACKS[method]
    if method == "profiler":
        if targets.filtered:
            return "the function profiler counts every task (no -p/-L/-c)"
        return feat.why_not("function_profiler")
    if method == "function":
        return feat.why_not("function_instance")
    if method == "tp-hist":
        return feat.why_not("hist")
    if method == "tp-counter":
        return None if len(names) <= COUNTER_EVENTS else \
            "%d tracepoints: more than %d instances" % (len(names), COUNTER_EVENTS)
    if method == "tp-records":
        return None
    kind = method.split("-")[0]
    why = feat.why_not(kind + "s") or (
        feat.why_not("hist") if method.endswith("hist") else None)
    if why:
        return why
    if method == "kprobe" and (targets.filtered or targets.cpus is not None):
        return "kprobe_profile counts hits of every task on every CPU"
    if len(names) > max_probes:
        return ("%d functions need %d probes, more than -m %d (each costs "
                "about %d ms to set up and remove)"
                % (len(names), len(names), max_probes, PROBE_COST_MS))
    clash = sorted(set(names) & dups)
    if clash:
        return "several functions are named %s: a probe cannot tell them apart" % clash[0]
    return None


def choose(feat, targets, names: List[str], dups: Set[str], max_probes: int,
           warn: Callable[[str], None], tracepoints: bool = False,
           stacks: bool = False, methods: Optional[Tuple[str, ...]] = None,
           why: Optional[Callable] = None, verb: str = "count") -> str:
    """The first method that can count ``names`` exactly here, per stack
    with ``stacks`` (the test switch FTT_METHOD forces one, or a refusal);
    another tool's ``methods``, judged by its ``why`` (``why_not``'s
    arguments), are chosen the same way."""
    methods = methods or (TRACEPOINT_METHODS if tracepoints else METHODS)
    why_not_ = why or why_not
    forced = switches.get("METHOD")
    if forced:
        if forced not in methods:
            raise Refused("FTT_METHOD=%s: not one of %s" % (forced, ", ".join(methods)))
        reason = why_not_(forced, feat, targets, names, dups, max_probes, stacks)
        if reason:
            raise Refused("cannot %s with %s: %s" % (verb, forced, reason))
        return forced
    reasons = []
    for m in methods:
        reason = why_not_(m, feat, targets, names, dups, max_probes, stacks)
        if reason is None:
            if reasons and m == "function" and len(names) > max_probes:
                warn("%d functions matched: more than -m %d probes; counting "
                     "with the function tracer (costs funccount CPU per call)"
                     % (len(names), max_probes))
            return m
        reasons.append("%s: %s" % (m, reason))
    raise Refused("no way to %s %s here (%s)" % (
        verb, "stacks of these functions" if stacks else "functions", "; ".join(reasons)))


def traceable(feat, patterns: List[str], regex: bool, instead: str):
    """(the traceable functions the patterns match, the names listed twice);
    a refusal where functions cannot be traced that ends with ``instead``
    (what the user can do instead), a usage error with close names where
    a pattern matches nothing."""
    why = feat.why_not("function")
    if why:
        raise ToolError("%s. %s" % (why, instead))
    have = symbols.load(feat.root)
    names, empty = symbols.match_all(have, patterns, regex)
    if empty:
        near = symbols.suggest(have, empty[0])
        raise UsageError("%s matches no traceable function" % empty[0],
                         ("close: %s" % ", ".join(near)) if near else
                         "see %s/available_filter_functions" % feat.root)
    return names, symbols.duplicates(have)


def match_tracepoints(root: str, patterns: List[str]) -> List[str]:
    """``t:SUBSYS:EVENT`` patterns (globs in both parts) -> sorted
    ``subsys:event`` names; a pattern matching nothing is a usage error."""
    import fnmatch
    have = []
    for line in (tracefs.read_opt(os.path.join(root, "available_events")) or "").split():
        if ":" in line:
            have.append(line)
    out: Set[str] = set()
    for p in patterns:
        parts = p.split(":")
        if len(parts) != 3 or parts[0] != "t" or not all(parts[1:]) or \
                any(not all(c.isalnum() or c in "_*?[]-" for c in x) for x in parts[1:]):
            raise UsageError("%s: not a tracepoint pattern" % p,
                             "tracepoints are t:SUBSYS:EVENT, e.g. t:sched:sched_switch "
                             "or t:syscalls:sys_enter_*")
        got = [n for n in have if fnmatch.fnmatchcase(n, parts[1] + ":" + parts[2])]
        if not got:
            raise UsageError("%s matches no tracepoint" % p,
                             "see the kernel's list: %s/available_events" % root)
        out.update(got)
    return sorted(out)


class _Counter(Source):
    """Running totals from the kernel, handed on as differences."""

    tick = 0.25

    def __init__(self) -> None:
        self.base: Dict[str, int] = {}
        self.missed = 0     # set by totals(): hits the kernel missed or dropped
        # with stacks: (name, stack key) -> calls so far, set by totals()
        self.stack_total: Dict[Tuple[str, str], int] = {}
        self.stack_base: Dict[Tuple[str, str], int] = {}

    def totals(self) -> Dict[str, int]:
        raise NotImplementedError

    def lost(self) -> int:
        self.totals()
        return self.missed

    def take(self) -> Dict[str, int]:
        total = self.totals()
        out = {f: n - self.base.get(f, 0) for f, n in total.items()}
        self.base = total
        return {f: n for f, n in out.items() if n}

    def take_stacks(self) -> Dict[Tuple[str, Tuple[str, ...]], int]:
        """Calls per (name, stack frames) since the last call (after take)."""
        out: Dict[Tuple[str, Tuple[str, ...]], int] = {}
        for k, n in self.stack_total.items():
            d = n - self.stack_base.get(k, 0)
            if d:
                f = (k[0], symbols.trim_tracing(triggers.stack_frames(k[1])) or NO_STACK)
                out[f] = out.get(f, 0) + d
        self.stack_base = dict(self.stack_total)
        return out

    def finish(self, why: str) -> None:
        pass


class InKernel(_Counter):
    """Function calls counted by the kernel: the profiler, kprobe hit
    counts, or probes feeding hist triggers."""

    def __init__(self, s, method: str, names: List[str], targets, stacks: bool = False) -> None:
        super().__init__()
        self.s, self.method, self.names, self.targets = s, method, names, targets
        self.stacks = stacks
        self.events: Dict[str, str] = {}  # event name -> function
        self.hist = method.endswith("hist")
        if method == "profiler":
            s.set("set_ftrace_filter", symbols.filter_text(symbols.load(s.root), names))
            s.set("function_profile_enabled", "1")
            return
        fprobe = method.startswith("fprobe")
        group = self.group = triggers.name(s, "fc")
        for i, name in enumerate(names):
            ev = "%s_%d" % (group, i)  # names may hold '.': not event names
            try:
                s.add_dynamic("dynamic_events" if fprobe else "kprobe_events",
                              "%s:%s/%s %s" % ("f" if fprobe else "p", group, ev, name),
                              "-:%s/%s" % (group, ev))
            except ToolError as e:
                raise ProbeFailed("cannot probe %s: %s" % (name, e)) from None
            self.events[ev] = name
        if not self.hist:
            s.set("tracing_on", "0")  # kprobe_profile counts; record nothing
            for ev in self.events:
                s.enable_event(group, ev)
            return
        _hist_per_cpu(s, targets, [(group, ev) for ev in self.events], stacks)

    def totals(self) -> Dict[str, int]:
        s, counts = self.s, {}
        if self.method == "profiler":
            for cpu in _cpus(self.targets.cpus):
                text = tracefs.read_opt(os.path.join(s.root, "trace_stat", "function%d" % cpu))
                for line in (text or "").splitlines()[2:]:
                    p = line.split()
                    if len(p) >= 2 and p[1].isdigit():
                        counts[p[0]] = counts.get(p[0], 0) + int(p[1])
            return counts
        missed = 0
        for line in (tracefs.read_opt(os.path.join(s.root, "kprobe_profile")) or "").splitlines():
            p = line.split()
            ev = p[0].rsplit("/", 1)[-1] if p else ""
            if ev in self.events and len(p) >= 3:
                if not self.hist:
                    counts[self.events[ev]] = counts.get(self.events[ev], 0) + int(p[1])
                missed += int(p[2])  # misses of any task: an upper bound
        if self.hist:
            for ev, name in self.events.items():
                n, dropped = _hist_sum(s, self.group, ev, self.targets.cpus,
                                       self.stack_total, name if self.stacks else None)
                counts[name] = counts.get(name, 0) + n
                missed += dropped
        self.missed = missed
        return counts


class Traced(_Counter):
    """The function tracer in a private instance; calls counted from its
    records."""

    tick = 0.1

    def __init__(self, s, names: List[str], targets) -> None:
        super().__init__()
        self.names, self.targets = names, targets
        self.ips: Dict[int, int] = {}
        self.map = symbols.AddrMap.load(s.root, names)
        fmt = EventFormat.load(s.root, "ftrace", "function")
        self.type, self.ip_off = fmt.id, fmt.field("ip").offset
        s.set_buffer_kb(buffers.per_cpu_kb(RECORDS_KB))
        only_functions(s, names, targets)
        s.set("current_tracer", "function")  # EBUSY once trace_pipe_raw is open
        self.rd = RawReader(s.dir, s.root)
        s.own(self.rd)
        self.walker = None
        self.lost_hint = "count fewer functions, or trace one process (-p, -c)"

    # A round of this many pages or more (some 36,000 calls) is decoded as
    # arrays (numpy, ring.arrays.WalkedPages), and every round after it;
    # fewer go record by record, and a short or quiet run never loads
    # numpy. Its import runs in the background, the rounds' pages kept
    # meanwhile: imported in the round, it takes seconds in the emulated
    # guests, while the burst that called for it fills the kernel's buffer.
    # (The tests set SMALL to 0, and to a huge number, for each way.)
    SMALL = int(switches.get("SMALL_ROUND", "256"))
    loading: Optional[Preload] = None

    def wait(self, timeout: float) -> object:
        return self.rd.wait(timeout)

    def drain(self, settle: bool = False) -> None:
        """Count what the kernel has (``settle``: and what waits for the
        import, waiting for it)."""
        pages = self.rd.drain_pages()
        if self.walker is None and self.loading is None and len(pages) >= self.SMALL \
                and pages:
            self.loading = preload("ftracetools.ring.arrays")
        if self.walker is None and self.loading is not None:
            done = self.loading.hold(pages, settle)
            if done is None:
                return
            self.loading = None
            arrays, pages = done[0], [p for r in done[1] for p in r]
            if arrays is None:      # no numpy: record by record, always
                self.SMALL = 1 << 62
            else:
                self.walker = arrays.WalkedPages(self.rd.layout)
        if self.walker is not None:
            self._drain_arrays(pages)
            return
        self._count(pages)

    def _count(self, pages) -> None:
        u64, t, off, ips = struct.Struct("<Q").unpack_from, self.type, self.ip_off, self.ips
        for _, _, typ, p in self.rd.events(pages):
            if typ == t:
                ip = u64(p, off)[0]
                ips[ip] = ips.get(ip, 0) + 1

    def _drain_arrays(self, pages) -> None:
        import numpy as np
        w, ips = self.walker, self.ips
        rec, lost = w.decode([p for _c, p in pages])
        for n in lost:
            self.rd.note_lost(n)
        mine = rec["type"] == self.type
        ip = w.field({"at": rec["at"][mine]}, self.ip_off, "<u8")
        for a, n in zip(*(x.tolist() for x in np.unique(ip, return_counts=True))):
            ips[a] = ips.get(a, 0) + n

    def finish(self, why: str) -> None:
        self.drain(settle=True)

    def take(self) -> Dict[str, int]:
        if self.loading is not None:    # (an interval ends: its calls all counted)
            self.drain(settle=True)
        out: Dict[str, int] = {}
        for ip, n in self.ips.items():
            name = self.map.name(ip) or "0x%x" % ip
            out[name] = out.get(name, 0) + n
        self.ips = {}
        return out

    def lost(self) -> int:
        return self.rd.lost() + self.rd.flagged_lost


class TracepointHist(_Counter):
    """A ``keys=cpu`` hist trigger on each tracepoint, in the instance."""

    def __init__(self, s, names: List[str], targets, stacks: bool = False) -> None:
        super().__init__()
        self.s, self.names, self.targets, self.stacks = s, names, targets, stacks
        _hist_per_cpu(s, targets, [tuple(n.split(":")) for n in names], stacks)

    def totals(self) -> Dict[str, int]:
        out, dropped = {}, 0
        for n in self.names:
            sysname, ev = n.split(":")
            out[n], d = _hist_sum(self.s, sysname, ev, self.targets.cpus, self.stack_total,
                                  n if self.stacks else None)
            dropped += d
        self.missed = dropped
        return out


class TracepointCounter(_Counter):
    """Each tracepoint in an instance of its own, its buffer as small as
    the kernel allows: the kernel counts what it writes there (overwrite
    mode keeps writing when full), and nothing is read here."""

    def __init__(self, s, names: List[str], targets) -> None:
        super().__init__()
        self.names, self.cpus = names, targets.cpus
        self.dirs: Dict[str, str] = {}
        for i, n in enumerate(names):
            sub = s if i == 0 else s.sibling("t%s" % _letters(i))
            sub.set_buffer_kb(4)
            sub.set_option("overwrite", True)
            targets.arm(sub)
            if not targets.filtered and os.path.exists(sub.path("set_event_notrace_pid")):
                sub.set_pids("set_event_notrace_pid", [os.getpid()])
            sub.enable_event(*n.split(":"))
            self.dirs[n] = sub.dir

    def totals(self) -> Dict[str, int]:
        out = {}
        for n, d in self.dirs.items():
            total = 0
            for c in _cpus(self.cpus):
                st = read_stats(os.path.join(d, "per_cpu", "cpu%d" % c))
                total += st.get("entries", 0) + st.get("overrun", 0) + st.get("read events", 0)
            out[n] = total
        return out

    def lost(self) -> int:
        # a writer nested in another's page (an interrupt) that found no
        # room: "commit overrun"
        return sum(read_stats(os.path.join(d, "per_cpu", "cpu%d" % c)).get("commit overrun", 0)
                   for d in self.dirs.values() for c in _cpus(self.cpus))


class TracepointRecords(_Counter):
    """All the tracepoints in one instance; records counted by type here."""

    tick = 0.1

    def __init__(self, s, names: List[str], targets, stacks: bool = False) -> None:
        super().__init__()
        s.set_buffer_kb(buffers.per_cpu_kb(RECORDS_KB))
        targets.arm(s)
        if not targets.filtered and os.path.exists(s.path("set_event_notrace_pid")):
            s.set_pids("set_event_notrace_pid", [os.getpid()])
        self.types: Dict[int, str] = {}
        self.stack_id, self.addrs = stack_record(s.root) if stacks else (None, None)
        self.expect: Dict[int, Tuple[str, int]] = {}    # CPU -> (name, pid) whose stack is next
        self.names = symbols.StackNames() if stacks else None
        for n in names:
            sysname, ev = n.split(":")
            self.types[EventFormat.load(s.root, sysname, ev).id] = n
            if stacks:
                # A trigger with a condition runs once the event is recorded
                # (so after the PID filter), and writes the stack right
                # after it; one without runs before, for every task.
                s.add_trigger(sysname, ev, "stacktrace if common_pid >= 0")
            s.enable_event(sysname, ev)
        self.rd = RawReader(s.dir, s.root, sorted(targets.cpus) if targets.cpus else None)
        s.own(self.rd)
        self.seen: Dict[int, int] = {}
        self.lost_hint = ("count fewer tracepoints at once (up to %d are counted "
                          "without reading their records)" % COUNTER_EVENTS)

    def wait(self, timeout: float) -> object:
        return self.rd.wait(timeout)

    def drain(self) -> None:
        seen = self.seen
        if self.stack_id is None:
            for _, _, typ, _ in self.rd.drain():
                seen[typ] = seen.get(typ, 0) + 1
            return
        types, expect, sid, total = self.types, self.expect, self.stack_id, self.stack_total
        for _, cpu, typ, p in self.rd.drain():    # (each CPU's records in order)
            if typ == sid:
                e = expect.pop(cpu, None)
                if e is not None and struct.unpack_from("<i", p, 4)[0] == e[1]:
                    k = (e[0], self.addrs(p))
                    total[k] = total.get(k, 0) + 1
                continue
            seen[typ] = seen.get(typ, 0) + 1
            name = types.get(typ)
            if name is not None:
                self._no_stack(expect.get(cpu))
                expect[cpu] = (name, struct.unpack_from("<i", p, 4)[0])

    def _no_stack(self, e) -> None:
        if e is not None:
            k = (e[0], b"")
            self.stack_total[k] = self.stack_total.get(k, 0) + 1

    def finish(self, why: str) -> None:
        self.drain()
        for cpu in list(self.expect):   # the stack never came
            self._no_stack(self.expect.pop(cpu))

    def take(self) -> Dict[str, int]:
        out = {self.types[t]: n for t, n in self.seen.items() if t in self.types}
        self.seen = {}
        return out

    def take_stacks(self) -> Dict[Tuple[str, Tuple[str, ...]], int]:
        out: Dict[Tuple[str, Tuple[str, ...]], int] = {}
        for (name, raw), n in self.stack_total.items():
            k = (name, self.names.names(raw) if raw else NO_STACK)
            out[k] = out.get(k, 0) + n
        self.stack_total = {}
        return out

    def lost(self) -> int:
        return self.rd.lost() + self.rd.flagged_lost


def only_functions(s, names: List[str], targets) -> None:
    """The function tracers of the session: these functions only (checked:
    never more than asked, or all), the targets' tasks only, never ours."""
    s.set("set_ftrace_filter", symbols.filter_text(symbols.load(s.root), names))
    got = [l.split()[0] for l in s.read("set_ftrace_filter").splitlines()
           if l.strip() and not l.startswith("#")]
    if set(got) != set(names):
        raise ToolError("set_ftrace_filter did not take the %d functions "
                        "asked (has %d); try again" % (len(names), len(got)))
    targets.arm(s, pid_file="set_ftrace_pid", fork_option="function-fork")
    if not targets.filtered and os.path.exists(s.path("set_ftrace_notrace_pid")):
        s.set_pids("set_ftrace_notrace_pid", [os.getpid()])  # not our reads


def open_counter(s, method: str, names: List[str], targets,
                 stacks: bool = False) -> _Counter:
    """Arm ``method`` in the session (counting per stack too with
    ``stacks``, where ``why_not`` allows it); a ProbeFailed if the kernel
    refuses a probe."""
    if method == "function":
        return Traced(s, names, targets)
    if method == "tp-hist":
        return TracepointHist(s, names, targets, stacks)
    if method == "tp-counter":
        return TracepointCounter(s, names, targets)
    if method == "tp-records":
        return TracepointRecords(s, names, targets, stacks)
    return InKernel(s, method, names, targets, stacks)


def _hist_per_cpu(s, targets, events, stacks: bool = False) -> None:
    """A ``keys=cpu`` hit counter on each (system, event) of the instance
    (``keys=cpu,stacktrace`` with ``stacks``: "stacktrace" is the stack on
    every kernel, named common_stacktrace since 6.5). The PID list is
    honoured by hist triggers (checked before the record is made); the key
    is the CPU, so that -C sums its CPUs."""
    targets.arm(s, pid_file="set_event_pid", fork_option="event-fork")
    if not targets.filtered:
        s.set_pids("set_event_notrace_pid", [os.getpid()])
    for sysname, ev in events:
        s.add_trigger(sysname, ev, "hist:keys=cpu,stacktrace:vals=hitcount:size=%d"
                      % STACK_TABLE if stacks else "hist:keys=cpu:vals=hitcount")


def _hist_sum(s, sysname: str, ev: str, cpus, stacks: Optional[Dict] = None,
              name: Optional[str] = None) -> tuple:
    """(hits of these CPUs, events the table had no room for) of a ``keys=cpu``
    hist; with ``name``, each stack's hits go to ``stacks[(name, stack)]``."""
    total = dropped = 0
    if name is not None:
        for k in [k for k in stacks if k[0] == name]:
            del stacks[k]
    for t in triggers.read_hist(s, sysname, ev):
        dropped += t.dropped
        for key, vals in t.entries:
            c = int(key.get("cpu", key.get("common_cpu", -1)))
            if cpus is None or c in cpus:
                n = vals.get("hitcount", 0)
                total += n
                if name is not None:
                    k = (name, key.get("common_stacktrace", key.get("stacktrace", "")))
                    stacks[k] = stacks.get(k, 0) + n
    return total, dropped


def _cpus(only) -> List[int]:
    return sorted(only) if only is not None else sorted(cpulib.online())


def _letters(i: int) -> str:
    out = ""
    while True:
        out = chr(ord("a") + i % 26) + out
        i //= 26
        if not i:
            return out

