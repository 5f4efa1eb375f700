"""A guardian that undoes a tool's tracing settings the moment it dies.

The undo journal (``journal``) lets the *next* run of any tool undo what
a run killed by SIGKILL (or a crash, or the OOM killer) left; until that
run the kernel stays as the dead one set it: events on, an instance and
its buffers, a tracer patched into every function. ``start`` forks, as a
tool begins (before any thread, before anything is set), a small process
that blocks on a pipe whose other end only the tool holds. However the
tool ends, the pipe then reads EOF: if the tool's journal is still there
and its lock free, the guardian replays it at once, says so on stderr,
and exits; a tool that ended normally has deleted its journal, and the
guardian exits without a word.

It ignores the end signals (Ctrl-C reaches the whole process group: the
tool ends cleanly, the guardian follows it), holds neither stdin nor
stdout (a shell waiting for the tool's output is not kept waiting), and
holds no file of the tool's (a flock or a trace_pipe would otherwise
outlive it). A journal the tool marked unfinished (it said what it could
not undo) is left to the next run, as is one whose steps touch the top
level while another run holds the top-level lock. A kill of the whole
process group takes the guardian too: the next run recovers, as before.
"""

import os
import signal
from typing import Dict, List

from ftracetools.errors import ToolError
from ftracetools.kernel import journal
from ftracetools.kernel.lock import TopLevelLock

__all__ = ["start"]

_END = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE)
_held: List[int] = []   # the tool's end of the pipe, open until it exits


def start(tool: str) -> bool:
    """Fork the guardian of this process; False where it cannot be (no
    fork: the next run recovers, as without it)."""
    if _held:
        return True
    try:
        r, w = os.pipe2(os.O_CLOEXEC)   # (no command we exec holds either end)
        r, w = _above_stdio(r), _above_stdio(w)
        pid = os.fork()
    except OSError:
        return False
    if pid:
        os.close(r)
        _held.append(w)
        return True
    try:    # the guardian: never returns into the tool
        _watch(tool, r, os.getppid())
    finally:
        os._exit(0)


def _above_stdio(fd: int) -> int:
    """The same pipe end, at 3 or above (with stdin closed, a pipe could
    otherwise be given fd 0, which the guardian points at /dev/null)."""
    if fd > 2:
        return fd
    import fcntl
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return new


def _watch(tool: str, r: int, parent: int) -> None:
    for sig in _END:
        signal.signal(sig, signal.SIG_IGN)
    try:    # as ps and top show it (15 characters at most)
        with open("/proc/self/comm", "w") as f:
            f.write(("%s-guard" % tool)[:15])
    except OSError:
        pass
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.closerange(3, r)
    os.closerange(r + 1, 1 << 16)
    while True:
        try:
            if not os.read(r, 1):
                break   # the tool has exited, whichever way
        except InterruptedError:
            continue
        except OSError:
            break
    os.close(r)

    def say(line: str) -> None:
        try:
            os.write(2, ("%s: %s\n" % (tool, line)).encode(errors="replace"))
        except OSError:
            pass
    top = _TopLevel(tool, parent, say)
    try:
        journal.recover_one("journal.%d" % parent, say, finished_only=True, hold=top.take)
    except (OSError, ToolError) as e:
        say("could not restore what pid %d left: %s; the next run of any tool "
            "restores it" % (parent, e.strerror if isinstance(e, OSError) else e))
    finally:
        top.release()


class _TopLevel:
    """The top-level lock, taken before undoing steps outside the tool's
    own instances: another run may have taken the top level since the tool
    died, and its settings are not ours to overwrite."""

    def __init__(self, tool: str, parent: int, say) -> None:
        self.lock = TopLevelLock("%s's guardian" % tool)
        self.parent = parent
        self.say = say
        self.held = False

    def take(self, steps: List[Dict[str, str]]) -> bool:
        if all(s.get("path", "").startswith("instances/") or s.get("op") == "expand"
               for s in steps):
            return True
        try:
            self.lock.acquire()
        except ToolError as e:     # (the lock says who holds it)
            self.say("pid %d was killed; what it set is left for the next run of any "
                     "tool: %s" % (self.parent, e))
            return False
        self.held = True
        return True

    def release(self) -> None:
        if self.held:
            self.lock.release()
            self.held = False
