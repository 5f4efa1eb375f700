"""Sub-buffer pages (ring.pages) and the per-CPU stats (ring.reader),
on hand-made pages."""

import struct

from ftracetools.ring import pages
from ftracetools.ring import reader
from test_formats import switch_payload
from ftracetools.ring.pages import PageLayout, parse_page


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


def test_parse_page_decodes_the_types_asked_for_the_rest_as_views():
    """``decode``: the payload unpacked at its offset in the page, for the
    types named (small records and type_len 0 ones alike); other types
    keep their views; times as without it."""
    lay = pages.PageLayout("/nonexistent")
    small = struct.pack("<HBBiQi", 7, 0, 0, 42, 0xffff0001, 3)   # 20 bytes
    ev = struct.pack("<I", (10 << 5) | 5) + small
    ev += struct.pack("<II", (3 << 5) | 30, 1)                   # time extend
    ev += struct.pack("<II", 5 << 5, 4 + 64) + switch_payload(prev_pid=2)  # type 372
    ev += struct.pack("<II", 6 << 5, 4 + 20) + small             # type_len 0, type 7
    ev += struct.pack("<I", (2 << 5) | 5) + small[:-4] + struct.pack("<i", 4)
    plain, dec = [], []
    pages.parse_page(_page(ev), 1, lay, plain)
    unpack = struct.Struct("<4xiQi").unpack_from
    assert pages.parse_page(_page(ev), 1, lay, dec, {7: unpack}) == 0
    assert [e[:3] for e in dec] == [e[:3] for e in plain]
    assert [e[2] for e in dec] == [7, 372, 7, 7]
    assert [dec[i][3] for i in (0, 2, 3)] == [(42, 0xffff0001, 3), (42, 0xffff0001, 3),
                                              (42, 0xffff0001, 4)]
    assert bytes(dec[1][3]) == bytes(plain[1][3]) == switch_payload(prev_pid=2)


def test_a_record_cut_by_a_short_read_is_not_decoded():
    """A read that ended inside a record: the records before it come out,
    with views or decoded alike; the cut one is not made up from what was
    not read; a stored loss count the read did not reach is unknown (-1)."""
    lay = pages.PageLayout("/nonexistent")
    small = struct.pack("<HBBiQi", 7, 0, 0, 42, 0xffff0001, 3)   # 20 bytes
    ev = b"".join(struct.pack("<I", (10 << 5) | 5) + small for _ in range(5))
    whole = _page(ev, missed=9)
    unpack = struct.Struct("<4xiQi").unpack_from
    for cut in (16 + 24 * 3 + 10, 16 + 24 * 3 + 2, 16 + 24 * 3):
        plain, dec, offs = [], [], []
        assert pages.parse_page(whole[:cut], 0, lay, plain) == -1
        pages.parse_page(whole[:cut], 0, lay, dec, {7: unpack})
        pages.page_offsets(whole[:cut], lay, offs)
        assert [e[0] for e in plain] == [e[0] for e in dec] == [e[0] for e in offs] \
            == [1010, 1020, 1030]
        assert [e[3] for e in dec] == [(42, 0xffff0001, 3)] * 3
        assert all(bytes(e[3]) == small for e in plain)
    out = []
    assert pages.parse_page(whole, 0, lay, out) == 9 and len(out) == 5


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


LAYOUT = PageLayout("/nonexistent")  # the defaults: 64-bit header, 4 KB pages


def fault(pid, addr, ip, code, typ=190, delta=10):
    """One page_fault_user-shaped event: header word + 32-byte payload."""
    payload = struct.pack("<HBBiQQQ", typ, 0, 0, pid, addr, ip, code)
    return struct.pack("<I", (delta << 5) | (len(payload) // 4)) + payload


def page(*events, lost=0, pad=0):
    data = b"".join(events)
    if pad:
        data += struct.pack("<II", (1 << 5) | 29, pad - 4) + b"\0" * (pad - 8)
    commit = len(data) - (pad if pad else 0)
    commit = len(data)
    if lost:
        commit |= (1 << 31) | (1 << 30)
        data += struct.pack("<q", lost)
    out = struct.pack("<QQ", 1000, commit) + data
    return out + b"\0" * (LAYOUT.page_size - len(out))


def test_records_fixed_size_page():
    p = page(fault(10, 0x1000, 0x400000, 6), fault(11, 0x2000, 0x400010, 4))
    w = pages.records(p, LAYOUT, 32)
    assert w is not None and len(w) == 18
    assert list(w[2::9]) == [10, 11]          # common_pid
    assert list(w[7::9]) == [6, 4]            # error_code, low word
    assert [x & 0xFFFF for x in w[1::9]] == [190, 190]


def test_records_agree_with_slow_parser():
    evs = [fault(i, i << 12, 0x400000 + i, i & 0x17) for i in range(100)]
    p = page(*evs)
    w = pages.records(p, LAYOUT, 32)
    slow = []
    parse_page(p, 0, LAYOUT, slow)
    assert list(w[2::9]) == [struct.unpack_from("<i", e[3], 4)[0] for e in slow]
    assert list(w[7::9]) == [struct.unpack_from("<Q", e[3], 24)[0] for e in slow]


def test_records_refuse_mixed_pages():
    extend = struct.pack("<II", 30, 5)  # a time extend record
    assert pages.records(page(fault(1, 0, 0, 0), extend, fault(1, 0, 0, 0)), LAYOUT, 32) is None
    small = struct.pack("<I", (1 << 5) | 2) + struct.pack("<HBBi", 7, 0, 0, 1)
    assert pages.records(page(small, fault(1, 0, 0, 0)), LAYOUT, 32) is None
    assert pages.records(page(fault(1, 0, 0, 0), small), LAYOUT, 32) is None


def test_records_trailing_padding_and_empty():
    w = pages.records(page(fault(3, 0, 0, 2), pad=16), LAYOUT, 32)
    assert w is not None and list(w[2::9]) == [3]
    assert len(pages.records(page(), LAYOUT, 32)) == 0


def test_page_lost():
    assert pages.page_header(page(fault(1, 0, 0, 0)), LAYOUT)[3] == 0
    assert pages.page_header(page(fault(1, 0, 0, 0), lost=42), LAYOUT)[3] == 42
