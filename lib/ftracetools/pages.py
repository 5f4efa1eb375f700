"""Reading whole sub-buffer pages, and counting fixed-size events in bulk.

A tool that only counts events need not build a Python object per event:
when every event in a page has the same size (one event type, or several of
the same layout, and no time-extend records), the page's data is an array
of fixed-size records, and ``records()`` returns it as a memoryview of u32
words that C code (``zip``, ``collections.Counter``, slicing with a step)
can walk. Pages that do not fit fall back to ``reader.parse_page``.
"""

import errno
import os
import struct
from typing import List, Optional, Tuple

from .reader import PageLayout, RawReader

_S64 = struct.Struct("<q").unpack_from
_U32 = struct.Struct("<I").unpack_from
_LEN_MASK = (1 << 27) - 1
_MISSED = 1 << 31
_MISSED_STORED = 1 << 30
# type_len of each byte's low 5 bits, as bytes.translate table.
_TYPE_LEN = bytes(b & 31 for b in range(256))


def read_pages(reader: RawReader, max_pages: int = 1 << 30) -> List[Tuple[int, bytes]]:
    """(cpu, page) for every page the kernel has ready, on every CPU."""
    out: List[Tuple[int, bytes]] = []
    size = reader.layout.page_size
    for cpu, fd in reader.fds.items():
        n = 0
        while n < max_pages:
            try:
                page = os.read(fd, size)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EINTR):
                    break
                raise
            if not page:
                break
            n += 1
            out.append((cpu, page))
        reader.pages += n
    return out


def page_lost(page: bytes, layout: PageLayout) -> int:
    """Events lost before this page, per its header; -1 if flagged uncounted."""
    commit = _S64(page, layout.commit_off)[0] if layout.commit_size == 8 \
        else _U32(page, layout.commit_off)[0]
    if not commit & _MISSED:
        return 0
    if commit & _MISSED_STORED:
        return _S64(page, layout.data_off + (commit & _LEN_MASK))[0]
    return -1


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
    commit = _S64(page, layout.commit_off)[0] if layout.commit_size == 8 \
        else _U32(page, layout.commit_off)[0]
    size = commit & _LEN_MASK
    rec = payload + 4
    n, rest = divmod(size, rec)
    start = layout.data_off
    end = start + n * rec
    if rest and page[end] & 31 != 29:  # only trailing padding may remain
        return None
    if n == 0:
        return memoryview(b"").cast("I")
    heads = page[start:end:rec].translate(_TYPE_LEN)
    if heads != bytes((payload // 4,)) * n:
        return None
    return memoryview(page)[start:end].cast("I")
