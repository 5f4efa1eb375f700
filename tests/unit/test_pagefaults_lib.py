"""Library modules added for pagefaults: pages (bulk records) and maps."""

import struct

from ftracetools.host import maps
from ftracetools.ring import pages
from ftracetools.ring.pages import PageLayout, parse_page

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


MAPS = """\
55d0c0000000-55d0c0001000 r--p 00000000 fd:01 123 /usr/bin/prog
55d0c0001000-55d0c0005000 r-xp 00001000 fd:01 123 /usr/bin/prog
55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
"""


def test_parse_maps_and_lookup(tmp_path):
    m = maps.parse_maps(MAPS)
    assert [x[3] for x in m] == ["/usr/bin/prog", "/usr/bin/prog", "[heap]",
                                 maps.ANON, "[stack]"]
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "maps").write_text(MAPS)
    pm = maps.ProcessMaps(str(tmp_path))
    assert pm.lookup(42, 0x55d0c0001010) == ("/usr/bin/prog", 0x1010)
    assert pm.lookup(42, 0x55d0c1000008)[0] == "[heap]"
    assert pm.lookup(42, 0x7f0000000123)[0] == maps.ANON
    assert pm.lookup(42, 0x10)[0] == maps.UNMAPPED
    assert pm.lookup(43, 0x10)[0] == maps.EXITED
    # A mapping made after the first read is found by one re-read.
    (tmp_path / "42" / "maps").write_text(MAPS + "7ffe00000000-7ffe00001000 r--p 0 00:00 0 [vdso]\n")
    pm.new_round()
    assert pm.lookup(42, 0x7ffe00000010)[0] == "[vdso]"


def test_kallsyms(tmp_path):
    f = tmp_path / "kallsyms"
    f.write_text("ffffffff81000000 T _stext\nffffffff81000100 t copy_user_generic\n"
                 "ffffffff81000200 D some_data\nffffffff81000300 T clear_user\n")
    k = maps.Kallsyms(str(f))
    assert k.name(0xffffffff81000150) == "copy_user_generic"
    assert k.name(0xffffffff81000250) == "copy_user_generic"  # data skipped
    assert k.name(0xffffffff81000301) == "clear_user"
    assert maps.Kallsyms(str(tmp_path / "none")).name(5) == "[unknown]"
