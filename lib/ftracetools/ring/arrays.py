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

from typing import Dict, List, Sequence, Tuple

import numpy as np

from ftracetools.ring.pages import LEN_MASK, MISSED, PageLayout, page_header

__all__ = ["record_dtype", "UniformPages"]


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
    dynamic arrays included), the fields come from the event's format."""

    def __init__(self, layout: PageLayout, fields: Dict[str, Tuple[int, str]]) -> None:
        self.layout = layout
        self.fields = fields
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
        bad = ((hdr & 31) != type_len) & valid
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
