"""Page faults: the x86 ``exceptions:page_fault_user/kernel`` events,
counted per process (in bulk, page by page) or per mapping, location or
kernel function, split by kind from the error code; major and minor from
a probe on ``handle_mm_fault`` where the kernel allows probes.

``FaultSource(s, targets, ...)`` arms the session and is a ``Source``
for the tracing loop; its ``counts`` (a ``Counts``) fold into rows at
each report. With ``on_event`` set, each fault is handed on in time order
instead of counted (one line per fault).
"""

import collections
import os
from typing import Callable, Dict, List, Optional, Tuple

from ftracetools.errors import UsageError
from ftracetools.host import cgroups, maps, procs
from ftracetools.kernel import filters, triggers
from ftracetools.kernel.formats import EventFormat
from ftracetools.ring import pages
from ftracetools.ring.pages import parse_page
from ftracetools.ring.reader import RawReader
from ftracetools.ring.source import Source

__all__ = ["PROT", "WRITE", "USER", "FETCH", "COLS", "BY_KEYS", "parse_kinds",
           "kind_filter", "split", "kind_letters", "access", "major_step", "Counts",
           "FaultSource"]

# x86 error code bits (arch/x86/include/asm/trap_pf.h).
PROT, WRITE, USER, FETCH = 1, 2, 4, 16
KIND_FILTERS = {"read": "!(error_code & 18)", "write": WRITE, "exec": FETCH,
                "prot": PROT, "np": "!(error_code & 1)"}
BY_KEYS = ("mapping", "location", "kfunc", "cgroup")
# handle_mm_fault's return (enum vm_fault_reason) and flags (enum fault_flag).
VM_FAULT_MAJOR, VM_FAULT_RETRY, VM_FAULT_ERROR = 0x4, 0x400, 0x873
FAULT_FLAG_TRIED = 0x20
COLS = ("faults", "user", "kernel", "read", "write", "exec", "prot")


def parse_kinds(text: Optional[str]) -> Tuple[List[str], list]:
    """'user,write' -> (events to enable, filter-building values)."""
    kinds = set(k.strip() for k in (text or "").split(",") if k.strip())
    bad = kinds - set(KIND_FILTERS) - {"user", "kernel"}
    if bad:
        raise UsageError("-k %s: no kind %r" % (text, sorted(bad)[0]),
                         "kinds: user, kernel, read, write, exec, prot, np")
    if {"user", "kernel"} <= kinds or {"prot", "np"} <= kinds or \
            len(kinds & {"read", "write", "exec"}) > 1:
        raise UsageError("-k %s: these kinds exclude each other" % text,
                         "a fault is user or kernel, read, write or exec, prot or np")
    evs = [e for e in ("user", "kernel") if e in kinds] or ["user", "kernel"]
    return evs, [KIND_FILTERS[k] for k in sorted(kinds) if k in KIND_FILTERS]


def kind_filter(values) -> Optional[str]:
    return filters.all_of(*(filters.mask_set("error_code", v)
                            if isinstance(v, int) else v for v in values))


def split(code: int, kernel: bool) -> Tuple[int, ...]:
    """One fault's error code -> counts in COLS order."""
    w, x = bool(code & WRITE), bool(code & FETCH)
    return (1, int(not kernel), int(kernel), int(not (w or x)), int(w),
            int(x), int(bool(code & PROT)))


def kind_letters(code: int, kernel: bool) -> str:
    """'UWN': User/Kernel, Read/Write/eXec, Not-present/Protection."""
    return ("K" if kernel else "U") + ("X" if code & FETCH else "W" if code & WRITE
                                       else "R") + ("P" if code & PROT else "N")


def access(code: int) -> str:
    return "exec" if code & FETCH else "write" if code & WRITE else "read"


def major_step(state: Dict[int, bool], tid: int, tried: bool, ret: Optional[int]):
    """Feed one handle_mm_fault probe event; return 'major', 'minor' or None.

    The kernel's rule (mm_account_fault): a retried call is not counted; a
    completed one is major if it returned VM_FAULT_MAJOR or was a retry.
    ``tried`` is an entry event seen with FAULT_FLAG_TRIED (ret None).
    """
    if ret is None:
        state[tid] = tried
        return None
    was_tried = state.pop(tid, False)
    if ret & (VM_FAULT_RETRY | VM_FAULT_ERROR):
        return None
    return "major" if (ret & VM_FAULT_MAJOR or was_tried) else "minor"


class Counts:
    """Per-interval fault counts, per process or per --by key."""

    def __init__(self, by: Optional[str] = None, kern_id: int = -1) -> None:
        self.by, self.kern_id = by, kern_id
        self.raw: collections.Counter = collections.Counter()  # (type word, tid, code) -> n
        self.rows: Dict = {}                                    # key -> list of counts
        self.major: collections.Counter = collections.Counter()
        self.minor: collections.Counter = collections.Counter()
        self.who: Dict[int, Tuple[int, str]] = {}               # tid -> (tgid, comm)
        self.maps: Optional[maps.ProcessMaps] = None
        self.ksyms: Optional[maps.Kallsyms] = None
        self.cgroups: Optional[cgroups.Lookup] = None

    def add_records(self, words, pid_w: int, code_w: int, size: int) -> None:
        self.raw.update(zip(words[1::size], words[pid_w::size], words[code_w::size]))

    def add_event(self, tid: int, kernel: bool, address: int, ip: int, code: int) -> None:
        if not self.by:
            self.raw[(self.kern_id if kernel else 0, tid, code)] += 1
            return
        self._add(self.key(tid, kernel, address, ip), split(code, kernel))

    def _add(self, key, vals) -> None:
        row = self.rows.get(key)
        if row is None:
            self.rows[key] = list(vals)
        else:
            for i, v in enumerate(vals):
                row[i] += v

    def key(self, tid: int, kernel: bool, address: int, ip: int) -> str:
        if self.by == "cgroup":     # the path, read once per task an interval
            if self.cgroups is None:
                self.cgroups = cgroups.Lookup()
            return self.cgroups.of(tid) or "?"
        if self.maps is None:
            self.maps = maps.ProcessMaps()
        if self.by == "mapping":
            return self.maps.lookup(tid, address)[0]
        if kernel and self.by in ("kfunc", "location"):
            if self.ksyms is None:
                self.ksyms = maps.Kallsyms()
            return ("kernel:" if self.by == "location" else "") + self.ksyms.name(ip)
        if self.by == "kfunc":
            return "[user]"
        name, off = self.maps.lookup(tid, ip)
        return "%s+0x%x" % (name, off) if name.startswith("/") else name

    def inherit(self, parent: int, child: int) -> None:
        """A fork seen (--by cgroup): the child's cgroup is its parent's."""
        if self.cgroups is None:
            self.cgroups = cgroups.Lookup()
        self.cgroups.inherit(parent, child)

    def identify(self, tids) -> None:
        for tid in tids:
            if tid not in self.who:
                self.who[tid] = (procs.tgid(tid) or tid, procs.comm(tid))

    def fold(self) -> List[Tuple[object, List[int]]]:
        """Raw counts into per-process rows; returns them sorted, busiest first.
        Only the names of this interval's tasks are kept after it: memory
        stays flat however many processes come and go."""
        seen = {t for _, t, _ in self.raw} | set(self.major) | set(self.minor)
        self.identify(seen)
        for (tw, tid, code), n in self.raw.items():
            vals = split(code, (tw & 0xFFFF) == self.kern_id)
            self._add(self.who[tid][0], [v * n for v in vals])
        for src, name in ((self.major, "major"), (self.minor, "minor")):
            for tid, n in src.items():
                row = self.rows.setdefault(self.who[tid][0], [0] * len(COLS))
                row.extend([0, 0][len(row) - len(COLS):])
                row[len(COLS) + (name == "minor")] += n
        rows = sorted(self.rows.items(), key=lambda kv: (-kv[1][0], str(kv[0])))
        if self.cgroups is not None:    # read again next interval: tasks move
            self.cgroups.keep(())
        self.raw.clear(), self.major.clear(), self.minor.clear()
        self.rows = {}
        self.who = {t: self.who[t] for t in seen}
        return rows


def fast_layout(fmts) -> Optional[Tuple[int, int, int, int]]:
    """(payload size, pid word, error_code word, words per record) or None."""
    u, k = fmts["user"], fmts["kernel"]
    pid, code = u.field("common_pid"), u.field("error_code")
    size = max(f.offset + f.size for f in u.fields.values())
    same = [(f.name, f.offset, f.size) for f in u.fields.values()] == \
        [(f.name, f.offset, f.size) for f in k.fields.values()]
    if not same or size % 4 or size > 112 or pid.offset % 4 or code.offset % 4:
        return None
    return size, 1 + pid.offset // 4, 1 + code.offset // 4, 1 + size // 4


# (kind, tid, kernel, address, ip, error code, cpu, ts): one fault as handed on
OnEvent = Callable[[int, int, int, bool, int, int, int], None]


class FaultSource(Source):
    """Arms the session for page faults; see the module docstring."""

    def __init__(self, s, targets, *, kinds: Optional[str], by: Optional[str], kb: int,
                 on_event: Optional[OnEvent] = None) -> None:
        evs, kvals = parse_kinds(kinds)
        feat = s.features
        fmts = {e: EventFormat.load(s.root, "exceptions", "page_fault_" + e)
                for e in ("user", "kernel")}
        s.set_buffer_kb(kb)
        s.set("trace_clock", "mono")
        targets.arm(s)
        if not targets.filtered and os.path.exists(s.path("set_event_notrace_pid")):
            s.set_pids("set_event_notrace_pid", [os.getpid()])
        self.probes: Optional[dict] = None
        self.why_no_major: Optional[str] = None
        if not (by or on_event):
            self.probes, self.why_no_major = _add_probes(s, feat)
        for e in evs:
            s.enable_event("exceptions", "page_fault_" + e, kind_filter(kvals))
        # Names of processes that exit before we look them up in /proc.
        self.exits = {}
        if feat.has_event("sched", "sched_process_exit"):
            s.enable_event("sched", "sched_process_exit")
            ex = EventFormat.load(s.dir, "sched", "sched_process_exit")
            self.exits = {ex.id: ex.decoder(["pid", "comm"])}
        # --by cgroup: a child starts in its parent's cgroup, known even
        # when it ends before its own is read
        self.forks = {}
        if by == "cgroup" and feat.has_event("sched", "sched_process_fork"):
            s.enable_event("sched", "sched_process_fork")
            fk = EventFormat.load(s.dir, "sched", "sched_process_fork")
            self.forks = {fk.id: fk.decoder(["parent_pid", "child_pid"])}
        self.kid = fmts["kernel"].id
        self.decode = {fmts[e].id: fmts[e].decoder(["common_pid", "address", "ip", "error_code"])
                       for e in ("user", "kernel")}
        self.fast = None if (by or on_event) else fast_layout(fmts)
        self.counts = Counts(by, self.kid)
        self.by, self.on_event = by, on_event
        self.s = s
        self.r = RawReader(s.dir, s.root, sorted(targets.cpus) if targets.cpus else None)
        s.own(self.r)
        self.tried: Dict[int, bool] = {}

    def wait(self, timeout: float) -> object:
        return self.r.wait(timeout)

    def drain(self) -> None:
        r, counts, fast = self.r, self.counts, self.fast
        evlist, probe_evs = [], []
        for cpu, page in r.drain_pages():
            if fast:
                words = pages.records(page, r.layout, fast[0])
                if words is not None:
                    counts.add_records(words, fast[1], fast[2], fast[3])
                    continue
            r.note_lost(parse_page(page, cpu, r.layout, evlist))
        if self.on_event or self.forks:     # (forks: before their children's faults)
            evlist.sort(key=lambda e: e[0])
        for ts, cpu, typ, payload in evlist:
            dec = self.decode.get(typ)
            if typ in self.forks:
                counts.inherit(*self.forks[typ](payload))
                continue
            if typ in self.exits:
                tid, comm = self.exits[typ](payload)
                counts.who.setdefault(tid, (tid, comm))
                continue
            if dec is None:
                probe_evs.append((ts, typ, payload))
                continue
            tid, addr, ip, code = dec(payload)
            if self.on_event:
                self.on_event(ts, cpu, tid, typ == self.kid, addr, ip, code)
            else:
                counts.add_event(tid, typ == self.kid, addr, ip, code)
        if self.probes:
            probes = self.probes
            for ts, typ, payload in sorted(probe_evs, key=lambda e: e[0]):
                tid, val = probes[typ](payload)
                entry = typ == probes["entry"]
                res = major_step(self.tried, tid, entry, None if entry else val)
                if res:
                    (counts.major if res == "major" else counts.minor)[tid] += 1
        if not self.by:
            counts.identify(t for _, t, _ in counts.raw)
        elif counts.maps:
            counts.maps.new_round()

    def lost(self) -> int:
        return self.r.lost() + _probe_misses(self.s, self.probes)


def _add_probes(s, feat):
    """Entry (TRIED only) and return probes on handle_mm_fault, or why not."""
    grp, ent, ret = (triggers.name(s, "mm"), triggers.name(s, "mmf"), triggers.name(s, "mmr"))
    if feat.has("kprobes"):  # r64: room for 64 faults sleeping at once
        f, defs = "kprobe_events", ("p:%s/%s handle_mm_fault flags=$arg3:u32",
                                    "r64:%s/%s handle_mm_fault ret=$retval:u32")
    elif feat.has("fprobes"):
        f, defs = "dynamic_events", ("f:%s/%s handle_mm_fault flags=$arg3:u32",
                                     "f:%s/%s handle_mm_fault%%return ret=$retval:u32")
    else:
        return None, "%s and %s" % (feat.why_not("kprobes"), feat.why_not("fprobes"))
    for d, name in zip(defs, (ent, ret)):
        s.add_dynamic(f, d % (grp, name), "-:%s/%s" % (grp, name))
    s.enable_event(grp, ent, filters.mask_set("flags", FAULT_FLAG_TRIED))
    s.enable_event(grp, ret)
    e = EventFormat.load(s.dir, grp, ent)
    r = EventFormat.load(s.dir, grp, ret)
    return {e.id: e.decoder(["common_pid", "flags"]),
            r.id: r.decoder(["common_pid", "ret"]), "entry": e.id,
            "names": (ent, ret)}, None


def _probe_misses(s, probes) -> int:
    """Return probes the kernel missed (kprobe_profile), as lost events."""
    from ftracetools.kernel import tracefs
    if not probes:
        return 0
    text = tracefs.read_opt(os.path.join(s.root, "kprobe_profile")) or ""
    rows = [l.split() for l in text.splitlines()]
    return sum(int(r[2]) for r in rows
               if len(r) > 2 and r[0].split("/")[-1] in probes["names"])
