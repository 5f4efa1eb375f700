"""funccount without a kernel: path choice, parsers, output, symbols."""

import os
import sys

import pytest

import tooling

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "lib"))

from ftracetools.kernel import symbols  # noqa: E402
from ftracetools.errors import UsageError  # noqa: E402


fc = tooling.load_tool("funccount")


class FakeFeatures:
    def __init__(self, *have):
        self.have = set(have)

    def why_not(self, name):
        return None if name in self.have else "no " + name


class FakeTargets:
    def __init__(self, filtered=False, cpus=None):
        self.filtered, self.cpus = filtered, cpus


ALL = ("function_profiler", "kprobes", "fprobes", "hist", "function_instance")


def choose(feats, targets=None, names=("f",), dups=(), max_probes=200, env=None,
           monkeypatch=None):
    warned = []
    m = fc.choose(FakeFeatures(*feats), targets or FakeTargets(), list(names), set(dups),
                  max_probes, warned.append)
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


def test_nothing_works_lists_every_reason():
    with pytest.raises(fc.Refused) as e:
        choose(())
    for m in fc.METHODS:
        assert m + ":" in str(e.value)


HIST = """# event histogram
#
# trigger info: hist:keys=common_cpu:vals=hitcount:sort=hitcount:size=2048 [active]
#

{ common_cpu:          1 } hitcount:       1000
{ common_cpu:          0 } hitcount:       1502

Totals:
    Hits: 2502
    Entries: 2
    Dropped: 3
"""


def test_parse_hist_sums_selected_cpus():
    assert fc.parse_hist(HIST) == (2502, 3)
    assert fc.parse_hist(HIST, {1}) == (1000, 3)
    assert fc.parse_hist(HIST.replace("common_cpu", "cpu"), {0}) == (1502, 3)
    assert fc.parse_hist("") == (0, 0)


def test_render_ascending_and_top():
    lines = fc.render({"b": 5, "a": 100, "c\x1b[2J": 1})
    assert lines[0].split() == ["FUNC", "COUNT"]
    assert [l.split()[0] for l in lines[1:]] == ["c\\x1b[2J", "b", "a"]
    assert [l.split()[0] for l in fc.render({"b": 5, "a": 100, "c": 1}, top=2)[1:]] == ["b", "a"]
    assert all(len(l) <= 80 for l in fc.render({"x" * 60: 1}))
    assert "x" * 200 in fc.render({"x" * 200: 1})[1]  # never cut a name


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


@pytest.mark.parametrize("argv", [["-i", "0", "f"], ["-d", "-1", "f"], ["-t", "x", "f"],
                                  ["-p", "x", "f"], ["-p", "1", "-L", "1", "f"],
                                  ["-C", "a", "f"], [], ["-m", "-3", "f"], ["a b"],
                                  ["-r", "a b"]])
def test_bad_arguments_exit_2(argv, capsys):
    assert fc.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("funccount: ") and "Traceback" not in err


def test_filter_text_names_or_positions():
    assert symbols.filter_text(FUNCS, ["vfs_read", "dup"]) == "vfs_read\ndup"
    assert symbols.filter_text(FUNCS, ["vfs_read", "dup"], by_index_over=1) == "1 6 7"
