"""Decoding whole sub-buffer pages at once with numpy, where every record
on a page has the same size.

A buffer that holds one event type (a tool gives each kind of event an
instance of its own) is, page after page, a run of records of one length:
a 4-byte header (type_len in the low 5 bits, the time delta above) and the
payload. Such pages are viewed as one strided array of records; their
timestamps are the page's plus the running sum of the deltas. A page that
breaks the pattern (a time extend after a quiet spell, padding, another
event type) is handed back whole, for the per-record walk in ``reader``.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ftracetools.host.cpus import keep_heap
from ftracetools.ring.pages import LEN_MASK, MISSED, PageLayout, page_header, whole_records

keep_heap()     # (arrays made and freed every round: their pages kept)

__all__ = ["record_dtype", "UniformPages", "WalkedPages"]


def record_dtype(fields: Dict[str, Tuple[int, str]], rec_len: int) -> np.dtype:
    """A record: ``hdr`` (u4) then each payload field name -> (payload
    offset, numpy format), in a record of ``rec_len`` bytes."""
    names, formats, offsets = ["hdr"], ["<u4"], [0]
    for name, (off, fmt) in fields.items():
        names.append(name)
        formats.append(fmt)
        offsets.append(4 + off)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": rec_len})


class UniformPages:
    """Decodes the pages of a buffer holding one event type. The record
    size is learnt from the pages (the payload rounded up to 4 bytes, the
    dynamic arrays included), the fields come from the event's format.
    ``types``: the event IDs that layout describes (the "type" field is
    then required); a page holding a record of another ID is left to the
    walk, whatever its size (a sched_process_fork of two 4-letter names
    is as long as a sched_wakeup)."""

    def __init__(self, layout: PageLayout, fields: Dict[str, Tuple[int, str]],
                 types: Optional[Sequence[int]] = None) -> None:
        self.layout = layout
        self.fields = fields
        self.types = None if types is None else np.array(sorted(types), np.uint16)
        self._dtypes: Dict[int, np.dtype] = {}
        # the shortest record that holds every field
        self._need = 4 + max((off + np.dtype(fmt).itemsize for off, fmt in fields.values()),
                             default=0)

    def _dtype(self, type_len: int) -> np.dtype:
        dt = self._dtypes.get(type_len)
        if dt is None:
            dt = self._dtypes[type_len] = record_dtype(self.fields, 4 + 4 * type_len)
        return dt

    def empty(self) -> Dict[str, np.ndarray]:
        dt = self._dtype(28)  # (the largest record: it holds every field)
        return {f: np.empty(0, dt[f]) for f in self.fields}

    def decode(self, pages: Sequence[bytes]) -> Tuple[Dict[str, np.ndarray], np.ndarray,
                                                      List[bytes], List[int]]:
        """(fields, timestamps, irregular pages, loss counts).

        Each field as an array over the records of the regular pages, in
        page order; the timestamps likewise; the loss counts of
        those pages (-1: the kernel flagged a loss without counting it).
        The irregular pages are left whole to the caller's per-record walk,
        which accounts their losses.
        """
        lay = self.layout
        psize = lay.page_size
        full = [p for p in pages if len(p) == psize]
        odd = [p for p in pages if len(p) != psize]
        if not full:
            return self.empty(), np.empty(0, np.int64), odd, []
        buf = b"".join(full)
        n = len(full)
        first = np.ndarray((n,), "<u4", buf, lay.data_off, (psize,)) & 31
        tls = np.bincount(first, minlength=32)[1:29]
        type_len = int(np.argmax(tls)) + 1
        rec_len = 4 + 4 * type_len
        if not tls[type_len - 1] or rec_len < self._need:
            # no page starts with a record of ours (each after a quiet
            # spell starts with a time extend): the walk does them all
            return self.empty(), np.empty(0, np.int64), odd + full, []
        dtype = self._dtype(type_len)
        slots = lay.data_size // rec_len
        ts0 = np.ndarray((n,), "<u8", buf, 0, (psize,)).astype(np.int64)
        cfmt = "<u8" if lay.commit_size == 8 else "<u4"
        commit = np.ndarray((n,), cfmt, buf, lay.commit_off, (psize,)).astype(np.int64)
        size = commit & LEN_MASK
        recs = np.ndarray((n, slots), dtype, buf, lay.data_off, (psize, rec_len))
        # Slots that hold a header: every record, and the padding record a
        # page read while the kernel was still writing it ends with.
        count = np.minimum((size + rec_len - 1) // rec_len, slots)
        valid = np.arange(slots)[None, :] < count[:, None]
        hdr = recs["hdr"]
        bad = (hdr & 31) != type_len
        if self.types is not None:
            bad |= ~np.isin(recs["type"], self.types)
        bad &= valid
        has_bad = bad.any(axis=1)
        ok = ~has_bad & (size % rec_len == 0)
        if has_bad.any():
            rows = np.nonzero(has_bad)[0]
            fb = bad[rows].argmax(axis=1)          # the first odd header
            w = hdr[rows, fb]
            pos = lay.data_off + fb * rec_len      # where it is in its page
            plen = np.frombuffer(buf, "<u4")[(rows * psize + pos + 4) // 4]
            end = (w & 31 == 29) & ((w >> 5 == 0) | (fb * rec_len + 4 + plen == size[rows]))
            ok[rows[end]] = True
            valid[rows[end]] = np.arange(slots)[None, :] < fb[end][:, None]
        if not ok.all():
            odd = odd + [full[i] for i in np.nonzero(~ok)[0].tolist()]
            valid &= ok[:, None]
        lost = [page_header(full[i], lay)[3]
                for i in np.nonzero((commit & MISSED != 0) & ok)[0].tolist()]
        delta = np.where(valid, (hdr >> 5).astype(np.int64), 0)
        ts = ts0[:, None] + np.cumsum(delta, axis=1)
        return {f: recs[f][valid] for f in self.fields}, ts[valid], odd, lost


class _Pages:
    """Page i of ``n`` joined in ``buf``, as bytes (only a page whose header
    says it lost events is looked at again)."""

    def __init__(self, buf, psize: int, n: int) -> None:
        self.buf, self.psize, self.n = buf, psize, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> bytes:
        return bytes(self.buf[i * self.psize:(i + 1) * self.psize])


class WalkedPages:
    """Decodes any pages (records of any sizes and types, time extends,
    absolute stamps, padding) with numpy, all pages stepping together: each
    step reads the next record header of every page at once, so a round
    costs a dozen array operations per record *position* on a page (at
    most a few hundred), whatever the number of pages.

    ``decode(pages)`` -> (records, loss counts): records as arrays
    ``type`` (common_type), ``ts``, ``page`` (index into ``pages``) and
    ``at`` (the payload's byte offset in the pages joined, each padded to
    the page size), page by page in their order; ``field()`` then gathers
    a field's values. A short page (a read that ended early) is walked up
    to its commit or its end, whichever comes first.
    """

    def __init__(self, layout: PageLayout) -> None:
        self.layout = layout
        self.words = np.empty(0, "<u4")

    def decode(self, pages: Sequence[bytes]) -> Tuple[Dict[str, np.ndarray], List[int]]:
        lay = self.layout
        psize = lay.page_size
        n = len(pages)
        if not n:
            return self._walk(b"", 0, pages)
        read = [min(len(p), psize) for p in pages]
        short = min(read) < psize
        raw = pages
        fix = None
        if short:
            pages = [p if len(p) == psize else bytes(p[:psize]).ljust(psize, b"\0")
                     for p in pages]

            def fix(end, base):     # no further than the last record read whole
                for i in np.nonzero(np.array(read) < psize)[0].tolist():
                    d0, d1 = lay.data_off, int(end[i] - base[i]) * 4
                    if d1 > read[i]:
                        end[i] = base[i] + whole_records(raw[i], d0, d1)[1] // 4
        return self._walk(b"".join(pages), n, raw, fix)

    def decode_joined(self, buf, n: int) -> Tuple[Dict[str, np.ndarray], List[int]]:
        """``decode`` of ``n`` whole pages already joined in ``buf`` (as
        ``RawReader.drain_joined`` reads them: no copy, no join)."""
        return self._walk(buf, n, _Pages(buf, self.layout.page_size, n))

    def _walk(self, buf, n: int, raw, fix=None) -> Tuple[Dict[str, np.ndarray], List[int]]:
        """The walk of ``n`` pages joined in ``buf``; ``raw[i]``: page i as
        read (its header, for a loss count); ``fix(end, base)`` moves the
        ends of short pages.

        A step reads the header at every page's position at once. Where
        each is a data record of 1 to 28 words (nearly always: a page of
        block events holds some 60), the step only adds its delta and moves
        on, a dozen array operations on arrays as long as the pages are
        many; any other header (a long record, a time extend, an absolute
        stamp, padding) takes the whole step the slow way."""
        lay = self.layout
        psize = lay.page_size
        pw = psize // 4
        empty = {k: np.empty(0, np.int64) for k in ("type", "ts", "page", "at")}
        if not n:
            return empty, []
        nw = n * pw
        words = self.words = np.frombuffer(buf, "<u4", nw)
        base = np.arange(n, dtype=np.int64) * pw      # each page's first word
        ts = np.ndarray((n,), "<u8", buf, 0, (psize,)).astype(np.int64)
        cfmt = "<u8" if lay.commit_size == 8 else "<u4"
        commit = np.ndarray((n,), cfmt, buf, lay.commit_off, (psize,)).astype(np.int64)
        pos = base + lay.data_off // 4
        end = pos + (commit & LEN_MASK) // 4
        if fix is not None:
            fix(end, base)
        end = np.minimum(end, base + pw)
        pages_i = np.arange(n)
        got_pos, got_ts, got_page = [], [], []    # data records, step by step
        while True:
            act = pos < end
            if np.count_nonzero(act) < len(pos):   # pages done: out of the arrays
                pos, end, ts, pages_i = pos[act], end[act], ts[act], pages_i[act]
                if not len(pos):
                    break
            w = words[pos]
            tl = w & 31
            if np.count_nonzero(tl - 1 < 28) == len(pos):     # (0 - 1 wraps)
                # every page at a data record of 1 to 28 words: the common step
                ts += w >> 5
                got_pos.append(pos)
                got_ts.append(ts.copy())
                got_page.append(pages_i)
                pos = pos + tl
                pos += 1
                continue
            td = (w >> 5).astype(np.int64)
            a0 = words[np.minimum(pos + 1, nw - 1)].astype(np.int64)
            plain = (tl > 0) & (tl <= 28)
            long, pad = tl == 0, tl == 29
            ext, absts = tl == 30, tl == 31
            data = plain | long
            ts = ts + np.where(data, td, 0) + np.where(ext, (a0 << 27) + td, 0)
            ts = np.where(absts, (ts & ~((1 << 59) - 1)) | ((a0 << 27) | td), ts)
            if data.any():
                got_pos.append(np.where(long, pos + 1, pos)[data])
                got_ts.append(ts[data])
                got_page.append(pages_i[data])
            step = np.where(plain, 1 + tl.astype(np.int64), 2)
            step = np.where(long | (pad & (td > 0)), 1 + a0 // 4, step)
            step = np.where(pad & (td == 0), end - pos, step)
            pos = np.minimum(pos + np.maximum(step, 1), end)
        lost = [page_header(raw[i], lay)[3]
                for i in np.nonzero(commit & MISSED != 0)[0].tolist()]
        if not got_pos:
            return empty, lost
        at = np.concatenate(got_pos) + 1    # (a header's position, or a long one's + 1)
        order = np.argsort(at, kind="stable")       # pages in order, records in order
        at = at[order]
        return {"at": at * 4, "ts": np.concatenate(got_ts)[order],
                "page": np.concatenate(got_page)[order],
                "type": (words[at] & 0xFFFF).astype(np.int64)}, lost

    def field(self, rec: Dict[str, np.ndarray], offset: int, fmt: str) -> np.ndarray:
        """The values of a payload field (``offset`` bytes into the payload,
        numpy format ``fmt``: ``<u4``, ``<i8``, ``S16``...) of each record."""
        dt = np.dtype(fmt)
        at = rec["at"] + offset
        size = dt.itemsize
        if at.size and dt.kind in "iu" and dt.byteorder != ">":
            # (payloads start on a word)
            if size in (1, 2, 4) and not offset % size:
                return self.words.view(dt)[at >> (size >> 1)]    # (at // size)
            if size == 8 and not offset % 4:
                i = at >> 2
                v = self.words[i].astype(np.uint64)
                v |= self.words[i + 1].astype(np.uint64) << np.uint64(32)
                return v.astype(dt)
        raw = self.words.view(np.uint8)[at[:, None] + np.arange(dt.itemsize)]
        return np.ascontiguousarray(raw).view(dt).reshape(-1)
