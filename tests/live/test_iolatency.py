"""iolatency against the kernel's own block accounting.

Each test makes a private loop device (tests/loopdev.py), runs fio on it
while iolatency traces it, and compares with /sys/block/DEV/stat: the
device does no other I/O, so its counters move only with fio.
"""

import json
import signal
import time
from typing import Dict, List

import pytest

import loopdev
import tooling

pytestmark = pytest.mark.skipif(loopdev.have_tools() is not None,
                                reason=str(loopdev.have_tools()))


@pytest.fixture
def loop():
    with loopdev.LoopDevice() as d:
        yield d


def _traced(dev, args, work, env=None) -> tuple:
    """Run iolatency --json ARGS around work(); return (JSON objects,
    stat delta, stderr)."""
    return loopdev.traced("iolatency", dev, args, work, env)


def _sum(objs: List[Dict], key: str) -> float:
    return sum(o[key] for o in objs)


@pytest.mark.parametrize("path", [pytest.param("numpy", marks=pytest.mark.vm), "python",
                                  pytest.param("kernel", marks=pytest.mark.needs("hist"))])
def test_counts_every_io_exactly(loop, path):
    """Short intervals: many I/Os straddle a boundary; two fio jobs put
    the same sector in flight twice now and then; none is lost. Both
    streaming paths, numpy and pure Python (no numpy), exactly; and where
    the kernel has hist triggers the in-kernel path too, which pairs on
    (dev, sector) only: with the same sector in flight twice (two fio
    jobs, 32 deep, on a small device: the worst case) a completion may
    take the other's start. Measured in the 6.12 guest: 32,292 pairs and
    12 unmatched for 32,208 I/Os (0.3 % over); within 1 % either way."""
    stream = [] if path == "kernel" else ["--stream"]
    objs, d, err = _traced(loop, stream + ["-d", loop.name, "0.25"],
                           lambda: loop.fio("randrw", 3, iodepth=32,
                                            extra=["--numjobs=2"]),
                           env={"FTT_NO_NUMPY": "1" if path == "python" else "0"})
    kernel = d["read_ios"] + d["write_ios"]
    assert kernel > 1000
    # an object per 0.25 s interval (in the emulated guests importing numpy
    # and a round take seconds: the intervals' reports come late, merged)
    assert len(objs) >= (8 if not tooling.EMULATED else 1), "an object per interval"
    assert _sum(objs, "lost") == 0, err
    n, unmatched = _sum(objs, "count"), _sum(objs, "unmatched")
    if path == "kernel":
        assert abs(n + unmatched - kernel) <= kernel // 100, (n, unmatched, kernel)
    else:
        assert (n, unmatched) == (kernel, 0), err
    assert {o["device"] for o in objs} == {loop.name}


def test_queued_latency_matches_kernel_ticks(loop):
    """-Q: summed latency == the device's read + write ticks (ms)."""
    objs, d, err = _traced(loop, ["-Q", "-d", loop.name],
                           lambda: loop.fio("randrw", 3))
    ticks_ms = d["read_ticks"] + d["write_ticks"]
    total_ms = _sum(objs, "total") / 1000.0
    assert _sum(objs, "count") == d["read_ios"] + d["write_ios"]
    assert ticks_ms > 100
    assert abs(total_ms - ticks_ms) <= 0.05 * ticks_ms + 5, (total_ms, ticks_ms)


def test_issue_latency_is_within_the_kernel_ticks(loop):
    """Without -Q (the numpy path), from issue: every I/O counted, and the
    summed latency the device's ticks (which start at queue insert) less
    the time between insert and issue, never more. On the loop device at
    fio's depth 1 that time is small: measured 0.996-0.997 of the ticks in
    4 runs here (-Q: 0.997-0.998); 0.9 leaves room for a busy host."""
    objs, d, err = _traced(loop, ["-d", loop.name], lambda: loop.fio("randrw", 3))
    ticks_ms = d["read_ticks"] + d["write_ticks"]
    total_ms = _sum(objs, "total") / 1000.0
    assert _sum(objs, "count") == d["read_ios"] + d["write_ios"]
    assert ticks_ms > 100
    assert 0.9 * ticks_ms <= total_ms <= 1.02 * ticks_ms + 5, (total_ms, ticks_ms)


@pytest.mark.parametrize("glob,field", [("*W*", "write_ios"), ("*R*", "read_ios")])
def test_iotype_filter(loop, glob, field):
    objs, d, err = _traced(loop, ["-d", loop.name, "-i", glob],
                           lambda: loop.fio("randrw", 2))
    assert d["read_ios"] > 100 and d["write_ios"] > 100
    assert _sum(objs, "count") == d[field]
    assert _sum(objs, "unmatched") == 0


def test_per_device(loop):
    with loopdev.LoopDevice() as other:
        def work():
            loop.fio("randread", 1)
            other.fio("randwrite", 1)
        r = tooling.start("iolatency", "--json", "-D", "-d", loop.name, "-d", other.path)
        try:
            b1, b2 = loop.stat(), other.stat()
            work()
            other.settle()
            a1, a2 = loop.stat(), other.stat()
        finally:
            rc, out, err = r.stop(signal.SIGINT)
        assert rc == 0, err
        objs = [json.loads(l) for l in out.splitlines()]
        by = {}
        for o in objs:
            by[o["device"]] = by.get(o["device"], 0) + o["count"]
        d1, d2 = loopdev.delta(b1, a1), loopdev.delta(b2, a2)
        assert by.get(loop.name) == d1["read_ios"] + d1["write_ios"]
        assert by.get(other.name) == d2["read_ios"] + d2["write_ios"]


def _bucket_of(buckets, p: float, count: int) -> Dict:
    need, seen = -(-p * count // 100), 0
    for b in buckets:
        seen += b["count"]
        if seen >= need:
            return b
    raise AssertionError("percentile beyond the buckets")


def test_percentiles_fall_in_their_buckets(loop):
    """Microsecond scale; each percentile lies in the bucket where the
    cumulative count reaches it; the average is total / count."""
    objs, d, err = _traced(loop, ["-d", loop.name],
                           lambda: loop.fio("randrw", 2))
    seen = 0
    for o in objs:
        if not o["count"]:
            continue
        seen += 1
        assert o["unit"] == "us"
        assert sum(b["count"] for b in o["buckets"]) == o["count"]
        for p in (50, 90, 99):
            b = _bucket_of(o["buckets"], p, o["count"])
            assert b["low"] <= o["p%d" % p] < b["high"], (p, o)
        last = [b for b in o["buckets"] if b["count"]][-1]
        assert last["low"] <= o["max"] < last["high"]
        assert abs(o["avg"] * o["count"] - o["total"]) <= 0.01 * o["total"] + 1
    assert seen


def test_lost_events_are_reported(loop):
    """A tiny buffer overflows while the tool is stopped (SIGSTOP): the
    loss is counted and explained."""
    r = tooling.start("iolatency", "--json", "-b", "8", "-d", loop.name)
    try:
        before = loop.stat()
        r.proc.send_signal(signal.SIGSTOP)
        try:
            loop.fio("randrw", 1, iodepth=32)
        finally:
            r.proc.send_signal(signal.SIGCONT)
        loop.settle()
        d = loopdev.delta(before, loop.stat())
    finally:
        rc, out, err = r.stop(signal.SIGINT)
    assert rc == 0, err
    objs = [json.loads(l) for l in out.splitlines()]
    lost = _sum(objs, "lost")
    assert lost > 0
    assert "-b" in err and "lost" in err
    assert _sum(objs, "count") < d["read_ios"] + d["write_ios"]


def test_text_output(loop):
    r = tooling.start("iolatency", "-m", "-d", loop.name, "1", "1")
    loop.fio("randread", 0.5)
    rc, out, err = r.wait()
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("  >=(ms) .. <(ms)   : I/O")
    assert any(l.startswith("count ") and " p99 " in l for l in lines)
    assert all(len(l) <= 80 for l in lines)


def test_sigterm_ends_with_a_summary(loop):
    """perf-tools' iolatency ignored SIGTERM; this one ends, prints the
    last interval and leaves tracefs as found (the autouse fixture)."""
    r = tooling.start("iolatency", "--json", "-d", loop.name, "60")
    loop.fio("randread", 0.5)
    rc, out, err = r.stop(signal.SIGTERM)
    assert rc == 0, err
    assert sum(json.loads(l)["count"] for l in out.splitlines()) > 0


# -- per process: the task that submitted each I/O ----------------------------------

def _counts_by(objs: List[Dict], key: str) -> Dict:
    by: Dict = {}
    for o in objs:
        if o["count"]:
            by[o[key]] = by.get(o[key], 0) + o["count"]
    return by


def test_one_histogram_per_process_counts_each_fio(loop, tmp_path):
    """--by pid: two fio processes on one device at once; each process's
    histograms count as many I/Os as that fio counted itself, and
    together what the device completed."""
    objs, d, err = _traced(loop, ["--by", "pid", "-d", loop.name, "0.5"], lambda: [
        p.wait(60) for p in [loop.fio_process(str(tmp_path / ("%s.json" % n)))
                             for n in "ab"]])
    by = _counts_by(objs, "pid")
    fios = sorted(loopdev.fio_ios(str(tmp_path / ("%s.json" % n))) for n in "ab")
    assert sorted(by.values()) == fios and sum(fios) == d["read_ios"] + d["write_ios"], err
    assert {o["comm"] for o in objs if o["count"]} == {"fio"}
    assert _sum(objs, "unmatched") + _sum(objs, "lost") == 0


def test_pid_filter_counts_only_that_process(loop, tmp_path):
    """-p: the process given (its I/O thread made after the tool started,
    followed through its fork) beside another fio: exactly its own count."""
    a = loop.fio_process(str(tmp_path / "a.json"), extra=["--startdelay=3"])
    b = loop.fio_process(str(tmp_path / "b.json"), seconds=4)
    try:
        r = tooling.start("iolatency", "--json", "-p", str(a.pid), "-d", loop.name, "0.5")
        assert a.wait(60) == 0
        rc, out, err = r.wait(30)      # ends with the process
    finally:
        b.wait(60)
    assert rc == 0, err
    objs = [json.loads(l) for l in out.splitlines()]
    assert _sum(objs, "count") == loopdev.fio_ios(str(tmp_path / "a.json")) > 1000, err
    assert "of PID %d" % a.pid in err


def test_command_filter_counts_only_its_ios(loop, tmp_path):
    """-c: the command and its children (fio forks its job) beside another
    fio: exactly the command's own count; --by comm names it."""
    other = loop.fio_process(str(tmp_path / "other.json"), seconds=4)
    try:
        time.sleep(0.5)
        cmd = " ".join(loop.fio_argv("randrw", 2, 16, ["--rate_iops=8000"],
                                     output=str(tmp_path / "cmd.json")))
        p = tooling.run("iolatency", "--json", "--by", "comm", "-d", loop.name, "-c", cmd)
    finally:
        assert other.wait(60) == 0
    assert p.returncode == 0, p.stderr
    objs = [json.loads(l) for l in p.stdout.splitlines()]
    assert _counts_by(objs, "comm") == {"fio": loopdev.fio_ios(str(tmp_path / "cmd.json"))}


# -- the in-kernel path (hist triggers, synthetic events): the VM tier -------------

@pytest.mark.needs("hist", "synthetic")
def test_in_kernel_histogram_matches_streaming():
    running = []

    def start(*args):
        # emulated guests are slow to start Python and to allocate tables
        r = tooling.Running("iolatency", ("-u", "--json") + args)
        running.append(r)
        r.wait_live(300)
        return r

    with loopdev.LoopDevice(size_mb=16) as dev:
        try:
            # Streaming first: the kernel calls an event's probes in the
            # order they were registered, and the later instance's times
            # include the earlier one's work on the event. Begun second,
            # streaming's latencies held the in-kernel path's completion
            # triggers (its pairing, the synthetic event, its histogram):
            # 1.3 us per I/O on average in the 6.1 guest (23,055 I/Os
            # paired one by one, hand-made triggers beside a streaming
            # instance), which moved up to 19 % of the I/Os a bucket up.
            start("--stream", "-d", dev.name, "600")
            kernel = start("-d", dev.name, "600")
            assert "in-kernel" in "".join(kernel.err)
            before = dev.stat()
            dev.fio("randrw", 2, iodepth=8)
            dev.settle()
            after = dev.stat()
        finally:
            results = [r.stop(signal.SIGINT, timeout=300) for r in running]
        d = loopdev.delta(before, after)
        ios = d["read_ios"] + d["write_ios"]
        assert ios > 50
        hists = []
        for (rc, out, err), in_kernel in zip(results, (False, True)):
            assert rc == 0, err
            objs = [json.loads(l) for l in out.splitlines()]
            n, unmatched = (sum(o[k] for o in objs) for k in ("count", "unmatched"))
            assert sum(o["lost"] for o in objs) == 0
            if in_kernel:
                # The kernel's table pairs on (dev, sector) only: when fio
                # reissues a sector still in flight (rare: once in a CI run
                # of 10812 I/Os on 6.1), one I/O is reported unmatched
                # instead. Every I/O is still accounted for.
                assert n + unmatched == ios and unmatched <= max(2, ios // 1000), (out, err)
            else:
                assert n == ios and unmatched == 0, (out, err)
            h = {}
            for o in objs:
                for b in o["buckets"]:
                    h[b["low"]] = h.get(b["low"], 0) + b["count"]
            hists.append(h)
        # The shapes agree within 1 %: I/Os a bucket apart, measured 0.18-
        # 0.46 % in 4 runs on each guest (23,704-40,559 I/Os), where the
        # kernel's microseconds (each end truncated) or the probes' order
        # move an I/O across a power of two. Before, up to 19 %: the
        # streaming instance was begun second (see above), and the
        # in-kernel triggers ran on the "global" clock (per CPU), which put
        # up to 1024 of 17,936 I/Os at 0 us on 6.1 (16-32 us by mono).
        misplaced = sum(abs(hists[0].get(k, 0) - hists[1].get(k, 0))
                        for k in set(hists[0]) | set(hists[1])) // 2
        assert misplaced <= max(2, ios // 100), (ios, misplaced, sorted(hists[0].items()),
                                               sorted(hists[1].items()))
