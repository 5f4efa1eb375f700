"""Kernel function names from ``available_filter_functions``: matching
globs, regular expressions and ``:mod:MODULE``, and close-match suggestions.
"""

import difflib
import fnmatch
import os
import re
from typing import Dict, List, Optional, Tuple

from .errors import ToolError, UsageError

# A function glob: identifiers with * ? [..] and an optional :mod:MODULE.
# No whitespace and no other ':' so nothing can become a trigger command
# (``func:traceoff``) when written to set_ftrace_filter.
_GLOB = re.compile(r"^[A-Za-z0-9_.*?\[\]!^-]{1,200}$")
_MOD = re.compile(r"^[A-Za-z0-9_*?-]{1,64}$")


def parse_pattern(text: str) -> Tuple[str, Optional[str]]:
    """``'vfs_*'`` -> ('vfs_*', None); ``'*:mod:ext4'`` -> ('*', 'ext4')."""
    func, mod = text, None
    if ":mod:" in text:
        func, _, mod = text.partition(":mod:")
        func = func or "*"
        if not _MOD.match(mod):
            raise UsageError("bad module name in %r" % text)
    if not _GLOB.match(func):
        raise UsageError("bad function pattern %r: use letters, digits, _, "
                         "and the glob characters * ? [ ] (no spaces, no ':' "
                         "except :mod:MODULE)" % text)
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
        return sorted({f for f, _ in funcs if rx.search(f)})
    func, mod = parse_pattern(pattern)
    rx = re.compile(fnmatch.translate(func))
    mrx = re.compile(fnmatch.translate(mod)) if mod else None
    return sorted({f for f, m in funcs if rx.match(f) and (mrx is None or mrx.match(m))})


def suggest(funcs: List[Tuple[str, str]], pattern: str, n: int = 5) -> List[str]:
    """Close names for a pattern that matched nothing."""
    core = re.sub(r"[*?\[\]!^]|:mod:.*", "", pattern).strip("_") or pattern
    names = {f for f, _ in funcs}
    parts = [p for p in core.split("_") if len(p) > 2]
    pool = [f for f in names if any(p in f for p in parts)] or list(names)
    return difflib.get_close_matches(core, pool, n=n, cutoff=0.5)
