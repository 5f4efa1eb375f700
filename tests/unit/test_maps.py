"""Addresses to names (host.maps): process mappings and kernel symbols."""

from ftracetools.host import maps


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
