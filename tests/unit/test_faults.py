"""The page-fault engine (engines.faults): kind decoding, the major/minor
rule, folding counts into rows."""

import struct

import pytest

from ftracetools.engines import faults as pf
from ftracetools.errors import UsageError
from ftracetools.ring.pages import PageLayout
from ftracetools.ring import pages


def test_kinds_to_events_and_filters():
    assert pf.parse_kinds(None) == (["user", "kernel"], [])
    assert pf.parse_kinds("kernel") == (["kernel"], [])
    evs, vals = pf.parse_kinds("user,write,prot")
    assert evs == ["user"]
    assert pf.kind_filter(vals) == "((error_code & 1)) && ((error_code & 2))"
    assert pf.kind_filter(pf.parse_kinds("read")[1]) == "!(error_code & 18)"
    assert pf.kind_filter(pf.parse_kinds("np,exec")[1]) == \
        "((error_code & 16)) && (!(error_code & 1))"
    assert pf.kind_filter([]) is None


@pytest.mark.parametrize("bad", ["user,kernel", "prot,np", "read,write",
                                 "sideways", "user;rm"])
def test_bad_kinds(bad):
    with pytest.raises(UsageError):
        pf.parse_kinds(bad)


def test_split_and_letters():
    # error code bits: 1 protection, 2 write, 4 user, 16 instruction fetch
    assert pf.split(0x6, False) == (1, 1, 0, 0, 1, 0, 0)
    assert pf.split(0x4, False) == (1, 1, 0, 1, 0, 0, 0)
    assert pf.split(0x15, False) == (1, 1, 0, 0, 0, 1, 1)
    assert pf.split(0x2, True) == (1, 0, 1, 0, 1, 0, 0)
    assert pf.kind_letters(0x6, False) == "UWN"
    assert pf.kind_letters(0x15, False) == "UXP"
    assert pf.kind_letters(0x0, True) == "KRN"


def test_major_rule():
    st = {}
    R, M = pf.VM_FAULT_RETRY, pf.VM_FAULT_MAJOR
    assert pf.major_step(st, 1, False, 0) == "minor"
    assert pf.major_step(st, 1, False, M) == "major"
    # Read-ahead: MAJOR|RETRY (not counted), then the TRIED call returns 0.
    assert pf.major_step(st, 1, False, M | R) is None
    assert pf.major_step(st, 1, True, None) is None
    assert pf.major_step(st, 1, False, 0) == "major"
    # The TRIED flag is per thread and used once.
    assert pf.major_step(st, 2, True, None) is None
    assert pf.major_step(st, 3, False, 0) == "minor"
    assert pf.major_step(st, 2, False, 0) == "major"
    assert pf.major_step(st, 2, False, 0) == "minor"
    # Errors (SIGSEGV) are not faults the kernel counts.
    assert pf.major_step(st, 1, False, 0x40) is None


def fault(pid, code, typ):
    payload = struct.pack("<HBBiQQQ", typ, 1, 0, pid, 0x1000, 0x400000, code)
    return struct.pack("<I", (5 << 5) | 8) + payload


def test_fold_fast_records_per_process():
    layout = PageLayout("/nonexistent")
    evs = [fault(100, 6, 190)] * 5 + [fault(101, 2, 191)] * 3 + [fault(100, 0x15, 190)]
    data = b"".join(evs)
    p = struct.pack("<QQ", 0, len(data)) + data
    p += b"\0" * (layout.page_size - len(p))
    c = pf.Counts(None, 191)
    c.who = {100: (100, "a"), 101: (100, "a")}   # two threads of one process
    c.add_records(pages.records(p, layout, 32), 2, 7, 9)
    c.add_event(100, True, 0, 0, 2)               # a slow-path event
    rows = c.fold()
    assert rows == [(100, [10, 6, 4, 0, 9, 1, 1])]
    assert c.fold() == []                         # cleared for the next interval


def test_fold_major_minor_columns():
    c = pf.Counts(None, 191)
    c.who = {7: (7, "x"), 8: (8, "y")}
    c.add_event(7, False, 0, 0, 4)
    c.major[7] += 2
    c.minor[7] += 1
    c.minor[8] += 1
    rows = dict(c.fold())
    assert rows[7] == [1, 1, 0, 1, 0, 0, 0, 2, 1]
    assert rows[8] == [0, 0, 0, 0, 0, 0, 0, 0, 1]


def test_fast_layout_of_this_format():
    from ftracetools.kernel.formats import EventFormat
    f = EventFormat("exceptions", FORMAT)
    assert pf.fast_layout({"user": f, "kernel": f}) == (32, 2, 7, 9)


FORMAT = """name: page_fault_user
ID: 190
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long address;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned long ip;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned long error_code;\toffset:24;\tsize:8;\tsigned:0;

print fmt: "address=%ps ip=%ps error_code=0x%lx"
"""
