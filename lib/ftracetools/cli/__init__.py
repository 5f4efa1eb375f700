"""The tool skeleton: what every ``bin/TOOL`` shares.

A tool is ``def main(argv=None): return cli.run(TOOL, __doc__, body, argv)``
(``cli.leave(main())`` when run as a script)
where ``body(args)`` checks its options (``cli.seconds``, ``cli.count``,
``cli.Targets``), opens a session, arms an engine and hands it to
``cli.trace`` (with ``cli.exporter`` around the session where the tool
serves metrics). ``run`` turns what a user can cause into one line and an
exit status, never a traceback:

- bad usage: ``TOOL: what is wrong`` and a one-line hint, exit 2;
- a runtime error: ``TOOL: what failed: why``, exit 1 (126/127 for a
  command of ``-c`` that cannot run);
- output that cannot be written (a full disk, a closed stdout): one line,
  exit 1; a closed pipe (``| head``): quietly, exit 141;
- SIGINT/SIGTERM: the last report, exit 0; other end signals 128 + N.
"""

import errno
import os
import signal
import sys
from typing import Callable, Dict, List, Optional

from ftracetools.cli.args import count, number, seconds
from ftracetools.cli.export import exporter
from ftracetools.cli.loop import banner, trace, trace_loop, warn
from ftracetools.cli.targets import Targets
from ftracetools.errors import Interrupted, Status, ToolError, UsageError
from ftracetools.host import cpus
from ftracetools.kernel import guardian, signals
from ftracetools.report.outfile import whole_stdout

__all__ = ["run", "leave", "banner", "warn", "trace", "trace_loop", "Targets",
           "number", "seconds", "count", "exporter"]


def run(tool: str, doc: str, body: Callable[[Dict], int],
        argv: Optional[List[str]] = None) -> int:
    if not _std_open(tool):
        return 1
    try:
        from docopt import DocoptExit, docopt
    except ImportError:
        warn(tool, "the docopt-ng module is missing: python3 -m pip install docopt-ng")
        return 1
    argv = sys.argv[1:] if argv is None else argv
    try:
        try:
            args = docopt(doc, argv=argv, default_help=True, version=None)
        except DocoptExit:
            from ftracetools.cli.usage import explain
            raise UsageError(*explain(doc, argv, tool)) from None
        except SystemExit as e:  # -h / --help printed the help
            return 0 if not e.code else 2
        # (not for the help or a usage mistake, which touch nothing)
        # before any thread and any tracefs change: see kernel.guardian
        guardian.start(tool)
        signals.install()
        cpus.guard_numpy()   # before any numpy import: see its docstring
        rc = body(args) or 0
        sys.stdout.flush()
        if rc == 0 and Status.restore_failed:
            rc = 1
        sig = signals.pending()
        if sig is not None and sig not in (signal.SIGINT, signal.SIGTERM):
            return 128 + sig
        return rc
    except UsageError as e:
        warn(tool, str(e))
        if e.hint:
            warn(tool, e.hint)
        return 2
    except ToolError as e:
        warn(tool, str(e))
        return e.exit_status
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EIO, errno.EBADF, errno.EDQUOT,
                           errno.EFBIG, errno.EROFS):
            raise
        _quiet_stdout()
        warn(tool, "cannot write the output: %s" % os.strerror(e.errno))
        return 1
    except Interrupted as e:
        if e.signum == signal.SIGPIPE:
            _quiet_stdout()
        return 128 + e.signum
    except KeyboardInterrupt:
        return 130


def leave(rc: int) -> None:
    """The process's end, once ``run`` has returned ``rc``: the output
    flushed, then out without the interpreter's teardown (freeing every
    module: 8 ms for pagefaults, 15 ms for iolatency with numpy loaded, of
    an end whose target is 100 ms). Everything the tool set is restored
    by then, and nothing of it waits on an exit handler."""
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError, AttributeError):
            rc = rc or 1
    os._exit(rc)


def _std_open(tool: str) -> bool:
    """A closed stdout or stderr would be taken by the next file opened (a
    tracefs file, the journal) and written into: refuse (stdout), or give
    stderr /dev/null."""
    try:
        os.fstat(2)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
        if fd != 2:
            os.dup2(fd, 2)
            os.close(fd)
        sys.stderr = open(2, "w", closefd=False)
    try:
        os.fstat(1)
    except OSError:
        warn(tool, "standard output is closed: nowhere to print")
        return False
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)
    whole_stdout()
    return True


def _quiet_stdout() -> None:
    # stdout cannot be written: flushing at exit would print an error.
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, AttributeError, ValueError):
        pass
