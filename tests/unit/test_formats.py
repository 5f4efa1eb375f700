"""Event formats and decoders (kernel.formats), on format files as the
kernel writes them."""

import struct

from ftracetools.kernel import formats as events


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


def test_kernel_stack_record(tmp_path):
    """What the stacktrace trigger writes: ``size`` return addresses, not
    the caller[8] of the format."""
    d = tmp_path / "events" / "ftrace" / "kernel_stack"
    d.mkdir(parents=True)
    (d / "format").write_text(
        "name: kernel_stack\nID: 4\nformat:\n"
        "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
        "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
        "\tfield:int size;\toffset:8;\tsize:4;\tsigned:1;\n"
        "\tfield:unsigned long caller[8];\toffset:16;\tsize:64;\tsigned:0;\n")
    eid, addrs = events.stack_record(str(tmp_path))
    p = struct.pack("<HHi i4x11Q", 4, 0, 7, 11, *range(1, 12))
    assert eid == 4 and addrs(memoryview(p)) == struct.pack("<11Q", *range(1, 12))
    short = struct.pack("<HHi i4x2Q", 4, 0, 7, 5, 1, 2)     # a size past the record
    assert addrs(short) == struct.pack("<2Q", 1, 2)
