"""The shape of the code holds: the library's layers import only downwards,
docs/architecture.md names exactly the modules there are, every module
says what it exports, each tool is a small file without classes, and the
jobs done once (the hist parser, percentiles, buffer sizes, test
switches, names given to kernel objects) stay done once."""

import ast
import glob
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB = os.path.join(REPO, "lib", "ftracetools")
TOOLS = sorted(t for t in os.listdir(os.path.join(REPO, "bin")) if not t.startswith("."))

ALLOWED = {
    "base": set(),
    "host": {"base"},
    "kernel": {"base", "host"},
    "ring": {"base", "host", "kernel"},
    "engines": {"base", "host", "kernel", "ring"},
    "report": {"base"},
    "cli": {"base", "host", "kernel", "ring", "engines", "report"},
}


def layer_of(module: str) -> str:
    """ftracetools.kernel.session -> kernel; ftracetools.errors -> base."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] in ("errors", "switches", "__init__"):
        return "base"
    return parts[1]


def modules():
    for path in sorted(glob.glob(os.path.join(LIB, "**", "*.py"), recursive=True)):
        rel = os.path.relpath(path, os.path.dirname(LIB))[:-3].replace(os.sep, ".")
        yield rel.replace(".__init__", ""), path


def imports(path):
    tree = ast.parse(open(path).read())
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("ftracetools"):
            if n.module == "ftracetools":
                for a in n.names:
                    yield "ftracetools." + a.name
            else:
                yield n.module
        elif isinstance(n, ast.Import):
            for a in n.names:
                if a.name.startswith("ftracetools"):
                    yield a.name


@pytest.mark.parametrize("module,path", list(modules()))
def test_layers_import_only_downwards(module, path):
    mine = layer_of(module)
    for imp in imports(path):
        other = layer_of(imp)
        assert other == mine or other in ALLOWED[mine], \
            "%s (%s) imports %s (%s)" % (module, mine, imp, other)


@pytest.mark.parametrize("module,path", list(modules()))
def test_every_module_says_what_it_exports(module, path):
    tree = ast.parse(open(path).read())
    assert ast.get_docstring(tree), module + " has no docstring"
    names = [t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
             for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
             if isinstance(t, ast.Name)]
    assert "__all__" in names, module + " has no __all__"


def test_the_architecture_page_names_the_tree():
    with open(os.path.join(REPO, "docs", "architecture.md")) as f:
        page = f.read()
    named = set(re.findall(r"`((?:host|kernel|ring|engines|report|cli)/\w+|errors|switches)`",
                           page))
    have = set()
    for module, _ in modules():
        parts = module.split(".")[1:]
        if parts and not (len(parts) == 1 and parts[0] in ALLOWED):
            have.add("/".join(parts) if len(parts) > 1 else parts[0])
    have.add("cli/__init__")
    assert have - named == set(), "modules the page does not name"
    assert named - have == set(), "the page names modules that do not exist"


@pytest.mark.parametrize("tool", TOOLS)
def test_each_tool_is_small_and_has_no_class(tool):
    with open(os.path.join(REPO, "bin", tool)) as f:
        src = f.read()
    assert src.count("\n") < 300, "%s has %d lines" % (tool, src.count("\n"))
    tree = ast.parse(src)
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)], tool


def test_no_unit_test_loads_a_tool_as_a_module():
    for path in glob.glob(os.path.join(REPO, "tests", "unit", "*.py")):
        if path == os.path.abspath(__file__):
            continue
        src = open(path).read()
        assert "load_tool" not in src and "SourceFileLoader" not in src, path


def _lib_sources():
    return {os.path.relpath(p, LIB): open(p).read()
            for p in glob.glob(os.path.join(LIB, "**", "*.py"), recursive=True)}


def _bin_sources():
    return {t: open(os.path.join(REPO, "bin", t)).read() for t in TOOLS}


@pytest.mark.parametrize("what,pattern,home", [
    ("the hist parser", r"Dropped|# event histogram", {"kernel/triggers.py"}),
    ("percentiles", r"def \w*percentile|p / 100|p \* n // 100", {"report/histogram.py"}),
    ("the buffer-size rule", r"MemAvailable", {"kernel/buffers.py"}),
    # the test switches, and the one variable set for numpy under emulation
    ("the environment", r"os\.environ", {"switches.py", "host/cpus.py"}),
    ("names given to kernel objects", r'"ftt_', {"kernel/triggers.py"}),
])
def test_done_once(what, pattern, home):
    where = {p for p, s in list(_lib_sources().items()) + list(_bin_sources().items())
             if re.search(pattern, s)}
    assert where == home, "%s is written in %s" % (what, sorted(where))
