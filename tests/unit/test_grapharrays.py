"""funcgraph's text made as arrays (engines.grapharrays) against the
Graph fed record by record: the same bytes, on made-up streams with what
the kernel's records hold (several tasks and CPUs, tasks moving between
CPUs mid-call, interrupts at a wanted call's own depth, lost exits, calls
open across rounds), and from pages as the kernel lays them out."""

import random
import struct

import pytest

from ftracetools.engines import callgraph as fg

np = pytest.importorskip("numpy")
from ftracetools.engines import grapharrays as ga  # noqa: E402
from ftracetools.ring.pages import PageLayout  # noqa: E402

ENT, EXT = 11, 10
NAMES = {0x100: "f", 0x200: "g", 0x300: "h", 0x400: "k", 0x500: "do_syscall_64",
         0x600: "irq_handler", 0x700: "other"}
CHILDREN = (0x200, 0x300, 0x400)


class _Fmt:
    """An EventFormat's ids and field offsets, as the kernels here have them."""

    def __init__(self, id_, exit_):
        self.id = id_
        off = {"common_pid": 4, "func": 8, "depth": 16, "calltime": 24, "rettime": 32}
        self._off = off if exit_ else {k: off[k] for k in ("common_pid", "func", "depth")}

    def field(self, name):
        return type("F", (), {"offset": self._off[name]})()


def stream(seed, top_level):
    """Records (ts, cpu, type, fields) in time order: tasks calling f
    (at depth 0 on the top level, under do_syscall_64 otherwise), f
    calling a random tree; tasks switch and move between CPUs at any
    record; now and then an interrupt at f's own depth just before f's
    exit, or an exit lost."""
    rng = random.Random(seed)
    ts = 1000
    out = []
    tasks = {pid: {"cpu": rng.randrange(2), "stack": []} for pid in (11, 12, 13)}

    def put(pid, kind, ip, depth, call=None):
        nonlocal ts
        ts += rng.choice((1, 7, 30, 250, 4000, 20000))
        t = tasks[pid]
        if rng.random() < 0.03:
            t["cpu"] = 1 - t["cpu"]     # moved (between any two records)
        if kind == "e":
            out.append((ts, t["cpu"], ENT, (pid, ip, depth)))
        elif rng.random() > 0.01:       # (the lost exits)
            out.append((ts, t["cpu"], EXT, (pid, ip, depth, call, ts - rng.randrange(5))))
        return ts

    def tree(pid, ip, depth, width):
        start = put(pid, "e", ip, depth)
        for _ in range(rng.randrange(width + 1)):
            if depth < 5 and rng.random() < 0.6:
                tree(pid, rng.choice(CHILDREN), depth + 1, max(0, width - 1))
        if ip == 0x100 and rng.random() < 0.02:     # taken as f returns
            s = put(pid, "e", 0x600, depth)
            if rng.random() < 0.5:
                put(pid, "x", 0x300, depth + 1, put(pid, "e", 0x300, depth + 1))
            put(pid, "x", 0x600, depth, s)
        put(pid, "x", ip, depth, start)

    for _ in range(300):
        pid = rng.choice(sorted(tasks))
        if top_level:
            tree(pid, 0x100 if rng.random() < 0.9 else 0x700, 0, 3)
        else:
            s = put(pid, "e", 0x500, 0)
            if rng.random() < 0.3:
                tree(pid, 0x700, 1, 2)
            tree(pid, 0x100 if rng.random() < 0.8 else 0x700, 1, 3)
            put(pid, "x", 0x500, 0, s)
    # the stream as the Feed hands it on: in time order (per CPU the same)
    return out


def _graph(lines, **kw):
    return fg.Graph(lines.append, lambda pid: "comm%d" % pid, text=True,
                    wanted={"f"}, ncpu_width=1, **kw)


def _source(g):
    src = object.__new__(fg.GraphSource)
    src.g, src.ent_id, src.ext_id, src.timed, src.starts = g, ENT, EXT, True, {}
    src.amap = type("M", (), {"name": staticmethod(NAMES.get)})()
    src.labels = {}
    return src


def _reference(recs, **opts) -> str:
    """The Graph's text of the records fed one by one (the reference)."""
    lines = []
    ref = _graph(lines, **opts)
    _source(ref)._handle(recs)
    ref.finish()
    return "".join(lines)


def _arrays(g):
    return ga.GraphArrays(g, PageLayout("/nonexistent"), _Fmt(ENT, False), _Fmt(EXT, True),
                          name=NAMES.get, note_lost=lambda n: None)


def _cuts(rng, n):
    cuts = sorted(rng.sample(range(1, n), min(n - 1, rng.randrange(20, 60))))
    return list(zip([0] + cuts, cuts + [n]))


@pytest.mark.parametrize("top_level", [True, False])
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("opts", [{}, {"tail": True}, {"duration": False, "cpu": False},
                                  {"maxdepth": 2}])
def test_arrays_make_the_graphs_text(seed, top_level, opts):
    recs = stream(seed, top_level)
    rng = random.Random(seed * 7 + 1)
    ref_lines, lines = [], []
    ref = _graph(ref_lines, **opts)
    rsrc = _source(ref)
    g = _graph(lines, **opts)
    src = _source(g)
    arr = _arrays(g)
    made = 0
    for i, (a, b) in enumerate(_cuts(rng, len(recs))):
        rsrc._handle(recs[a:b])
        ref.flush_lines()
        if i % 5 == 4:      # now and then a round the Graph takes by itself
            src._handle(recs[a:b])
        else:
            rec = arr.take([], None, recs[a:b])
            if arr.text(rec):
                made += 1
            else:
                src._handle(arr.tuples(rec))
        g.flush_lines()
    ref.finish()
    g.finish()
    assert "".join(lines) == "".join(ref_lines)
    assert "".join(lines).count("\n") > 500
    assert made >= 5    # (the rest: strays and lost exits, or the Graph's turn)


def _arrays_or_graph(recs):
    """(made as arrays?, the text, the Graph's text fed record by record)."""
    lines = []
    ref_text = _reference(recs)
    g = _graph(lines)
    arr = _arrays(g)
    rec = arr.take([], None, recs)
    made = arr.text(rec)
    if not made:
        assert not g.base and not g.pending and not g.entered and not lines
        _source(g)._handle(arr.tuples(rec))
    g.finish()
    return made, "".join(lines), ref_text


def test_an_interrupt_at_the_calls_depth_is_cut_out_as_arrays():
    """An interrupt taken as f returns (at f's depth, before f's exit,
    with a callee of its own): left out of the text as the Graph leaves
    it out, the round still made as arrays."""
    made, text, ref = _arrays_or_graph([
        (1, 0, ENT, (5, 0x100, 0)), (2, 0, ENT, (5, 0x200, 1)), (3, 0, EXT, (5, 0x200, 1, 2, 3)),
        (4, 0, ENT, (5, 0x600, 0)), (5, 0, ENT, (5, 0x300, 1)),
        (6, 0, EXT, (5, 0x300, 1, 5, 6)), (7, 0, EXT, (5, 0x600, 0, 4, 7)),
        (8, 0, EXT, (5, 0x100, 0, 1, 8)), (9, 0, ENT, (5, 0x100, 0)),
        (10, 0, EXT, (5, 0x100, 0, 9, 10))])
    assert made and text == ref
    assert text.count("f()") == 2 and "irq_handler" not in text and "h()" not in text


@pytest.mark.parametrize("recs", [
    # f entered again at f's depth: the first one's exit was lost
    [(1, 0, ENT, (5, 0x100, 0)), (2, 0, ENT, (5, 0x100, 0)), (3, 0, EXT, (5, 0x100, 0, 2, 3))],
    # an exit above f's depth: f's exit was lost
    [(1, 0, ENT, (5, 0x500, 0)), (2, 0, ENT, (5, 0x100, 1)), (3, 0, EXT, (5, 0x500, 0, 1, 3))],
    # an interrupt whose exit was lost
    [(1, 0, ENT, (5, 0x100, 0)), (2, 0, ENT, (5, 0x600, 0)), (3, 0, ENT, (5, 0x100, 0)),
     (4, 0, EXT, (5, 0x100, 0, 3, 4))],
    # an interrupt still running at the round's end
    [(1, 0, ENT, (5, 0x100, 0)), (2, 0, ENT, (5, 0x600, 0)), (3, 0, ENT, (5, 0x300, 1))],
])
def test_what_is_not_the_regular_case_goes_to_the_graph(recs):
    """A lost exit, or an interrupt not ended in the round: the Graph
    untouched by the arrays, the round taken record by record."""
    made, text, ref = _arrays_or_graph(recs)
    assert not made and text == ref


def _pages(recs, cpu):
    """The records of one CPU as 4096-byte pages (headers, time deltas)."""
    out, data, first, last = [], b"", None, None
    for ts, c, typ, v in recs:
        if c != cpu:
            continue
        if typ == ENT:
            body = struct.pack("<HBBiQi", typ, 0, 0, v[0], v[1], v[2])
        else:
            body = struct.pack("<HBBiQiIQQ", typ, 0, 0, v[0], v[1], v[2], 0, v[3], v[4])
        if first is None or len(data) + 4 + len(body) > 4080:
            if first is not None:
                out.append(struct.pack("<Qq", first, len(data)) + data.ljust(4080, b"\0"))
            first, last, data = ts, ts, b""
        data += struct.pack("<I", ((ts - last) << 5) | (len(body) // 4)) + body
        last = ts
    if data:
        out.append(struct.pack("<Qq", first, len(data)) + data.ljust(4080, b"\0"))
    return out


def test_pages_decoded_as_arrays_make_the_same_text():
    """From the kernel's pages: decoded and merged across CPUs as arrays,
    the records make the text the Graph makes of them fed one by one."""
    recs = stream(5, False)
    lines = []
    ref_text = _reference(recs)
    g = _graph(lines)
    arr = _arrays(g)
    pages = {c: _pages(recs, c) for c in (0, 1)}
    assert min(len(p) for p in pages.values()) >= 3
    order = sorted(((int.from_bytes(p[:8], "little"), c, i) for c in pages
                    for i, p in enumerate(pages[c])))
    # in the Feed's order, in rounds of three pages, each released up to
    # the oldest page not yet decoded
    for k in range(0, len(order), 3):
        batch = [(c, pages[c][i]) for _t, c, i in order[k:k + 3]]
        rest = order[k + 3:]
        upto = min(t for t, _c, _i in rest) - 1 if rest else None
        rec = arr.take(batch, upto)
        if not arr.text(rec):
            _source(g)._handle(arr.tuples(rec))
        g.flush_lines()
    g.finish()
    assert "".join(lines) == ref_text and len(ref_text) > 0


class _Reader:
    """RawReader's part the GraphSource uses: the pages whose first record
    is before the clock (``now``), as a kernel hands them on."""

    def __init__(self, pages):
        self.cpus, self.layout = [0, 1], PageLayout("/nonexistent")
        self.todo = sorted(((int.from_bytes(p[:8], "little"), c, p) for c in pages
                            for p in pages[c]))
        self.pages, self.flagged_lost, self.unknown_loss = 0, 0, False
        self.now = 0

    def drain_pages(self, max_pages=1 << 30):
        n = 0
        while n < len(self.todo) and self.todo[n][0] <= self.now:
            n += 1
        got, self.todo = self.todo[:n], self.todo[n:]
        self.pages += len(got)
        return [(c, p) for _t, c, p in got]

    def note_lost(self, n):
        pass

    def wait(self, timeout):
        return bool(self.todo)


def _busy_source(g, pages, tmp_path, loading):
    """A GraphSource reading the pages (``_Reader``), its Graph ``g``, its
    numpy import ``loading`` (or None)."""
    from ftracetools.ring.merge import Feed
    src = _source(g)
    src.s = type("S", (), {"dir": str(tmp_path)})()
    src.r = _Reader(pages)
    src.base = src.lost_cpu = {0: 0, 1: 0}
    src.on_lost = lambda c, n: None
    src.formats = (_Fmt(ENT, False), _Fmt(EXT, True))
    src.arrays, src.holding, src.loading = None, False, loading
    src.dec_ent = struct.Struct("<4xiQi").unpack_from
    src.dec_ext = struct.Struct("<4xiQi4xQQ").unpack_from
    src.feed = Feed(src.r, 1024, decode={ENT: src.dec_ent, EXT: src.dec_ext})
    return src


@pytest.mark.parametrize("small,no_numpy,arrays", [("0", "", True), ("3", "", True),
                                                    ("1000000", "", False), ("0", "1", False)])
def test_the_source_switches_to_arrays_once_busy(monkeypatch, tmp_path, small, no_numpy,
                                                 arrays):
    """GraphSource.drain: record by record until it has read SMALL_ROUND
    pages (0: from the first, numpy loaded at once), then, the pages read
    waiting for numpy's import meanwhile, as arrays, what the Feed held
    over handed on first; the text the same either way."""
    monkeypatch.setenv("FTT_SMALL_ROUND", small)
    monkeypatch.setenv("FTT_NO_NUMPY", no_numpy)
    recs = stream(8, False)
    pages = {c: _pages(recs, c) for c in (0, 1)}
    lines = []
    ref_text = _reference(recs)
    # (numpy's import begun, as the tool does for a text run)
    from ftracetools.ring.source import preload
    src = _busy_source(_graph(lines), pages, tmp_path, None if no_numpy == "1" else
                       preload("ftracetools.engines.grapharrays"))
    # the clock: a few pages further each round; records within HOLD_NS
    # of it wait for the next
    import time
    monkeypatch.setattr(fg, "time", type("T", (), {
        "monotonic": staticmethod(time.monotonic),
        "monotonic_ns": staticmethod(lambda: src.r.now + fg.HOLD_NS)}))
    heads = [t for t, _c, _p in src.r.todo]
    for k in range(0, len(heads), 3):
        src.r.now = heads[k]
        src.drain()
        if src.loading is not None:
            src.loading.module()
    src.finish("duration")
    assert (src.arrays is not None) == arrays
    assert "".join(lines) == ref_text and len(ref_text) > 0


def test_pages_wait_for_numpy_and_none_is_lost(monkeypatch, tmp_path):
    """Busy before numpy's import has ended: the rounds' pages are read and
    kept, no line made, the source waits on the import, not on the kernel;
    once it has ended every record is made as arrays, the same text."""
    monkeypatch.setenv("FTT_SMALL_ROUND", "2")
    monkeypatch.delenv("FTT_NO_NUMPY", raising=False)

    class Loading:      # a Preload whose import ends after three rounds
        polls = 0

        def ready(self):
            Loading.polls += 1
            return Loading.polls > 3

        def wait(self, timeout):
            return self.ready()

        def module(self):
            return ga

    recs = stream(3, True)
    pages = {c: _pages(recs, c) for c in (0, 1)}
    lines = []
    ref_text = _reference(recs)
    src = _busy_source(_graph(lines), pages, tmp_path, Loading())
    src.r.now = 1 << 62
    held = []
    for _ in range(6):
        src.drain()
        held.append((src.holding, src.feed.backlog(), len(lines)))
        src.wait(0)
    src.finish("duration")
    assert held[0][0] and held[0][1] > 2 and held[0][2] == 0    # read, kept, not made
    assert src.arrays is not None and not src.holding
    assert "".join(lines) == ref_text and len(ref_text) > 0
