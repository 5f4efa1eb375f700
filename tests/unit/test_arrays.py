"""Pages decoded as arrays (ring.arrays) against the per-record walk of
ring.pages, on hand-made sub-buffer pages: regular ones, and every way a
page can break the pattern (a time extend, an absolute time stamp, a
discarded event, the padding of a page read while the kernel was writing
it, records of other sizes and types, a long record, a loss flag)."""

import random
import struct

import pytest

from ftracetools.ring import pages as ringpages

np = pytest.importorskip("numpy")
from ftracetools.ring import arrays as vecpages  # noqa: E402

LAYOUT = ringpages.PageLayout("/nonexistent")   # 4096-byte pages, data at 16
BODY = struct.Struct("<H6xIIQ")               # type, pad, a, b: 24 bytes


def record(delta, typ, a, b, size=24):
    body = BODY.pack(typ, a, 0, b).ljust(size, b"\0")
    return struct.pack("<I", (delta << 5) | (size // 4)) + body


def page(ts, records, lost=None):
    data = b"".join(records)
    commit = len(data) | ((1 << 31) | (1 << 30) if lost else 0)
    tail = struct.pack("<q", lost) if lost else b""
    raw = struct.pack("<Qq", ts, commit) + data + tail
    return raw + b"\0" * (4096 - len(raw))


def walked(pages):
    out = []
    for p in pages:
        evs = []
        ringpages.page_offsets(p, LAYOUT, evs)
        for ts, off, pg in evs:
            typ, a, _, b = BODY.unpack_from(pg, off)
            out.append((ts, typ, a, b))
    return out


def test_decode_matches_the_walk_on_regular_and_odd_pages():
    rng = random.Random(5)
    pages = []
    for n in range(40):
        recs = [record(rng.randint(0, 5000), 7, n, i) for i in range(rng.randint(1, 145))]
        kind = n % 8
        if kind == 1:   # a time extend in the middle
            recs.insert(len(recs) // 2, struct.pack("<II", 30 | (9 << 5), 3))
        elif kind == 2:  # a discarded event: padding, its length counting itself
            recs.insert(1, struct.pack("<II", 29 | (4 << 5), 24) + b"\0" * 20)
        elif kind == 3:  # read while being written: ends in padding
            recs.append(struct.pack("<I", 29))
        elif kind == 4:  # another event type, of another size
            recs.insert(0, record(3, 8, n, 99, size=40))
        elif kind == 5:  # a padding with length at the very end
            recs.append(struct.pack("<II", 29 | (1 << 5), 16) + b"\0" * 12)
        pages.append(page(10 ** 9 * (n + 1), recs, lost=(n % 11 == 3 and 17) or None))
    up = vecpages.UniformPages(LAYOUT, {"type": (0, "<u2"), "a": (8, "<u4"), "b": (16, "<u8")})
    recs, ts, odd, lost = up.decode(pages)
    fast = [(int(t), int(ty), int(a), int(b))
            for t, ty, a, b in zip(ts, recs["type"], recs["a"], recs["b"])]
    assert len(odd) < len(pages) / 2 and len(fast) > 1000     # most took the fast path
    got = sorted(fast + walked(odd))
    assert got == sorted(walked(pages))
    # losses: the fast path reports those of its pages; the walk, the rest
    walk_lost = []
    for p in odd:
        walk_lost.append(ringpages.page_offsets(p, LAYOUT, []))
    assert sorted(x for x in lost + walk_lost if x) == [17] * sum(1 for n in range(40) if n % 11 == 3)


def test_a_record_of_another_type_and_the_same_size_is_left_to_the_walk():
    """Given the event IDs its layout describes, a page holding a record of
    another ID is walked, though every record is one size (on 6.18 a
    sched_process_fork of two 4-letter names is as long as a sched_wakeup,
    and was read as one: its child lost)."""
    mixed = page(10, [record(1, 7, n, n) for n in range(20)] + [record(1, 9, 99, 98)])
    plain = page(20, [record(1, 7, n, n) for n in range(20)])
    fields = {"type": (0, "<u2"), "a": (8, "<u4"), "b": (16, "<u8")}
    recs, ts, odd, lost = vecpages.UniformPages(LAYOUT, fields, [7]).decode([mixed, plain])
    assert odd == [mixed] and recs["type"].tolist() == [7] * 20
    got = sorted(zip(ts.tolist(), recs["type"].tolist(), recs["a"].tolist(), recs["b"].tolist()))
    assert sorted(got + walked(odd)) == sorted(walked([mixed, plain]))
    # without the IDs, the size alone decides (both pages take the fast path)
    recs, ts, odd, lost = vecpages.UniformPages(LAYOUT, fields).decode([mixed, plain])
    assert odd == [] and len(ts) == 41


def test_a_short_read_is_left_to_the_walk():
    p = page(5, [record(1, 7, 1, 2)])[:2048]
    up = vecpages.UniformPages(LAYOUT, {"type": (0, "<u2")})
    recs, ts, odd, lost = up.decode([p])
    assert len(ts) == len(recs["type"]) == 0 and odd == [p]


def test_pages_that_all_start_with_a_time_extend_are_walked():
    """At a low event rate every page starts with a time extend: there is
    no record size to learn, and nothing may break (it did: a record size
    of 8 bytes was assumed)."""
    ext = struct.pack("<II", 30 | (9 << 5), 3)
    pages = [page(10 ** 9 * n, [ext, record(1, 7, n, 1)]) for n in range(1, 4)]
    up = vecpages.UniformPages(LAYOUT, {"type": (0, "<u2"), "a": (8, "<u4"), "b": (16, "<u8")})
    recs, ts, odd, lost = up.decode(pages)
    assert len(ts) == 0 and odd == pages
    assert len(walked(odd)) == 3


def _mixed_pages(seed, n=60):
    """Pages with records of every size (1..28 words, and long ones whose
    length is in their second word), time extends, absolute stamps and
    paddings, in random order."""
    rng = random.Random(seed)
    pages = []
    for k in range(n):
        recs, used = [], 0
        for i in range(rng.randint(0, 200)):
            r = rng.random()
            if r < 0.05:
                rec = struct.pack("<II", 30 | (rng.randint(0, 1 << 20) << 5), rng.randint(0, 9))
            elif r < 0.07:
                rec = struct.pack("<II", 31 | (rng.randint(0, 1 << 20) << 5), rng.randint(0, 99))
            elif r < 0.10:
                rec = struct.pack("<II", 29 | (3 << 5), 12) + b"\0" * 8
            elif r < 0.15:
                body = BODY.pack(9, k, 0, i) + b"\xab" * rng.randint(0, 120)
                body = body.ljust(-(-len(body) // 4) * 4, b"\0")
                rec = struct.pack("<II", (rng.randint(0, 99) << 5), 4 + len(body)) + body
            else:
                rec = record(rng.randint(0, 5000), 7 + i % 3, k, i,
                             size=rng.choice([24, 28, 32, 40, 112]))
            if used + len(rec) > 4000:
                break
            recs.append(rec)
            used += len(rec)
        if rng.random() < 0.2:
            recs.append(struct.pack("<I", 29))      # the rest is empty
        pages.append(page(10 ** 9 * (k + 1), recs, lost=(k % 13 == 5 and 3) or None))
    return pages


@pytest.mark.parametrize("seed", range(4))
def test_walked_pages_match_the_per_record_walk(seed):
    pages = _mixed_pages(seed)
    w = vecpages.WalkedPages(LAYOUT)
    rec, lost = w.decode(pages)
    a, b = w.field(rec, 8, "<u4"), w.field(rec, 16, "<u8")
    got = sorted(zip(rec["ts"].tolist(), rec["type"].tolist(), a.tolist(), b.tolist()))
    assert got == sorted(walked(pages)) and len(got) > 1000
    assert sorted(x for x in lost if x) == [3] * sum(1 for k in range(60) if k % 13 == 5)


def test_walked_pages_keep_each_pages_order():
    pages = _mixed_pages(9, n=5)
    w = vecpages.WalkedPages(LAYOUT)
    rec, _ = w.decode(pages)
    by_page = [[] for _ in pages]
    for p, t in zip(rec["page"].tolist(), rec["ts"].tolist()):
        by_page[p].append(t)
    for i, p in enumerate(pages):
        evs = []
        ringpages.page_offsets(p, LAYOUT, evs)
        assert by_page[i] == [e[0] for e in evs]


def test_walked_pages_take_short_reads_in_their_place():
    """A read that ended early (the page's data is all there, or it ended
    inside a record): its records come out with the others, in their
    page's place, none past what was read (they were dropped, once) and
    not the one the read cut (it was decoded from zeros, once)."""
    full = _mixed_pages(3, n=4)
    recs = [record(10, 7, 99, i) for i in range(40)]      # 40 x 28 bytes
    whole = page(5, recs)
    short = [whole[:16 + 40 * 28], whole[:16 + 25 * 28 + 13], whole[:8]]
    pages = [full[0], short[0], full[1], short[1], full[2], short[2], full[3]]
    w = vecpages.WalkedPages(LAYOUT)
    rec, _ = w.decode(pages)
    a, b = w.field(rec, 8, "<u4"), w.field(rec, 16, "<u8")
    got = list(zip(rec["page"].tolist(), rec["ts"].tolist(), rec["type"].tolist(),
                   a.tolist(), b.tolist()))
    want = []
    for i, p in enumerate(pages):
        if p is short[1]:
            want += [(i, 5 + 10 * (k + 1), 7, 99, k) for k in range(25)]
        elif p is not short[2]:
            want += [(i,) + r for r in walked([p])]
    assert got == want


@pytest.mark.parametrize("fmt", ["u1", "i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "S5"])
def test_field_reads_every_size_at_every_offset(fmt):
    """A field at any byte offset of the payload, of any size and sign (the
    whole-word ways and the byte-by-byte way), against struct's reading
    of the same bytes, records of several sizes mixed."""
    rng = random.Random(fmt)
    recs = []
    for i in range(60):
        size = rng.choice([24, 28, 40])
        body = bytes(rng.randrange(256) for _ in range(size))
        recs.append(struct.pack("<I", (rng.randint(0, 99) << 5) | (size // 4)) + body)
    pages = [page(1000, recs[:30]), page(2000, recs[30:])]
    w = vecpages.WalkedPages(LAYOUT)
    rec, _ = w.decode(pages)
    bodies = [r[4:] for r in recs]
    code = {"u1": "B", "i1": "b", "<u2": "<H", "<i2": "<h", "<u4": "<I", "<i4": "<i",
            "<u8": "<Q", "<i8": "<q", "S5": "5s"}[fmt]
    for off in range(0, 24 - struct.calcsize(code) + 1):
        got = w.field(rec, off, fmt).tolist()
        want = [struct.unpack_from(code, b, off)[0] for b in bodies]
        if fmt[0] == "S":   # (numpy's strings end at their first trailing NUL)
            want = [v.rstrip(b"\0") for v in want]
        assert got == want, off


def test_drain_joined_takes_a_short_read_as_decode_does(monkeypatch):
    """RawReader.drain_joined (page by page: no splice) given a read that
    ended inside a record: the page is padded and its commit cut to its
    last whole record, so decode_joined gives what decode gives for the
    same short read (25 records, not the one the read cut)."""
    import os
    from ftracetools.ring.reader import RawReader
    monkeypatch.delattr(os, "splice")
    recs = [record(10, 7, 99, i) for i in range(40)]
    short = page(5, recs)[:16 + 25 * 28 + 13]
    r_fd, w_fd = os.pipe2(os.O_NONBLOCK)
    rd = RawReader.__new__(RawReader)
    rd.layout, rd.fds, rd.parked, rd.pages = LAYOUT, {0: r_fd}, set(), 0
    rd._buf = rd._pipe = None
    try:
        os.write(w_fd, short)
        buf, runs = rd.drain_joined()
        assert runs == [(0, 1)] and len(buf) == 4096
        w = vecpages.WalkedPages(LAYOUT)
        got, _ = w.decode_joined(buf, 1)
        got = {k: v.tolist() for k, v in got.items()}
        want, _ = vecpages.WalkedPages(LAYOUT).decode([short])
        assert got == {k: v.tolist() for k, v in want.items()}
        assert len(got["ts"]) == 25
    finally:
        rd.close()
        os.close(w_fd)
