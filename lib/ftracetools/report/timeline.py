"""Timelines in the Trace Event Format (the JSON that ui.perfetto.dev and
chrome://tracing open): named tracks, complete slices, flow arrows.

``t = Timeline("CPUs"); t.track(0, "CPU 0"); t.slice(0, "bash:12", a, b)``
with times in nanoseconds, then ``t.write(path)``. Times are written in
microseconds (the format's unit) with nanosecond decimals.
"""

import json
from typing import Any, Dict, List, Optional

__all__ = ["Timeline"]


class Timeline:
    """One process (``pid`` 0) holding one track per ``tid``."""

    def __init__(self, process: str) -> None:
        self.events: List[Dict[str, Any]] = [
            {"name": "process_name", "ph": "M", "pid": 0, "tid": 0,
             "args": {"name": process}}]
        self.tracks: Dict[int, str] = {}
        self._flows = 0

    def track(self, tid: int, name: str) -> None:
        """Name a track once (e.g. ``CPU 3``); tracks sort by ``tid``."""
        if tid in self.tracks:
            return
        self.tracks[tid] = name
        self.events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": tid,
                            "args": {"name": name}})
        self.events.append({"name": "thread_sort_index", "ph": "M", "pid": 0,
                            "tid": tid, "args": {"sort_index": tid}})

    def slice(self, tid: int, name: str, start_ns: int, end_ns: int,
              args: Optional[Dict[str, Any]] = None, cat: str = "") -> None:
        """A complete event ("X") on track ``tid`` from start to end."""
        e = {"name": name, "ph": "X", "pid": 0, "tid": tid,
             "ts": start_ns / 1000.0, "dur": max(0, end_ns - start_ns) / 1000.0}
        if cat:
            e["cat"] = cat
        if args:
            e["args"] = args
        self.events.append(e)

    def flow(self, name: str, src_tid: int, src_ns: int, dst_tid: int,
             dst_ns: int, cat: str = "flow") -> int:
        """An arrow from the slice enclosing (src_tid, src_ns) to the one
        enclosing (dst_tid, dst_ns); returns its id."""
        self._flows += 1
        fid = self._flows
        self.events.append({"name": name, "cat": cat, "ph": "s", "id": fid,
                            "pid": 0, "tid": src_tid, "ts": src_ns / 1000.0})
        self.events.append({"name": name, "cat": cat, "ph": "f", "bp": "e",
                            "id": fid, "pid": 0, "tid": dst_tid,
                            "ts": dst_ns / 1000.0})
        return fid

    def cpu_run(self, cpu: int, pid: int, comm: str, start_ns: int, end_ns: int,
                state: str) -> None:
        """A task's run on a CPU's track (``CPU N``), named ``comm:pid``."""
        self.track(cpu, "CPU %d" % cpu)
        self.slice(cpu, "%s:%d" % (comm, pid), start_ns, end_ns,
                   {"pid": pid, "end_state": state}, "sched")

    def wakeup(self, waker_cpu: int, waker_ns: int, cpu: int, ns: int) -> None:
        """An arrow from a waker's CPU to where the woken task ran."""
        self.track(cpu, "CPU %d" % cpu)
        self.flow("wakeup", waker_cpu, waker_ns, cpu, ns, "sched")

    def dump(self) -> Dict[str, Any]:
        return {"traceEvents": self.events, "displayTimeUnit": "ns"}

    def encode(self) -> bytes:
        """The JSON file's contents (write them with ``outfile.OutFile``)."""
        return json.dumps(self.dump(), separators=(",", ":")).encode()
