"""Hist triggers and synthetic events (kernel.triggers): the one reader of
``hist`` files, on tables as the kernel prints them, and the names a run
gives what it adds to the kernel's global lists."""

import os

from ftracetools.kernel import triggers

LATENCY = """# event histogram
#
# trigger info: hist:keys=dev,lat:vals=hitcount:sort=hitcount:size=16384 [active]
#

{ dev:    7340032, lat:         45 } hitcount:          3
{ dev:    7340032, lat:        130 } hitcount:         12

Totals:
    Hits: 15
    Entries: 2
    Dropped: 0

# event histogram
#
# trigger info: hist:keys=dev:vals=hitcount:sort=hitcount:size=2048 if dev == 7340032 [active]
#

{ dev:    7340032 } hitcount:         16

Totals:
    Hits: 16
    Entries: 1
    Dropped: 4
"""

# as 6.1 prints a hist keyed on the stack (6.5+: common_stacktrace)
STACKS = """# event histogram
#
# trigger info: hist:keys=common_pid,stacktrace:vals=hitcount,delta:sort=hitcount:size=2048 [active]
#

{ common_pid:        123, stacktrace:
         __schedule+0x2ee/0x8b0
         schedule+0x5e/0xd0
         do_nanosleep+0x6b/0x170
} hitcount:          2  delta:       2000
{ common_pid:        456, stacktrace:
         __schedule+0x2ee/0x8b0
         schedule+0x5e/0xd0
         pipe_read+0x3a1/0x4b0
} hitcount:          1  delta:        500

Totals:
    Hits: 3
    Entries: 2
    Dropped: 0
"""

# 6.5+: a hist on a synthetic event keyed on its stack field (unsigned
# long[]): the key is printed "stack.stacktrace" and the first frame follows
SYNTH_STACKS = """# event histogram
#
# trigger info: hist:keys=pid,stack.stacktrace:vals=hitcount,delta:sort=pid:size=32768 [active]
#

{ pid:        808, stack.stacktrace         __schedule+0x2ee/0x8b0
         schedule+0x5e/0xd0
         do_nanosleep+0x6b/0x170 [foo]
 } hitcount:          3  delta:    3000123
{ pid:          9, stack.stacktrace         __schedule+0x2ee/0x8b0
         schedule+0x5e/0xd0
 } hitcount:          1  delta:         17

Totals:
    Hits: 4
    Entries: 2
    Dropped: 1
"""

CPUS = """# event histogram
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


def test_tables_entries_and_totals():
    a, b = triggers.parse_hist(LATENCY)
    assert a.entries == [({"dev": "7340032", "lat": "45"}, {"hitcount": 3}),
                         ({"dev": "7340032", "lat": "130"}, {"hitcount": 12})]
    assert (a.hits, a.dropped) == (15, 0)
    assert b.entries == [({"dev": "7340032"}, {"hitcount": 16})] and b.dropped == 4


def test_stack_keys_span_lines():
    (t,) = triggers.parse_hist(STACKS)
    assert [k["common_pid"] for k, _ in t.entries] == ["123", "456"]
    assert t.entries[0][0]["stacktrace"].splitlines() == [
        "__schedule+0x2ee/0x8b0", "schedule+0x5e/0xd0", "do_nanosleep+0x6b/0x170"]
    assert t.entries[1][1] == {"hitcount": 1, "delta": 500}


def test_a_synthetic_stack_field_as_key():
    (t,) = triggers.parse_hist(SYNTH_STACKS)
    (k1, v1), (k2, v2) = t.entries
    assert k1["pid"] == "808" and v1 == {"hitcount": 3, "delta": 3000123}
    assert k1["stack.stacktrace"].splitlines() == [
        "__schedule+0x2ee/0x8b0", "schedule+0x5e/0xd0", "do_nanosleep+0x6b/0x170 [foo]"]
    assert k2 == {"pid": "9", "stack.stacktrace": "__schedule+0x2ee/0x8b0\nschedule+0x5e/0xd0"}
    assert (t.hits, t.dropped) == (4, 1)


def test_stack_frames_are_function_names():
    (t,) = triggers.parse_hist(SYNTH_STACKS)
    assert triggers.stack_frames(t.entries[0][0]["stack.stacktrace"]) == (
        "__schedule", "schedule", "do_nanosleep")


def test_cpu_keys_and_nothing():
    (t,) = triggers.parse_hist(CPUS)
    assert {k["common_cpu"]: v["hitcount"] for k, v in t.entries} == {"1": 1000, "0": 1502}
    assert t.dropped == 3
    assert triggers.parse_hist("") == []


class _S:
    tool = "iolatency"


def test_names_say_whose():
    n = triggers.name(_S(), "lat")
    assert n == "ftt_iolatency_%d_lat" % os.getpid()
    assert triggers.if_clause(None) == "" and triggers.if_clause("a == 1") == " if a == 1"
