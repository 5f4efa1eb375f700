"""Finding (and if needed mounting) tracefs, and reading/writing its files."""

import errno
import os
import time
from typing import Dict, Iterable, List, Optional, Tuple

from ftracetools import switches
from ftracetools.errors import ToolError

__all__ = ["DEFAULT", "DEBUGFS", "PID_LISTS", "require_root", "find_tracefs", "explain", "holders", "describe_holders", "read", "read_opt", "write", "rmdir", "ftrace_enabled",
           "saved_cmdlines"]

DEFAULT = "/sys/kernel/tracing"
DEBUGFS = "/sys/kernel/debug"
# the files that hold a list of PIDs
PID_LISTS = ("set_event_pid", "set_ftrace_pid", "set_event_notrace_pid",
             "set_ftrace_notrace_pid")



def _mounts(path: str = "/proc/mounts"):
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    yield parts[2], parts[1].replace("\\040", " ")
    except OSError:
        return


def _mount(fstype: str, target: str) -> bool:
    import subprocess   # (seldom needed: 4 ms of every start, imported)
    try:
        r = subprocess.run(["mount", "-t", fstype, "nodev", target],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return False
    return r.returncode == 0


def require_root() -> None:
    if os.geteuid() != 0:
        raise ToolError("must be run as root (tracefs is root-only); try sudo")


def find_tracefs(mount: bool = True) -> str:
    """Return the tracefs directory, mounting tracefs or debugfs if needed."""
    env = switches.get("TRACEFS")
    if env:
        return env
    for fstype, mnt in _mounts():
        if fstype == "tracefs" and os.path.exists(os.path.join(mnt, "trace")):
            return mnt
    for fstype, mnt in _mounts():
        if fstype == "debugfs" and os.path.exists(os.path.join(mnt, "tracing", "trace")):
            return os.path.join(mnt, "tracing")
    if mount:
        if os.path.isdir(DEFAULT) and _mount("tracefs", DEFAULT) and \
                os.path.exists(os.path.join(DEFAULT, "trace")):
            return DEFAULT
        if os.path.isdir(DEBUGFS) and _mount("debugfs", DEBUGFS):
            d = os.path.join(DEBUGFS, "tracing")
            if os.path.exists(os.path.join(d, "trace")):
                return d
    if not os.path.isdir(DEFAULT) and not os.path.isdir(DEBUGFS):
        raise ToolError("tracefs not found: this kernel has no tracing "
                        "support (CONFIG_FTRACE) or sysfs is not mounted")
    if os.geteuid() != 0:
        raise ToolError("tracefs is not mounted and only root can mount it; "
                        "run as root")
    raise ToolError("cannot mount tracefs on %s: is the kernel locked down "
                    "(lockdown=confidentiality)? check dmesg" % DEFAULT)


def explain(err: OSError, path: str, what: str = "write") -> str:
    """A one-line explanation of an error from a tracefs file."""
    name = os.path.basename(path)
    if err.errno == errno.EPERM or err.errno == errno.EACCES:
        if os.geteuid() != 0:
            return "%s %s: permission denied: run as root" % (what, name)
        return ("%s %s: operation not permitted: the kernel forbids it "
                "(lockdown or a security policy)" % (what, name))
    if err.errno == errno.EBUSY:
        return "%s %s: device busy: another tracing user holds it" % (what, name)
    if err.errno == errno.ENODEV:
        return ("%s %s: ftrace disabled itself after an internal error "
                "(see dmesg); reboot to trace again" % (what, name))
    if err.errno == errno.ENOMEM:
        return "%s %s: out of memory: ask for a smaller buffer" % (what, name)
    if err.errno == errno.ENOENT:
        return "%s %s: no such file: this kernel lacks the feature" % (what, name)
    return "%s %s: %s" % (what, name, os.strerror(err.errno or 0))


def holders(paths: Iterable[str], under: Iterable[str] = ()) -> List[Tuple[int, str]]:
    """Other processes holding open any of ``paths``, or any file below a
    directory in ``under``: [(pid, comm)], found through /proc/PID/fd."""
    want = set(paths)
    dirs = tuple(d.rstrip("/") + "/" for d in under)
    found: List[Tuple[int, str]] = []
    me = os.getpid()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        if pid == me:
            continue
        fd_dir = "/proc/%d/fd" % pid
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if link in want or (dirs and (link + "/").startswith(dirs)):
                comm = (read_opt("/proc/%d/comm" % pid) or "?").strip()
                found.append((pid, comm))
                break
    return found


def describe_holders(found: List[Tuple[int, str]]) -> str:
    """``pid 12 (cat), pid 14 (perf)``, escaped for the terminal."""
    return ", ".join("pid %d (%s)" % (pid, comm.encode("unicode_escape").decode())
                     for pid, comm in found[:5]) + (" and more" if len(found) > 5 else "")


def read(path: str) -> str:
    """A tracefs file's text; bytes that are not UTF-8 (process names in
    saved_cmdlines, filters) kept as surrogate escapes, never an error."""
    with open(path, errors="surrogateescape") as f:
        return f.read()


def read_opt(path: str) -> Optional[str]:
    """Read a file, or None where it does not exist or cannot be read."""
    try:
        return read(path)
    except OSError:
        return None


def write(path: str, value: str, append: bool = False) -> None:
    """Write one value to a control file (as echo does: one write() call,
    repeated for the rest after a short write)."""
    flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags)
    try:
        data = value.encode()
        if not data:
            data = b"\n" if not append else b""
        while data:
            # set_ftrace_filter and friends take one word per write() and
            # return a short count: write the rest, as echo does.
            n = os.write(fd, data)
            if n <= 0:
                break
            data = data[n:]
    finally:
        os.close(fd)


def rmdir(path: str, tries: int = 50) -> None:
    """Remove an instance, waiting out EBUSY (10 ms at a time, ``tries``
    times): a reader that just closed its files, or a snapshot of tracefs
    taken elsewhere at that moment, still holds a reference briefly.
    Raises the last OSError."""
    for _ in range(tries - 1):
        try:
            os.rmdir(path)
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.01)
    os.rmdir(path)


def ftrace_enabled() -> bool:
    v = read_opt("/proc/sys/kernel/ftrace_enabled")
    return v is None or v.strip() != "0"


def saved_cmdlines(root: str) -> Dict[int, str]:
    """PID -> name from the kernel's saved_cmdlines: the names of tasks
    whose events were recorded, kept after they are gone (reading it
    changes nothing)."""
    out: Dict[int, str] = {}
    for line in (read_opt(os.path.join(root, "saved_cmdlines")) or "").splitlines():
        pid, _, name = line.partition(" ")
        if pid.isdigit():
            out[int(pid)] = name
    return out
