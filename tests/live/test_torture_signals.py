"""The torture suite: signals at every phase, SIGKILL at random moments, a pipe
closed by head: the kernel's tracing state is as found after each, and no
traceback.

Every trial snapshots all tracefs settings before and compares after (and
the autouse fixture checks each test as a whole); see tests/torture.py.
"""

import os
import random
import signal
import subprocess
import time

import pytest

import tooling
import torture_stats as stats
import tracestate
from torture import (LEAN, SEED, TRIALS, TOOLS, tool_params, check_same, no_traceback, spawn,
                     ended_within, read_to_eof, trials)


SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE]


# The exit status each end signal must give, by the phase it lands in: in
# set-up the run ends at once (128 + N); while tracing, SIGINT and SIGTERM
# end it normally (the last report, 0), the others give 128 + N; in the
# teardown a first SIGINT started, the teardown finishes and the run ends
# as its end signal says (SIGINT, SIGTERM: 0).
GENTLE = (signal.SIGINT, signal.SIGTERM)
SLOW = 0.05     # FTT_SLOW: each set-up write and the teardown wait this long


def expected_status(phase, sig):
    if phase == "setup":
        return 128 + sig
    return 0 if sig in GENTLE else 128 + sig


def wait_for(p, mark, what):
    """Read the tool's stderr up to a line with ``mark``; the tool must be
    running then (else the trial cannot be what it claims)."""
    seen = []
    for line in p.stderr:
        seen.append(line)
        if mark in line:
            return seen
    raise AssertionError("%s: the tool ended before %r: %s" % (what, mark, "".join(seen)))


@pytest.mark.parametrize("tool", tool_params())
@pytest.mark.parametrize("phase", ["setup", "streaming", "teardown"])
def test_signal_matrix(tool, phase, tracefs_root):
    """Each end signal, sent during set-up, while tracing, and during the
    teardown that a first SIGINT started: out within 1 s, the exit status
    the phase gives, nothing changed. Each trial proves its phase: the
    tool said it was there and was still running when the signal went."""
    rng = random.Random("%s-%s-%d" % (tool, phase, SEED))
    before = tracestate.snapshot(tracefs_root)
    sigs = SIGNALS
    if LEAN:
        sigs = [rng.choice(GENTLE), rng.choice([s for s in SIGNALS if s not in GENTLE])]
    for sig in sigs:
        what = "%s, signal %d during %s" % (tool, sig, phase)
        p = spawn(tool, TOOLS[tool][0], slow=0 if phase == "streaming" else SLOW)
        seen = wait_for(p, {"setup": "setting up", "streaming": "Tracing",
                            "teardown": "Tracing"}[phase], what)
        if phase == "teardown":
            p.send_signal(signal.SIGINT)
            seen += wait_for(p, "tearing down", what)
        # within the phase: set-up and teardown wait SLOW at each step
        time.sleep(rng.uniform(0.05, 0.4) if phase == "streaming" else rng.uniform(0, SLOW / 2))
        assert p.poll() is None, what + ": ended before the signal: " + "".join(seen)
        p.send_signal(sig)
        assert ended_within(p, 1.0 + (SLOW * 20 if phase == "teardown" else 0)), \
            "%s: did not end within 1 s (x %g)" % (what, tooling.LIMIT_SCALE)
        err = "".join(seen) + p.stderr.read()      # everything, read after the signal
        no_traceback(err, what)
        assert p.returncode == expected_status(phase, sig), (what, p.returncode, err)
        if phase == "setup":
            assert "Tracing" not in err, what + ": the signal came after set-up"
        stats.add("signal trials")
        stats.add("  %s%s" % (signal.Signals(sig).name,
                              " after SIGINT" if phase == "teardown" else ""))
        check_same(tracefs_root, before, what)


@pytest.mark.parametrize("tool", tool_params())
def test_sigint_as_soon_as_tracing(tool, tracefs_root):
    """Ctrl-C the moment the banner appears, before the first read: the
    last summary still comes out (iolatency's numpy path, which loads numpy
    in its first round, died here in 8 runs of 10 in a CI run)."""
    before = tracestate.snapshot(tracefs_root)
    for _ in range(trials(TRIALS)):
        p = spawn(tool, TOOLS[tool][0])
        for line in p.stderr:
            if line.startswith("Tracing"):
                p.send_signal(signal.SIGINT)
                break
        assert ended_within(p, 5.0), "%s did not end after SIGINT" % tool
        err = p.stderr.read()
        no_traceback(err, "%s, SIGINT at the banner" % tool)
        assert p.returncode == 0, err
        stats.add("signal trials")
        stats.add("  SIGINT at the banner")
    check_same(tracefs_root, before, "%s, SIGINT at the banner" % tool)


@pytest.mark.parametrize("tool", tool_params())
def test_pipe_closed_by_head(tool, tracefs_root):
    before = tracestate.snapshot(tracefs_root)
    load = subprocess.Popen(["sh", "-c", "while :; do cat /proc/self/stat >/dev/null; done"])
    try:
        p = subprocess.run("%s | head -1" % " ".join(tooling.argv(tool, *TOOLS[tool][0])),
                           shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=30 * tooling.LIMIT_SCALE)
    finally:
        load.kill()
        load.wait()
    no_traceback(p.stderr, tool + " | head -1")
    assert "Broken pipe" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr
    stats.add("signal trials")
    stats.add("  SIGPIPE from | head -1")
    check_same(tracefs_root, before, tool + " | head -1")


@pytest.mark.parametrize("tool", tool_params())
def test_sigkill_at_random_moments(tool, tracefs_root):
    """kill -9 anywhere from exec to well into tracing: the tool's guardian
    restores what was left at once, says so, and the state is as before
    with no other run; the next run finds nothing to restore."""
    rng = random.Random("%s-kill-%d" % (tool, SEED))
    before = tracestate.snapshot(tracefs_root)
    for _ in range(trials(TRIALS * 2)):
        p = spawn(tool, TOOLS[tool][0])
        time.sleep(rng.uniform(0.0, 0.8) * tooling.SCALE)
        p.kill()
        p.wait()
        left = [n for n in os.listdir(os.path.join(tracefs_root, "instances"))
                if n == "%s-%d" % (tool, p.pid)]
        err = read_to_eof(p.stderr, 60 * tooling.LIMIT_SCALE)   # the guardian's end
        p.stderr.close()
        no_traceback(err, tool + " killed, its guardian")
        check_same(tracefs_root, before, "%s after kill -9, its guardian done" % tool)
        if left:
            assert "restored" in err and ("pid %d" % p.pid) in err, err
        nxt = tooling.start(tool, *TOOLS[tool][0], stdout=subprocess.DEVNULL)
        rc, out, err = nxt.stop(signal.SIGINT)
        no_traceback(err, tool + " after kill -9")
        assert rc == 0, err
        assert "restored" not in err, "the guardian left work for the next run: " + err
        stats.add("SIGKILL trials")
        check_same(tracefs_root, before, "%s after kill -9" % tool)
