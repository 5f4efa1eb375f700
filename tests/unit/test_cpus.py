"""CPU lists and masks (host.cpus)."""

import os
import subprocess
import sys

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


TCG = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: QEMU TCG CPU version 2.5+\n"
REAL = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU\n"


@pytest.fixture
def npy_env(monkeypatch):
    monkeypatch.delenv("NPY_DISABLE_CPU_FEATURES", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpus, "guarded", {})
    yield monkeypatch


def _cpuinfo(tmp_path, text):
    p = tmp_path / "cpuinfo"
    p.write_text(text)
    return str(p)


def test_numpy_guarded_under_tcg_only(tmp_path, npy_env):
    assert cpus.emulated(_cpuinfo(tmp_path, TCG))
    assert not cpus.emulated(_cpuinfo(tmp_path, REAL))
    assert not cpus.emulated(str(tmp_path / "absent"))
    assert not cpus.guard_numpy(_cpuinfo(tmp_path, REAL))
    assert "NPY_DISABLE_CPU_FEATURES" not in os.environ
    assert cpus.guard_numpy(_cpuinfo(tmp_path, TCG))
    assert os.environ["NPY_DISABLE_CPU_FEATURES"] == cpus.NUMPY_OFF
    # AVX2, whose gathers fault: numpy 2's level and numpy 1's feature
    assert {"X86_V3", "AVX2"} <= set(cpus.NUMPY_OFF.split())


def test_users_own_numpy_setting_stands(tmp_path, npy_env):
    npy_env.setenv("NPY_DISABLE_CPU_FEATURES", "AVX512F")
    assert not cpus.guard_numpy(_cpuinfo(tmp_path, TCG))
    assert os.environ["NPY_DISABLE_CPU_FEATURES"] == "AVX512F"


@pytest.mark.parametrize("var,users", [("NPY_DISABLE_CPU_FEATURES", None),
                                       ("NPY_DISABLE_CPU_FEATURES", "AVX512F"),
                                       ("OPENBLAS_NUM_THREADS", None),
                                       ("OPENBLAS_NUM_THREADS", "1")])
def test_command_does_not_inherit_the_guard(tmp_path, npy_env, var, users):
    """A command run with -c sees the user's environment: our settings
    are gone in it, the user's own stay (even where they equal ours)."""
    from ftracetools.host import procs
    if users:
        npy_env.setenv(var, users)
    cpus.guard_numpy(_cpuinfo(tmp_path, TCG))
    assert var in os.environ
    out = tmp_path / "env"
    c = procs.Command("sh -c 'printf %%s \"${%s-unset}\" > %s'" % (var, out))
    c.go()
    while not c.done():
        pass
    assert c.status == 0
    assert out.read_text() == (users or "unset")


def test_one_blas_thread_unless_the_user_says(tmp_path, npy_env):
    assert not cpus.guard_numpy(_cpuinfo(tmp_path, REAL))
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    npy_env.setenv("OPENBLAS_NUM_THREADS", "4")
    cpus.guard_numpy(_cpuinfo(tmp_path, REAL))
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"


THREADS = """
import os, sys
from ftracetools.host import cpus
if sys.argv[1] == "guarded":
    cpus.guard_numpy()
import numpy
print(len(os.listdir("/proc/self/task")))
"""


def test_numpy_import_starts_no_threads_once_guarded():
    """The kernel's count of the process's threads after numpy's import,
    as a tool has it: one (OpenBLAS started one per CPU without the guard:
    70 ms of CPU at every start here)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["PYTHONPATH"] = os.path.join(os.path.dirname(__file__), "..", "..", "lib")
    # (without the guard: 2 here, numpy 2.4's OpenBLAS on 2 CPUs)
    out = subprocess.run([sys.executable, "-c", THREADS, "guarded"], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert int(out) == 1, out


FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "kept":
    from ftracetools.host import cpus
    assert cpus.keep_heap()
a = np.arange(28000)   # (a round's worth: 224 KB an array)
for _ in range(5):
    (a * 3 + 1).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    (a * 3 + 1).sum()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 200)
"""


def test_arrays_freed_and_made_again_reuse_their_pages():
    """The kernel's count of page faults while arrays of a round's size
    are made and freed again and again: none once keep_heap has run, where
    glibc's default (fresh pages from the kernel for each) faults at every
    4 KB filled (77 an iteration here)."""
    pytest.importorskip("numpy")
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "..", "lib"))
    env = {k: v for k, v in env.items() if not k.startswith("MALLOC_")}
    faults = {}
    for how in ("default", "kept"):
        out = subprocess.run([sys.executable, "-c", FAULTS, how], env=env, check=True,
                             capture_output=True, text=True).stdout
        faults[how] = float(out)
    assert faults["default"] > 10, "glibc's default no longer faults here: %s" % faults
    assert faults["kept"] < 1, faults
