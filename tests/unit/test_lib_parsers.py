"""Unit tests of the library's parsers and helpers (no root needed)."""

import struct

import pytest

from ftracetools.host import cpus
from ftracetools.kernel import formats as events
from ftracetools.kernel import filters
from ftracetools.report import histogram as hist
from ftracetools.report import text as output
from ftracetools.ring import reader
from ftracetools.ring import pages  # noqa: E402
from ftracetools.kernel import symbols
from ftracetools.errors import UsageError
from ftracetools.kernel.session import undo_value

SWITCH = """name: sched_switch
ID: 372
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prev_prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:char next_comm[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;
\tfield:int next_prio;\toffset:60;\tsize:4;\tsigned:1;

print fmt: "prev_state=%s%s", (REC->prev_state & 255) ? __print_flags(REC->prev_state & 255, "|", { 0x00000001, "S" }, { 0x00000002, "D" }, { 0x00000080, "I" }) : "R", REC->prev_state & 256 ? "+" : ""
"""


def switch_payload(prev="a\x1bb", prev_pid=7, state=1, next_pid=-1):
    b = bytearray(64)
    struct.pack_into("<H", b, 0, 372)
    b[8:8 + len(prev)] = prev.encode()
    struct.pack_into("<iiq", b, 24, prev_pid, 120, state)
    struct.pack_into("<i", b, 56, next_pid)
    return bytes(b)


def test_format_and_decoder():
    ef = events.EventFormat("sched", SWITCH)
    assert ef.id == 372 and ef.name == "sched_switch"
    assert ef.fields["prev_comm"].size == 16
    dec = ef.decoder(["prev_comm", "prev_pid", "prev_state", "next_pid"])
    assert dec(switch_payload()) == ("a\x1bb", 7, 1, -1)
    assert ef.decoder(["next_pid", "prev_pid"])(switch_payload()) == (-1, 7)
    assert events.print_tables(ef.print_fmt) == [[(1, "S"), (2, "D"), (128, "I")]]


def test_data_loc_string():
    text = SWITCH.replace("\tfield:int next_prio;\toffset:60;\tsize:4;\tsigned:1;",
                          "\tfield:__data_loc char[] cmd;\toffset:60;\tsize:4;\tsigned:0;")
    ef = events.EventFormat("x", text)
    b = bytearray(switch_payload()) + b"hello\0"
    struct.pack_into("<I", b, 60, (6 << 16) | 64)
    assert ef.decoder(["cmd", "prev_pid"])(bytes(b)) == ("hello", 7)


def _page(events_bytes, ts=1000, missed=None):
    commit = len(events_bytes)
    tail = b""
    if missed is not None:
        commit |= 1 << 31 | 1 << 30
        tail = struct.pack("<q", missed)
    page = struct.pack("<Qq", ts, commit) + events_bytes + tail
    return page + b"\0" * (4096 - len(page))


def test_parse_page_all_event_kinds():
    lay = pages.PageLayout("/nonexistent")
    p1 = switch_payload(prev_pid=1)
    ev = struct.pack("<I", (10 << 5) | 16) + p1             # type_len 16, +10 ns
    ev += struct.pack("<II", (3 << 5) | 30, 1)              # time extend: +2**27+3
    ev += struct.pack("<II", 5 << 5, 4 + 64) + switch_payload(prev_pid=2)  # type_len 0
    ev += struct.pack("<II", (1 << 5) | 29, 12) + b"\0" * 8  # padding: no time
    ev += struct.pack("<I", (2 << 5) | 16) + switch_payload(prev_pid=3)
    out = []
    assert pages.parse_page(_page(ev), 1, lay, out) == 0
    assert [e[0] for e in out] == [1010, 1010 + (1 << 27) + 3 + 5, 1010 + (1 << 27) + 8 + 2]
    assert [struct.unpack_from("<i", e[3], 24)[0] for e in out] == [1, 2, 3]
    assert all(e[1] == 1 and e[2] == 372 for e in out)


def test_parse_page_lost_events():
    lay = pages.PageLayout("/nonexistent")
    out = []
    assert pages.parse_page(_page(b"", missed=42), 0, lay, out) == 42
    assert out == []


def test_real_header_page_layout(tmp_path):
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "header_page").write_text(
        "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
        "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
        "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
        "\tfield: char data;\toffset:16;\tsize:8176;\tsigned:0;\n")
    lay = pages.PageLayout(str(tmp_path))
    assert (lay.commit_off, lay.data_off, lay.page_size) == (8, 16, 8192)


def test_stats():
    s = {"entries": 5, "overrun": 2, "commit overrun": 1, "dropped events": 4}
    assert reader.lost_from_stats(s) == 7


@pytest.mark.parametrize("text,cpus", [("3", {3}), ("0,2-3", {0, 2, 3}), ("0-1", {0, 1}),
                                       (" 1 ", {1})])
def test_cpulist(text, cpus):
    from ftracetools.host.cpus import parse_cpulist
    assert parse_cpulist(text, check=False) == cpus


@pytest.mark.parametrize("bad", ["", "a", "1-", "3-1", "1,,2", "-1", "0x1", "1 2", "99999999"])
def test_cpulist_bad(bad):
    with pytest.raises(UsageError):
        cpus.parse_cpulist(bad, check=False)


def test_cpulist_offline():
    with pytest.raises(UsageError, match="not online"):
        cpus.parse_cpulist("4095")


def test_cpumask():
    assert cpus.to_cpumask({0, 2, 3}, "3") == "d"
    assert cpus.to_cpumask({1}, "ff") == "02"
    assert cpus.to_cpumask({0, 33}, "ffffffff,ffffffff") == "00000002,00000001"
    assert cpus.format_cpulist({0, 2, 3, 5}) == "0,2-3,5"


def test_hist_buckets_and_layout():
    h = hist.Log2Hist()
    for v in (0, 0.5, 1, 1.9, 2, 3, 4, 1000):
        h.add(v)
    assert h.counts == {0: 2, 1: 2, 2: 2, 3: 1, 10: 1}
    lines = h.render("ms", "I/O")
    assert lines[0].startswith("  >=(ms) .. <(ms)   : I/O      |Distribution")
    assert lines[1].index(":") == lines[0].index(":")
    assert all(len(l) < 80 for l in lines)
    assert lines[1].endswith("|" + "#" * 38 + "|")
    assert [b["count"] for b in h.buckets()][:4] == [2, 2, 2, 1]
    assert hist.bucket_percentile(h, 50) == 2 and hist.bucket_percentile(h, 100) == 1024


def test_summary_percentiles():
    s = hist.summary(range(1, 101))
    assert (s["count"], s["p50"], s["p90"], s["p99"], s["max"]) == (100, 50, 90, 99, 100)
    assert s["avg"] == 50.5
    assert hist.summary([])["count"] == 0


def test_escape():
    assert output.escape("bash") == "bash"
    assert output.escape("a\x1b[31mb") == "a\\x1b[31mb"
    assert output.escape("x\ny\t") == "x\\x0ay\\x09"
    assert output.escape("\x9b") == "\\x9b"
    assert output.escape(b"\xff".decode("utf-8", "surrogateescape")) == "\\xff"
    assert output.escape("a\\b") == "a\\\\b"


def test_json_line(capsys):
    import json
    output.json_line({"comm": "a\x1b", "n": 1})
    assert json.loads(capsys.readouterr().out) == {"comm": "a\x1b", "n": 1}
    output.json_line({"comm": b"\xfe".decode("utf-8", "surrogateescape")})
    assert json.loads(capsys.readouterr().out) == {"comm": "\\xfe"}


def test_table():
    lines = output.table(["FUNC", "COUNT"], [["a", 1], ["bbbb", 1000]], "lr")
    assert lines == ["FUNC COUNT", "a        1", "bbbb  1000"]


def test_filters():
    assert filters.any_of("common_pid", [3, 1]) == "common_pid == 1 || common_pid == 3"
    assert filters.glob("rwbs", "*W*") == 'rwbs ~ "*W*"'
    assert filters.all_of("a == 1", None, "b == 2") == "(a == 1) && (b == 2)"
    for bad in ['*"', "a b", "x:traceoff", "*R*||1"]:
        with pytest.raises(UsageError):
            filters.glob("rwbs", bad)
    with pytest.raises(ValueError):
        filters.any_of("common_pid; x", [1])


@pytest.mark.parametrize("pat", ["vfs_*", "do_page_*", "*sys_get[pu]pid", "tcp_?end*",
                                 "*:mod:ext4"])
def test_function_patterns_ok(pat):
    symbols.parse_pattern(pat)


@pytest.mark.parametrize("pat", ["vfs_read:traceoff", "a b", "x\ny", "", "f:mod:a b",
                                 "func:stacktrace:5", "!"*300])
def test_function_patterns_refused(pat):
    with pytest.raises(UsageError):
        symbols.parse_pattern(pat)


def test_undo_values():
    assert undo_value("set_ftrace_filter", "#### all functions enabled ####\n") == ""
    assert undo_value("set_ftrace_filter", "vfs_read\nvfs_write\n") == "vfs_read\nvfs_write"
    assert undo_value("set_event_pid", "no pid\n") == ""
    assert undo_value("set_event_pid", "1\n2\n") == "1 2"
    assert undo_value("trace_clock", "[local] global counter mono\n") == "local"
    assert undo_value("events/sched/sched_switch/filter", "none\n") == "0"
    assert undo_value("buffer_size_kb", "7 (expanded: 1408)\n") == "1408"
    assert undo_value("buffer_size_kb", "4096\n") == "4096"
    assert undo_value("tracing_on", "1\n") == "1"
