"""The binary buffer read as the engines read it, against a known number of
events: N getppid() calls of this process, each one sys_enter_getppid
record in a private instance (the kernel's count, not ours)."""

import os

import pytest

from ftracetools.kernel.formats import EventFormat
from ftracetools.kernel.session import Session
from ftracetools.ring.arrays import WalkedPages
from ftracetools.ring.reader import RawReader


def _count(n: int, splice: bool, monkeypatch) -> tuple:
    """(records of ours read, pages read, whether the pages came by splice)."""
    if not splice:
        monkeypatch.delattr(os, "splice")
    with Session("ringtest") as s:
        if not os.path.isdir(s.path("events", "syscalls", "sys_enter_getppid")):
            pytest.fail("no syscalls:sys_enter_getppid event (CONFIG_FTRACE_SYSCALLS)")
        s.set("buffer_size_kb", "4096")
        s.enable_event("syscalls", "sys_enter_getppid", "common_pid == %d" % os.getpid())
        typ = EventFormat.load(s.dir, "syscalls", "sys_enter_getppid").id
        r = RawReader(s.dir, s.root)
        s.own(r)
        w = WalkedPages(r.layout)
        for _ in range(n):
            os.getppid()
        got = pages = 0
        for _ in range(3):      # a second drain finds what the first left
            buf, runs = r.drain_joined()
            k = sum(c for _cpu, c in runs)
            assert len(buf) == k * r.layout.page_size
            rec, lost = w.decode_joined(buf, k)
            assert not lost
            got += int((rec["type"] == typ).sum())
            pages += k
        spliced = r._pipe is not None
    return got, pages, spliced


@pytest.mark.vm
@pytest.mark.parametrize("n", [7, 30000])
@pytest.mark.parametrize("splice", [True, False], ids=["splice", "read"])
def test_drain_joined_reads_every_record(n, splice, monkeypatch):
    """Every call is read once: by splice for the full pages and a read
    for the page being written, or page by page where splice is not
    there; 7 calls fit the page being written, 30,000 fill hundreds."""
    got, pages, spliced = _count(n, splice, monkeypatch)
    assert got == n, (got, n, pages)
    assert spliced == splice
    if n > 1000:
        assert pages > 100
