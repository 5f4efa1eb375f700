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
# ours starts a wait at sched_waking (before the enqueue the kernel's
# run_delay starts at) and ends a run at sched_switch (after the update_curr
# in __schedule that ends the kernel's): measured 645-997 ns more per run,
# 3 runs on the 6.18 host at load 2-3 (and never less)
PER_RUN_NS = 1500
# Under it too, a little a run: seen on a slower host, 2,996 runs of 5.9 us
# whose slices and waits came 136 ns a run short of the kernel's run time
# and run_delay (2.3 % in all, past the 2 %). Where those nanoseconds go is
# not pinned down; on runs this short a per-run allowance, not a share.
UNDER_PER_RUN_NS = 300


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
    # Wakeup arrows: start/finish pairs; each finish is the start of a run.
    starts = {e["id"]: e for e in evs if e["ph"] == "s"}
    ends = {e["id"]: e for e in evs if e["ph"] == "f"}
    woken = {(f["tid"], round(f["ts"], 3)): starts[i] for i, f in ends.items()
             if i in starts}
    # One slice per run the kernel counted. A slice runs from switch-in to
    # switch-out; the kernel's run time starts at the wakeup when the
    # wakeup preempts (it skips the clock update in __schedule), moving
    # that latency from the wait into the run. Run and wait together are
    # the same both ways: the slices, the waits before them (the arrow
    # from the waking, or the gap after a slice that ended runnable),
    # against the kernel's run time and run_delay: never under it by more
    # than 2 %, never over it by more than 2 % and PER_RUN_NS a run.
    # A wakeup from another CPU is queued there by an interrupt, 10-40 us
    # after the waking on this VM, and the kernel's wait starts only then:
    # the wait it counts lies within the arrow, so such arrows bound the
    # total from above only (seen: 895 of them, 19.6 ms, in a run whose
    # kernel wait was 5.2 ms in all).
    for pid, k in delta.items():
        runs = sorted(per_task[pid], key=lambda e: e["ts"])
        assert len(runs) == k["runs"], (pid, len(runs), k)
        assert all(e["name"].endswith(":%d" % pid) for e in runs)
        assert {e["args"]["end_state"] for e in runs} <= {"S", "R", "R+", "D"}
        total_us = sum(e["dur"] for e in runs)
        remote_us = 0.0
        for prev, e in zip([None] + runs[:-1], runs):
            w = woken.get((e["tid"], round(e["ts"], 3)))
            if prev is not None and prev["args"]["end_state"].startswith("R"):
                total_us += e["ts"] - (prev["ts"] + prev["dur"])
            elif w is not None and w["tid"] != e["tid"]:
                remote_us += e["ts"] - w["ts"]
            elif w is not None:
                total_us += e["ts"] - w["ts"]
        kernel = k["run_ns"] + k["wait_ns"]
        over = total_us * 1000 - kernel
        assert over <= 0.02 * kernel + PER_RUN_NS * k["runs"], (pid, total_us, remote_us, k)
        assert (total_us + remote_us) * 1000 - kernel >= \
            -(0.02 * kernel + UNDER_PER_RUN_NS * k["runs"]), (pid, total_us, remote_us, k)
    assert starts and set(starts) == set(ends)
    run_starts = {(e["tid"], round(e["ts"], 3)) for r in per_task.values() for e in r}
    ours = [f for f in ends.values() if (f["tid"], round(f["ts"], 3)) in run_starts]
    # The ping-pong wakes each side in most rounds (not when the reply is
    # already there, nor for a run whose switch-in the kernel did not record).
    assert len(ours) >= base.ROUNDS // 2, (len(ours), len(ends))
    for i, f in ends.items():
        assert starts[i]["ts"] <= f["ts"] + EPS_US
