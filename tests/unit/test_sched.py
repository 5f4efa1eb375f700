"""The scheduler's books without a kernel (engines.sched): state letters,
the per-task accounting, the histogram counts; and the time-ordered merge
of CPUs (ring.merge)."""

import pytest

from ftracetools.engines import sched as st
from ftracetools.errors import UsageError
from ftracetools.report.histogram import Histogram
from test_offcpu import WAKEUP_NEW, FakeTargets, fake, switch, wakeup  # noqa: F401 (fake: a fixture)

# sched_switch print fmt of 6.18 (4.14+ encoding: preempted = 0x100) ...
FMT_NEW = ('"prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s%s ==> next_comm=%s '
           'next_pid=%d next_prio=%d", REC->prev_comm, REC->prev_pid, REC->prev_prio, '
           '(REC->prev_state & ((((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | '
           '0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) - 1)) ? '
           '__print_flags(REC->prev_state & ((((0x00000000 | 0x00000001 | 0x00000002 | '
           '0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) - 1), '
           '"|", { 0x00000001, "S" }, { 0x00000002, "D" }, { 0x00000004, "T" }, '
           '{ 0x00000008, "t" }, { 0x00000010, "X" }, { 0x00000020, "Z" }, '
           '{ 0x00000040, "P" }, { 0x00000080, "I" }) : "R", REC->prev_state & '
           '(((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | '
           '0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) ? "+" : "", REC->next_comm, '
           'REC->next_pid, REC->next_prio')
# ... and of 4.9 (preempted = TASK_STATE_MAX 2048, X and Z the other way).
FMT_OLD = ('"prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s%s ==> next_comm=%s '
           'next_pid=%d next_prio=%d", REC->prev_comm, REC->prev_pid, REC->prev_prio, '
           'REC->prev_state & (2048-1) ? __print_flags(REC->prev_state & (2048-1), "|", '
           '{ 1, "S"} , { 2, "D" }, { 4, "T" }, { 8, "t" }, { 16, "Z" }, { 32, "X" }, '
           '{ 64, "x" }, { 128, "K" }, { 256, "W" }, { 512, "P" }, { 1024, "N" }) : "R", '
           'REC->prev_state & 2048 ? "+" : "", REC->next_comm, REC->next_pid, REC->next_prio')


def test_state_letters_new_encoding():
    s = st.States(FMT_NEW)
    assert s.preempt == 0x100
    assert [s.letters(v) for v in (0, 1, 2, 0x10, 0x20, 0x80, 0x100)] == \
        ["R", "S", "D", "X", "Z", "I", "R+"]


def test_state_letters_old_encoding():
    s = st.States(FMT_OLD)
    assert s.preempt == 2048
    assert [s.letters(v) for v in (0, 1, 16, 32, 512, 2048)] == ["R", "S", "Z", "X", "P", "R+"]


def test_state_filter_bits():
    s = st.States(FMT_NEW)
    assert s.bits({"D"}) == (2, False, False)
    assert s.bits({"S", "D", "R+"}) == (3, False, True)
    with pytest.raises(UsageError):
        s.bits({"K"})   # 4.9 only
    assert st.state_filter(s, {"D"}) == "(prev_state & 2)"
    assert st.state_filter(s, {"D", "R"}) == \
        "((prev_state & 2)) || (prev_state == 0 || prev_state == 256)"


S, D, PRE = 1, 2, 0x100
MS = 1000000


def tracker(**kw):
    return st.Tracker(st.States(FMT_NEW), **kw)


def test_tracker_run_wait_and_switch_kinds():
    tr = tracker()
    # A runs on CPU 0 from 0 to 10 ms, sleeps (S); woken at 15, runs at 17.
    tr.switch(0, 0, 0, 0, 100)
    tr.switch(10 * MS, 0, 100, S, 0)
    tr.wakeup(15 * MS, 100)
    assert tr.switch(17 * MS, 0, 0, 0, 100) == 2 * MS
    # preempted at 20 (R+), back at 26 on CPU 1: a migration.
    tr.switch(20 * MS, 0, 100, PRE, 200)
    assert tr.switch(26 * MS, 1, 0, 0, 100) == 6 * MS
    # blocked in D at 30, woken at 40, runs at 41 on CPU 1.
    tr.switch(30 * MS, 1, 100, D, 0)
    tr.wakeup(40 * MS, 100)
    tr.switch(41 * MS, 1, 0, 0, 100)
    t = tr.tasks[100]
    assert (t.vol, t.invol, t.runs, t.migr) == (2, 1, 4, 1)
    assert t.run == 10 * MS + 3 * MS + 4 * MS
    assert (t.wait, t.waits, t.max_wait) == (2 * MS + 6 * MS + 1 * MS, 3, 6 * MS)
    assert t.off == {"S": 5 * MS, "D": 10 * MS}
    tr.cut(50 * MS)     # still on CPU: counted up to the cut, once
    tr.cut(50 * MS)
    assert t.run == 26 * MS
    assert 0 not in tr.tasks  # idle is never a task


def test_tracker_ignores_wakeup_of_running_task_and_keeps_targets():
    tr = tracker(keep={100})
    tr.switch(0, 0, 0, 0, 100)
    tr.wakeup(1 * MS, 100)          # still on CPU: not a wait
    tr.switch(2 * MS, 0, 100, S, 300)
    tr.switch(3 * MS, 0, 300, S, 0)
    assert 300 not in tr.tasks
    assert tr.tasks[100].waits == 0 and tr.ready == {}


def test_tracker_counts_a_run_whose_switch_in_was_not_recorded():
    """The 6.18 development host now and then records no sched_switch for
    idle -> task although schedstat counts the run: the task's next
    switch-out on that CPU shows it. The run counts; it began at the latest
    of the wakeup (else its last switch-out) and the CPU's last switch; its
    wait is not measured."""
    got = []
    tr = tracker(on_slice=lambda p, c, a, b, s: got.append((p, a, b)))
    tr.switch(0, 1, 0, 0, 100)
    tr.switch(2 * MS, 1, 100, S, 0)         # 100 sleeps; CPU 1 idles
    tr.wakeup(5 * MS, 100)
    # (no record of idle -> 100 on CPU 1)
    tr.switch(7 * MS, 1, 100, S, 0)
    t = tr.tasks[100]
    assert (t.runs, t.unrec, t.vol, t.waits) == (2, 1, 2, 0)
    assert t.run == 2 * MS + 2 * MS and got[-1] == (100, 5 * MS, 7 * MS)
    assert t.off == {"S": 3 * MS} and tr.unrecorded == 1
    # no wakeup seen: from the CPU's last switch
    tr.switch(9 * MS, 1, 100, S, 0)
    assert (t.runs, t.unrec, t.run) == (3, 2, 6 * MS)
    # the first switch seen on a CPU proves nothing
    tr.switch(10 * MS, 0, 200, S, 0)
    assert tr.unrecorded == 2


def test_an_unrecorded_run_starts_after_the_task_last_slept():
    """Its wakeup not seen either, a run whose switch-in went unrecorded
    began after the task's own last switch-out, not at its CPU's last
    switch while it still ran on another CPU (a live run of the perfetto
    test: a 3.36 ms slice on CPU 1 over the task's own runs on CPU 0)."""
    got = []
    tr = tracker(on_slice=lambda p, c, a, b, s: got.append((p, c, a, b)))
    tr.switch(1 * MS, 1, 300, S, 0)         # CPU 1 idles from 1 ms
    tr.switch(2 * MS, 0, 0, 0, 100)
    tr.switch(5 * MS, 0, 100, S, 0)         # 100 sleeps on CPU 0 at 5 ms
    # (no record of its wakeup, nor of idle -> 100 on CPU 1)
    tr.switch(6 * MS, 1, 100, S, 0)
    t = tr.tasks[100]
    assert got[-1] == (100, 1, 5 * MS, 6 * MS)
    assert (t.runs, t.unrec, t.run, t.waits) == (2, 1, 3 * MS + 1 * MS, 0)
    assert t.off == {"S": 0}


def test_timeline_draws_the_wait_of_a_new_task(fake):
    """A new task's first wakeup (sched_wakeup_new) comes with no
    sched_waking: its arrow starts at that wakeup, or the timeline would
    not show its first wait (a live run: a child forked during the trace
    waited 8.5 ms before its first run, missing from the timeline)."""
    slices, flows = [], []
    src = st.Timeline(fake[0], FakeTargets(), None, 1024, lambda *a: slices.append(a),
                      lambda *a: flows.append(a))
    src._handle([switch(1 * MS, 0, 0, 0, 100), wakeup(2 * MS, 200, WAKEUP_NEW),
                 switch(3 * MS, 0, 100, S, 200), switch(4 * MS, 0, 200, S, 0)])
    assert flows == [(0, 2 * MS, 0, 3 * MS)]
    assert [sl[1:5] for sl in slices] == [(100, "worker", 1 * MS, 3 * MS),
                                          (200, "piper", 3 * MS, 4 * MS)]


def test_tracker_forgets_tasks_that_exited():
    tr = tracker()
    for pid in range(100, 110):
        tr.comm[pid] = "sh"
        tr.switch(pid * MS, 0, 0, 0, pid)
        tr.switch(pid * MS + 1, 0, pid, 0x20, 0)    # Z: its last switch-out
    assert tr.tasks[105].vol == 1 and tr.tasks[105].run == 1
    assert sorted(tr.forget_dead()) == list(range(100, 110))
    assert not (tr.off or tr.ready or tr.since or tr.cpu or tr.comm or tr.dead)


def test_tracker_counts_run_time_from_the_trace_start():
    """A task seen leaving a CPU before any switch into it was there when
    tracing began: its time from the start counts (a CPU hog may not be
    switched for most of a short trace), not as a run, nor as a slice."""
    got = []
    tr = tracker(start=1 * MS, on_slice=lambda p, c, a, b, s: got.append((p, a, b)))
    tr.switch(5 * MS, 0, 100, PRE, 200)
    tr.switch(6 * MS, 0, 200, S, 100)
    tr.switch(9 * MS, 0, 100, PRE, 0)
    t = tr.tasks[100]
    assert (t.run, t.runs, t.unrec) == (4 * MS + 3 * MS, 1, 0)
    assert got == [(200, 5 * MS, 6 * MS), (100, 6 * MS, 9 * MS)]
    tr = tracker(start=1 * MS, on_slice=lambda p, c, a, b, s: got.append((p, a, b)))
    tr.partial_slices = True            # the timeline draws it
    tr.switch(5 * MS, 1, 300, S, 0)
    assert got[-1] == (300, 1 * MS, 5 * MS) and tr.tasks[300].run == 4 * MS


def test_tracker_slices_hook():
    got = []
    tr = tracker(on_slice=lambda p, c, a, b, s: got.append((p, c, a, b, s)))
    tr.switch(0, 1, 0, 0, 5)
    tr.cut(1 * MS)                  # a cut does not split the slice
    tr.switch(3 * MS, 1, 5, D, 0)
    assert got == [(5, 1, 0, 3 * MS, D)]
    assert tr.tasks[5].run == 3 * MS


def test_hists_units_and_stats():
    h = st.Hists("all", 1000)
    for ns in (500, 1500, 1999, 3000, 3000, 100000):
        h.add(None, ns)
    assert h.vals[None] == {0: 1, 1: 2, 3: 2, 100: 1}
    s = Histogram.of_counts(h.vals[None], "us").stats
    assert (s["count"], s["total"], s["max"], s["p50"], s["p99"]) == (6, 108, 100, 1, 100)
    assert s["avg"] == 18.0


def _page(ts0, deltas):
    """A sub-buffer page: header (ts, commit) and 8-byte events."""
    import struct
    data = b""
    for d in deltas:
        data += struct.pack("<I", 2 | (d << 5)) + struct.pack("<HHI", 7, 0, 0)
    return struct.pack("<QQ", ts0, len(data)) + data + b"\0" * (4096 - 16 - len(data))


class _FakeReader:
    def __init__(self, pages):
        from ftracetools.ring.pages import PageLayout
        self.cpus = sorted({c for c, _ in pages})
        self.layout = PageLayout("/nonexistent")
        self.todo = list(pages)
        self.lost = 0

    def drain_pages(self, max_pages=1 << 30):
        out, rest, n = [], [], {}
        for c, page in self.todo:
            n[c] = n.get(c, 0) + 1
            (out if n[c] <= max_pages else rest).append((c, page))
        self.todo = rest
        return out

    def note_lost(self, n):
        self.lost += n


def test_feed_merges_cpus_in_time_order():
    # CPU 0: events at 100 and 150; CPU 1: at 120 and 200.
    from ftracetools.ring.merge import Feed
    f = Feed(_FakeReader([(0, _page(100, [0, 50])), (1, _page(120, [0, 80]))]), 1024)
    assert f.pull() == 2
    got = f.take(10 ** 9, max_pages=1)      # CPU 0's page; CPU 1's is older than 150
    assert [(e[0], e[1]) for e in got] == [(100, 0)]
    assert f.mark == 119
    got = f.take(160, max_pages=1)
    assert [(e[0], e[1]) for e in got] == [(120, 1), (150, 0)]
    assert [e[0] for e in f.take()] == [200] and f.backlog() == 0


def test_feed_holds_a_bounded_backlog():
    """Behind the kernel, the tool stops reading (the kernel's buffer holds
    the rest, or counts what it drops) rather than growing without end."""
    from ftracetools.ring.merge import Feed
    r = _FakeReader([(c, _page(100 * i + c, [0])) for i in range(5) for c in (0, 1)])
    f = Feed(r, 4)
    assert f.pull() == 4 and f.backlog() == 4
    assert f.pull() == 0 and len(r.todo) == 6
    assert len(f.take(max_pages=2)) == 2 and f.pull() == 2
