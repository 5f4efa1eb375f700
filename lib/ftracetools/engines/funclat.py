"""How long calls of kernel functions take: a distribution per function,
and the slow calls one by one (bcc's funclatency and funcslower).

The ways, best first (``choose``; ``funclatency -v`` says which):

- ``fprobe-hist`` (6.5+) and ``kprobe-hist``: a probe at each function's
  entry and one at its return (an fprobe exit, a kretprobe), joined in the
  kernel: a hist trigger on the entry keeps the time per task, the one on
  the return takes the difference and emits a synthetic event
  (``triggers.KernelLatency``), which a third hist counts by duration.
  Nothing crosses the trace buffer. A return pairs with its task's last
  entry, and the start is read once: a function that calls itself has its
  innermost call timed and its outer calls, whose start was replaced,
  counted as unpaired, never timed wrong.
- ``graph``: the function_graph tracer with these functions alone in
  ``set_ftrace_filter``: each exit record carries the kernel's own call and
  return times, paired by its return stack, recursion included.

With a threshold (``slower_ns``) the calls at or above it are records:
the synthetic event enabled with a filter (``lat >= N``, and an error
returned for ``--errors``: ``ERRORS``), so only those calls cross the buffer; on the graph path the
exit records are filtered here.

``rotate()`` hands on an ``Interval``: durations per function
(``{ns: calls}``), returns whose entry was not seen, slow calls, lost.
"""

import os
import struct
import time
from typing import Dict, List, Optional, Set, Tuple

from ftracetools.engines import funcs
from ftracetools.kernel import filters, symbols, tracefs, triggers
from ftracetools.kernel.formats import EventFormat
from ftracetools.ring.reader import RawReader
from ftracetools.ring.source import Source

__all__ = ["METHODS", "DESCRIBE", "ERRORS", "Interval", "retval", "why_not", "choose",
           "open_source"]

METHODS = ("fprobe-hist", "kprobe-hist", "graph")
DESCRIBE = {
    "fprobe-hist": "fprobes at entry and exit, paired and counted in the kernel",
    "kprobe-hist": "a kprobe and a kretprobe, paired and counted in the kernel",
    "graph": "the function_graph tracer's exit records, read by funclatency",
}
NO_RETVAL = ("the function_graph tracer records no return values on this kernel "
             "(funcgraph-retval, 6.5+)")
# An error is -4095..-1 (-MAX_ERRNO..-1): returned as a long or pointer it
# reads as that in 64 bits; as an int, the probes see 0xfffff001..0xffffffff
# (the upper half of the register is not sign-extended).
ERRORS = ("(ret >= -4095 && ret < 0) || (ret >= %d && ret <= %d)"
          % ((1 << 32) - 4095, (1 << 32) - 1))
MAXACTIVE = 1024    # kretprobe: calls of one function in progress at once
TABLE_BITS = 16     # durations per function in the kernel's table
SLOW_KB = 1024      # per CPU, for the slow calls' records
GRAPH_KB = 4096


class Interval:
    """What one interval saw."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.counts: Dict[str, Dict[int, int]] = {}     # function -> {ns: calls}
        self.unpaired: Dict[str, int] = {}
        # (trace time ns, cpu, pid, function, ns, return value or None)
        self.slow: List[Tuple[int, int, int, str, int, Optional[int]]] = []
        self.lost = 0


def retval(v: int) -> int:
    """A return value as the probes read it -> as the function meant it,
    where it is an error returned as an int (see ERRORS)."""
    return v - (1 << 32) if (1 << 32) - 4095 <= v < (1 << 32) else v


def why_not(method: str, feat, targets, names: List[str], dups: Set[str],
            max_probes: int, stacks: bool = False) -> Optional[str]:
    """None if ``method`` can time ``names`` here, else the reason."""
    if method == "graph":
        return feat.why_not("function_graph")
    why = feat.why_not(method.split("-")[0] + "s") or feat.why_not("hist") or \
        feat.why_not("synthetic")
    if why:
        return why
    if 2 * len(names) > max_probes:
        return "%d functions need %d probes, more than -m %d" % (
            len(names), 2 * len(names), max_probes)
    clash = sorted(set(names) & dups)
    if clash:
        return "several functions are named %s: a probe cannot tell them apart" % clash[0]
    return None


def choose(feat, targets, names, dups, max_probes: int, warn, errors: bool) -> str:
    """The first way that can time ``names`` here (FTT_METHOD forces one);
    with ``errors`` one that knows return values."""
    m = funcs.choose(feat, targets, names, dups, max_probes, warn,
                     methods=METHODS, why=why_not, verb="time")
    if errors and m == "graph":
        raise funcs.Refused("--errors: %s" % NO_RETVAL)
    return m


class HistLatency(Source):
    """Entry and return probes, paired in the kernel, one pair per function."""

    tick = 0.25

    def __init__(self, s, method: str, names: List[str], targets, usecs: bool,
                 slower_ns: Optional[int], errors: bool, kb: int) -> None:
        fprobe = method == "fprobe-hist"
        self.s, self.names, self.usecs = s, names, usecs
        self.slower = slower_ns is not None
        s.set("trace_clock", "mono")
        targets.arm(s, pid_file="set_event_pid", fork_option="event-fork")
        if not targets.filtered:
            s.set_pids("set_event_notrace_pid", [os.getpid()])
        cpus = filters.any_of("common_cpu", sorted(targets.cpus)) \
            if targets.cpus is not None else None
        group = self.group = triggers.name(s, "fl")
        self.lats: Dict[str, triggers.KernelLatency] = {}
        for i, f in enumerate(names):
            ent, ret = "e%d" % i, "r%d" % i
            for ev, text in ((ent, "%s:%s/%s %s" % ("f" if fprobe else "p", group, ent, f)),
                             (ret, ("f:%s/%s %s%%return" % (group, ret, f)) if fprobe else
                              "r%d:%s/%s %s" % (MAXACTIVE, group, ret, f))):
                try:
                    s.add_dynamic("dynamic_events" if fprobe else "kprobe_events",
                                  text + (" ret=$retval:s64" if ev == ret else ""),
                                  "-:%s/%s" % (group, ev))
                except Exception as e:
                    raise funcs.ProbeFailed("cannot probe %s: %s" % (f, e)) from None
            lat = self.lats[f] = triggers.KernelLatency(
                s, "l%d" % i, (group, ent, None), (group, ret, cpus), ("common_pid",),
                [("ret", "s64")] if self.slower else [], usecs=usecs, count=not self.slower,
                size_bits=14, count_bits=TABLE_BITS)
            if self.slower:
                want = "lat >= %d" % (slower_ns // 1000 if usecs else slower_ns)
                s.enable_event("synthetic", lat.name,
                               filters.all_of(want, ERRORS if errors else None))
        self.seen: Dict[str, Dict[int, int]] = {f: {} for f in names}
        self.returns: Dict[str, int] = {}
        self.paired: Dict[str, int] = {}
        self.said: Dict[str, int] = {}
        self.lost_seen = 0
        self.rd = None
        if self.slower:
            s.set_buffer_kb(kb)
            self.by_type = {}
            for f, lat in self.lats.items():
                fmt = EventFormat.load(s.root, "synthetic", lat.name)
                self.by_type[fmt.id] = (f, fmt.field("lat").offset, fmt.field("ret").offset)
            self.rd = RawReader(s.dir, s.root, sorted(targets.cpus) if targets.cpus else None)
            s.own(self.rd)
            self.tick = 0.1
        self.cur = Interval()
        self.lost_hint = ("a table in the kernel was full (%d durations per function): "
                          "use -u or -m" % (1 << TABLE_BITS))

    def wait(self, timeout: float) -> object:
        return self.rd.wait(timeout) if self.rd is not None else super().wait(timeout)

    def drain(self) -> None:
        if self.rd is None:
            return
        slow, types, scale = self.cur.slow, self.by_type, 1000 if self.usecs else 1
        for ts, cpu, typ, p in self.rd.drain():
            t = types.get(typ)
            if t is not None:
                slow.append((ts, cpu, struct.unpack_from("<i", p, 4)[0], t[0],
                             struct.unpack_from("<Q", p, t[1])[0] * scale,
                             retval(struct.unpack_from("<q", p, t[2])[0])))

    def rotate(self, final: bool = False) -> Interval:
        self.drain()
        done, self.cur = self.cur, Interval()
        scale = 1000 if self.usecs else 1
        for f, lat in ({} if self.slower else self.lats).items():
            # the returns first, then the pairs (as blockio.InKernel does):
            # a return counted is paired by the second read, or truly unpaired
            returns = lat.ends()
            counts = {k[-1]: n for k, n in lat.read().items()}
            old = self.seen[f]
            got = {v * scale: n - old.get(v, 0) for v, n in counts.items() if n != old.get(v, 0)}
            self.seen[f] = counts
            self.paired[f] = self.paired.get(f, 0) + sum(got.values())
            done.counts[f] = got
            u = max(0, returns - self.paired[f]) - self.said.get(f, 0)
            if u > 0:
                done.unpaired[f] = u
                self.said[f] = self.said.get(f, 0) + u
        lost = self.lost()
        done.lost, self.lost_seen = lost - self.lost_seen, lost
        return done

    def lost(self) -> int:
        n = sum(lat.dropped() for lat in self.lats.values())
        if self.rd is not None:
            n += self.rd.lost() + self.rd.flagged_lost
        # kretprobes out of instances, probes hit inside another (nmissed)
        for line in (tracefs.read_opt(os.path.join(self.s.root, "kprobe_profile"))
                     or "").splitlines():
            p = line.split()
            if len(p) >= 3 and p[0].startswith(self.group + "/"):
                n += int(p[2])
        return n


class GraphLatency(Source):
    """function_graph with only these functions in the filter; the exit
    records carry each call's start and end."""

    tick = 0.1

    def __init__(self, s, names: List[str], targets, kb: int,
                 slower_ns: Optional[int]) -> None:
        self.slower_ns = slower_ns
        self.map = symbols.AddrMap.load(s.root, names)
        fmt = EventFormat.load(s.root, "ftrace", "funcgraph_exit")
        self.type = fmt.id
        self.offs = [fmt.field(n).offset for n in ("func", "calltime", "rettime")]
        s.set("trace_clock", "mono")
        s.set_buffer_kb(kb)
        funcs.only_functions(s, names, targets)
        s.set("current_tracer", "function_graph")
        self.rd = RawReader(s.dir, s.root, sorted(targets.cpus) if targets.cpus else None)
        s.own(self.rd)
        self.cur = Interval()
        self.lost_seen = 0
        self.lost_hint = "time fewer functions, or one process (-p, -c), or a larger -b"

    def wait(self, timeout: float) -> object:
        return self.rd.wait(timeout)

    def drain(self) -> None:
        u64 = struct.Struct("<Q").unpack_from
        fo, co, ro = self.offs
        counts, slow, name, thresh = self.cur.counts, self.cur.slow, self.map.name, \
            self.slower_ns
        for ts, cpu, typ, p in self.rd.drain():
            if typ != self.type:
                continue
            f = name(u64(p, fo)[0]) or "0x%x" % u64(p, fo)[0]
            ns = u64(p, ro)[0] - u64(p, co)[0]
            if thresh is None:
                c = counts.setdefault(f, {})
                c[ns] = c.get(ns, 0) + 1
            elif ns >= thresh:
                slow.append((ts, cpu, struct.unpack_from("<i", p, 4)[0], f, ns, None))

    def rotate(self, final: bool = False) -> Interval:
        self.drain()
        done, self.cur = self.cur, Interval()
        lost = self.lost()
        done.lost, self.lost_seen = lost - self.lost_seen, lost
        return done

    def lost(self) -> int:
        return self.rd.lost() + self.rd.flagged_lost


def open_source(s, method: str, names: List[str], targets, *, unit: str,
                slower_ns: Optional[int], errors: bool, kb: int) -> Source:
    """Arm ``method`` in the session; a ProbeFailed if the kernel refuses
    a probe."""
    if method == "graph":
        return GraphLatency(s, names, targets, kb, slower_ns)
    # the threshold in nanoseconds: a difference of microseconds, each
    # rounded down, can be 1 us off either way
    return HistLatency(s, method, names, targets, unit != "ns" and slower_ns is None,
                       slower_ns, errors, kb)
