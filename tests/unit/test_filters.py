"""Kernel filters built from checked values only (kernel.filters)."""

import pytest

from ftracetools.errors import UsageError
from ftracetools.kernel import filters


def test_filters():
    assert filters.any_of("common_pid", [3, 1]) == "common_pid == 1 || common_pid == 3"
    assert filters.glob("rwbs", "*W*") == 'rwbs ~ "*W*"'
    assert filters.all_of("a == 1", None, "b == 2") == "(a == 1) && (b == 2)"
    for bad in ['*"', "a b", "x:traceoff", "*R*||1"]:
        with pytest.raises(UsageError):
            filters.glob("rwbs", bad)
    with pytest.raises(ValueError):
        filters.any_of("common_pid; x", [1])
