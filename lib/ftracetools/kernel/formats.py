"""Event formats, read from each event's ``format`` file, and decoders.

A decoder turns an event's raw payload into a tuple of the fields a tool
asked for, at the offsets and sizes this kernel uses: field sets move
between kernel versions, so nothing here is hard-coded.
"""

import os
import re
import struct
from typing import Callable, Dict, List, NamedTuple, Sequence, Tuple

from ftracetools.errors import ToolError

__all__ = ["Field", "parse_format", "EventFormat", "print_tables", "stack_record"]


class Field(NamedTuple):
    name: str
    type: str
    offset: int
    size: int
    signed: bool

    @property
    def data_loc(self) -> bool:
        return self.type.startswith("__data_loc")


_FIELD_RE = re.compile(r"\s*field:(.*?);\s*offset:(\d+);\s*size:(\d+);\s*signed:(\d+);")
_INT = {1: "b", 2: "h", 4: "i", 8: "q"}


def parse_format(text: str) -> Tuple[str, int, Dict[str, Field], str]:
    """Parse a ``format`` file: (name, id, fields by name, print fmt)."""
    name, eid, fields, fmt = "", -1, {}, ""
    for line in text.splitlines():
        if line.startswith("name:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("ID:"):
            eid = int(line.split(":", 1)[1])
        elif line.startswith("print fmt:"):
            fmt = line.split(":", 1)[1].strip()
        else:
            m = _FIELD_RE.match(line)
            if m:
                decl = m.group(1).strip()
                fname = decl.split()[-1]
                typ = decl[: -len(fname)].strip()
                if "[" in fname:  # char prev_comm[16]
                    typ += fname[fname.index("["):]
                    fname = fname[: fname.index("[")]
                fields[fname] = Field(fname, typ, int(m.group(2)),
                                      int(m.group(3)), m.group(4) == "1")
    return name, eid, fields, fmt


class EventFormat:
    """One event's layout: ``EventFormat.load(tracefs_root, "sched", "sched_switch")``."""

    def __init__(self, system: str, text: str) -> None:
        self.system = system
        self.name, self.id, self.fields, self.print_fmt = parse_format(text)

    @classmethod
    def load(cls, root: str, system: str, name: str) -> "EventFormat":
        p = os.path.join(root, "events", system, name, "format")
        try:
            with open(p) as f:
                return cls(system, f.read())
        except FileNotFoundError:
            raise ToolError("this kernel has no %s:%s event" % (system, name)) from None

    def field(self, name: str) -> Field:
        try:
            return self.fields[name]
        except KeyError:
            raise ToolError("event %s:%s has no field %r on this kernel"
                            % (self.system, self.name, name)) from None

    def decoder(self, names: Sequence[str]) -> Callable[[bytes], tuple]:
        """A function payload -> tuple of the named fields, in that order.

        Numbers come out as ints; char arrays and __data_loc strings as str
        (undecodable bytes escaped by ``output.escape`` when printed).
        Where every field named is a number it also takes the payload's
        offset in a larger buffer: ``f(page, offset)``.
        """
        flds = [self.field(n) for n in names]
        nums = sorted((f for f in flds if not _is_str(f)), key=lambda f: f.offset)
        fmt, pos = "<", 0
        for f in nums:
            if f.offset < pos:  # overlapping fields: decode separately
                nums = []
                break
            fmt += "x" * (f.offset - pos)
            code = _INT.get(f.size)
            if code is None:
                fmt += "%dx" % f.size
            else:
                fmt += code if f.signed else code.upper()
            pos = f.offset + f.size
        st = struct.Struct(fmt)
        num_index = {f.name: i for i, f in enumerate(nums)}
        plan = []
        for f in flds:
            if f.name in num_index:
                plan.append((0, num_index[f.name], 0, 0))
            elif f.data_loc:
                plan.append((1, f.offset, 0, 0))
            elif _is_str(f):
                plan.append((2, f.offset, f.size, 0))
            else:
                code = _INT.get(f.size, "Q")
                plan.append((3, f.offset, 0, struct.Struct("<" + (code if f.signed else code.upper()))))

        if nums and all(p[0] == 0 for p in plan):
            order = [p[1] for p in plan]
            if order == list(range(len(order))):
                return st.unpack_from
            unpack = st.unpack_from

            def only_nums(buf, off=0, _u=unpack, _o=order):
                v = _u(buf, off)
                return tuple(v[i] for i in _o)
            return only_nums

        def decode(buf, _st=st, _plan=plan, _has=bool(nums)):
            v = _st.unpack_from(buf) if _has else ()
            out = []
            for kind, a, b, s in _plan:
                if kind == 0:
                    out.append(v[a])
                elif kind == 1:
                    loc = struct.unpack_from("<I", buf, a)[0]
                    off, ln = loc & 0xFFFF, loc >> 16
                    out.append(_cstr(bytes(buf[off:off + ln])))
                elif kind == 2:
                    out.append(_cstr(bytes(buf[a:a + b])))
                else:
                    out.append(s.unpack_from(buf, a)[0])
            return tuple(out)
        return decode


def _is_str(f: Field) -> bool:
    return f.data_loc or ("char" in f.type and "[" in f.type)


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


_FLAGS_RE = re.compile(r"__print_(?:flags|symbolic)\(")
_PAIR_RE = re.compile(r'\{\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*"([^"]*)"\s*\}')


def print_tables(print_fmt: str) -> List[List[Tuple[int, str]]]:
    """The value/name tables of each __print_flags/__print_symbolic call.

    Used to decode e.g. sched_switch's prev_state letters from this
    kernel's own table (its encoding changed in 4.14).
    """
    tables = []
    for m in _FLAGS_RE.finditer(print_fmt):
        depth, i = 1, m.end()
        while i < len(print_fmt) and depth:
            c = print_fmt[i]
            depth += (c == "(") - (c == ")")
            i += 1
        body = print_fmt[m.end():i]
        pairs = [(int(v, 0), n) for v, n in _PAIR_RE.findall(body)]
        if pairs:
            tables.append(pairs)
    return tables


def stack_record(root: str) -> Tuple[int, Callable[[bytes], bytes]]:
    """ftrace's kernel_stack event, what the ``stacktrace`` trigger writes:
    its type id and ``addrs(payload)`` -> its return addresses as raw bytes
    (u64 each, innermost first). The format says caller[8]; the record
    holds ``size`` of them."""
    fmt = EventFormat.load(root, "ftrace", "kernel_stack")
    soff, coff = fmt.field("size").offset, fmt.field("caller").offset
    i32 = struct.Struct("<i").unpack_from

    def addrs(p) -> bytes:
        n = max(0, min(i32(p, soff)[0], (len(p) - coff) // 8))
        return bytes(p[coff:coff + 8 * n])
    return fmt.id, addrs
