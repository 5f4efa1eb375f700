"""pytest plugin that runvm.py loads in the guest (``-p vmprogress``).

- Progress log: each test's start and each phase's outcome are appended, one
  line at a time, to the file named by ``FTT_VM_PROGRESS`` (in the results
  directory, which the host sees at once), so that when a guest hangs or
  dies, runvm.py can still say which tests passed and which one was running.
  Line format, tab-separated: ``start NODEID`` or
  ``report NODEID WHEN OUTCOME DURATION LONGREPR-FIRST-LINE``.
- Per-test time limit: ``FTT_VM_TEST_TIMEOUT`` seconds (0: none; a test may
  raise its own with ``@pytest.mark.vm_limit(SECS)``) for each of
  setup, call and teardown, enforced with SIGALRM: the phase fails with a
  clear message and the run goes on with the next test (its clean-up code
  still runs), instead of the whole boot hanging until runvm.py's timeout;
  60 s later, if the main thread is still stuck, pytest is ended with every
  thread's stack dumped (faulthandler).
"""

import faulthandler
import os
import signal
import threading
from typing import Any, Generator, Optional, TextIO

import pytest

_log: Optional[TextIO] = None


def _clean(s: str) -> str:
    return s.replace("\t", " ").replace("\n", " ")


def _emit(*fields: str) -> None:
    if _log is not None:
        _log.write("\t".join(_clean(f) for f in fields) + "\n")
        _log.flush()


def pytest_configure(config: Any) -> None:
    global _log
    path = os.environ.get("FTT_VM_PROGRESS")
    if path:
        _log = open(path, "a")


def pytest_unconfigure(config: Any) -> None:
    global _log
    if _log is not None:
        _log.close()
        _log = None


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    _emit("start", nodeid)


def pytest_runtest_logreport(report: Any) -> None:
    first = ""
    if report.failed or report.skipped:
        text = str(report.longrepr or "")
        if report.skipped and isinstance(report.longrepr, tuple):
            text = str(report.longrepr[2])
        lines = [ln for ln in text.splitlines() if ln.strip()]
        first = lines[-1] if report.failed and lines else (lines[0] if lines else "")
        crash = getattr(report.longrepr, "reprcrash", None)
        if report.failed and crash is not None and getattr(crash, "message", ""):
            msg = " | ".join(ln.strip() for ln in crash.message.splitlines()[:25] if ln.strip())
            first = "%s (%s:%s)" % (msg, crash.path, crash.lineno)
    _emit("report", report.nodeid, report.when, report.outcome,
          "%.1f" % report.duration, first[:3000])


def _limit() -> int:
    try:
        return int(os.environ.get("FTT_VM_TEST_TIMEOUT", "0"))
    except ValueError:
        return 0


class _Alarm:
    """Fail the phase after FTT_VM_TEST_TIMEOUT seconds.

    A timer thread sends SIGALRM to the main thread itself (a process-wide
    alarm may land on another thread and leave the main thread blocked in
    a system call), and the handler raises ``Failed`` there. If even that
    does not get through within another 60 s, faulthandler dumps every
    thread's stack to the console and ends pytest, so the guest does not
    sit until runvm.py's boot timeout (the progress log names the test).
    """

    def __init__(self, what: str, item: Any = None) -> None:
        self.what = what
        self.secs = _limit()
        own = item.get_closest_marker("vm_limit") if item is not None else None
        if own is not None and self.secs > 0:
            self.secs = max(self.secs, int(own.args[0]))
        self.old: Any = None
        self.timer: Optional[threading.Timer] = None

    def _fire(self, signum: int, frame: Any) -> None:
        pytest.fail("%s exceeded the VM per-test limit of %d s (FTT_VM_TEST_TIMEOUT)"
                    % (self.what, self.secs), pytrace=True)

    def __enter__(self) -> "_Alarm":
        if self.secs > 0:
            self.old = signal.signal(signal.SIGALRM, self._fire)
            main = threading.main_thread().ident
            assert main is not None
            self.timer = threading.Timer(self.secs, signal.pthread_kill, (main, signal.SIGALRM))
            self.timer.daemon = True
            self.timer.start()
            faulthandler.dump_traceback_later(self.secs + 60, exit=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.secs > 0:
            faulthandler.cancel_dump_traceback_later()
            if self.timer is not None:
                self.timer.cancel()
            signal.signal(signal.SIGALRM, self.old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: Any) -> Generator[None, None, None]:
    with _Alarm("setup", item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: Any) -> Generator[None, None, None]:
    with _Alarm("the test", item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: Any, nextitem: Any) -> Generator[None, None, None]:
    with _Alarm("teardown", item):
        yield
