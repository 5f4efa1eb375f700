"""CPU lists and masks (host.cpus)."""

import pytest

from ftracetools.errors import UsageError
from ftracetools.host import cpus


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
