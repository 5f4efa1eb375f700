"""Kernel function names from ``available_filter_functions``: matching
globs, regular expressions and ``:mod:MODULE``, and close-match suggestions;
kernel stacks (return addresses) named from /proc/kallsyms.
"""

import bisect
import difflib
import fnmatch
import os
import re
import struct
from collections import Counter
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

from ftracetools.errors import ToolError, UsageError
from ftracetools.host.maps import Kallsyms

__all__ = ["INVALID_PREFIX", "parse_pattern", "load", "match", "suggest", "duplicates", "filter_indexes", "AddrMap", "match_all", "filter_text", "TRACING_FRAMES", "trim_tracing", "StackNames"]

# A function glob: identifiers with * ? [..] and an optional :mod:MODULE.
# No whitespace and no other ':' so nothing can become a trigger command
# (``func:traceoff``) when written to set_ftrace_filter.
_GLOB = re.compile(r"^[A-Za-z0-9_.*?\[\]!^-]{1,200}$")
_MOD = re.compile(r"^[A-Za-z0-9_*?-]{1,64}$")

#: Placeholders the kernel lists for records it could not place (5.19+);
#: nothing useful can be traced through them.
INVALID_PREFIX = "__ftrace_invalid_address__"


def parse_pattern(text: str) -> Tuple[str, Optional[str]]:
    """``'vfs_*'`` -> ('vfs_*', None); ``'*:mod:ext4'`` -> ('*', 'ext4')."""
    func, mod = text, None
    if ":mod:" in text:
        func, _, mod = text.partition(":mod:")
        func = func or "*"
        if not _MOD.match(mod):
            raise UsageError("%s: not a module name" % text,
                             "a function pattern is GLOB or GLOB:mod:MODULE")
    if not _GLOB.match(func) or func.startswith("!"):
        # A leading '!' would be a negation in set_ftrace_filter.
        raise UsageError("%s: not a function pattern" % text,
                         "letters, digits, _ and * ? [ ]; GLOB or GLOB:mod:MODULE")
    return func, mod


def load(root: str) -> List[Tuple[str, str]]:
    """(function, module) of every traceable function; module may be ''."""
    p = os.path.join(root, "available_filter_functions")
    try:
        with open(p) as f:
            data = f.read()
    except PermissionError:
        raise ToolError("cannot read available_filter_functions: function "
                        "tracing is forbidden by this kernel (lockdown or a "
                        "security policy)") from None
    except OSError as e:
        raise ToolError("cannot read available_filter_functions: %s"
                        % os.strerror(e.errno or 0)) from None
    out = []
    for line in data.splitlines():
        parts = line.split()
        if not parts:
            continue
        mod = parts[1][1:-1] if len(parts) > 1 and parts[1].startswith("[") else ""
        out.append((parts[0], mod))
    return out


def match(funcs: List[Tuple[str, str]], pattern: str,
          regex: bool = False) -> List[str]:
    """Names of the functions matching one pattern (sorted, unique)."""
    if regex:
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise UsageError("bad regular expression %r: %s" % (pattern, e)) from None
        return sorted({f for f, _ in funcs if rx.search(f)
                       and not f.startswith(INVALID_PREFIX)})
    func, mod = parse_pattern(pattern)
    rx = re.compile(fnmatch.translate(func))
    mrx = re.compile(fnmatch.translate(mod)) if mod else None
    return sorted({f for f, m in funcs if rx.match(f) and (mrx is None or mrx.match(m))
                   and not f.startswith(INVALID_PREFIX)})


def suggest(funcs: List[Tuple[str, str]], pattern: str, n: int = 5) -> List[str]:
    """Close names for a pattern that matched nothing.

    Names sharing the pattern's longest word come first (``__x64_sys_getppid``
    -> ``__do_sys_getppid``; ``do_page_fault`` -> ``exc_page_fault``), ranked
    by similarity; otherwise the closest names overall.
    """
    core = re.sub(r"\[[^\]]*\]|[*?!^]|:mod:.*", "", pattern).strip("_") or pattern
    names = {f for f, _ in funcs if not f.startswith(INVALID_PREFIX)}
    parts = sorted((p for p in re.split(r"[_.]+", core) if len(p) > 2),
                   key=len, reverse=True)
    for p in parts[:2]:
        # The word itself, then shortened (a typo or suffix at its end).
        for w in dict.fromkeys(p[:k] for k in range(len(p), max(3, len(p) - 3), -1)):
            pool = [f for f in names if w in f]
            got = difflib.get_close_matches(core, pool, n=n, cutoff=0.4)
            if got:
                return got
    return difflib.get_close_matches(core, list(names), n=n, cutoff=0.6)


def duplicates(funcs: Iterable[Tuple[str, str]]) -> Set[str]:
    """Names listed more than once (static functions of the same name):
    a probe on such a name is refused (or lands on one of them only)."""
    c = Counter(f for f, _ in funcs)
    return {f for f, k in c.items() if k > 1}


def filter_indexes(funcs: List[Tuple[str, str]], names: Iterable[str]) -> List[int]:
    """1-based positions in ``available_filter_functions`` of every function
    with one of these names: writing the numbers to ``set_ftrace_filter``
    (5.13+) selects them without the kernel matching each name against every
    function (quadratic for thousands of names)."""
    want = set(names)
    return [i + 1 for i, (f, _) in enumerate(funcs) if f in want]


class AddrMap:
    """Function-tracer ``ip`` values -> names, for the functions traced.

    ``available_filter_functions_addrs`` (6.5+) gives each record's exact
    address (on x86 with IBT, 4 bytes past the symbol); otherwise the
    symbols' addresses come from ``/proc/kallsyms`` and an ip within
    ``slack`` bytes past one maps to it. Aliases sharing an address
    (``__x64_sys_getppid`` and ``__do_sys_getppid`` on 6.1) resolve to the
    traced name.
    """

    def __init__(self, pairs: Iterable[Tuple[int, str]], slack: int = 32) -> None:
        d = {}
        for a, n in pairs:
            d.setdefault(a, n)
        self.addrs = sorted(d)
        self.names = [d[a] for a in self.addrs]
        self.slack = slack
        self._cache: Dict[int, Optional[str]] = {}

    @classmethod
    def load(cls, root: str, names: Iterable[str],
             kallsyms: str = "/proc/kallsyms") -> "AddrMap":
        want = set(names)
        addrs = os.path.join(root, "available_filter_functions_addrs")
        pairs: List[Tuple[int, str]] = []
        src = addrs if os.path.exists(addrs) else kallsyms
        try:
            with open(src) as f:
                for line in f:
                    p = line.split()
                    if src == addrs and len(p) >= 2 and p[1] in want:
                        pairs.append((int(p[0], 16), p[1]))
                    elif src != addrs and len(p) >= 3 and p[2] in want \
                            and p[1] in "tTwW":
                        pairs.append((int(p[0], 16), p[2]))
        except OSError as e:
            raise ToolError("cannot read %s: %s" % (src, os.strerror(e.errno or 0))) from None
        if want and not any(a for a, _ in pairs):
            raise ToolError("%s shows no function addresses (kptr_restrict?): "
                            "cannot name the functions traced" % src)
        return cls(pairs, slack=0 if src == addrs else 32)

    def name(self, ip: int) -> Optional[str]:
        """The traced function at ``ip``, or None."""
        if ip in self._cache:
            return self._cache[ip]
        i = bisect.bisect_right(self.addrs, ip) - 1
        n = self.names[i] if i >= 0 and ip - self.addrs[i] <= self.slack else None
        self._cache[ip] = n
        return n


def match_all(funcs: List[Tuple[str, str]], patterns: Iterable[str],
              regex: bool = False) -> Tuple[List[str], List[str]]:
    """(sorted names matching any pattern, the patterns that matched nothing)."""
    names: Set[str] = set()
    empty = []
    for p in patterns:
        got = match(funcs, p, regex)
        if not got:
            empty.append(p)
        names.update(got)
    return sorted(names), empty


def filter_text(funcs: List[Tuple[str, str]], names: List[str],
                by_index_over: int = 200) -> str:
    """What to write to ``set_ftrace_filter`` to select exactly ``names``:
    the names themselves, or for many names their positions (5.13+: the
    kernel matches each name against every function, which is quadratic).
    Callers should read the filter back and compare (a module loaded in
    between shifts positions)."""
    if len(names) <= by_index_over:
        return "\n".join(names)
    return " ".join(str(i) for i in filter_indexes(funcs, names))


#: Frames of the tracing machinery itself, on top of a stack taken at an
#: event (the tracepoint's, the trigger's, the syscall events' own).
TRACING_FRAMES = ("trace_", "__trace", "__ftrace", "event_trigger", "stacktrace_trigger",
                  "ftrace_", "perf_trace_", "perf_syscall_")


def trim_tracing(frames: Tuple[str, ...]) -> Tuple[str, ...]:
    """``frames`` (innermost first) without the tracing frames on top."""
    i = 0
    while i < len(frames) - 1 and frames[i].startswith(TRACING_FRAMES):
        i += 1
    return tuple(frames[i:])


class StackNames:
    """Kernel stacks as ftrace's kernel_stack records carry them (u64
    return addresses, innermost first, as raw bytes) -> function names,
    trimmed by ``trim``; each stack named once. /proc/kallsyms is read at
    the first stack (about 0.1 s); where it hides addresses, frames are
    shown as hex."""

    def __init__(self, trim: Callable = trim_tracing, kallsyms: str = "/proc/kallsyms") -> None:
        self.trim, self.path = trim, kallsyms
        self.ksyms: Optional[Kallsyms] = None
        self.named: Dict[bytes, Tuple[str, ...]] = {}

    def names(self, raw: bytes) -> Tuple[str, ...]:
        got = self.named.get(raw)
        if got is None:
            if self.ksyms is None:
                self.ksyms = Kallsyms(self.path)
            k = self.ksyms
            addrs = struct.unpack("<%dQ" % (len(raw) // 8), raw)
            got = self.named[raw] = self.trim(tuple(
                k.name(a) if k.addrs else "0x%x" % a for a in addrs)) or ("[empty stack]",)
        return got
