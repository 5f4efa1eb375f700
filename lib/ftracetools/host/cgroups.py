"""Control groups (v2) and PID namespaces: where cgroup2 is mounted, a
cgroup given by path, the threads of a cgroup and its descendants, the
cgroup of a task and a short name for it (the container or unit), and a
PID as seen inside a PID namespace turned into the host's.

ftrace has no cgroup filter of its own (perf's ``--cgroup`` is a perf
event's): a tool traces a cgroup through its PID filter, which the tool
keeps in step by reading ``cgroup.threads`` of the subtree again.
"""

import os
import re
from typing import Dict, Iterable, List, Optional, Tuple

from ftracetools.errors import ToolError, UsageError

__all__ = ["Mount", "parse_mountinfo", "cgroup2_mount", "v1_mounts", "resolve",
           "subtree_threads", "parse_proc_cgroup", "task_cgroup", "short_name",
           "Lookup", "parse_nspid", "nspid_of", "ns_level", "host_pid"]

MOUNTINFO = "/proc/self/mountinfo"


class Mount:
    """One line of /proc/self/mountinfo: where, which part of the file
    system (``root``), its type and super options."""

    def __init__(self, point: str, root: str, fstype: str, opts: str) -> None:
        self.point, self.root, self.fstype, self.opts = point, root, fstype, opts

    def __repr__(self) -> str:
        return "Mount(%r, %r, %r, %r)" % (self.point, self.root, self.fstype, self.opts)


def _unoctal(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def parse_mountinfo(text: str) -> List[Mount]:
    """The mounts of a mountinfo text (proc(5): fields, optional fields
    up to ``-``, then type, source and super options)."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if "-" not in f[6:]:
            continue
        sep = f.index("-", 6)
        if len(f) < sep + 3 or len(f) < 5:
            continue
        out.append(Mount(_unoctal(f[4]), _unoctal(f[3]), f[sep + 1],
                         f[sep + 3] if len(f) > sep + 3 else ""))
    return out


def _mounts(text: Optional[str]) -> List[Mount]:
    if text is None:
        try:
            with open(MOUNTINFO, errors="surrogateescape") as f:
                text = f.read()
        except OSError:
            text = ""
    return parse_mountinfo(text)


def cgroup2_mount(text: Optional[str] = None) -> Optional[Mount]:
    """The first cgroup2 mount (``/sys/fs/cgroup``, or
    ``/sys/fs/cgroup/unified`` where cgroups are hybrid), or None."""
    for m in _mounts(text):
        if m.fstype == "cgroup2":
            return m
    return None


def v1_mounts(text: Optional[str] = None) -> List[Mount]:
    """The cgroup v1 hierarchies (``cpu``, ``memory``, ``name=systemd``...)."""
    return [m for m in _mounts(text) if m.fstype == "cgroup"]


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _shown(path: str) -> str:
    """A path as a message shows it: on one line, control characters
    escaped (\\n, \\x1b)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)


def resolve(path: str, option: str = "--cgroup", text: Optional[str] = None) -> str:
    """The directory of a cgroup v2 given absolute, relative to the
    cgroup2 mount, or as /proc/PID/cgroup names it (``/system.slice/x``,
    from the mount); a UsageError naming what is wrong otherwise (not a
    cgroup, a v1 hierarchy only, no such cgroup), a ToolError when no
    cgroup2 is mounted."""
    m = cgroup2_mount(text)
    v1 = v1_mounts(text)
    p = (path or "").strip()
    q = _shown(p)
    if not p:
        raise UsageError("%s: empty path" % option, "a cgroup v2 directory, e.g. "
                         "system.slice/docker-ID.scope")
    if m is None:
        raise ToolError("%s %s: no cgroup2 file system is mounted (cgroup v1 only); "
                        "mount one: mount -t cgroup2 none /sys/fs/cgroup/unified" % (option, q))
    if os.path.isabs(p):
        full = os.path.normpath(p)
        inside = os.path.normpath(m.point + full)
        if not _under(full, m.point) and os.path.isdir(inside):
            full = inside   # as /proc/PID/cgroup names it, from the mount
    else:
        full = os.path.normpath(os.path.join(m.point, p))
        if not _under(full, m.point):
            raise UsageError("%s %s: leaves the cgroup2 mount %s" % (option, q, m.point),
                             "give a path under %s" % m.point)
    hint = "cgroup v2 directories are under %s (ls it)" % m.point
    if not _under(full, m.point):
        for v in v1:
            if _under(full, v.point):
                raise UsageError("%s %s: a cgroup v1 hierarchy (%s), which cannot be traced"
                                 % (option, q, v.opts.split(",")[-1]), hint)
        raise UsageError("%s %s: not a cgroup (not under the cgroup2 mount %s)"
                         % (option, q, m.point), hint)
    if os.path.exists(full) and not os.path.isdir(full):
        raise UsageError("%s %s: not a cgroup (not a directory)" % (option, q), hint)
    if not os.path.isdir(full):
        rel = os.path.relpath(full, m.point)
        only_v1 = [v for v in v1 if os.path.isdir(os.path.join(v.point, rel))]
        if only_v1 and rel != ".":
            raise UsageError("%s %s: only in cgroup v1 hierarchies (%s), which cannot be "
                             "traced" % (option, q, only_v1[0].opts.split(",")[-1]), hint)
        raise UsageError("%s %s: no such cgroup (no %s)"
                         % (option, q, _shown(full)), hint)
    if not os.path.exists(os.path.join(full, "cgroup.threads")):
        raise UsageError("%s %s: not a cgroup (no cgroup.threads in %s)"
                         % (option, q, _shown(full)), hint)
    return full


def subtree_threads(top: str) -> Optional[Dict[int, str]]:
    """Every thread of the cgroup ``top`` and its descendants, with the
    directory it is in (its ``cgroup.threads``); None if ``top`` is gone.
    A descendant removed while it is read is skipped."""
    out: Dict[int, str] = {}
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            with open(os.path.join(d, "cgroup.threads"), "rb") as f:
                data = f.read()
            ents = list(os.scandir(d))
        except OSError:
            if d == top:
                return None
            continue
        for t in data.split():
            out[int(t)] = d
        stack.extend(e.path for e in ents if e.is_dir(follow_symlinks=False))
    return out


def parse_proc_cgroup(text: str) -> Optional[str]:
    """The cgroup v2 path from a /proc/PID/cgroup text (its ``0::`` line),
    None if it has none (a v1-only kernel)."""
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def task_cgroup(pid: int) -> Optional[str]:
    """The cgroup v2 path of a task, as /proc/PID/cgroup gives it; None if
    the task is gone."""
    try:
        with open("/proc/%d/cgroup" % pid, errors="surrogateescape") as f:
            return parse_proc_cgroup(f.read())
    except OSError:
        return None


_HEX = re.compile(r"^[0-9a-f]{32,}$")
# runtimes' scope names under systemd: docker-ID.scope, cri-containerd-ID.scope...
_RUNTIME = re.compile(r"^(docker|cri-containerd|containerd|crio|libpod|podman)-"
                      r"([0-9a-f]{12,})\.scope$")
_POD = re.compile(r"^(?:kubepods(?:-[a-z]+)?-)?pod([0-9a-f_-]{8,})(?:\.slice)?$")


def short_name(path: Optional[str]) -> str:
    """A cgroup path shortened to what names it: a container
    (``docker-0123456789ab``), a Kubernetes pod (``pod1a2b3c4d``, with
    its container: ``pod1a2b3c4d/containerd-0123456789ab``), else the
    innermost systemd unit (``nginx.service``, ``session-2.scope``), else
    the last component. ``?`` for an unknown path, ``/`` for the root."""
    if path is None:
        return "?"
    parts = [p for p in path.split("/") if p]
    if not parts:
        return "/"
    pod = container = None
    for i, c in enumerate(parts):
        m = _POD.match(c)
        if m and i and "kubepods" in "/".join(parts[:i + 1]):
            pod, container = "pod" + m.group(1).replace("_", "-")[:8], None
            continue
        m = _RUNTIME.match(c)
        if m:
            kind = "containerd" if m.group(1) == "cri-containerd" else m.group(1)
            container = "%s-%s" % (kind, m.group(2)[:12])
        elif _HEX.match(c):     # the cgroupfs driver: /docker/ID, /kubepods/.../ID
            prev = parts[i - 1] if i else ""
            container = ("docker-" if prev == "docker" else "") + c[:12]
    if pod:
        return pod + ("/" + container if container else "")
    if container:
        return container
    for c in reversed(parts):
        if c.endswith((".service", ".scope")):
            return c
    return parts[-1]


class Lookup:
    """The cgroup path of tasks, read once per task from /proc and kept
    while it is wanted (``see`` while they live, ``keep`` at each report)."""

    def __init__(self) -> None:
        self.paths: Dict[int, Optional[str]] = {}

    def see(self, pids: Iterable[int]) -> None:
        paths = self.paths
        for p in pids:
            if p not in paths:
                paths[p] = task_cgroup(p)

    def of(self, pid: int) -> Optional[str]:
        if pid not in self.paths:
            self.paths[pid] = task_cgroup(pid)
        return self.paths[pid]

    def inherit(self, parent: int, child: int) -> None:
        """A fork: the child starts in its parent's cgroup (read now from
        the child, or from the parent if the child is gone already)."""
        if child not in self.paths:
            self.paths[child] = task_cgroup(child) or self.of(parent)

    def keep(self, pids: Iterable[int]) -> None:
        """Forget all but these tasks (a task read again may have moved)."""
        self.paths = {p: self.paths[p] for p in pids if p in self.paths}


def parse_nspid(text: str) -> Optional[List[int]]:
    """The ``NSpid:`` line of a /proc/PID/status text: the task's PID in
    each namespace from /proc's own (first) to its innermost (last)."""
    for line in text.splitlines():
        if line.startswith("NSpid:"):
            return [int(x) for x in line.split()[1:]]
    return None


def nspid_of(pid: int) -> Optional[List[int]]:
    try:
        with open("/proc/%d/status" % pid, errors="surrogateescape") as f:
            return parse_nspid(f.read())
    except OSError:
        return None


def _ns(pid: int) -> Optional[str]:
    try:
        return os.readlink("/proc/%d/ns/pid" % pid)
    except OSError:
        return None


def ns_level(pid: int, option: str = "--pidns") -> Tuple[str, int]:
    """The PID namespace of a live process and its depth below /proc's
    own (0: the host's)."""
    chain = nspid_of(pid)
    if not chain:
        raise ToolError("%s %d: no such process" % (option, pid))
    try:
        ns = os.readlink("/proc/%d/ns/pid" % pid)
    except OSError as e:
        raise ToolError("%s %d: cannot read its PID namespace (/proc/%d/ns/pid): %s"
                        % (option, pid, pid, e.strerror)) from None
    return ns, len(chain) - 1


def host_pid(nspid: int, of: int, option: str = "-p", threads: bool = False) -> int:
    """The host PID of the process (``threads``: thread) whose PID is
    ``nspid`` inside the PID namespace of process ``of`` (tasks of that
    namespace itself; not of namespaces nested in it)."""
    ns, level = ns_level(of)
    for d in os.listdir("/proc"):
        if not d.isdigit() or _ns(int(d)) != ns:
            continue
        tids = [int(d)]
        if threads:
            try:
                tids = [int(t) for t in os.listdir("/proc/%s/task" % d)]
            except OSError:
                continue
        for t in tids:
            chain = nspid_of(t)
            if chain and len(chain) > level and chain[level] == nspid:
                return t
    raise ToolError("%s %d: no such %s in the PID namespace of process %d"
                    % (option, nspid, "thread" if threads else "process", of))
