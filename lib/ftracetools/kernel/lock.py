"""An exclusive lock on the tracefs top level, held with flock.

The kernel drops a flock when its holder dies, so a lock can never go
stale. The file records who holds it, to name the holder when refusing.
"""

import fcntl
import os
from typing import Optional

from ftracetools.kernel import rundir
from ftracetools.errors import ToolError

__all__ = ["NAME", "TopLevelLock"]

NAME = "toplevel.lock"


class TopLevelLock:
    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.fd: Optional[int] = None

    def acquire(self) -> None:
        fd = rundir.open_file(NAME, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            raise ToolError("the tracing top level is in use by %s; wait for "
                            "it to end" % (holder or "another ftrace-tools run"))
        os.ftruncate(fd, 0)
        os.pwrite(fd, ("%s (pid %d)\n" % (self.tool, os.getpid())).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            finally:
                os.close(self.fd)  # closing drops the flock
                self.fd = None
