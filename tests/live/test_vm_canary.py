"""Canaries: prove that the VM tier really exercises the kernel's features.

Each test drives tracefs directly (no library session) and counts exactly
``N`` getppid() calls made by this process, once with the function tracer in
a private instance, once with a kprobe (``kprobe_profile`` hit count) and
once with a hist trigger on ``raw_syscalls:sys_enter``. All of them work in
a private instance where they can, and leave tracefs exactly as found
(checked by the ``tracefs_unchanged`` fixture). On a kernel lacking the
feature (like the development host) they skip, naming it.
"""

import os
import re
from typing import Iterator, List, Optional

import pytest

N = 1000

# The getppid syscall body is named differently across versions/configs.
GETPPID_FUNCS = ("__do_sys_getppid", "__se_sys_getppid", "__x64_sys_getppid")


def _write(path: str, value: str, append: bool = False) -> None:
    flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags)
    try:
        if value:
            os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _names(path: str) -> Iterator[str]:
    """First word of each line (function names; kallsyms: third word)."""
    kallsyms = path.endswith("kallsyms")
    with open(path) as f:
        for line in f:
            parts = line.split()
            if kallsyms:
                if len(parts) >= 3 and parts[1] in ("t", "T"):
                    yield parts[2]
            elif parts:
                yield parts[0]


def getppid_function(root: str) -> str:
    """The getppid syscall function this kernel can trace/probe."""
    for path in (os.path.join(root, "available_filter_functions"), "/proc/kallsyms"):
        try:
            have = set(n for n in _names(path) if n.endswith("sys_getppid"))
        except OSError:
            continue
        for name in GETPPID_FUNCS:
            if name in have:
                return name
    pytest.fail("none of %s is traceable on this kernel" % ", ".join(GETPPID_FUNCS))
    raise AssertionError  # unreachable, for type checkers


def call_getppid(n: int) -> None:
    for _ in range(n):
        os.getppid()


class Instance:
    """A private trace instance, removed on exit."""

    def __init__(self, root: str, tag: str) -> None:
        self.path = os.path.join(root, "instances", "ftt-canary-%s-%d" % (tag, os.getpid()))

    def __enter__(self) -> "Instance":
        os.mkdir(self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        os.rmdir(self.path)

    def f(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)


def data_lines(text: str) -> List[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


@pytest.mark.needs("function_instance")
def test_function_tracer_counts_getppid(tracefs_root: str) -> None:
    func = getppid_function(tracefs_root)
    with Instance(tracefs_root, "fn") as inst:
        try:
            _write(inst.f("tracing_on"), "0")
            _write(inst.f("set_ftrace_filter"), func)
            _write(inst.f("set_ftrace_pid"), str(os.getpid()))
            _write(inst.f("current_tracer"), "function")
            _write(inst.f("tracing_on"), "1")
            call_getppid(N)
            _write(inst.f("tracing_on"), "0")
            text = _read(inst.f("trace"))
        finally:
            _write(inst.f("current_tracer"), "nop")
            _write(inst.f("set_ftrace_filter"), "")
            _write(inst.f("set_ftrace_pid"), "")
            _write(inst.f("tracing_on"), "1")
    lines = data_lines(text)
    hits = [ln for ln in lines if re.search(r":\s+%s\s+<-" % re.escape(func), ln)]
    assert len(hits) == N, "expected %d %s calls, traced %d; other lines: %r" % (
        N, func, len(hits), [ln for ln in lines if ln not in hits][:5])
    assert len(lines) == N


@pytest.mark.needs("kprobes")
def test_kprobe_profile_counts_getppid(tracefs_root: str) -> None:
    func = getppid_function(tracefs_root)
    group, event = "ftt_canary", "getppid_%d" % os.getpid()
    probe = "%s/%s" % (group, event)
    kprobe_events = os.path.join(tracefs_root, "kprobe_events")
    _write(kprobe_events, "p:%s %s" % (probe, func), append=True)
    try:
        with Instance(tracefs_root, "kp") as inst:
            enable = inst.f("events", group, event, "enable")
            filt = inst.f("events", group, event, "filter")
            try:
                _write(filt, "common_pid == %d" % os.getpid())
                _write(enable, "1")
                call_getppid(N)
                _write(enable, "0")
                profile = _read(os.path.join(tracefs_root, "kprobe_profile"))
                text = _read(inst.f("trace"))
            finally:
                _write(enable, "0")
                _write(filt, "0")
    finally:
        _write(kprobe_events, "-:%s" % probe, append=True)
    hits: Optional[int] = None
    for line in profile.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in (probe, event):
            hits = int(parts[1])
    assert hits == N, "kprobe_profile:\n%s" % profile
    assert len(data_lines(text)) == N


def _hist_trigger(pid: int) -> str:
    return "hist:keys=id.syscall:vals=hitcount if common_pid == %d" % pid


@pytest.mark.needs("hist")
def test_hist_trigger_counts_getppid(tracefs_root: str) -> None:
    trigger_text = _hist_trigger(os.getpid())
    with Instance(tracefs_root, "hist") as inst:
        ev = inst.f("events", "raw_syscalls", "sys_enter")
        trigger = os.path.join(ev, "trigger")
        # The trigger enables the event by itself (soft mode): not enabled here.
        _write(trigger, trigger_text, append=True)
        try:
            call_getppid(N)
            hist = _read(os.path.join(ev, "hist"))
        finally:
            _write(trigger, "!" + trigger_text, append=True)
        assert _read(os.path.join(ev, "enable")).strip() == "0"
    count = None
    for line in hist.splitlines():
        m = re.search(r"\{\s*id:\s*sys_getppid\s*\[\s*\d+\]\s*\}\s*hitcount:\s*(\d+)", line)
        if m:
            count = int(m.group(1))
    assert count == N, "hist:\n%s" % hist



# numpy 2's dispatch targets for x86 are levels: X86_V3 is its AVX2 code
_AVX2 = ("import numpy; from numpy._core._multiarray_umath import __cpu_features__ as f; "
         "print(f['X86_V3'])")
_GUARDED = "from ftracetools.host import cpus; print(cpus.guard_numpy()); " + _AVX2


@pytest.mark.vm
def test_numpy_kept_from_avx2_under_emulation() -> None:
    """Under QEMU's software emulation (the guests) the tools' numpy runs
    without its AVX2 code, whose gathers the emulator faults on (see
    host.cpus): the emulated CPU offers AVX2, and the library's guard, as
    every tool calls it, turns it off (numpy's X86_V3 level, where its
    AVX2 code is), with no warning from numpy. On real CPUs the guard does
    nothing."""
    import subprocess
    import sys
    import tooling
    env = dict(os.environ, PYTHONPATH=os.path.join(tooling.REPO, "lib"))
    env.pop("NPY_DISABLE_CPU_FEATURES", None)
    plain = subprocess.run([sys.executable, "-c", _AVX2], env=env, capture_output=True,
                           text=True, timeout=120)
    guarded = subprocess.run([sys.executable, "-c", _GUARDED], env=env, capture_output=True,
                             text=True, timeout=120)
    assert plain.returncode == 0 and guarded.returncode == 0, (plain.stderr, guarded.stderr)
    assert guarded.stderr == "", guarded.stderr
    set_it, avx2 = guarded.stdout.split()
    if tooling.EMULATED:
        assert plain.stdout.strip() == "True", "the emulated CPU offers no AVX2 here"
        assert (set_it, avx2) == ("True", "False"), guarded.stdout
    else:
        assert (set_it, avx2) == ("False", plain.stdout.strip()), guarded.stdout
