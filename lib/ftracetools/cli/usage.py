"""Saying what is wrong with a command line, the same way in every tool.

docopt says only that the arguments do not fit. ``explain(doc, argv)``
reads the tool's own usage text (its ``Usage:`` patterns and ``Options:``
table) and names the offending option or argument, with a one-line hint:

    --nope: no such option                 options: -p -L -c -C -d ... (TOOL -h)
    -p: needs a value (PID)                -p PID  Only this process: ...
    -t: needs -s                           -t TOP  With -s: only the TOP tasks ...
    -p and -c exclude each other           give one of -p, -L, -c
    'x': unexpected argument               usage: TOOL -s [...] [<interval> [<count>]]
"""

import difflib
import re
from typing import Dict, List, NamedTuple, Optional, Set, Tuple

__all__ = ["Option", "Pattern", "options", "patterns", "explain"]


class Option(NamedTuple):
    names: Tuple[str, ...]      # ("-h", "--help")
    arg: Optional[str]          # placeholder ("PID"), None for a flag
    help: str                   # the whole line, as the usage text has it


class Pattern(NamedTuple):
    text: str                   # one usage line, continuation lines joined
    allowed: Set[str]           # options it accepts (first name of each)
    required: Set[str]          # options it needs
    groups: List[List[Set[str]]]    # alternations: options per branch
    positionals: List[str]      # the positional arguments it takes, at most
    repeats: bool               # a positional that repeats (PATTERN...)


def options(doc: str) -> List[Option]:
    """The ``Options:`` table."""
    block = doc.split("Options:", 1)[1].split("\n\n", 1)[0] if "Options:" in doc else ""
    out: List[Option] = []
    for line in block.splitlines():
        s = line.strip()
        if not s.startswith("-"):
            if out and s and not s.startswith("<") and re.match(r"^\s{6,}", line):
                o = out[-1]     # the description goes on
                out[-1] = o._replace(help=o.help + " " + " ".join(s.split()))
            elif s:
                out.append(Option((), None, ""))    # a positional's line ends it
            continue
        spec = re.split(r"\s{2,}", s)[0]
        words = [w.strip(",") for w in spec.replace("=", " ").split()]
        names = tuple(w for w in words if w.startswith("-"))
        args = [w for w in words if not w.startswith("-")]
        parts = re.split(r"\s{2,}", s, 1)
        help = "  ".join(" ".join(x.split()) for x in parts)
        out.append(Option(names, args[0] if args else None, help))
    return [o for o in out if o.names]


def _canon(opts: List[Option]) -> Dict[str, Option]:
    return {n: o for o in opts for n in o.names}


def patterns(doc: str, opts: List[Option]) -> List[Pattern]:
    """The ``Usage:`` patterns, continuation lines joined."""
    block = doc.split("Usage:", 1)[1].split("\n\n", 1)[0]
    lines: List[str] = []
    for line in block.strip("\n").splitlines():
        if not line.strip():
            continue
        if lines and re.match(r"^\s{4,}", line) and not re.match(r"^\s{2}\S", line):
            lines[-1] += " " + line.strip()
        else:
            lines.append(line.strip())
    by = _canon(opts)
    return [_pattern(l, by) for l in lines]


def _pattern(text: str, by: Dict[str, Option]) -> Pattern:
    toks = re.findall(r"\.\.\.|[\[\]()|]|[^\s\[\]()|]+", text)[1:]     # (the tool's name)
    allowed: Set[str] = set()
    required: Set[str] = set()
    groups: List[List[Set[str]]] = []
    stack: List[List[Set[str]]] = []     # open brackets: branches of options
    positionals: List[str] = []
    repeats = False
    i = 0
    while i < len(toks):
        t = toks[i]
        prev = toks[i - 1] if i else ""
        if t in ("[", "("):
            stack.append([set()])
        elif t in ("]", ")"):
            branches = stack.pop()
            if len([b for b in branches if b]) > 1:
                groups.append(branches)
            if stack:
                for b in branches:
                    stack[-1][-1] |= b
        elif t == "|":
            if stack:
                stack[-1].append(set())
        elif t == "...":
            repeats = repeats or (prev in positionals)
        elif t == "options":
            for o in set(by.values()):
                allowed.add(o.names[0])
        elif t.startswith("-") and t != "-":
            names = [t] if t.startswith("--") or len(t) == 2 else ["-" + c for c in t[1:]]
            for n in names:
                o = by.get(n)
                first = o.names[0] if o else n
                allowed.add(first)
                if stack:
                    stack[-1][-1].add(first)
                else:
                    required.add(first)
                if o is not None and o.arg and i + 1 < len(toks) and toks[i + 1] == o.arg:
                    i += 1
        else:
            if t.endswith("..."):
                t, repeats = t[:-3], True
            positionals.append(t)
        i += 1
    return Pattern(text, allowed, required, groups, positionals, repeats)


def _scan(argv: List[str], by: Dict[str, Option]):
    """(options used, first name each, in order; positional arguments;
    the first problem met, if any)."""
    used: List[str] = []
    pos: List[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            pos += argv[i + 1:]
            break
        if a.startswith("--"):
            name, eq, val = a.partition("=")
            hits = [n for n in by if n.startswith(name) and n.startswith("--")]
            o = by.get(name) or (by[hits[0]] if len(hits) == 1 else None)
            if o is None:
                return used, pos, (name, "unknown")
            used.append(o.names[0])
            if o.arg and not eq:
                if i + 1 >= len(argv):
                    return used, pos, (name, "value")
                i += 1
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                n = "-" + a[j]
                o = by.get(n)
                if o is None:
                    return used, pos, (n, "unknown")
                used.append(o.names[0])
                if o.arg:
                    if j + 1 == len(a):
                        if i + 1 >= len(argv):
                            return used, pos, (n, "value")
                        i += 1
                    break
                j += 1
        else:
            pos.append(a)
        i += 1
    return used, pos, None


def explain(doc: str, argv: List[str], tool: str) -> Tuple[str, str]:
    """(what is wrong, a hint), each one line, for argv that docopt refused."""
    opts = options(doc)
    by = _canon(opts)
    pats = [p for p in patterns(doc, opts) if "-h" not in p.required]
    used, pos, bad = _scan(argv, by)
    hint_all = "options: %s (%s -h)" % (" ".join(o.names[-1] if o.names[-1] != "--help"
                                                  else "-h" for o in opts), tool)
    if len(hint_all) > 70:
        hint_all = "'%s -h' lists the options" % tool
    if bad is not None:
        name, why = bad
        if why == "unknown":
            close = difflib.get_close_matches(name, list(by), n=1, cutoff=0.6)
            return ("%s: no such option%s" % (name, " (did you mean %s?)" % close[0]
                                              if close else ""), hint_all)
        o = by[name]
        return "%s: needs a value (%s)" % (name, o.arg), o.help
    u = set(used)
    for p in pats:
        for branches in p.groups:
            hit = [sorted(b & u, key=used.index)[0] for b in branches if b & u]
            if len(hit) > 1 and u <= p.allowed:
                every = sorted((x for b in branches for x in b), key=lambda n: [
                    o.names[0] for o in opts].index(n) if n in by else 0)
                return ("%s exclude each other" % " and ".join(hit[:2]),
                        "give one of %s" % ", ".join(every))
    full = [p for p in pats if u <= p.allowed and p.required <= u]
    modes = sorted({r for p in pats for r in p.required}, key=_order(opts))
    if not full:
        for x in used:
            mine = [p for p in pats if x in p.allowed]
            if not mine:
                return "%s: not with these options" % x, by[x].help if x in by else hint_all
            needs = sorted({r for p in mine for r in p.required - u}, key=_order(opts))
            if needs and all(p.required - u for p in mine):
                return "%s: needs %s" % (x, " or ".join(needs)), by[x].help if x in by else ""
        a, b = used[0], next((x for x in used[1:] if not any(
            {used[0], x} <= p.allowed for p in pats)), used[-1])
        return ("%s and %s exclude each other" % (a, b),
                "give one of %s" % ", ".join(modes) if modes else hint_all)
    most = max(full, key=lambda p: (p.repeats, len(p.positionals)))
    if not most.repeats and len(pos) > len(most.positionals):
        return ("%r: unexpected argument" % pos[len(most.positionals)],
                "usage: " + _short(most.text))
    if most.positionals and not pos:
        return "missing %s" % most.positionals[0].strip("<>"), "usage: " + _short(most.text)
    return "bad usage", "usage: " + _short(most.text)


def _order(opts: List[Option]):
    first = [o.names[0] for o in opts]
    return lambda n: first.index(n) if n in first else len(first)


def _short(text: str, width: int = 72) -> str:
    return text if len(text) <= width else text[:width - 4].rsplit(" ", 1)[0] + " ..."
