"""Output files named on the command line (``--perfetto FILE``, ``--tef
FILE``), written as a shell redirection would write them.

``out = OutFile(path)`` checks the place before tracing starts (a
``UsageError`` for a directory or a place that cannot be written);
``out.write(data)`` at the end writes everything at once:

- a symlink is followed: its target is written, the link stays;
- a FIFO, a terminal or another character device (``/dev/stdout``), or
  the file our own stdout or stderr already writes to, is written in
  place (a FIFO must have its reader already: it is opened before
  tracing, as the shell opens it before the command runs);
- a regular file, or a new one, is replaced atomically: a temporary file
  beside the target (with the old file's mode), then a rename; on any
  error the temporary file is removed, so nothing is left beside it.

``whole_stdout()`` puts ``sys.stdout`` over ``WholeWrites``: every write
to the descriptor goes out whole, however often a signal cuts it short.
Python's own stdout, unbuffered (``PYTHONUNBUFFERED``, ``python3 -u``:
its text layer straight on the descriptor), drops the rest of a write
that a signal cut short: 370 kB JSON lines to a slowly read pipe under
random SIGINTs, with a second thread alive (numpy's, the metrics
server's), lost or spliced 44 to 70 lines of 300 (CPython 3.11).
It is buffered even where Python's was not: the tools flush it after
each round of records and each report (``cli.trace``), so lines come as
promptly, a round's lines in one write rather than one write each
(funcgraph under PYTHONUNBUFFERED in the emulated guests: 42,000 writes
for 5,000 calls, the largest part of its CPU).
"""

import errno
import io
import os
import stat
import sys
from typing import Optional, Union

from ftracetools.errors import ToolError, UsageError

__all__ = ["OutFile", "WholeWrites", "whole_stdout"]


class OutFile:
    """One output file; see the module docstring."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: Optional[int] = None       # in place: opened now
        self.target = ""                    # replaced: the resolved file
        self.mode = 0o644
        try:
            st: Optional[os.stat_result] = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise UsageError("cannot write %s: %s" % (path, os.strerror(e.errno or 0))) from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise UsageError("cannot write %s: it is a directory" % path)
        if st is not None and (not stat.S_ISREG(st.st_mode) or _is_std(st)
                               or os.path.realpath(path).startswith(("/proc/", "/dev/"))):
            self._open_in_place(st)
            return
        real = os.path.realpath(path)
        d = os.path.dirname(real) or "."
        if not os.path.isdir(d):
            raise UsageError("cannot write %s: no such directory %s" % (path, d))
        if st is not None:
            self.mode = stat.S_IMODE(st.st_mode)
            if not os.access(real, os.W_OK):
                raise UsageError("cannot write %s: permission denied" % path)
            if not os.access(d, os.W_OK | os.X_OK):
                # a file we may write in a directory we may not: in place
                self._open_in_place(st)
                return
        elif not os.access(d, os.W_OK | os.X_OK):
            raise UsageError("cannot write %s: directory %s is not writable" % (path, d))
        self.target = real

    def _open_in_place(self, st: os.stat_result) -> None:
        flags = os.O_WRONLY | os.O_CLOEXEC
        if stat.S_ISFIFO(st.st_mode):
            flags |= os.O_NONBLOCK      # never hang before tracing starts
        elif stat.S_ISREG(st.st_mode):
            flags |= os.O_APPEND        # our own stdout/stderr: after what is there
        try:
            self.fd = os.open(self.path, flags)
        except OSError as e:
            if e.errno == errno.ENXIO:
                raise ToolError("cannot write %s: a FIFO with no reader; start "
                                "its reader first" % self.path) from None
            raise UsageError("cannot write %s: %s" % (self.path, os.strerror(e.errno or 0))) from None
        if flags & os.O_NONBLOCK:
            import fcntl
            fl = fcntl.fcntl(self.fd, fcntl.F_GETFL)
            fcntl.fcntl(self.fd, fcntl.F_SETFL, fl & ~os.O_NONBLOCK)

    def write(self, data: Union[str, bytes]) -> None:
        """Write the whole file; a ToolError (and nothing left) on failure."""
        if isinstance(data, str):
            data = data.encode()
        if self.fd is not None:
            try:
                _write_all(self.fd, data)
            except OSError as e:
                raise ToolError("cannot write %s: %s" % (self.path, os.strerror(e.errno or 0))) from None
            finally:
                self.close()
            return
        d = os.path.dirname(self.target) or "."
        tmp = os.path.join(d, ".%s.tmp%d" % (os.path.basename(self.target), os.getpid()))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, self.mode)
            try:
                os.fchmod(fd, self.mode)    # whatever the umask says
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.target)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise ToolError("cannot write %s: %s" % (self.path, os.strerror(e.errno or 0))) from None

    def close(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


def _is_std(st: os.stat_result) -> bool:
    """The file our stdout or stderr writes to (``/dev/stdout`` when
    stdout is redirected to a file): replacing it would lose that output."""
    for fd in (1, 2):
        try:
            o = os.fstat(fd)
        except OSError:
            continue
        if (o.st_dev, o.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        view = view[n:]


class WholeWrites(io.RawIOBase):
    """A descriptor we write but do not own (never closed here), each
    write returning only once every byte is out (or raising)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        _write_all(self.fd, data)
        return n


STDOUT_BUFFER = 1 << 20  # a round's lines in a write or a few, not one per 8 KB


def whole_stdout() -> None:
    """``sys.stdout`` (as found: encoding, error handler, line buffering
    on a terminal) over ``WholeWrites``, buffered; see the module
    docstring. Only Python's own stdout is replaced (not a test's
    capture, nor an earlier one of ours)."""
    old = sys.stdout
    buf = getattr(old, "buffer", None)
    raw = buf if isinstance(buf, io.FileIO) else getattr(buf, "raw", None)
    if type(old) is not io.TextIOWrapper or not isinstance(raw, io.FileIO):
        return
    old.flush()
    whole = WholeWrites(raw.fileno())
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(whole, buffer_size=STDOUT_BUFFER),
                                  encoding=old.encoding, errors=old.errors,
                                  line_buffering=old.line_buffering or whole.isatty())
