"""A tracing session that leaves the kernel exactly as it found it.

``with Session("schedtrace") as s:`` makes a private instance named after
the tool and its PID; ``Session(tool, top_level=True)`` takes the top level
under an exclusive lock instead, refusing when someone else uses it. Every
change goes through ``s.set`` and friends, which journal the undo step
before writing; on every way out (return, exception, signal, a setup that
failed half way) the steps are undone in reverse; signals are acted on only
at safe points (``signals.check``), so a second Ctrl-C cannot cut the
cleanup short. After SIGKILL the tool's guardian replays the journal at
once (``kernel.guardian``, forked by ``cli.run``); failing that, the next
run of any tool does (``journal.recover``).
"""

import errno
import os
import re
import sys
import time
from typing import Dict, Iterable, List, Optional

from ftracetools.kernel import journal
from ftracetools.kernel import tracefs
from ftracetools.kernel import signals
from ftracetools import switches
from ftracetools.errors import Status, ToolError
from ftracetools.kernel.features import Features
from ftracetools.kernel.lock import TopLevelLock

__all__ = ["undo_value", "Session"]


_FILTER_LISTS = ("set_ftrace_filter", "set_ftrace_notrace",
                 "set_graph_function", "set_graph_notrace")

_UNEXPANDED = re.compile(r"^\s*(\d+) \(expanded: (\d+)\)")


def undo_value(name: str, old: str) -> str:
    """What to write back to control file ``name`` to restore ``old``."""
    base = os.path.basename(name)
    if base in _FILTER_LISTS:
        return "\n".join(l for l in old.splitlines() if l and not l.startswith("#"))
    if base in tracefs.PID_LISTS:
        return "" if old.strip() == "no pid" else " ".join(old.split())
    if base == "trace_clock":
        m = re.search(r"\[(\S+)\]", old)
        return m.group(1) if m else old.strip()
    if base == "filter":
        return "0" if old.strip() == "none" else old.strip()
    if base == "buffer_size_kb":
        # "7 (expanded: 1408)": not yet allocated; the kernel gives its
        # first user 1408. Once a user has been, it never expands again,
        # so "as found" is the expanded size.
        m = _UNEXPANDED.match(old)
        if m:
            return m.group(2)
        return old.split()[0] if old.split() else old
    return old.strip()


class Session:
    """Owns every tracefs change of one run; see the module docstring."""

    def __init__(self, tool: str, top_level: bool = False,
                 features: Optional[Features] = None,
                 warn=None) -> None:
        self.tool = tool
        self.top_level = top_level
        self.features = features
        self.warn = warn or (lambda m: sys.stderr.write("%s: %s\n" % (tool, m)))
        self.root = ""
        self.dir = ""
        self.instance: Optional[str] = None
        self._steps: List[Dict[str, str]] = []
        self._journal: Optional[journal.Journal] = None
        self._lock: Optional[TopLevelLock] = None
        self._fds: List[int] = []
        self._files: List = []
        self._writes = 0
        self._fault = None
        # test switches (ftracetools.switches): signals aimed at set-up
        # and teardown, and a set-up write that fails
        self._slow = float(switches.get("SLOW", "0") or 0)
        env = switches.get("FAIL_WRITE")
        if env:
            n, _, err = env.partition(":")
            self._fault = (int(n), getattr(errno, err or "EINVAL"))

    # -- set-up and teardown ---------------------------------------------

    def __enter__(self) -> "Session":
        tracefs.require_root()
        if self.features is None:
            self.features = Features()
        self.root = self.features.root
        journal.recover(self.warn)
        if self._slow:
            self.warn("setting up")
        if not tracefs.ftrace_enabled():
            self.warn("warning: kernel.ftrace_enabled is 0: function tracers "
                      "record nothing (sysctl kernel.ftrace_enabled=1)")
        try:
            self._journal = journal.Journal(self.tool, self.root)
            self._keep_expansion()
            if self.top_level:
                self._lock = TopLevelLock(self.tool)
                self._lock.acquire()
                self.dir = self.root
                self._check_top_level_free()
            else:
                if not self.features.has("instances"):
                    raise ToolError(self.features.why_not("instances") or "")
                self.instance = "%s-%d" % (self.tool, os.getpid())
                self.dir = self._make_instance(self.instance)
                self._backstop()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._teardown()

    def sibling(self, suffix: str) -> "Session":
        """A second private instance (``TOOL-PID-SUFFIX``) in this session:
        its changes go to the same journal and are undone with the rest
        (a tool splits events by kind into instances of their own, so that
        each buffer holds records of one size)."""
        if self.instance is None or not re.match(r"^[a-z]{1,16}$", suffix):
            raise ValueError("sibling instances only beside a private instance")
        import copy
        sib = copy.copy(self)   # shares the journal, the undo steps, the fds
        sib.instance = "%s-%s" % (self.instance, suffix)
        sib.dir = self._make_instance(sib.instance)
        sib._backstop()
        return sib

    def _keep_expansion(self) -> None:
        """A top-level buffer found unexpanded (``7 (expanded: 1408)``)
        is given its expanded size at the end if the kernel marked the
        buffers expanded meanwhile without growing it (6.1 does so when
        a tracer is set or a buffer resized in an instance): else every
        later user of the top level would get 7 KB per CPU."""
        found = tracefs.read_opt(os.path.join(self.root, "buffer_size_kb")) or ""
        m = _UNEXPANDED.match(found)
        if m:
            self._record({"op": "expand", "path": "buffer_size_kb",
                          "value": "%s %s" % m.groups()})

    def _make_instance(self, name: str) -> str:
        """Create instances/NAME, its removal journaled first."""
        rel = "instances/" + name
        self._record({"op": "rmdir", "path": rel, "value": ""})
        try:
            os.mkdir(os.path.join(self.root, rel))
        except OSError as e:
            self._steps.pop()
            raise ToolError("cannot create trace instance %s: %s"
                            % (name, os.strerror(e.errno or 0)))
        return os.path.join(self.root, rel)

    def _backstop(self) -> None:
        # If we die, closing free_buffer (by the kernel) stops tracing in
        # the instance and frees its buffer; the journal then removes it.
        fb = os.path.join(self.dir, "free_buffer")
        if os.path.exists(os.path.join(self.dir, "options", "disable_on_free")):
            self.set("options/disable_on_free", "1")
        if os.path.exists(fb):
            self._fds.append(os.open(fb, os.O_WRONLY | os.O_CLOEXEC))

    def _check_top_level_free(self) -> None:
        busy = []
        cur = self.read("current_tracer").strip()
        if cur != "nop":
            busy.append("current_tracer is %s" % cur)
        for f in _FILTER_LISTS + ("set_ftrace_pid", "set_event"):
            v = tracefs.read_opt(self.path(f))
            if v is None:
                continue
            v = undo_value(f, v)
            if v.strip():
                busy.append("%s is set (%s)" % (f, v.split()[0]))
        pipes = [self.path("trace_pipe")]
        try:
            for c in os.listdir(self.path("per_cpu")):
                pipes += [self.path("per_cpu", c, "trace_pipe"),
                          self.path("per_cpu", c, "trace_pipe_raw")]
        except OSError:
            pass
        readers = tracefs.holders(pipes)
        if readers:
            busy.append("its trace_pipe is being read by %s, which would take "
                        "events from us" % tracefs.describe_holders(readers))
        if busy:
            raise ToolError("the tracing top level is in use by someone else "
                            "(%s); refusing to change it. End that user, or "
                            "clear it with care" % "; ".join(busy))

    def _teardown(self) -> None:
        # no signals.check() in here: nothing may cut it short
        for f in self._files:
            try:
                f.close()
            except OSError:
                pass
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._files, self._fds = [], []
        slow = self._slow
        if slow and self._steps:    # (FTT_SLOW: a window for the torture suite's signals)
            self.warn("tearing down")
            time.sleep(slow)
        errors, failed = journal.undo(self.root, self._steps,
                                      (lambda: time.sleep(slow)) if slow else None)
        self._steps = []
        if self._lock:
            self._lock.release()
            self._lock = None
        if self._journal:
            if errors:
                # Leave what failed (only that) for the next run to retry.
                self._journal.keep_only(failed)
            else:
                self._journal.close()
            self._journal = None
        if errors:
            Status.restore_failed = True
            self.warn("warning: could not restore: " + "; ".join(errors))

    # -- changes ------------------------------------------------------------

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def _rel(self, name: str) -> str:
        return os.path.relpath(self.path(name), self.root)

    def read(self, name: str) -> str:
        return tracefs.read(self.path(name))

    def _record(self, step: Dict[str, str]) -> None:
        if self._journal is None:
            raise RuntimeError("session not entered")
        self._journal.record(step)
        self._steps.append(step)

    def _write(self, name: str, value: str, append: bool = False) -> None:
        self._writes += 1
        if self._slow:
            time.sleep(self._slow)
        p = self.path(name)
        try:
            if self._fault and self._fault[0] == self._writes:
                raise OSError(self._fault[1], os.strerror(self._fault[1]))
            tracefs.write(p, value, append=append)
        except OSError as e:
            msg = tracefs.explain(e, p)
            if e.errno == errno.EINVAL:
                log = self._error_log()
                msg = "write %s: invalid value %r%s" % (
                    os.path.basename(p), value.strip()[:80],
                    (": " + log) if log else "")
            raise ToolError(msg) from None

    def _error_log(self) -> str:
        lines = (tracefs.read_opt(self.path("error_log")) or "").strip().splitlines()
        lines = lines or (tracefs.read_opt(os.path.join(self.root, "error_log"))
                          or "").strip().splitlines()
        return " ".join(l.strip() for l in lines[-3:])

    def set(self, name: str, value: str) -> None:
        """Write ``value`` to control file ``name`` (relative to the session)."""
        try:
            old = self.read(name)
        except OSError as e:
            raise ToolError(tracefs.explain(e, self.path(name), "read")) from None
        undo = undo_value(name, old)
        if undo == value.strip():
            return
        signals.check()
        self._record({"op": "write", "path": self._rel(name), "value": undo})
        self._write(name, value)

    def set_option(self, option: str, on: bool = True) -> None:
        self.set("options/" + option, "1" if on else "0")

    def set_pids(self, name: str, pids: Iterable[int]) -> None:
        """Fill a PID list (set_event_pid, set_ftrace_pid) with thread ids."""
        self.set(name, " ".join(str(int(p)) for p in pids))

    def add_pids(self, name: str, pids: Iterable[int]) -> None:
        """Add thread ids to a PID list already set by this session."""
        self._write(name, " ".join(str(int(p)) for p in pids), append=True)

    def replace_pids(self, name: str, pids: Iterable[int]) -> None:
        """Refill a PID list already set by this session (its value before
        is journaled already). Never empty: that would trace every task."""
        text = " ".join(str(int(p)) for p in pids)
        if text:
            self._write(name, text)

    def enable_event(self, system: str, event: str,
                     filter: Optional[str] = None) -> None:
        """Enable one event, with a kernel-side filter (built by ``filters``)."""
        base = "events/%s/%s" % (system, event)
        if not os.path.isdir(self.path(base)):
            raise ToolError("this kernel has no %s:%s event" % (system, event))
        if filter:
            self.set(base + "/filter", filter)
        self.set(base + "/enable", "1")

    def add_trigger(self, system: str, event: str, trigger: str) -> None:
        name = "events/%s/%s/trigger" % (system, event)
        signals.check()
        self._record({"op": "append", "path": self._rel(name), "value": "!" + trigger})
        self._write(name, trigger, append=True)

    def add_dynamic(self, file: str, definition: str, removal: str) -> None:
        """Add a probe or synthetic event to a top-level list file."""
        p = os.path.relpath(os.path.join(self.root, file), self.root)
        signals.check()
        self._record({"op": "append", "path": p, "value": removal})
        try:
            tracefs.write(os.path.join(self.root, file), definition, append=True)
        except OSError as e:
            log = self._error_log()
            raise ToolError("%s: %s%s" % (file, os.strerror(e.errno or 0),
                                          (": " + log) if log else "")) from None

    def open(self, name: str, flags: int = os.O_RDONLY) -> int:
        """Open a file of the session; it is closed before teardown."""
        fd = os.open(self.path(name), flags | os.O_CLOEXEC)
        self._fds.append(fd)
        return fd

    def close(self, fd: int) -> None:
        if fd in self._fds:
            self._fds.remove(fd)
            os.close(fd)

    def own(self, fileobj) -> None:
        """Close this object (a reader) before teardown."""
        self._files.append(fileobj)

    def set_buffer_kb(self, kb: int) -> None:
        """Per-CPU buffer size; the kernel may refuse a large one (ENOMEM)."""
        self.set("buffer_size_kb", str(int(kb)))

    def start(self) -> None:
        self.set("tracing_on", "1")

    def stop(self) -> None:
        """Stop recording so the last read sees a still buffer; reading can
        go on. Best effort: if the kernel refuses, teardown removes the
        buffer all the same, so there is nothing to report. No signal
        stops it: it is part of the end (the last report follows)."""
        name = "tracing_on"
        try:
            old = self.read(name)
            if old.strip() == "0":
                return
            self._record({"op": "write", "path": self._rel(name), "value": old.strip()})
            self._write(name, "0")
        except (OSError, ToolError):
            pass
