"""What this kernel's tracefs offers, probed from tracefs itself.

Tools ask "can I do X here" (``Features.has``) and get, where the answer is
no, the reason to show the user (``Features.why_not``). No kernel versions.
"""

import errno
import os
from typing import Dict, List, Optional

from ftracetools.errors import ToolError
from ftracetools.kernel import tracefs

__all__ = ["FEATURES", "Features", "instance_tracers"]

# Feature names used by tools and by the tests' ``needs`` marker.
FEATURES = (
    "events",                   # tracefs events (sched, block, ...)
    "instances",                # private trace instances
    "function",                 # function tracer usable at the top level
    "function_instance",        # function tracer usable inside an instance
    "function_graph",           # function_graph tracer at the top level
    "function_graph_instance",  # function_graph inside an instance (6.11+)
    "function_profiler",        # function_profile_enabled + trace_stat
    "kprobes",                  # kprobe_events + kprobe_profile
    "fprobes",                  # f: probes in dynamic_events (6.5+)
    "hist",                     # hist triggers
    "synthetic",                # synthetic events
    "hist_stacktrace",          # a kernel stack kept in a hist variable (6.5+)
    "raw_buffers",              # per_cpu/cpuN/trace_pipe_raw
)


class Features:
    """Probe once, answer many times. Probing writes nothing."""

    def __init__(self, root: Optional[str] = None) -> None:
        self.root = root or tracefs.find_tracefs()
        self._cache: Dict[str, Optional[str]] = {}

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def tracers(self, instance_dir: Optional[str] = None) -> List[str]:
        base = instance_dir or self.root
        return (tracefs.read_opt(os.path.join(base, "available_tracers")) or "").split()

    def has_event(self, system: str, name: str) -> bool:
        return os.path.isdir(self.path("events", system, name))

    def _function_readable(self) -> Optional[str]:
        """None when the function tracer may be used, else why not."""
        if "function" not in self.tracers():
            return "the kernel has no function tracer (CONFIG_FUNCTION_TRACER)"
        try:
            with open(self.path("available_filter_functions")) as f:
                f.read(1)
        except OSError as e:
            if e.errno in (errno.EPERM, errno.EACCES):
                return ("function tracing is forbidden by this kernel (EPERM "
                        "on available_filter_functions: lockdown or a "
                        "security policy)")
            return "available_filter_functions: %s" % os.strerror(e.errno or 0)
        return None

    def why_not(self, feature: str) -> Optional[str]:
        """None if the feature is usable here, else a one-line reason."""
        if feature not in self._cache:
            self._cache[feature] = self._probe(feature)
        return self._cache[feature]

    def has(self, feature: str) -> bool:
        return self.why_not(feature) is None

    def _probe(self, feature: str) -> Optional[str]:
        p = self.path
        if feature == "events":
            return None if os.path.isdir(p("events")) else "no tracefs events (CONFIG_EVENT_TRACING)"
        if feature == "instances":
            return None if os.path.isdir(p("instances")) else "no trace instances (kernel older than 3.10)"
        if feature == "raw_buffers":
            return None if os.path.exists(p("per_cpu", "cpu0", "trace_pipe_raw")) else "no per-CPU raw buffers"
        if feature == "function":
            return self._function_readable()
        if feature == "function_graph":
            r = self._function_readable()
            if r:
                return r
            if "function_graph" not in self.tracers():
                return "the kernel has no function_graph tracer (CONFIG_FUNCTION_GRAPH_TRACER)"
            return None
        if feature in ("function_instance", "function_graph_instance"):
            base = feature[:-len("_instance")]
            r = self.why_not(base) or self.why_not("instances")
            if r:
                return r
            t = instance_tracers(self)
            if base not in t:
                return "%s is not allowed inside a trace instance on this kernel" % base
            return None
        if feature == "function_profiler":
            if os.path.exists(p("function_profile_enabled")):
                return self._function_readable()
            return "no function profiler (CONFIG_FUNCTION_PROFILER is off, as on most distribution kernels)"
        if feature == "kprobes":
            if os.path.exists(p("kprobe_events")) and os.path.exists(p("kprobe_profile")):
                return None
            return "no kprobe events (CONFIG_KPROBE_EVENTS)"
        if feature == "fprobes":
            readme = tracefs.read_opt(p("README")) or ""
            if os.path.exists(p("dynamic_events")) and "f[:[<group>/][<event>]]" in readme:
                return None
            return "no fprobe events (CONFIG_FPROBE_EVENTS, kernel 6.5+)"
        if feature == "hist":
            if os.path.exists(p("events", "sched", "sched_switch", "hist")):
                return None
            return "no hist triggers (CONFIG_HIST_TRIGGERS)"
        if feature == "synthetic":
            if os.path.exists(p("synthetic_events")):
                return None
            return "no synthetic events (CONFIG_SYNTH_EVENTS)"
        if feature == "hist_stacktrace":
            # 6.5+: common_stacktrace (was "stacktrace") can be saved in a
            # variable and passed to a synthetic event's unsigned long[]
            # field; the README says so in the hist trigger's help
            r = self.why_not("hist") or self.why_not("synthetic")
            if r:
                return r
            if "common_stacktrace" in (tracefs.read_opt(p("README")) or ""):
                return None
            return "hist triggers cannot keep a stack in a variable (kernel 6.5+)"
        raise ValueError("unknown feature %r" % feature)


def instance_tracers(feat: Features) -> List[str]:
    """Tracers allowed inside an instance.

    A throw-away instance is made and removed at once (mkdir/rmdir leaves
    nothing behind); reading another user's instance could make its rmdir
    fail with EBUSY. Raises ToolError when the instance cannot be made
    (the reason is the kernel's, not a missing tracer) or cannot be
    removed (it is named, for the user to remove).
    """
    name = "ftracetools-probe-%d" % os.getpid()
    d = feat.path("instances", name)
    try:
        os.mkdir(d)
    except OSError as e:
        raise ToolError("cannot make a trace instance (instances/%s) to learn which "
                        "tracers instances allow: %s" % (name, os.strerror(e.errno)))
    try:
        return feat.tracers(d)
    finally:
        try:
            tracefs.rmdir(d)
        except OSError as e:
            raise ToolError("cannot remove the probe instance instances/%s: %s; remove it "
                            "with rmdir%s" % (name, os.strerror(e.errno),
                                              " once its reader closes it"
                                              if e.errno == errno.EBUSY else ""))
