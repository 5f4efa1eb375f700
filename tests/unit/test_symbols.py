"""Kernel function names (kernel.symbols): patterns that can never
become trigger commands."""

import pytest

from ftracetools.errors import UsageError
from ftracetools.kernel import symbols


@pytest.mark.parametrize("pat", ["vfs_*", "do_page_*", "*sys_get[pu]pid", "tcp_?end*",
                                 "*:mod:ext4"])
def test_function_patterns_ok(pat):
    symbols.parse_pattern(pat)


@pytest.mark.parametrize("pat", ["vfs_read:traceoff", "a b", "x\ny", "", "f:mod:a b",
                                 "func:stacktrace:5", "!"*300])
def test_function_patterns_refused(pat):
    with pytest.raises(UsageError):
        symbols.parse_pattern(pat)


def test_stacks_named_and_trimmed(tmp_path):
    """kernel_stack addresses -> names, innermost first, the tracing frames
    on top left out; hex where /proc/kallsyms hides addresses."""
    import struct
    ks = tmp_path / "kallsyms"
    ks.write_text("0000000000001000 T ftrace_syscall_enter\n0000000000002000 T do_syscall_64\n"
                  "0000000000003000 t entry_SYSCALL_64\n")
    raw = struct.pack("<3Q", 0x1010, 0x2020, 0x3030)
    names = symbols.StackNames(kallsyms=str(ks))
    assert names.names(raw) == ("do_syscall_64", "entry_SYSCALL_64")
    assert names.names(raw) is names.names(raw)     # named once
    hidden = tmp_path / "hidden"
    hidden.write_text("0000000000000000 T do_syscall_64\n")
    assert symbols.StackNames(kallsyms=str(hidden)).names(raw[8:]) == ("0x2020", "0x3030")
    assert symbols.trim_tracing(("trace_a", "__traceiter_b", "f")) == ("f",)
    assert symbols.trim_tracing(("trace_a",)) == ("trace_a",)
