"""The root-only directory under /run holding the lock and undo journals.

Created with mode 0700 and checked without following symlinks: a directory
that is a symlink, is not owned by root, or is open to others is refused,
so nobody can redirect root's writes.
"""

import errno
import os
import stat

from ftracetools import switches
from ftracetools.errors import ToolError

__all__ = ["DEFAULT", "path", "ensure", "open_file"]

DEFAULT = "/run/ftrace-tools"


def path() -> str:
    return switches.get("RUNDIR", DEFAULT) or DEFAULT


def ensure() -> str:
    """Create (or check) the directory and return its path."""
    d = path()
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise ToolError("cannot create %s for the undo journal: no space "
                            "left on device" % d)
        raise ToolError("cannot create %s for the undo journal: %s"
                        % (d, os.strerror(e.errno or 0)))
    st = os.lstat(d)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ToolError("%s is not a plain directory (a symlink?): refusing "
                        "to use it; remove it and run again" % d)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise ToolError("%s is not private to root (owner %d, mode %o): "
                        "refusing to use it; remove it and run again"
                        % (d, st.st_uid, stat.S_IMODE(st.st_mode)))
    return d


def open_file(name: str, flags: int) -> int:
    """Open a file inside the directory, never following a symlink."""
    d = ensure()
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ToolError("%s/%s is a symlink: refusing to follow it; "
                            "remove it and run again" % (d, name))
        if e.errno == errno.ENOSPC:
            raise ToolError("cannot write %s/%s: no space left on device"
                            % (d, name))
        raise
    finally:
        os.close(dfd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise ToolError("%s/%s is not a regular file owned by root: refusing "
                        "to use it; remove it and run again" % (d, name))
    return fd
