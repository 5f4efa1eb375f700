"""The torture suite: hostile and fuzzed command lines: a clear line and exit 2
(or a clean run), never a traceback, never a changed setting.

Every trial snapshots all tracefs settings before and compares after (and
the autouse fixture checks each test as a whole); see tests/torture.py.
"""

import os
import subprocess

import pytest

import tooling
import torture_stats as stats
import tracestate
from torture import TOOLS, check_same, no_traceback


HOSTILE = ["func:traceoff", "vfs_read:stacktrace:5", "*:mod:x y", "1\n2", "0x10", " 3",
           "1e9", "nan", "inf", "-inf", "-0", "0", "99999999", "4294967297",
           "../../../etc/passwd", "\x1b[31m", "$(reboot)", "`id`", ";ls", "a b",
           "", " ", "\t", "1,", "0-", "3-1", "0,2-3", "65535", "-1", "1;2",
           "*R*\" || 1", "rwbs ~ \"*\"", "\u202e", "\U0001f600", "\x00"]


# Options never fuzzed: -c runs a command, --perfetto/--tef/--textfile
# write a file (--prometheus is: a valid value listens on 127.0.0.1 only,
# for the run's 0.2 s).
NOT_FUZZED = {"-c", "--perfetto", "--tef", "--textfile", "-h", "--help"}


# How to make a run end by itself, per tool.
ENDING = {"iolatency": ["0.2", "1"], "biosnoop": ["0.2"]}


def tool_options(tool):
    doc = subprocess.run(tooling.argv(tool, "-h"), stdout=subprocess.PIPE, text=True).stdout
    block = doc.split("Options:", 1)[1].split("\n\n", 1)[0]
    opts = []
    for line in block.splitlines():
        line = line.strip()
        if line.startswith("-"):
            spec = line.split("  ")[0].split(",")[0].split()
            name = spec[0].split("=")[0]
            if name not in NOT_FUZZED:
                opts.append((name, len(spec) > 1 or "=" in spec[0]))
    return opts


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_fuzzed_command_lines(tool, tracefs_root):
    """Hostile values for every option and argument: exit 0 (a valid run),
    1 or 2 with a message; never a traceback; tracefs unchanged."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st
    opts = tool_options(tool)
    before = tracestate.snapshot(tracefs_root)
    ending = ENDING.get(tool, ["-d", "0.2"])
    examples = int(os.environ.get("FTT_FUZZ_EXAMPLES", "25"))
    value = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12),
                      st.integers(-2 ** 70, 2 ** 70).map(str),
                      st.floats(allow_nan=True).map(str))

    @hypothesis.settings(max_examples=examples, deadline=None, derandomize=True,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(opt=st.sampled_from(opts), val=value, extra=st.lists(value, max_size=2))
    def one(opt, val, extra):
        name, takes = opt
        args = [name] + ([val] if takes else []) + ending + extra
        args = [a.replace("\x00", "") for a in args]
        try:
            p = tooling.run(tool, *args, timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s %r did not end" % (tool, args))
        stats.add("fuzzed inputs")
        no_traceback(p.stderr, "%s %r" % (tool, args))
        assert p.returncode in (0, 1, 2), (args, p.returncode, p.stderr)
        if p.returncode:
            assert p.stderr.startswith(tool + ": "), (args, p.stderr)
        check_same(tracefs_root, before, "%s %r" % (tool, args))
    one()
