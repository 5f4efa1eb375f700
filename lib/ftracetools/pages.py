"""Counting fixed-size events in bulk, page by page.

A tool that only counts events need not build a Python object per event:
when every event in a page has the same size (one event type, or several of
the same layout, and no time-extend records), the page's data is an array
of fixed-size records, and ``records()`` returns it as a memoryview of u32
words that C code (``zip``, ``collections.Counter``, slicing with a step)
can walk. Pages that do not fit fall back to ``reader.parse_page``.
"""

from typing import Optional

from .reader import PageLayout, page_header

# type_len of each byte's low 5 bits, as bytes.translate table.
_TYPE_LEN = bytes(b & 31 for b in range(256))


def page_lost(page: bytes, layout: PageLayout) -> int:
    """Events lost before this page, per its header; -1 if flagged uncounted."""
    return page_header(page, layout)[3]


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
