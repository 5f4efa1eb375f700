"""The VM tier's verdicts (tests/vm/runvm.py), on consoles as the guests
print them: a kernel bug fails a guest, an emulator's stall does not; a
top-level buffer left unexpanded fails it."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "vm"))

import runvm  # noqa: E402

FAILING = [
    "[  812.102938] WARNING: CPU: 1 PID: 920 at kernel/trace/ftrace.c:2180 ftrace_bug+0x1f4/0x230",
    "[  901.000001] BUG: kernel NULL pointer dereference, address: 0000000000000008",
    "[  901.000002] Oops: 0000 [#1] PREEMPT SMP NOPTI",
    "[  901.000003] kernel BUG at mm/slub.c:435!",
    "[  901.000004] Kernel panic - not syncing: Fatal exception",
    "[  901.000005] ------------[ ftrace bug ]------------ ftrace failed to modify",
]
NOT_FAILING = [
    "[ 1528.900463] watchdog: BUG: soft lockup - CPU#1 stuck for 21s! [python3:1010]",
    "[ 1191.941048] rcu: INFO: rcu_preempt self-detected stall on CPU",
    "[ 1529.000000] Call Trace:",
    "tests/live/test_x.py::test_WARNING: PASSED [ 50%]",      # a test's output, not the kernel's
    "[ 1586.289054] hrtimer: interrupt took 62034590 ns",
]


def test_kernel_bugs_fail_a_guest_and_stalls_do_not():
    assert runvm.kernel_failures(FAILING) == FAILING
    assert runvm.kernel_failures(NOT_FAILING) == []


def test_a_top_level_buffer_left_unexpanded_fails_a_guest():
    start = "top-level buffer_size_kb at start: 7 (expanded: 1408)"
    assert runvm.buffer_problems([start, "top-level buffer_size_kb at end: 7"])
    assert not runvm.buffer_problems([start, "top-level buffer_size_kb at end: 1410"])
    assert not runvm.buffer_problems([start, "top-level buffer_size_kb at end: 7 (expanded: 1408)"])
    assert not runvm.buffer_problems(["top-level buffer_size_kb at start: 1410",
                                      "top-level buffer_size_kb at end: 1410"])


def test_only_a_certifi_hook_is_masked_in_the_guests(tmp_path, monkeypatch):
    import site
    (tmp_path / "hook.pth").write_text('import os;exec("try:\\n import certifi\\n")\n')
    (tmp_path / "distutils-precedence.pth").write_text("import os; var = 'X'\n")
    (tmp_path / "paths.pth").write_text("/opt/lib\n")
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(tmp_path)])
    assert runvm.startup_hooks() == [str(tmp_path / "hook.pth")]
