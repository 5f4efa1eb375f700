"""The block I/O engine without a kernel (engines.blockio, blockarrays):
rwbs, pairing on both paths, and the page_offsets fast path on hand-made
sub-buffer pages."""

import struct

import pytest

from ftracetools.engines import blockio as iol
from ftracetools.ring import pages

# issue/complete payload as on 6.x: type@0, dev@8, sector@16, nr@24, rwbs@34
CODE = "<H6xI4xQI6x%ds"
IDS = {"start": 1, "complete": 2, "merge": 3, "issue": 4, "requeue": 5}
DEV = (7 << 20) | 3


def payload(kind: str, sector: int, rwbs: bytes = b"R", nr: int = 8, dev: int = DEV) -> bytes:
    body = struct.pack(CODE % 10, IDS[kind], dev, sector, nr, rwbs.ljust(10, b"\0"))
    return body + b"\0" * (64 - len(body))


class FakeReader:
    layout = None
    flagged_lost = 0

    def __init__(self):
        self.pages = []

    def drain_pages(self):
        p, self.pages = self.pages, []
        return p

    def drain_joined(self):     # (as RawReader's: whole pages, joined)
        p = [pg for _c, pg in self.drain_pages()]
        return b"".join(p), [(0, len(p))] if p else []

    def note_lost(self, n):
        pass

    def lost(self):
        return 0


def stream(glob=None, rw_len=2):
    st = iol.Stream.__new__(iol.Stream)
    st.kinds = {IDS["start"]: iol.START, IDS["complete"]: iol.COMPLETE,
                IDS["merge"]: iol.MERGE, IDS["issue"]: iol.ISSUE,
                IDS["requeue"]: iol.REQUEUE}
    st.glob = glob
    unpack = struct.Struct(CODE % (16 if glob else rw_len)).unpack_from
    st.units = {i: unpack for i in IDS.values()}
    st.pending, st.orphans, st.held, st.ops, st.more = {}, {}, [], {}, {}
    st.whos, st.tasks, st.only, st.newtasks, st.tgids = {}, {}, None, None, {}
    st.queued, st.min_ns, st.requeued = False, 0, None
    st.reader = FakeReader()
    st.lost_seen = 0
    st.cur = iol.Interval()
    st.offsets = lambda page, layout, out: out.extend(page)
    return st


def vec_stream(glob=None, rw_len=2):
    """The numpy path (VecStream), fed decoded events instead of pages."""
    np = pytest.importorskip("numpy")
    from ftracetools.engines.blockarrays import VecStream
    st = VecStream.__new__(VecStream)
    st.np = np
    st.glob = glob
    st.kinds = {IDS["start"]: iol.START, IDS["complete"]: iol.COMPLETE,
                IDS["requeue"]: iol.REQUEUE}
    st.readers = [FakeReader()]
    st.lost_seen = 0
    st.cur = iol.Interval()
    st.carry = st._events([], [], [], [], [], [])
    st.fed = []
    unpack = struct.Struct(CODE % 16).unpack_from

    def read():
        cols = [[], [], [], [], [], []]
        for ts, body in st.fed:
            typ, dev, sector, nr, rw = unpack(body)
            for c, v in zip(cols, (st.kinds[typ], ts, dev, sector, nr, iol.op_of(rw, glob))):
                c.append(v)
        st.fed = []
        return [st._events(*cols)]
    st._read = read
    return st


@pytest.fixture(params=["python", "numpy"])
def make(request):
    """Each pairing test runs on both streaming paths."""
    return stream if request.param == "python" else vec_stream


def feed(st, *events, upto=1 << 62):
    """events: (ts, payload); handed over as one 'page' already split, then
    drained up to ``upto`` (later events are held for the next round)."""
    if hasattr(st, "fed"):
        st.fed.extend(events)
        st.drain(upto)
        return
    buf = b"".join(p for _, p in events)
    st.reader.pages.append((0, [(ts, i * 64, buf) for i, (ts, _) in enumerate(events)]))
    st.drain(upto)


def lats(iv):
    return [int(v) for v in iv.sorted_values(list(iv.lats))]


# -- rwbs -----------------------------------------------------------------------

@pytest.mark.parametrize("rwbs,op", [(b"R", ord("R")), (b"WS", ord("W")),
                                     (b"FWS", ord("W")), (b"F", ord("F")),
                                     (b"WFS", ord("W")), (b"D", ord("D")),
                                     (b"R\0WS\0", ord("R"))])
def test_direction(rwbs, op):
    assert iol.op_of(rwbs) == op


def test_glob_checked_again_past_the_nul():
    # the kernel's *W* filter can pass "R\0W..." (it reads past the NUL)
    assert iol.op_of(b"R\0W\0", "*W*") == -1
    assert iol.op_of(b"WS\0", "*W*") == ord("W")


# -- pairing -------------------------------------------------------------------

def test_pairs_on_sector_and_direction(make):
    st = make()
    feed(st, (100, payload("start", 8, b"WS")), (150, payload("start", 8, b"R")),
         (300, payload("complete", 8, b"R")), (400, payload("complete", 8, b"WS")))
    assert lats(st.cur) == [150, 300]


def test_request_without_a_sector(make):
    """The kernel records sector (u64)-1 for requests that have none (a
    flush): the numpy path died on it in the 15-minute soak ("Python int
    too large to convert to C long")."""
    st = make()
    feed(st, (100, payload("start", 2 ** 64 - 1, b"FF", nr=0)),
         (300, payload("complete", 2 ** 64 - 1, b"FF", nr=0)),
         (400, payload("start", 8, b"R")), (450, payload("complete", 8, b"R")))
    assert lats(st.cur) == [50, 200]


def test_io_straddling_an_interval_counts_where_it_completes(make):
    st = make()
    feed(st, (100, payload("start", 16)))
    first = st.rotate()
    feed(st, (700, payload("complete", 16)))
    second = st.rotate(final=True)
    assert lats(first) == [] and lats(second) == [600]
    assert not second.unmatched


def test_completion_seen_before_its_issue_waits(make):
    st = make()
    feed(st, (500, payload("complete", 24)))
    assert lats(st.cur) == [] and st.orphans
    feed(st, (200, payload("start", 24)))
    iv = st.rotate(final=True)
    assert lats(iv) == [300] and not iv.unmatched


def test_unmatched_completions_are_counted_apart(make):
    st = make()
    feed(st, (500, payload("complete", 32)), (600, payload("complete", 40, b"WS")))
    iv = st.rotate(final=True)
    assert lats(iv) == [] and iv.unmatched == {DEV: 2}


def test_partial_completion_counts_once(make):
    st = make()
    feed(st, (100, payload("start", 64, nr=16)), (200, payload("complete", 64, nr=8)),
         (300, payload("complete", 72, nr=8)))
    assert lats(st.cur) == [200] and not st.pending


def test_front_merge_moves_the_start_sector():
    st = stream()
    feed(st, (100, payload("start", 80)), (120, payload("merge", 72, nr=8)),
         (400, payload("complete", 72, nr=16)))
    assert lats(st.cur) == [300]


def test_issue_after_insert_keeps_the_insert_time():
    st = stream()
    feed(st, (100, payload("start", 88)), (250, payload("issue", 88)),
         (400, payload("complete", 88)))
    assert lats(st.cur) == [300]
    feed(st, (500, payload("issue", 96)), (900, payload("complete", 96)))
    assert lats(st.cur) == [300, 400]


def test_events_are_paired_in_time_order_across_cpus():
    # the same sector reused: CPU0 holds issue A and completion B, CPU1
    # completion A and issue B; per-CPU order would pair A's issue with B
    st = stream()
    st.reader.pages.append((0, [(100, 0, payload("start", 8)), (400, 0, payload("complete", 8))]))
    st.reader.pages.append((1, [(200, 0, payload("complete", 8)), (300, 0, payload("start", 8))]))
    st.drain(1 << 62)
    assert lats(st.cur) == [100, 100] and not st.orphans


def test_events_after_the_limit_wait_for_the_next_round(make):
    """Two I/Os in flight on one sector, the first one's issue seen last
    (it was still in another CPU's buffer): a round takes in only what is
    older than its limit, so the first completion is not paired with the
    second issue, which would make 100 and 300 of two 200s."""
    st = make()
    feed(st, (200, payload("start", 8)), (300, payload("complete", 8)), upto=50)
    assert lats(st.cur) == []
    feed(st, (100, payload("start", 8)), (400, payload("complete", 8)), upto=350)
    assert lats(st.cur) == [200]
    iv = st.rotate(final=True)
    assert lats(iv) == [200, 200] and not iv.unmatched and not st.pending


def test_numpy_path_pairs_in_time_order_whatever_the_arrival_order():
    st = vec_stream()
    feed(st, (400, payload("complete", 8)), (300, payload("start", 8)),
         (200, payload("complete", 8)), (100, payload("start", 8)))
    assert lats(st.cur) == [100, 100] and not st.orphans and not st.pending


@pytest.mark.parametrize("seed,hold,depth", [(7, 0, 1), (8, 0, 3), (9, 800, 1), (10, 800, 3)])
def test_numpy_path_agrees_with_the_python_path_on_a_random_workload(seed, hold, depth):
    """Thousands of I/Os over a few sectors (each reused once free again,
    or, with ``depth`` > 1, while up to that many are in flight on it),
    with requeues, partial completions and completions of I/Os issued
    before the trace began, fed in random batches with interval ends in
    between, and with ``hold``, events arriving out of order by up to
    half of it and each batch drained only up to that long before its
    latest event (the rest held for the next): the two paths
    give the same latencies, as many as there were I/Os, and the same
    unmatched count."""
    import random
    import time
    rng = random.Random(seed)
    # (times a minute ahead: an interval's end, which drains up to the
    # clock's now less the hold, then leaves the batches' holds alone)
    evs, t, ios, lone, busy = [], time.monotonic_ns() + 60 * 10**9, 0, 0, {}
    for i in range(3000):
        t += 16 * rng.randint(1, 50)  # each kind of event at its own offset
        free = [s * 8 for s in range(8, 200, 16)
                if sum(1 for d in busy.get(s * 8, []) if d >= t) < depth]
        if not free:
            continue
        sector, rw = rng.choice(free), rng.choice([b"R", b"WS", b"FWS"])
        if i < 200 and rng.random() < 0.2:  # in flight before the trace
            if any(d >= t for d in busy.get(sector, [])):
                continue    # (it would close an I/O in flight, first in)
            evs.append((t + 1, payload("complete", sector, rw)))
            lone += 1
            continue
        evs.append((t, payload("start", sector, rw, nr=16)))
        if rng.random() < 0.05:
            evs.append((t + 5, payload("requeue", sector, rw, nr=16)))
            evs.append((t + 32, payload("start", sector, rw, nr=16)))
        done = t + 16 * rng.randint(10, 400) + 3
        if rng.random() < 0.05:  # completed in two parts
            evs.append((done, payload("complete", sector, rw, nr=8)))
            evs.append((done + 4, payload("complete", sector + 8, rw, nr=8)))
        else:
            evs.append((done, payload("complete", sector, rw, nr=16)))
        busy.setdefault(sector, []).append(done + 4)
        ios += 1
    # arrival order: with ``hold``, an event may arrive up to half of it
    # after later ones (as from another CPU's buffer)
    late = random.Random(seed + 100)
    evs.sort(key=lambda e: e[0] + (late.randrange(hold // 2) if hold else 0))
    results = []
    for st in (stream(), vec_stream()):
        cut = random.Random(3)
        i, ivs = 0, []
        while i < len(evs):
            n = cut.randint(1, 300)
            batch = evs[i:i + n]
            feed(st, *batch, upto=max(e[0] for e in batch) - hold if hold else 1 << 62)
            i += n
            if cut.random() < 0.2:
                ivs.append(st.rotate())
        ivs.append(st.rotate(final=True))
        results.append((sorted(v for iv in ivs for v in lats(iv)),
                        sum(sum(iv.unmatched.values()) for iv in ivs)))
    assert len(results[0][0]) == ios and results[0][1] == lone
    assert results[0] == results[1]


def test_same_sector_in_flight_twice_counts_both(make):
    st = make()
    feed(st, (100, payload("start", 8)), (150, payload("start", 8)),
         (300, payload("complete", 8)), (500, payload("complete", 8)))
    iv = st.rotate(final=True)
    assert len(lats(iv)) == 2 and sum(lats(iv)) == 550 and not iv.unmatched


def test_requeued_request_is_timed_from_its_next_issue(make):
    st = make()
    feed(st, (100, payload("start", 8)), (200, payload("requeue", 8)),
         (700, payload("start", 8)), (900, payload("complete", 8)))
    iv = st.rotate(final=True)
    assert lats(iv) == [200] and not iv.unmatched and not st.pending


def test_stale_rwbs_rejected_with_a_glob(make):
    st = make(glob="*W*")
    feed(st, (100, payload("start", 8, b"WS")), (200, payload("complete", 8, b"WS")),
         (300, payload("complete", 16, b"R\0W")))
    iv = st.rotate(final=True)
    assert lats(iv) == [100] and not iv.unmatched


# -- pages.page_offsets ---------------------------------------------------------

def _page(events):
    """A sub-buffer page: header (ts 1000, commit), then events with deltas."""
    data = b""
    for delta, body in events:
        n = len(body) // 4
        data += struct.pack("<I", (delta << 5) | n) + body
    data += struct.pack("<II", 29 | (5 << 5), 12) + b"\0" * 8  # a discarded event
    data += struct.pack("<II", 30 | (3 << 5), 2)               # time extend
    data += struct.pack("<I", (1 << 5) | 16) + payload("complete", 9)
    hdr = struct.pack("<Qq", 1000, len(data))
    return hdr + data + b"\0" * (4096 - 16 - len(data))


def test_page_offsets_agrees_with_parse_page():
    page = _page([(10, payload("start", 1)), (20, payload("complete", 1))])
    layout = pages.PageLayout("/nonexistent")
    a, b = [], []
    pages.parse_page(page, 0, layout, a)
    pages.page_offsets(page, layout, b)
    assert [e[0] for e in a] == [e[0] for e in b] == [1010, 1030, 1030 + (2 << 27) + 3 + 1]
    assert [bytes(e[3][:64]) for e in a] == [page[off:off + 64] for _, off, _ in b]


@pytest.mark.parametrize("glob", [None, "*W*", "*S*"])
def test_numpy_direction_letters_match_op(glob):
    np = pytest.importorskip("numpy")
    st = vec_stream(glob=glob)
    words = [b"R", b"RS", b"W", b"WS", b"FWS", b"FR", b"FN", b"F", b"D", b"N", b"RA", b"WFS"]
    rwbs = np.array([w.ljust(10, b"\0") for w in words], "S10")
    recs = {"rwbs": rwbs, "rw0": np.frombuffer(rwbs.tobytes(), "u1")[0::10],
            "rw1": np.frombuffer(rwbs.tobytes(), "u1")[1::10]}
    assert st._ops(recs).tolist() == [iol.op_of(w, glob) for w in words]


# -- whose I/O (Stream(who=True)): records, attribution, filters ------------------

WHO = struct.Struct("<4xi36x16s").unpack_from   # common_pid@4, comm@44 (6.x)


def payload_by(kind, sector, pid, comm=b"fio", rwbs=b"R", nr=8, dev=DEV):
    body = bytearray(payload(kind, sector, rwbs, nr, dev))
    struct.pack_into("<i", body, 4, pid)
    struct.pack_into("16s", body, 44, comm)
    return bytes(body)


def who_stream(queued=False, min_ns=0, only=None):
    st = stream()
    st.whos = {IDS[k]: WHO for k in ("start", "issue")}
    st.queued, st.min_ns, st.only = queued, min_ns, only
    st.tasks, st.requeued = {}, {}
    return st


def ios(iv):
    """(completion, sector, bytes, op, start, issue, tid, comm) of each I/O."""
    return [(r[0], r[2], r[3], chr(r[4]), r[5], r[6], r[7], r[9]) for r in sorted(iv.ios)]


def test_the_submitter_is_the_task_of_the_start_event():
    """The start event's task issued the I/O; the issue (from a kernel
    worker here) gives the service time, not the task."""
    st = who_stream()
    feed(st, (100, payload_by("start", 8, 4242, b"dd")),
         (130, payload_by("issue", 8, 77, b"kworker/0:1H", nr=16)),
         (400, payload("complete", 8, nr=16)))
    iv = st.rotate(final=True)
    assert ios(iv) == [(400, 8, 8192, "R", 100, 130, 4242, "dd")]
    assert iv.count == 1 and not iv.lats and not iv.unmatched


def test_a_direct_issue_is_the_issuers_own():
    """Before 6.5 a request issued straight away has no insert event: the
    issue, in the submitter's context, starts it."""
    st = who_stream()
    feed(st, (100, payload_by("issue", 16, 31, b"fio", rwbs=b"WS")),
         (250, payload("complete", 16, b"WS")))
    assert ios(st.rotate(final=True)) == [(250, 16, 4096, "W", 100, 100, 31, "fio")]


def test_only_the_targets_ios_are_kept_and_counted():
    st = who_stream(only={31})
    feed(st, (100, payload_by("start", 8, 31)), (110, payload_by("start", 16, 32)),
         (300, payload("complete", 16)), (310, payload("complete", 8)),
         (320, payload("complete", 24)))
    iv = st.rotate(final=True)
    assert [r[6] for r in ios(iv)] == [31] and iv.count == 1
    assert iv.unmatched == {DEV: 1}     # whoever's it was: still reported


def test_min_latency_keeps_the_slow_and_counts_all():
    """-m: from the issue, or from the start with -Q."""
    for queued, want in ((False, [500]), (True, [300, 500])):
        st = who_stream(queued=queued, min_ns=250)
        feed(st, (100, payload_by("start", 8, 5)), (300, payload_by("issue", 8, 5)),
             (400, payload("complete", 8)),                        # 100 from issue
             (500, payload_by("start", 16, 5)), (510, payload_by("issue", 16, 5)),
             (1000, payload("complete", 16)))                      # 490 from issue
        iv = st.rotate(final=True)
        assert [r[0] - r[4] for r in ios(iv)] == want and iv.count == 2


def test_partial_completion_is_one_record_of_the_whole_request():
    st = who_stream()
    feed(st, (100, payload_by("start", 64, 9, nr=16)), (200, payload("complete", 64, nr=8)),
         (300, payload("complete", 72, nr=8)))
    assert ios(st.rotate(final=True)) == [(300, 64, 8192, "R", 100, None, 9, "fio")]


def test_front_merge_moves_the_record_to_the_new_first_sector():
    st = who_stream()
    feed(st, (100, payload_by("start", 80, 9)), (120, payload("merge", 72, nr=8)),
         (400, payload("complete", 72, nr=16)))
    assert ios(st.rotate(final=True)) == [(400, 72, 8192, "R", 100, None, 9, "fio")]


def test_same_sector_in_flight_twice_each_gets_its_issue():
    st = who_stream()
    feed(st, (100, payload_by("start", 8, 1)), (110, payload_by("start", 8, 2)),
         (120, payload_by("issue", 8, 0)), (130, payload_by("issue", 8, 0)),
         (300, payload("complete", 8)), (500, payload("complete", 8)))
    assert [(r[4], r[5], r[6]) for r in ios(st.rotate(final=True))] == [(100, 120, 1),
                                                                        (110, 130, 2)]


def test_completion_seen_before_its_start_keeps_the_submitter():
    st = who_stream()
    feed(st, (500, payload("complete", 24)))
    feed(st, (200, payload_by("start", 24, 7, b"tar")))
    iv = st.rotate(final=True)
    assert ios(iv) == [(500, 24, 4096, "R", 200, None, 7, "tar")] and not iv.unmatched


def test_kernel_threads_are_labelled():
    st = who_stream()
    gone = 4194303      # (pid_max: no such task here)
    feed(st, (100, payload_by("start", 8, gone, b"kworker/u8:2", rwbs=b"W")),
         (200, payload("complete", 8, b"W")), (300, payload_by("start", 16, gone, b"dd")),
         (400, payload("complete", 16)))
    recs = sorted(st.rotate(final=True).ios)
    assert [(r[9], r[10]) for r in recs] == [("kworker/u8:2", True), ("dd", False)]
    assert recs[0][8] == gone   # a task gone: its own id as process


def test_a_requeued_request_keeps_its_submitter_and_start():
    """Requeued, then inserted again by a kernel worker (before 6.5) and
    issued again: one I/O, its first start, its submitter, its last issue;
    nothing left open to close a later I/O of that sector."""
    for queued in (False, True):
        st = who_stream(queued=queued)
        feed(st, (100, payload_by("start", 8, 31)), (110, payload_by("issue", 8, 31)),
             (120, payload("requeue", 8)), (200, payload_by("start", 8, 99, b"kworker/0:1H")),
             (210, payload_by("issue", 8, 99, b"kworker/0:1H")), (300, payload("complete", 8)),
             (400, payload_by("start", 8, 32)), (500, payload("complete", 8)))
        iv = st.rotate(final=True)
        assert [(r[4], r[5], r[6]) for r in ios(iv)] == [(100, 210, 31), (400, None, 32)]
        assert not st.pending and not st.more and not st.requeued


def test_plain_queued_path_keeps_the_start_of_a_requeued_request():
    st = stream()
    st.requeued = {}
    feed(st, (100, payload("start", 8)), (120, payload("requeue", 8)),
         (200, payload("start", 8)), (300, payload("complete", 8)))
    assert lats(st.rotate(final=True)) == [200] and not st.pending


def test_a_threads_process_is_its_parents_even_once_gone():
    """From the tasks made while tracing: a thread (CLONE_THREAD) is its
    creator's process's, a child process its own; -p/-c's children are
    theirs. (Ids beyond pid_max: /proc knows none of them.)"""
    st = who_stream(only={5000001})
    st.tgids = {5000001: 5000001}
    st.born([(5000001, 5000002, iol.CLONE_THREAD | 0x100), (5000002, 5000003, 0x11),
             (5000003, 5000004, iol.CLONE_THREAD), (7, 5000005, 0)])
    assert [st._tgid(t) for t in (5000002, 5000003, 5000004, 5000005)] == \
        [5000001, 5000003, 5000003, 5000005]
    assert st.only == {5000001, 5000002, 5000003, 5000004}
    feed(st, (100, payload_by("start", 8, 5000004)), (200, payload("complete", 8)))
    assert [r[8] for r in st.rotate(final=True).ios] == [5000003]


# -- which devices take which events ---------------------------------------------

def test_routes_send_bio_based_devices_to_the_bio_events(monkeypatch):
    monkeypatch.setattr(iol, "bio_based", lambda name: name.startswith("dm-"))
    assert iol.routes({1: "vda", 2: "dm-0"}) == ({1: "vda"}, {2: "dm-0"})
    assert iol.routes({2: "dm-0"}) == (None, {2: "dm-0"})
    assert iol.routes({}) == ({}, {})   # without -d: the disks only
    assert "block_bio_queue to block_bio_complete" in iol.describe({2: "dm-0"})
    assert iol.describe({}) == ""


def test_which_path_serves_which_run(monkeypatch):
    """The kernel pairs (hist triggers) only request devices, without
    attribution; whose I/O it was, only Stream knows; bio-based devices
    stream."""
    pytest.importorskip("numpy")
    from ftracetools.engines import blockarrays
    made = []
    for cls in ("InKernel", "Stream"):
        monkeypatch.setattr(iol, cls, lambda *a, _c=cls, **k: made.append((_c, k.get("who"))))
    monkeypatch.setattr(blockarrays, "VecStream", lambda *a, **k: made.append(("VecStream", None)))
    monkeypatch.setattr(iol, "bio_based", lambda name: name.startswith("dm-"))
    monkeypatch.setattr(iol.switches, "get", lambda name: None)

    class Feat:
        def has(self, what):
            return True

    class Targets:
        filtered = True
    s = type("S", (), {"features": Feat()})()
    kw = dict(queued=False, iotype=None, kb=64, stream=False)
    iol.open_source(s, devs={1: "vda"}, **kw)
    iol.open_source(s, devs={2: "dm-0"}, **kw)
    iol.open_source(s, devs={1: "vda"}, who=True, **kw)
    iol.open_source(s, devs={}, targets=Targets(), **kw)
    iol.open_source(s, devs={1: "vda"}, **dict(kw, stream=True))
    assert made == [("InKernel", None), ("VecStream", None), ("Stream", True),
                    ("Stream", True), ("VecStream", None)]
