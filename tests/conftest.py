"""Shared test set-up: the ``needs`` marker and the tracefs-unchanged check.

Unit tests (tests/unit) need no root. Live tests (tests/live) use the real
tracefs: each one is checked by ``tracefs_unchanged`` and skips, naming the
feature, only where the kernel lacks what it ``needs``.
"""

import os
import signal
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "lib"))
sys.path.insert(0, HERE)

import tooling  # noqa: E402
import tracestate  # noqa: E402

tooling.default_signals()  # (a run started with "&" ignores SIGINT: see there)


def _terminated(signum, frame):
    # SIGTERM (a CI runner stopping, a timeout) as Ctrl-C: the test's own
    # clean-up and the fixtures' then run. Killed outright, a run left its
    # loop device attached (2026-11-30, test_commands, fio running).
    raise KeyboardInterrupt("SIGTERM")


signal.signal(signal.SIGTERM, _terminated)


def _features():
    """The kernel's features; None only when not root. As root, a probe
    that fails is an error of the session, never a reason to skip."""
    from ftracetools.kernel.features import Features
    if os.geteuid() != 0:
        return None
    return Features()


_FEAT = None


def features():
    global _FEAT
    if _FEAT is None:
        _FEAT = _features() or False
    return _FEAT or None


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.fspath)
        if os.sep + "live" + os.sep in path:
            item.add_marker(pytest.mark.live)
        if item.get_closest_marker("needs"):
            item.add_marker(pytest.mark.vm)


def pytest_runtest_setup(item):
    if item.get_closest_marker("live") is None:
        return
    if os.geteuid() != 0:
        pytest.skip("live test: needs root")
    feat = features()
    if feat is None:
        pytest.skip("live test: no tracefs")
    for m in item.iter_markers("needs"):
        for name in m.args:
            why = feat.why_not(name)
            if why:
                pytest.skip("needs %s: %s" % (name, why))


@pytest.fixture(autouse=True)
def tracefs_unchanged(request):
    """Every live test leaves every tracefs setting as it found it."""
    if request.node.get_closest_marker("live") is None or features() is None:
        yield
        return
    root = features().root
    before = tracestate.snapshot(root)
    yield
    after = tracestate.snapshot(root)
    changed = tracestate.diff(before, after)
    if changed:
        pytest.fail("tracefs changed by this test:\n  " + "\n  ".join(changed[:40]),
                    pytrace=False)


@pytest.fixture
def tracefs_root():
    return features().root


_RAN = [0]
_SKIPPED = {}


def pytest_runtest_logreport(report):
    if report.when == "call" and not report.skipped:
        _RAN[0] += 1
    elif report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED[report.nodeid] = reason.replace("Skipped: ", "", 1)


def pytest_sessionfinish(session, exitstatus):
    import ledger
    name = ledger.tier(session.config.args)
    ok, lines = ledger.check(name, _RAN[0], _SKIPPED)
    if os.environ.get("FTT_LEDGER") != "1":     # a narrowed run: unexpected skips only
        lines = [l for l in lines if "UNEXPECTED" in l]
    elif not ok and session.exitstatus == 0:
        session.exitstatus = 1
    session.config._ledger_lines = lines


def pytest_terminal_summary(terminalreporter):
    for l in getattr(terminalreporter.config, "_ledger_lines", []):
        terminalreporter.write_line(l)
    import torture_stats
    lines = torture_stats.table()
    if lines:
        terminalreporter.write_line("")
        for l in lines:
            terminalreporter.write_line(l)
        out = os.environ.get("FTT_TORTURE_STATS")
        if out:
            torture_stats.save(out)
