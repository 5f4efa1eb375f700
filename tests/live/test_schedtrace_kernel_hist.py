"""schedtrace -H computed in the kernel (hist triggers + a synthetic event)
against the same histogram computed from the event stream, on the same
ping-pong workload in the same window, and both against the kernel's own
count of switch-ins (/proc/PID/schedstat timeslices): every switch-in of
the workload follows a wakeup or a preemption, so each is one wait."""

import json
import os
import signal
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_schedtrace as base  # noqa: E402
import tooling  # noqa: E402

ROUNDS = 300    # the VM guests run 10-50x slower
STARTUP = 300


def _hists(out: str):
    rows = [json.loads(l) for l in out.splitlines() if l.strip()]
    assert len(rows) == 1, out
    return rows[0], {e["pid"]: e for e in rows[0]["hists"]}


@pytest.mark.needs("hist", "synthetic")
def test_kernel_histogram_equals_stream_and_schedstat() -> None:
    w = base.Workload(ROUNDS)
    tools = []
    try:
        base.settled(w.pid)
        # Generous limits: the guests run under software emulation.
        for extra in ([], ["--stream"]):
            tools.append(tooling.start("schedtrace", "-H", "--by", "task", "--json",
                                       *extra, timeout=STARTUP))
        before = base.settled(w.pid)
        w.run()
        after = {w.pid: base.settled(w.pid, STARTUP), w.child: base.settled(w.child, STARTUP)}
        (rk, ok, ek), (rs, os_, es) = [t.stop(signal.SIGINT, timeout=STARTUP) for t in tools]
    finally:
        for t in tools:
            if t.proc.poll() is None:
                t.stop(signal.SIGTERM, timeout=STARTUP)
        w.close()
    assert rk == 0 and rs == 0, (ek, es)
    runs = {w.pid: after[w.pid]["runs"] - before["runs"], w.child: after[w.child]["runs"]}
    waited = {w.pid: after[w.pid]["wait_ns"] - before["wait_ns"],
              w.child: after[w.child]["wait_ns"]}
    hk_row, hk = _hists(ok)
    hs_row, hs = _hists(os_)
    assert hk_row["kernel"] is True and hs_row["kernel"] is False
    assert hk_row["lost"] == 0 and hs_row["lost"] == 0
    for pid, n in runs.items():
        assert n >= ROUNDS // 2     # most rounds block: the workload ran
        assert hk[pid]["count"] == hs[pid]["count"] == n, (pid, hk.get(pid), hs.get(pid), n)
        assert sum(b["count"] for b in hk[pid]["buckets"]) == n
        if tooling.EMULATED:
            # Under QEMU's emulation only the counts are compared: each tool
            # sees each event after the other's probe has run (six hist
            # triggers take 5-25 us there: the two paths' waits differed by
            # 7-24 us on average), and the streaming path's waits came out
            # 27-35 % above schedstat's run_delay (the scheduler reads its
            # clock after the tracepoints). Their means must still agree to
            # within that spread: a wrong unit or a wrong pairing in the
            # kernel's tables is off by far more.
            mk, ms = hk[pid]["total"] / n, hs[pid]["total"] / n
            assert abs(mk - ms) <= 0.5 * ms + 30, (pid, mk, ms)
            assert mk * 1000 <= 2 * waited[pid] / n + 30000, (pid, mk, waited[pid] / n)
            continue
        # On hardware both are tight.
        # Both count whole microseconds; the kernel subtracts truncated
        # timestamps, so each wait may differ by 1 us; neither finds more
        # waiting than the scheduler accounted.
        assert abs(hk[pid]["total"] - hs[pid]["total"]) <= n, (hk[pid], hs[pid])
        for h in (hk[pid], hs[pid]):
            assert h["total"] * 1000 <= waited[pid] + 1000 * n, (pid, h, waited[pid])
