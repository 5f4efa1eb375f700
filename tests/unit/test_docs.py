"""Docs agree with code: each tool's man page holds its usage text, and the
README names every tool (house style: the usage docstring is the one copy).
"""

import ast
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = sorted(t for t in os.listdir(os.path.join(REPO, "bin"))
               if not t.startswith("."))


def docstring(tool):
    with open(os.path.join(REPO, "bin", tool)) as f:
        return ast.get_docstring(ast.parse(f.read()), clean=False)


def roff_text(s):
    s = re.sub(r"\\f[BIRP]|\\f\(..|\\&|\\c", "", s)
    s = s.replace("\\-", "-").replace("\\e", "\\").replace("\\(em", "--")
    s = re.sub(r'^\.(B|I|BR|IR|RB|RI|BI|IB)\s+', "", s)
    return " ".join(s.replace('"', "").split())


def man_section(tool, name):
    with open(os.path.join(REPO, "man", "man8", tool + ".8")) as f:
        text = f.read()
    m = re.search(r"^\.SH\s+\"?%s\"?\s*$(.*?)(?=^\.SH|\Z)" % name, text, re.M | re.S)
    assert m, "%s.8 has no %s section" % (tool, name)
    return m.group(1)


def usage_lines(doc):
    block = doc.split("Usage:", 1)[1].split("\n\n", 1)[0]
    return [" ".join(l.split()) for l in block.strip().splitlines()]


def option_specs(doc):
    block = doc.split("Options:", 1)[1].split("\n\n", 1)[0]
    specs = []
    for line in block.splitlines():
        line = line.strip()
        if line.startswith("-"):
            specs.append(" ".join(re.split(r"\s{2,}", line)[0].split()))
    return specs


def test_every_tool_has_a_man_page_and_readme_line():
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    for t in TOOLS:
        assert os.path.exists(os.path.join(REPO, "man", "man8", t + ".8")), t
        assert re.search(r"\b%s\b" % t, readme), "README does not name %s" % t


@pytest.mark.parametrize("tool", TOOLS)
def test_synopsis_matches_usage(tool):
    syn = man_section(tool, "SYNOPSIS")
    lines = []
    for l in syn.splitlines():
        if l.startswith(".") and not re.match(r"^\.(B|I|BR|IR|RB|RI|BI|IB)\s", l):
            continue
        lines.append(roff_text(l))
    text = " ".join(lines)
    for u in usage_lines(docstring(tool)):
        assert u in text, "usage line %r missing from %s.8 SYNOPSIS" % (u, tool)


@pytest.mark.parametrize("tool", TOOLS)
def test_options_match_usage(tool):
    sect = man_section(tool, "OPTIONS")
    entries = []
    lines = sect.splitlines()
    for i, l in enumerate(lines):
        if l.strip() == ".TP" and i + 1 < len(lines):
            entries.append(roff_text(lines[i + 1]))
    specs = option_specs(docstring(tool))
    usage = " ".join(usage_lines(docstring(tool)))
    for s in specs:
        assert s in entries, "option %r not in %s.8 OPTIONS (%s)" % (s, tool, entries)
    for e in entries:
        # Positional arguments (interval, PATTERN...) may be described too.
        positional = not e.startswith("-") and re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(e), usage)
        assert e in specs or positional, "%s.8 OPTIONS has %r, which the usage lacks" % (tool, e)


@pytest.mark.parametrize("tool", TOOLS)
def test_man_page_sections_in_house_order(tool):
    with open(os.path.join(REPO, "man", "man8", tool + ".8")) as f:
        heads = [roff_text(h) for h in re.findall(r"^\.SH\s+(.*)$", f.read(), re.M)]
    order = ["NAME", "SYNOPSIS", "DESCRIPTION", "REQUIREMENTS", "OPTIONS",
             "EXAMPLES", "FIELDS", "OVERHEAD", "SEE ALSO"]
    assert [h for h in heads if h in order] == order, heads
