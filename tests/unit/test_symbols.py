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
