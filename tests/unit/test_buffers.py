"""The one buffer-size policy (kernel.buffers), on given memory sizes."""

from ftracetools.kernel import buffers


def test_asked_for_is_given():
    assert buffers.per_cpu_kb(4096, 8) == 8
    assert buffers.per_cpu_kb(4096, 1 << 20, avail_kb=1) == 1 << 20


def test_default_within_an_eighth_of_the_memory():
    """The tool's default where memory is plenty; an eighth of what is
    available, shared by the CPUs, where it is not; never under 1 MB."""
    assert buffers.per_cpu_kb(16384, avail_kb=1 << 40, ncpus=4) == 16384
    assert buffers.per_cpu_kb(16384, avail_kb=8 * 4 * 10000, ncpus=4) == 10000
    assert buffers.per_cpu_kb(16384, avail_kb=8 * 4 * 100, ncpus=4) == buffers.MIN_KB
    assert buffers.per_cpu_kb(4096, avail_kb=0, ncpus=4) == 4096   # unknown: the default


def test_this_machine():
    kb = buffers.per_cpu_kb(16384)
    assert buffers.MIN_KB <= kb <= 16384
    assert buffers.available_kb() > 0
