"""Sub-buffer pages of the ring buffer, as ``trace_pipe_raw`` hands them on.

A page is a header (timestamp, commit word with the data length and
lost-event flags, laid out as ``events/header_page`` says) and compressed
event headers (``events/header_event``). ``parse_page`` hands on each
event's payload; ``page_offsets`` only where each payload starts, for
callers that unpack their fields in one ``struct`` call; ``records`` views
a page of same-size records as u32 words, for counting in bulk.
"""


import os
import struct
from typing import Callable, Dict, List, Optional, Tuple

__all__ = ["LEN_MASK", "MISSED", "MISSED_STORED", "Event", "PageLayout", "page_header",
           "whole_records", "parse_page", "page_offsets", "records"]


_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from
_S64 = struct.Struct("<q").unpack_from
_U16 = struct.Struct("<H").unpack_from
_HEAD = struct.Struct("<IH").unpack_from    # a small record's header and type

LEN_MASK = (1 << 27) - 1
MISSED = 1 << 31
MISSED_STORED = 1 << 30

# An event as handed on: (timestamp ns, cpu, common_type, payload).
Event = Tuple[int, int, int, memoryview]


class PageLayout:
    """Offsets of the sub-buffer header, from ``events/header_page``."""

    def __init__(self, root: str) -> None:
        text = ""
        try:
            with open(os.path.join(root, "events", "header_page")) as f:
                text = f.read()
        except OSError:
            pass
        self.ts_off, self.commit_off, self.commit_size = 0, 8, 8
        self.data_off, self.data_size = 16, 4080
        for line in text.splitlines():
            parts = dict(p.strip().split(":", 1) for p in line.split(";")
                         if ":" in p)
            field = parts.get("field", "")
            if not field:
                continue
            off, size = int(parts.get("offset", 0)), int(parts.get("size", 0))
            if field.endswith(" commit"):
                self.commit_off, self.commit_size = off, size
            elif field.endswith(" data"):
                self.data_off, self.data_size = off, size
        self.page_size = self.data_off + self.data_size


def page_header(page: bytes, layout: PageLayout) -> Tuple[int, int, int, int]:
    """(timestamp, data start, data end, events lost before the page).

    The lost count is -1 when the kernel flagged a loss without its count.
    """
    commit = (_S64 if layout.commit_size == 8 else _U32)(page, layout.commit_off)[0]
    size = commit & LEN_MASK
    lost = 0
    if commit & MISSED:
        lost = -1
        if commit & MISSED_STORED and layout.data_off + size + 8 <= len(page):
            lost = _S64(page, layout.data_off + size)[0]
    return _U64(page, 0)[0], layout.data_off, layout.data_off + size, lost


def whole_records(page: bytes, start: int, end: int) -> Tuple[bytes, int]:
    """A short read (the page's data ends at ``end``, past what was read):
    the page padded with zeros to ``end``, and where the records it holds
    whole end (a record cut by the read is not decoded from the zeros)."""
    n = len(page)
    page = bytes(page) + bytes(max(0, end + 8 - n))
    pos = start
    while pos < end:
        w = _U32(page, pos)[0]
        tl = w & 31
        if 0 < tl <= 28:
            nxt = pos + 4 + tl * 4
        elif tl == 0 or tl == 29:
            if tl == 29 and (w >> 5) == 0:
                break
            nxt = pos + 4 + _U32(page, pos + 4)[0]
        else:
            nxt = pos + 8
        if nxt > n:
            break
        pos = max(nxt, pos + 4)
    return page, pos


def _walk(page: bytes, layout: PageLayout, out: list, cpu: int, views: bool,
          decode: Optional[Dict[int, Callable]] = None, _u32=_U32, _u16=_U16,
          _head=_HEAD) -> int:
    ts, pos, end, lost = page_header(page, layout)
    if end > len(page):     # a short read
        page, end = whole_records(page, pos, end)
    mv = memoryview(page) if views else None
    append = out.append
    while pos < end:
        if decode is not None:  # the record's header word and type in one
            w, typ = _head(page, pos) if pos + 6 <= end else (_u32(page, pos)[0], 0)
        else:
            w = _u32(page, pos)[0]
        tl = w & 31
        if 0 < tl <= 28:    # the common case first: a small record
            ts += w >> 5
            nxt = pos + 4 + tl * 4
            if decode is not None:
                f = decode.get(typ)
                append((ts, cpu, typ, mv[pos + 4:nxt] if f is None else f(page, pos + 4)))
            elif views:
                append((ts, cpu, _u16(page, pos + 4)[0], mv[pos + 4:nxt]))
            else:
                append((ts, pos + 4, page))
            pos = nxt
        elif tl == 0:   # a large record: its length in the next word
            ts += w >> 5
            start, nxt = pos + 8, pos + 4 + _u32(page, pos + 4)[0]
            if views:
                typ = _u16(page, start)[0]
                f = None if decode is None else decode.get(typ)
                append((ts, cpu, typ, mv[start:nxt] if f is None else f(page, start)))
            else:
                append((ts, start, page))
            pos = nxt
        elif tl == 29:  # padding: no time of its own
            if (w >> 5) == 0:
                break
            pos += 4 + _u32(page, pos + 4)[0]
        elif tl == 30:  # time extend
            ts += (_u32(page, pos + 4)[0] << 27) + (w >> 5)
            pos += 8
        else:  # absolute timestamp; the top bits come from the page's
            abs_ts = (_u32(page, pos + 4)[0] << 27) | (w >> 5)
            ts = (ts & ~((1 << 59) - 1)) | abs_ts
            pos += 8
    return lost


def parse_page(page: bytes, cpu: int, layout: PageLayout, out: List[Event],
               decode: Optional[Dict[int, Callable]] = None) -> int:
    """Append the page's events to ``out``; return events lost before it.

    Returns -1 when the kernel flagged a loss but did not store its count.
    ``decode``: event type -> ``unpack_from(page, offset)`` of its payload;
    events of those types carry the tuple it returns instead of the view
    (one step, where the view and a later unpack were two).
    """
    return _walk(page, layout, out, cpu, True, decode)


def page_offsets(page: bytes, layout: PageLayout,
                 out: List[Tuple[int, int, bytes]]) -> int:
    """Like ``parse_page``, but appends (timestamp, payload offset, page)
    and leaves decoding to the caller: cheaper per event than building
    payload views, for tools that unpack their fields with one ``struct``
    call at the offset (common_type is at 0). Events of several pages can
    be merged by time (sort) and still be unpacked.
    """
    return _walk(page, layout, out, 0, False)


# type_len of each byte's low 5 bits, as bytes.translate table.
_TYPE_LEN = bytes(b & 31 for b in range(256))


def records(page: bytes, layout: PageLayout, payload: int) -> Optional[memoryview]:
    """The page's events as u32 words, ``1 + payload/4`` per event, or None.

    ``payload`` is the event size from its format (a multiple of 4, at most
    112). Word 0 of each record is the event header, word 1 holds
    common_type (low 16 bits), payload field at offset F is word 1 + F/4.
    None when any record differs (another size, a time extend, a discarded
    event): parse that page the slow way.
    """
    if payload % 4 or not 0 < payload <= 112:
        raise ValueError("payload size %d cannot be a fixed record" % payload)
    _ts, start, stop, _lost = page_header(page, layout)
    rec = payload + 4
    n, rest = divmod(stop - start, rec)
    end = start + n * rec
    if rest and page[end] & 31 != 29:  # only trailing padding may remain
        return None
    if n == 0:
        return memoryview(b"").cast("I")
    heads = page[start:end:rec].translate(_TYPE_LEN)
    if heads != bytes((payload // 4,)) * n:
        return None
    return memoryview(page)[start:end].cast("I")
