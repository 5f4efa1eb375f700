"""Counting functions and tracepoints without a kernel (engines.funcs):
the choice of method, tracepoint patterns, the count table; and the
function names and addresses (kernel.symbols)."""

import pytest

from ftracetools.engines import funcs as fc
from ftracetools.errors import UsageError
from ftracetools.kernel import symbols


class FakeFeatures:
    def __init__(self, *have):
        self.have = set(have)

    def why_not(self, name):
        return None if name in self.have else "no " + name


class FakeTargets:
    def __init__(self, filtered=False, cpus=None):
        self.filtered, self.cpus = filtered, cpus


ALL = ("function_profiler", "kprobes", "fprobes", "hist", "function_instance")


def choose(feats, targets=None, names=("f",), dups=(), max_probes=200,
           tracepoints=False, stacks=False):
    warned = []
    m = fc.choose(FakeFeatures(*feats), targets or FakeTargets(), list(names), set(dups),
                  max_probes, warned.append, tracepoints, stacks)
    return m, warned


@pytest.fixture(autouse=True)
def no_forcing(monkeypatch):
    monkeypatch.delenv("FTT_METHOD", raising=False)


def test_cheapest_path_first():
    assert choose(ALL)[0] == "profiler"
    assert choose(ALL[1:])[0] == "kprobe"
    # The stock 6.1 kernel: kprobes, hist, function tracer in instances.
    k61 = ("kprobes", "hist", "function_instance")
    assert choose(k61)[0] == "kprobe"
    assert choose(k61, FakeTargets(filtered=True))[0] == "kprobe-hist"
    assert choose(k61, FakeTargets(cpus={1}))[0] == "kprobe-hist"
    k612 = k61 + ("fprobes",)
    assert choose(k612, FakeTargets(filtered=True))[0] == "fprobe-hist"
    assert choose(("function_instance",), FakeTargets(filtered=True))[0] == "function"


def test_profiler_and_kprobe_profile_never_filter():
    # -p/-L/-c: the profiler counts every task; kprobe_profile every task and CPU.
    m, _ = choose(("function_profiler", "kprobes", "function_instance"),
                  FakeTargets(filtered=True))
    assert m == "function"
    m, _ = choose(("function_profiler", "kprobes", "function_instance"),
                  FakeTargets(cpus={0}))
    assert m == "profiler"  # trace_stat is per CPU: -C is exact


def test_probe_cap_falls_back_and_says_so():
    names = ["f%d" % i for i in range(300)]
    m, warned = choose(("kprobes", "hist", "function_instance"), names=names,
                       max_probes=200)
    assert m == "function"
    assert warned and "300 functions" in warned[0] and "-m 200" in warned[0]
    m, warned = choose(("kprobes", "hist", "function_instance"), names=names,
                       max_probes=300)
    assert m == "kprobe" and not warned


def test_duplicate_names_avoid_probes():
    m, _ = choose(("kprobes", "hist", "function_instance"), names=["a", "b"], dups=["b"])
    assert m == "function"


def test_forced_path_refused_with_reason(monkeypatch):
    monkeypatch.setenv("FTT_METHOD", "kprobe")
    with pytest.raises(fc.Refused) as e:
        choose(ALL, FakeTargets(filtered=True))
    assert "kprobe_profile counts hits of every task" in str(e.value)
    monkeypatch.setenv("FTT_METHOD", "profiler")
    with pytest.raises(fc.Refused) as e:
        choose(ALL, FakeTargets(filtered=True))
    assert "profiler counts every task" in str(e.value)
    monkeypatch.setenv("FTT_METHOD", "fprobe-hist")
    with pytest.raises(fc.Refused) as e:
        choose(("kprobes", "hist"))
    assert "no fprobes" in str(e.value)
    monkeypatch.setenv("FTT_METHOD", "kprobe-hist")
    with pytest.raises(fc.Refused) as e:
        choose(ALL, names=["x%d" % i for i in range(5)], max_probes=4)
    assert "more than -m 4" in str(e.value)
    monkeypatch.setenv("FTT_METHOD", "bogus")
    with pytest.raises(fc.Refused):
        choose(ALL)
    monkeypatch.setenv("FTT_METHOD", "function")
    assert choose(ALL, FakeTargets(filtered=True))[0] == "function"


def test_stacks_only_on_the_paths_that_carry_them(monkeypatch):
    """--stacks: the profiler, kprobe_profile, the function tracer and the
    count of events written are passed over; forced, refused with why."""
    assert choose(ALL, stacks=True)[0] == "fprobe-hist"
    assert choose(("kprobes", "hist", "function_profiler"), stacks=True)[0] == "kprobe-hist"
    assert choose((), tracepoints=True, stacks=True)[0] == "tp-records"
    assert choose(("hist",), tracepoints=True, stacks=True)[0] == "tp-hist"
    with pytest.raises(fc.Refused) as e:
        choose(("function_profiler", "kprobes", "function_instance"), stacks=True)
    assert "stacks of these functions" in str(e.value) and "counts hits, not stacks" in str(e.value)
    monkeypatch.setenv("FTT_METHOD", "tp-counter")
    with pytest.raises(fc.Refused) as e:
        choose((), tracepoints=True, stacks=True)
    assert str(e.value) == "cannot count with tp-counter: " + fc.NO_STACKS["tp-counter"]


class FakeSession:
    def __init__(self, hist=""):
        self.triggers, self.hist = [], hist

    def set_pids(self, *a):
        pass

    def add_trigger(self, system, event, trigger):
        self.triggers.append((system, event, trigger))

    def path(self, *parts):
        return "/".join(parts)


def test_hist_keyed_on_the_stack(monkeypatch):
    """Per (CPU, stack) in the kernel; -C sums its CPUs; each stack's hits
    by name, "stacktrace" or common_stacktrace (6.5+) alike."""
    s = FakeSession()
    fc._hist_per_cpu(s, FakeTargetsArm(), [("syscalls", "sys_enter_getppid")], True)
    assert s.triggers == [("syscalls", "sys_enter_getppid",
                           "hist:keys=cpu,stacktrace:vals=hitcount:size=16384")]
    table = ("# event histogram\n{ cpu:          0, common_stacktrace:\n         a+0x1/0x2\n"
             "         do_syscall_64+0x5/0x9\n} hitcount:          3\n"
             "{ cpu:          1, common_stacktrace:\n         a+0x1/0x2\n"
             "         do_syscall_64+0x5/0x9\n} hitcount:          2\n"
             "{ cpu:          1, stacktrace:\n         b+0x1/0x2\n} hitcount:          7\n"
             "Totals:\n    Hits: 12\n    Entries: 3\n    Dropped: 1\n")
    monkeypatch.setattr(fc.triggers, "read_hist", lambda *a: fc.triggers.parse_hist(table))
    stacks = {("x", "old"): 5}
    assert fc._hist_sum(s, "syscalls", "sys_enter_getppid", {1}, stacks, "x") == (9, 1)
    assert stacks == {("x", "a+0x1/0x2\ndo_syscall_64+0x5/0x9"): 2, ("x", "b+0x1/0x2"): 7}
    c = fc.TracepointHist.__new__(fc.TracepointHist)
    c.stack_total, c.stack_base = stacks, {}
    assert c.take_stacks() == {("x", ("a", "do_syscall_64")): 2, ("x", ("b",)): 7}
    assert c.take_stacks() == {}


class FakeTargetsArm(FakeTargets):
    def arm(self, *a, **kw):
        pass


def test_nothing_works_lists_every_reason():
    with pytest.raises(fc.Refused) as e:
        choose(())
    for m in fc.METHODS:
        assert m + ":" in str(e.value)


FUNCS = [("vfs_read", ""), ("vfs_write", ""), ("__do_sys_getppid", ""),
         ("exc_page_fault", ""), ("ext4_file_open", "ext4"), ("dup", ""), ("dup", ""),
         ("__ftrace_invalid_address___64", ""), ("tcp_sendmsg", ""),
         ("foo.isra.0", "")]


def test_match_all_globs_regex_modules():
    names, empty = symbols.match_all(FUNCS, ["vfs_*", "*:mod:ext4", "nothing_*"], False)
    assert names == ["ext4_file_open", "vfs_read", "vfs_write"] and empty == ["nothing_*"]
    assert symbols.match_all(FUNCS, ["v?s_[rw]*"], False)[0] == ["vfs_read", "vfs_write"]
    assert symbols.match_all(FUNCS, ["^(vfs|tcp)_.*(read|msg)$"], True)[0] == ["tcp_sendmsg",
                                                                        "vfs_read"]
    # The kernel's placeholders for unplaceable records never match.
    assert symbols.match_all(FUNCS, ["__ftrace*"], False)[0] == []
    assert symbols.match_all(FUNCS, ["*"], False)[0].count("dup") == 1


@pytest.mark.parametrize("pat", ["!vfs_read", "vfs_read:traceoff", "vfs read",
                                 "vfs_*:mod:ext4:x"])
def test_patterns_that_could_become_commands_are_refused(pat):
    with pytest.raises(UsageError):
        symbols.parse_pattern(pat)


def test_suggestions_for_renamed_functions():
    funcs = FUNCS + [("__x64_sys_getpid", ""), ("do_user_addr_fault", "")] + \
        [("fn%d_sys" % i, "") for i in range(2000)]
    assert symbols.suggest(funcs, "__x64_sys_getppid")[0] == "__do_sys_getppid"
    assert symbols.suggest(funcs, "do_page_fault")[0] == "exc_page_fault"
    assert "exc_page_fault" in symbols.suggest(funcs, "do_page_*")


def test_duplicates_and_indexes():
    assert symbols.duplicates(FUNCS) == {"dup"}
    assert symbols.filter_indexes(FUNCS, ["vfs_write", "dup"]) == [2, 6, 7]


def test_addr_map_kallsyms_and_exact(tmp_path):
    ks = tmp_path / "kallsyms"
    ks.write_text("ffffffff81000000 T _stext\n"
                  "ffffffff810be3a0 t __do_sys_getppid\n"
                  "ffffffff810be3a0 T __x64_sys_getppid\n"
                  "ffffffff810be400 T vfs_read\n"
                  "ffffffff810be500 d some_data\n")
    m = symbols.AddrMap.load(str(tmp_path), ["__do_sys_getppid", "vfs_read"], str(ks))
    assert m.name(0xffffffff810be3a0) == "__do_sys_getppid"
    assert m.name(0xffffffff810be3a4) == "__do_sys_getppid"  # IBT: past endbr64
    assert m.name(0xffffffff810be404) == "vfs_read"
    assert m.name(0xffffffff81000000) is None
    (tmp_path / "available_filter_functions_addrs").write_text(
        "ffffffff810be3a4 __do_sys_getppid\nffffffff810be404 vfs_read\n")
    m = symbols.AddrMap.load(str(tmp_path), ["vfs_read"], str(ks))
    assert m.name(0xffffffff810be404) == "vfs_read"
    assert m.name(0xffffffff810be3a4) is None


def test_addr_map_refuses_hidden_addresses(tmp_path):
    ks = tmp_path / "kallsyms"
    ks.write_text("0000000000000000 t vfs_read\n")
    from ftracetools.errors import ToolError
    with pytest.raises(ToolError):
        symbols.AddrMap.load(str(tmp_path), ["vfs_read"], str(ks))


def test_filter_text_names_or_positions():
    assert symbols.filter_text(FUNCS, ["vfs_read", "dup"]) == "vfs_read\ndup"
    assert symbols.filter_text(FUNCS, ["vfs_read", "dup"], by_index_over=1) == "1 6 7"


def test_tracepoints_choose_hist_then_counters_then_records():
    assert choose(("hist",), names=["a:b"] * 3, tracepoints=True)[0] == "tp-hist"
    assert choose((), names=["a:b"] * fc.COUNTER_EVENTS, tracepoints=True)[0] == "tp-counter"
    assert choose((), names=["a:b"] * (fc.COUNTER_EVENTS + 1),
                  tracepoints=True)[0] == "tp-records"


def test_tracepoint_patterns(tmp_path):
    (tmp_path / "available_events").write_text(
        "sched:sched_switch\nsched:sched_wakeup\nsyscalls:sys_enter_read\n"
        "syscalls:sys_exit_read\n")
    m = lambda *p: fc.match_tracepoints(str(tmp_path), list(p))  # noqa: E731
    assert m("t:sched:*") == ["sched:sched_switch", "sched:sched_wakeup"]
    assert m("t:syscalls:sys_*_read", "t:sched:sched_switch") == [
        "sched:sched_switch", "syscalls:sys_enter_read", "syscalls:sys_exit_read"]
    for bad in ("t:sched", "t::x", "sched:sched_switch", "t:sched:a b", "t:a:b:c"):
        with pytest.raises(UsageError, match="not a tracepoint pattern"):
            m(bad)
    with pytest.raises(UsageError, match="matches no tracepoint"):
        m("t:nosuch:*")


def _function_pages(seed=3):
    """Pages of function records (type 1: ip at 8, parent at 16, 24 bytes),
    with what breaks a page's pattern now and then: a time extend, a record
    of another type and size, a loss flag, a short read."""
    import random
    import struct
    rng = random.Random(seed)
    ips = [0xffffffff81000000 + 16 * i for i in range(5)]
    pages = []
    for n in range(60):
        recs = []
        for _ in range(rng.randint(1, 160)):
            recs.append(struct.pack("<IH6xQQ", (rng.randint(0, 900) << 5) | 6, 1,
                                    rng.choice(ips), 7))
        if n % 7 == 1:
            recs.insert(len(recs) // 2, struct.pack("<II", 30 | (9 << 5), 3))
        if n % 7 == 2:   # another event, 40 bytes
            recs.insert(0, struct.pack("<IH38x", 10, 2))
        while len(b"".join(recs)) > 4080:
            recs.pop()
        data = b"".join(recs)
        flag = n % 13 == 5 and len(data) <= 4072
        commit = len(data) | ((1 << 31) | (1 << 30) if flag else 0)
        raw = struct.pack("<Qq", 10 ** 9 * (n + 1), commit) + data
        if flag:
            raw += struct.pack("<q", 11)
        pages.append((n % 2, raw + b"\0" * (4096 - len(raw))))
    return pages


@pytest.mark.parametrize("small", [0, 1 << 62])
def test_function_records_counted_alike_as_arrays_and_one_by_one(small):
    """funccount's function path: the same counts and losses whether the
    pages go record by record or as arrays (numpy), a short read among them."""
    if not small:
        pytest.importorskip("numpy")
    from ftracetools.ring.pages import PageLayout
    from ftracetools.ring.reader import RawReader
    pages = _function_pages()
    short = next(p for _c, p in pages if int.from_bytes(p[8:16], "little") < 2000)
    pages.insert(5, (0, short[:2048]))      # a short read
    ref = RawReader.__new__(RawReader)
    ref.layout, ref.flagged_lost, ref.unknown_loss = PageLayout("/nonexistent"), 0, False
    want = {}
    for _cpu, _ts, typ, p in ref.events(pages):
        if typ == 1:
            ip = int.from_bytes(p[8:16], "little")
            want[ip] = want.get(ip, 0) + 1
    rd = RawReader.__new__(RawReader)
    rd.layout, rd.flagged_lost, rd.unknown_loss = PageLayout("/nonexistent"), 0, False
    t = fc.Traced.__new__(fc.Traced)
    t.rd, t.type, t.ip_off, t.ips, t.walker, t.SMALL = rd, 1, 8, {}, None, small
    rounds = [pages[:20], pages[20:]]
    rd.drain_pages = lambda: rounds.pop(0) if rounds else []
    t.drain()
    t.drain()
    t.finish("duration")
    assert (t.walker is not None) == (small == 0)
    assert t.ips == want and sum(want.values()) > 3000
    assert rd.flagged_lost == ref.flagged_lost > 0


def test_pages_wait_for_the_arrays_import_and_are_all_counted(monkeypatch):
    """The first busy round starts numpy's import in the background; until
    it has ended the rounds' pages are only read (none counted, none
    dropped); an interval's end waits for it, and everything is counted."""
    pytest.importorskip("numpy")
    from ftracetools.ring import arrays
    from ftracetools.ring.pages import PageLayout
    from ftracetools.ring.reader import RawReader
    from ftracetools.ring.source import Preload

    class SlowImport(Preload):      # (its import held back until done)
        done = False

        def __init__(self, name):
            assert name == "ftracetools.ring.arrays"
            self.held = []

        def ready(self):
            return self.done

        def module(self):
            return arrays
    monkeypatch.setattr(fc, "preload", SlowImport)
    pages = _function_pages()
    rd = RawReader.__new__(RawReader)
    rd.layout, rd.flagged_lost, rd.unknown_loss = PageLayout("/nonexistent"), 0, False
    t = fc.Traced.__new__(fc.Traced)
    t.rd, t.type, t.ip_off, t.ips, t.walker, t.SMALL = rd, 1, 8, {}, None, 10
    rounds = [pages[:4], pages[4:20], pages[20:30], pages[30:]]
    rd.drain_pages = lambda: rounds.pop(0) if rounds else []
    t.drain()                   # a quiet round: one by one
    counted = dict(t.ips)
    assert counted and t.loading is None
    t.drain()                   # busy: the import starts, the pages wait
    t.drain()
    assert t.ips == counted and t.walker is None and sum(map(len, t.loading.held)) == 26
    SlowImport.done = True
    t.drain()                   # imported: all of it, as arrays
    assert t.walker is not None and t.loading is None
    want = {}
    for _cpu, _ts, typ, p in RawReader.events(rd, pages):
        if typ == 1:
            ip = int.from_bytes(p[8:16], "little")
            want[ip] = want.get(ip, 0) + 1
    assert t.ips == want
    # an interval's end while the import runs waits for it
    SlowImport.done = False
    t2 = fc.Traced.__new__(fc.Traced)
    t2.rd, t2.type, t2.ip_off, t2.ips, t2.walker, t2.SMALL = rd, 1, 8, {}, None, 0
    t2.map = type("Names", (), {"name": lambda self, ip: None})()
    rounds[:] = [pages[:30]]
    t2.drain()
    assert t2.ips == {} and t2.walker is None
    assert sum(t2.take().values()) == sum(
        1 for _c, _t, typ, _p in RawReader.events(rd, pages[:30]) if typ == 1)
