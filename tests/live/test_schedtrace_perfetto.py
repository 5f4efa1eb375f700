"""schedtrace --perfetto: a valid Trace Event Format file whose slices are
the runs the kernel counted (/proc/PID/schedstat), never overlapping on a
CPU, with wakeup arrows that end where a run starts."""

import json
import os
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_schedtrace as base  # noqa: E402

EPS_US = 0.002  # float rounding of nanoseconds written as microseconds


def test_perfetto_timeline(tmp_path) -> None:
    path = str(tmp_path / "t.json")
    w, delta, out, err = base.traced("--perfetto", path)
    assert "wrote %s" % path in err
    with open(path) as f:
        doc = json.load(f)
    evs = doc["traceEvents"]
    assert isinstance(evs, list) and evs
    for e in evs:
        assert e["ph"] in ("M", "X", "s", "f"), e
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] != "M":
            assert isinstance(e["ts"], (int, float))
    tracks = {e["tid"]: e["args"]["name"] for e in evs
              if e["ph"] == "M" and e["name"] == "thread_name"}
    online = set(range(os.cpu_count() or 1))
    assert tracks and set(tracks) <= online
    assert all(name == "CPU %d" % t for t, name in tracks.items())
    slices = defaultdict(list)
    per_task = defaultdict(list)
    for e in evs:
        if e["ph"] == "X":
            assert e["tid"] in tracks
            assert e["dur"] >= 0
            slices[e["tid"]].append((e["ts"], e["ts"] + e["dur"]))
            per_task[e["args"]["pid"]].append(e)
    for cpu, sl in slices.items():
        sl.sort()
        for (a0, a1), (b0, b1) in zip(sl, sl[1:]):
            assert a1 <= b0 + EPS_US, "overlap on CPU %d: %r %r" % (cpu, (a0, a1), (b0, b1))
    # One slice per run the kernel counted, as long as the kernel says.
    for pid, k in delta.items():
        runs = per_task[pid]
        assert len(runs) == k["runs"], (pid, len(runs), k)
        total_ns = sum(e["dur"] for e in runs) * 1000
        assert base.close(total_ns, k["run_ns"], k["runs"]), (pid, total_ns, k)
        assert all(e["name"].endswith(":%d" % pid) for e in runs)
        assert {e["args"]["end_state"] for e in runs} <= {"S", "R", "R+", "D"}
    # Wakeup arrows: start/finish pairs; each finish is the start of a run.
    starts = {e["id"]: e for e in evs if e["ph"] == "s"}
    ends = {e["id"]: e for e in evs if e["ph"] == "f"}
    assert starts and set(starts) == set(ends)
    run_starts = {(e["tid"], round(e["ts"], 3)) for r in per_task.values() for e in r}
    ours = [f for f in ends.values() if (f["tid"], round(f["ts"], 3)) in run_starts]
    # The ping-pong wakes each side in most rounds (not when the reply is
    # already there, nor for a run whose switch-in the kernel did not record).
    assert len(ours) >= base.ROUNDS // 2, (len(ours), len(ends))
    for i, f in ends.items():
        assert starts[i]["ts"] <= f["ts"] + EPS_US
