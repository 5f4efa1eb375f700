"""The off-CPU engine without a kernel (engines.offcpu): simulated event
streams through the streaming path (switch-outs, the stack records the
stacktrace trigger writes right after them, wakeups), the kernel path's
table read, the state letters it takes, and the frames it shows."""

import os
import struct

import pytest

from ftracetools.engines import offcpu
from ftracetools.errors import UsageError
from ftracetools.kernel import symbols

SWITCH, WAKEUP, WAKEUP_NEW, FORK, STACK = 372, 374, 375, 366, 4
COMMON = [("unsigned short common_type", 0, 2, 0), ("unsigned char common_flags", 2, 1, 0),
          ("unsigned char common_preempt_count", 3, 1, 0), ("int common_pid", 4, 4, 1)]
FLAGS = ("(REC->prev_state & ((((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | "
         "0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) - 1)) ? "
         "__print_flags(REC->prev_state & ((((0x00000000 | 0x00000001 | 0x00000002 | "
         "0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) - 1), "
         '"|", { 0x00000001, "S" }, { 0x00000002, "D" }, { 0x00000004, "T" }, '
         '{ 0x00000008, "t" }, { 0x00000010, "X" }, { 0x00000020, "Z" }, '
         '{ 0x00000040, "P" }, { 0x00000080, "I" }) : "R", REC->prev_state & '
         "(((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | "
         '0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) ? "+" : ""')
WAKEUP_FIELDS = [("char comm[16]", 8, 16, 0), ("pid_t pid", 24, 4, 1), ("int prio", 28, 4, 1),
                 ("int target_cpu", 32, 4, 1)]
# (the 6.18 host's formats: ids, fields and sched_switch's state letters)
FORMATS = {
    "sched/sched_switch": (SWITCH, [
        ("char prev_comm[16]", 8, 16, 0), ("pid_t prev_pid", 24, 4, 1),
        ("int prev_prio", 28, 4, 1), ("long prev_state", 32, 8, 1),
        ("char next_comm[16]", 40, 16, 0), ("pid_t next_pid", 56, 4, 1),
        ("int next_prio", 60, 4, 1)], '"prev_comm=%s prev_state=%s%s", REC->prev_comm, ' + FLAGS),
    "sched/sched_wakeup": (WAKEUP, WAKEUP_FIELDS, '"comm=%s pid=%d", REC->comm, REC->pid'),
    "sched/sched_wakeup_new": (WAKEUP_NEW, WAKEUP_FIELDS, '"comm=%s pid=%d", REC->comm, REC->pid'),
    "sched/sched_process_fork": (FORK, [
        ("__data_loc char[] parent_comm", 8, 4, 0), ("pid_t parent_pid", 12, 4, 1),
        ("__data_loc char[] child_comm", 16, 4, 0), ("pid_t child_pid", 20, 4, 1)],
        '"pid=%d child_pid=%d", REC->parent_pid, REC->child_pid'),
    "ftrace/kernel_stack": (STACK, [("int size", 8, 4, 1), ("unsigned long caller[8]", 16, 64, 0)],
                            '"\\t=> %ps\\n", (void *)REC->caller[0]'),
}
S, D, PRE = 1, 2, 0x100
MS = 1000000
# addresses of a made-up kernel: the tracing frames, then the stack
KSYMS = [(0x1000, "trace_event_raw_event_sched_switch"), (0x2000, "__traceiter_sched_switch"),
         (0x3000, "__schedule"), (0x4000, "schedule"), (0x5000, "do_nanosleep"),
         (0x6000, "pipe_read"), (0x7000, "io_schedule"), (0x8000, "entry_SYSCALL_64")]
NANO = [0x1010, 0x2010, 0x3010, 0x4010, 0x5010, 0x8010]
PIPE = [0x1010, 0x2010, 0x3010, 0x4010, 0x6010, 0x8010]


class FakeSession:
    tool = "offcputime"

    def __init__(self, root):
        self.root = self.dir = root
        self.triggers, self.events, self.dynamic = [], {}, []

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def set(self, name, value):
        pass

    def set_buffer_kb(self, kb):
        pass

    def enable_event(self, system, event, flt=None):
        self.events[(system, event)] = flt

    def add_trigger(self, system, event, trigger):
        self.triggers.append((system, event, trigger))

    def add_dynamic(self, file, definition, removal):
        self.dynamic.append(definition)

    def own(self, reader):
        reader.close()


class FakeTargets:
    filtered = False
    pid = tid = None

    def tids(self):
        return []


@pytest.fixture
def fake(tmp_path):
    for name, (eid, fields, fmt) in FORMATS.items():
        d = tmp_path / "events" / name
        d.mkdir(parents=True)
        lines = ["\tfield:%s;\toffset:%d;\tsize:%d;\tsigned:%d;" % f for f in COMMON] + [""] + \
            ["\tfield:%s;\toffset:%d;\tsize:%d;\tsigned:%d;" % f for f in fields]
        (d / "format").write_text("name: %s\nID: %d\nformat:\n%s\n\nprint fmt: %s\n" % (
            name.split("/")[1], eid, "\n".join(lines), fmt))
    for c in (0, 1):
        (tmp_path / "per_cpu" / ("cpu%d" % c)).mkdir(parents=True)
        (tmp_path / "per_cpu" / ("cpu%d" % c) / "trace_pipe_raw").write_bytes(b"")
    ks = tmp_path / "kallsyms"
    ks.write_text("".join("%016x T %s\n" % a for a in KSYMS))
    return FakeSession(str(tmp_path)), str(ks)


def stream(fake, **kw):
    s, ks = fake
    src = offcpu.Stream(s, FakeTargets(), None, 1024, **kw)
    src.start_ns = src.tr.start = src.marks[0] = 0
    src.named = symbols.StackNames(offcpu.trim, ks)
    src.end_ns = 100 * MS
    return src


NAMES = {0: b"swapper/0", 100: b"worker", 200: b"piper"}


def switch(ts, cpu, prev, state, nxt):
    p = struct.pack("<HBBi16sii q16sii", SWITCH, 0, 0, prev, NAMES.get(prev, b"other"), prev,
                    120, state, NAMES.get(nxt, b"other"), nxt, 120)
    return (ts, cpu, SWITCH, memoryview(p))


def stack(ts, cpu, pid, addrs):
    p = struct.pack("<HBBii4x%dQ" % len(addrs), STACK, 0, 0, pid, len(addrs), *addrs)
    return (ts, cpu, STACK, memoryview(p))


def wakeup(ts, pid, typ=WAKEUP):
    p = struct.pack("<HBBi16siii", typ, 0, 0, 0, b"worker", pid, 120, 0)
    return (ts, 0, typ, memoryview(p))


def feed(src, events):
    """As the merge hands them on: in time order across CPUs."""
    src._handle(sorted(events, key=lambda e: e[0]))


def test_each_sleep_has_its_stack_its_time_and_its_wait(fake):
    src = stream(fake)
    assert src.s.triggers == [("sched", "sched_switch", "stacktrace if (prev_state & 207)")]
    feed(src, [
        switch(1 * MS, 0, 0, 0, 100),
        switch(10 * MS, 0, 100, S, 0), stack(10 * MS + 5000, 0, 100, NANO),
        # another CPU's switch-out into sleep, its stack after ours
        switch(10 * MS + 1000, 1, 200, S, 0), stack(10 * MS + 9000, 1, 200, PIPE),
        wakeup(15 * MS, 100), switch(17 * MS, 0, 0, 0, 100),       # 5 ms asleep, 2 waiting
        switch(20 * MS, 0, 100, D, 0), stack(20 * MS + 3000, 0, 100, NANO),
        wakeup(28 * MS, 100), switch(29 * MS, 1, 0, 0, 100),       # 8 ms more, 1 waiting
        switch(30 * MS, 1, 100, PRE, 0), switch(34 * MS, 1, 0, 0, 100),  # 4 ms run-queue wait
        wakeup(40 * MS, 200), switch(41 * MS, 1, 100, S, 200), stack(41 * MS + 10, 1, 100, PIPE),
    ])
    b = src.take(True)
    nano = ("__schedule", "schedule", "do_nanosleep", "entry_SYSCALL_64")
    pipe = ("__schedule", "schedule", "pipe_read", "entry_SYSCALL_64")
    assert b.stacks == {(100, nano): [2, 13 * MS, "S|D"],
                        (200, pipe): [1, 30 * MS - 1000, "S"],
                        # still asleep when tracing ended: counted up to then
                        (100, pipe): [1, 59 * MS, "S"]}
    assert b.tasks[100] == {"off_ns": 72 * MS, "sleeps": 3, "before_ns": 0,
                            "wait_ns": 7 * MS, "waits": 3}
    assert b.tasks[200]["wait_ns"] == 1 * MS and b.tasks[200]["before_ns"] == 0
    assert (b.nostack, b.lost, b.start_ns, b.end_ns) == (0, 0, 0, 100 * MS)
    assert (b.comm[100], b.comm[200]) == ("worker", "piper")


def test_asleep_before_tracing_a_stack_not_ours_and_new_tasks(fake):
    src = stream(fake)
    feed(src, [
        wakeup(3 * MS, 300),                                # asleep since before: 3 ms
        wakeup(4 * MS, 400, WAKEUP_NEW),                    # new: not asleep before
        switch(5 * MS, 0, 0, 0, 300), switch(6 * MS, 0, 300, S, 400),
        stack(6 * MS + 10, 0, 999, NANO),                   # not its stack
        wakeup(9 * MS, 300),
    ])
    src.feed.mark = 10 * MS
    b = src.take(False)
    assert b.tasks[300]["before_ns"] == 3 * MS and b.tasks[300]["off_ns"] == 3 * MS
    assert b.stacks == {(300, offcpu.NO_STACK): [1, 3 * MS, "S"]}
    assert b.nostack == 1 and b.tasks[400]["before_ns"] == 0
    assert b.end_ns == 10 * MS
    # the next interval starts afresh where this one ended
    b2 = src.take(True)
    assert b2.stacks == {} and b2.nostack == 0 and b2.start_ns == b.end_ns


def test_a_sleep_whose_end_the_kernel_did_not_record(fake):
    """The task leaves a CPU while asleep by the books (the kernel recorded
    neither its wakeup nor its switch-in): said, and ended no earlier than
    it began."""
    src = stream(fake)
    feed(src, [
        switch(1 * MS, 1, 0, 0, 200), switch(2 * MS, 1, 200, S, 0),    # CPU 1's last: 2 ms
        switch(3 * MS, 0, 0, 0, 100),
        switch(5 * MS, 0, 100, S, 0), stack(5 * MS + 1, 0, 100, NANO),
        switch(9 * MS, 1, 100, S, 0), stack(9 * MS + 1, 1, 100, PIPE),
        wakeup(12 * MS, 100),
    ])
    b = src.take(False)
    nano = ("__schedule", "schedule", "do_nanosleep", "entry_SYSCALL_64")
    pipe = ("__schedule", "schedule", "pipe_read", "entry_SYSCALL_64")
    assert b.unended == 1 and b.stacks[(100, nano)] == [1, 0, "S"]
    assert b.stacks[(100, pipe)] == [1, 3 * MS, "S"]


def test_tasks_that_exit_are_forgotten(fake):
    """Memory stays flat however many tasks come and go: what is kept per
    task goes when it exits, also when the drain forgets them in bulk."""
    src = stream(fake)
    X = 0x10
    evs = []
    for i in range(300):
        pid = 1000 + i
        evs += [wakeup((3 * i + 1) * 1000, pid, WAKEUP_NEW), switch((3 * i + 2) * 1000, 0, 0, 0, pid),
                switch((3 * i + 3) * 1000, 0, pid, X, 0)]
    feed(src, evs)
    assert len(src.seen) > 300 and len(src.comm_raw) >= 300
    src.drain()     # more than 256 dead: forgotten without waiting for a report
    assert not [p for p in src.seen | set(src.comm_raw) if p >= 1000]


def test_min_max_and_states(fake):
    src = stream(fake, wanted={"D"}, min_ns=2 * MS, max_ns=10 * MS)
    assert src.s.triggers[0][2] == "stacktrace if (prev_state & 2)"
    feed(src, [
        wakeup(1 * MS, 100),        # not counted: its state is not known
        switch(2 * MS, 0, 0, 0, 100),
        switch(3 * MS, 0, 100, S, 0), stack(3 * MS + 1, 0, 100, NANO), wakeup(4 * MS, 100),
        switch(5 * MS, 0, 0, 0, 100),
        switch(6 * MS, 0, 100, D, 0), stack(6 * MS + 1, 0, 100, PIPE), wakeup(7 * MS, 100),
        switch(8 * MS, 0, 0, 0, 100),
        switch(9 * MS, 0, 100, D, 0), stack(9 * MS + 1, 0, 100, PIPE), wakeup(14 * MS, 100),
        switch(15 * MS, 0, 0, 0, 100),
        switch(16 * MS, 0, 100, D, 0), stack(16 * MS + 1, 0, 100, PIPE),   # still asleep
    ])
    b = src.take(True)
    pipe = ("__schedule", "schedule", "pipe_read", "entry_SYSCALL_64")
    assert b.stacks == {(100, pipe): [1, 5 * MS, "D"]}  # 1 ms: under -m; the last: no end
    assert b.tasks[100]["before_ns"] == 0


def test_states_taken():
    assert offcpu.parse_states(None) is None
    assert offcpu.parse_states("S,D") == {"S", "D"}
    for bad in ("R", "R+", "S,Z", "X"):
        with pytest.raises(UsageError):
            offcpu.parse_states(bad)


def test_frames():
    assert offcpu.trim(("trace_event_raw_event_sched_switch", "__traceiter_sched_switch",
                        "__schedule", "schedule")) == ("__schedule", "schedule")
    assert offcpu.trim(("trace_x",)) == ("trace_x",)
    assert offcpu.trim(("stacktrace_trigger", "event_triggers_post_call", "foo", "__schedule",
                        "schedule")) == ("__schedule", "schedule")
    assert offcpu.trim(("__ftrace_trace_stack", "worker_thread")) == ("worker_thread",)
    assert offcpu.hist_frames("__schedule+0x2ee/0x8b0\nschedule+0x5e/0xd0\n"
                              "nfs_wait+0x10/0x20 [nfs]") == ("__schedule", "schedule", "nfs_wait")


HIST = """# event histogram
#
# trigger info: hist:keys=pid,state,stack.stacktrace:vals=hitcount,delta:sort=pid:size=32768 [active]
#

{ pid:        808, state:          1, stack.stacktrace         __schedule+0x2ee/0x8b0
         schedule+0x5e/0xd0
         do_nanosleep+0x6b/0x170
 } hitcount:          %d  delta:    %d
{ pid:        808, state:          2, stack.stacktrace         __schedule+0x2ee/0x8b0
         schedule+0x5e/0xd0
         do_nanosleep+0x6b/0x170
 } hitcount:          1  delta:    500

Totals:
    Hits: 4
    Entries: 2
    Dropped: 0
"""


def test_kernel_path_triggers_and_table(fake, tmp_path):
    s, _ = fake
    k = offcpu.Kernel(s, FakeTargets(), {1}, 1024, None, 1000, None)
    name = "ftt_offcputime_%d_off" % os.getpid()
    assert s.dynamic == [name + " pid_t pid; long state; u64 delta; unsigned long[] stack"]
    assert s.triggers == [
        ("sched", "sched_switch", "hist:keys=prev_pid:oft=common_timestamp,"
         "ofs=common_stacktrace,ost=prev_state:size=8192:clock=mono if "
         "((prev_state & 207)) && (cpu == 1)"),
        ("sched", "sched_wakeup", "hist:keys=pid:ofd=common_timestamp-$oft,ofk=$ofs,ofx=$ost:"
         "size=8192:onmatch(sched.sched_switch).trace(%s,pid,$ofx,$ofd,$ofk):clock=mono" % name),
        ("synthetic", name, "hist:keys=pid,state,stack.stacktrace:vals=hitcount,delta:"
         "sort=pid:size=32768 if delta >= 1000")]
    for ev in ("sched/sched_switch", "sched/sched_wakeup", "synthetic/" + name):
        (tmp_path / "events" / ev).mkdir(parents=True, exist_ok=True)
        (tmp_path / "events" / ev / "hist").write_text(HIST % (3, 3000) if "synthetic" in ev
                                                       else "")
    b = k.take(False)
    frames = ("__schedule", "schedule", "do_nanosleep")
    assert b.stacks == {(808, frames): [4, 3500, "S|D"]}
    assert b.tasks[808] == {"off_ns": 3500, "sleeps": 4, "before_ns": None,
                            "wait_ns": None, "waits": None}
    (tmp_path / "events" / "synthetic" / name / "hist").write_text(HIST % (5, 9000))
    assert k.take(True).stacks == {(808, frames): [2, 6000, "S"]}
