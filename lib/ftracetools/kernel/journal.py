"""A write-ahead undo journal, so that even SIGKILL leaves nothing behind.

Before a session changes a tracefs file it appends the undo step to its
journal (``journal.<pid>`` under the root-only run directory) and holds an
flock on it for its whole life. A later run that can take that flock knows
the owner is dead, replays the steps in reverse and deletes the journal.
"""

import errno
import fcntl
import json
import os
from typing import Callable, Dict, List, Optional

from ftracetools.kernel import rundir
from ftracetools.kernel import tracefs
from ftracetools.errors import ToolError

__all__ = ["apply", "undo", "Journal", "recover", "recover_one"]

# One undo step: {"op": "write"|"append"|"rmdir"|"expand", "path": rel,
# "value": str}


def apply(root: str, step: Dict[str, str]) -> Optional[str]:
    """Carry out one undo step; return an error line, or None."""
    p = os.path.join(root, step["path"])
    op = step["op"]
    try:
        if op == "rmdir":
            try:
                tracefs.rmdir(p)
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                who = tracefs.holders((), [p])
                return ("%s: busy%s; it is removed by the next run of any "
                        "tool once they close it" % (
                            step["path"], (": held open by " + tracefs.describe_holders(who))
                            if who else ""))
        elif op == "write":
            tracefs.write(p, step["value"])
        elif op == "append":
            tracefs.write(p, step["value"], append=True)
        elif op == "expand":
            # (session._keep_expansion) still unexpanded, as found: nothing
            # to do; a plain N where it read "N (expanded: M)": write M
            small, big = step["value"].split()
            if tracefs.read(p).strip() == small:
                tracefs.write(p, big)
        else:
            return "unknown undo step %r" % op
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None  # already gone (an instance removed with its files)
        return "%s: %s" % (step["path"], os.strerror(e.errno or 0))
    return None


def undo(root: str, steps: List[Dict[str, str]],
         pause: Optional[Callable[[], None]] = None):
    """Undo ``steps`` (in the order they were made), last first; return
    (error lines, the steps that failed, in their order).

    The instances this journal created are removed first, all at once
    (in threads: each removal waits for the kernel's synchronisations,
    which then overlap): removing one takes everything set inside it with
    it, in one kernel operation, where restoring each file costs a
    synchronisation apiece (clearing set_event_pid, setting trace_clock
    and buffer_size_kb: 55 of 140 ms in a pagefaults teardown here).
    Nothing global depends on an instance (probes and synthetic events
    are used by triggers inside them, not the other way round), so the
    global steps follow. An instance that cannot be removed (a reader
    holds it) has its steps undone one by one as they come, and its own
    removal step tries again at its place.
    """
    ours = {s["path"] + "/" for s in steps if s.get("op") == "rmdir"}
    # every instance at once: each removal waits out the kernel's
    # synchronisations, which overlap when they run side by side
    pids = {i for i in ours for s in steps
            if s["path"].startswith(i) and s["path"].rsplit("/", 1)[-1] in tracefs.PID_LISTS}
    gone = _remove_instances(root, ours, pids)
    errors, failed = [], []
    for step in reversed(steps):
        inst = next((i for i in ours if step["path"].startswith(i)), None)
        if inst is not None and inst in gone:
            continue    # (one not removed, held open: its steps one by one)
        elif step.get("op") == "rmdir" and step["path"] + "/" in gone:
            continue
        if pause:
            pause()
        e = apply(root, step)
        if e:
            errors.append(e)
            failed.insert(0, step)
    return errors, failed


def _remove_instances(root: str, insts, pids=()) -> set:
    """rmdir each of ``insts`` (relative, with a trailing slash), in threads
    of their own; the ones removed. Those in ``pids`` (a PID list was set
    in them) have their events turned off first, in one write: removing
    one whose events run under set_event_pid took 110-146 ms here, 78-118
    ms this way (6 of each). Without a PID list that write only adds its
    own cost (7 ms with sched_switch on; two instances: 96 against 88 ms,
    medians of 5)."""
    import threading
    gone = set()

    def rm(inst: str) -> None:
        if inst in pids:
            try:
                tracefs.write(os.path.join(root, inst, "events/enable"), "0")
            except OSError:
                pass
        try:
            os.rmdir(os.path.join(root, inst))
            gone.add(inst)
        except OSError:
            pass
    if len(insts) == 1:
        rm(next(iter(insts)))
        return gone
    threads = [threading.Thread(target=rm, args=(i,)) for i in sorted(insts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return gone


class Journal:
    """The journal of the running session."""

    def __init__(self, tool: str, root: str) -> None:
        self.name = "journal.%d" % os.getpid()
        # Locked and filled under a temporary name, then renamed: a
        # recovering run never sees a journal whose owner has not locked it.
        tmp = "new.%d" % os.getpid()
        self.fd = rundir.open_file(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            self._put({"tool": tool, "pid": os.getpid(), "root": root})
        except ToolError:
            try:
                os.unlink(os.path.join(rundir.path(), tmp))
            finally:
                os.close(self.fd)
            raise
        d = os.open(rundir.path(), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.rename(tmp, self.name, src_dir_fd=d, dst_dir_fd=d)
        finally:
            os.close(d)

    def _put(self, obj: Dict) -> None:
        # Written before the change it undoes: if it cannot be written, the
        # change is not made.
        data = (json.dumps(obj) + "\n").encode()
        try:
            if os.write(self.fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:
            raise ToolError("cannot write the undo journal in %s: %s; nothing "
                            "is changed without it (free space there)"
                            % (rundir.path(), os.strerror(e.errno or 0))) from None

    def record(self, step: Dict[str, str]) -> None:
        self._put(step)

    def keep_only(self, steps: List[Dict[str, str]]) -> None:
        """Leave only these (failed) steps for a later run to retry, and
        let go of the journal: steps that were undone must never be
        replayed over what somebody sets later."""
        _rewrite(self.fd, steps, unfinished=True)
        os.close(self.fd)

    def close(self) -> None:
        """Delete the journal: everything in it has been undone."""
        try:
            os.unlink(os.path.join(rundir.path(), self.name))
        except OSError:
            pass
        os.close(self.fd)


def _rewrite(fd: int, steps: List[Dict[str, str]], unfinished: bool = False) -> None:
    data = os.pread(fd, 1 << 20, 0).decode(errors="replace")
    header = data.split("\n", 1)[0]
    if unfinished:
        try:
            header = json.dumps(dict(json.loads(header), unfinished=True))
        except ValueError:
            pass
    body = "".join(json.dumps(s) + "\n" for s in steps)
    os.ftruncate(fd, 0)
    os.pwrite(fd, (header + "\n" + body).encode(), 0)


def _parse(data: str):
    header, steps = None, []
    for line in data.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue  # a line torn by SIGKILL mid-write: its change never happened
        if header is None:
            header = obj
        else:
            steps.append(obj)
    return header, steps


def recover(warn: Callable[[str], None]) -> List[str]:
    """Undo what dead runs left; return one line per recovered run."""
    d = rundir.path()
    try:
        names = [n for n in os.listdir(d) if n.startswith("journal.")]
    except OSError:
        return []
    done = []
    for n in sorted(names):
        line = recover_one(n, warn)
        if line:
            done.append(line)
    return done


def recover_one(name: str, warn: Callable[[str], None], finished_only: bool = False,
                hold: Optional[Callable[[List[Dict[str, str]]], bool]] = None) -> Optional[str]:
    """Undo the journal ``name`` if its owner is gone; the line said, or
    None when there was nothing to do (its owner alive or done, or it was
    unfinished business and ``finished_only``: a run that could not
    finish its teardown said so itself, and leaves it to the next run).
    ``hold(steps)``, called once the journal is ours: False to leave it as
    it is (guardian: the top level is someone else's now)."""
    d = rundir.path()
    try:
        fd = rundir.open_file(name, os.O_RDWR)
    except (OSError, Exception):
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # its owner is alive (or another run recovers it)
        st = os.fstat(fd)
        if st.st_nlink == 0:
            return None  # its owner finished and unlinked it
        data = os.pread(fd, st.st_size, 0).decode(errors="replace")
        header, steps = _parse(data)
        if not header:
            os.unlink(os.path.join(d, name))
            return None
        if finished_only and header.get("unfinished"):
            return None
        if hold is not None and not hold(steps):
            return None
        root = header.get("root") or tracefs.find_tracefs()
        errors, failed = undo(root, steps)
        line = ("restored %d tracing setting%s left by %s (pid %s), which "
                "%s" % (len(steps) - len(failed), "" if len(steps) - len(failed) == 1 else "s",
                        header.get("tool", "?"), header.get("pid", "?"),
                        "could not finish" if header.get("unfinished") else "was killed"))
        if errors:
            line += "; could not restore: " + "; ".join(errors)
            _rewrite(fd, failed)
        else:
            os.unlink(os.path.join(d, name))
        warn(line)
        return line
    finally:
        os.close(fd)
