"""iolatency's in-kernel path (hist triggers, synthetic events) against
its streaming path and the kernel's block accounting, on the same
workload: both run at once on a private loop device. Runs in the VM tier
(Debian's 6.1 and 6.12 kernels); the development host has no hist
triggers."""

import json
import signal

import pytest

import loopdev
import tooling

pytestmark = pytest.mark.skipif(loopdev.have_tools() is not None,
                                reason=str(loopdev.have_tools()))


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
            kernel = start("-d", dev.name, "600")
            assert "in-kernel" in "".join(kernel.err)
            start("--stream", "-d", dev.name, "600")
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
        for (rc, out, err), in_kernel in zip(results, (True, False)):
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
        # Microsecond truncation may move an I/O across a bucket boundary.
        # On 6.1, the in-kernel path also put 6 % of the I/Os at 0 us that
        # streaming put higher (timestamps of filtered events taken from the
        # per-CPU temporary buffer, it seems; not yet understood): the counts
        # above are exact, the shapes must agree within 10 %.
        misplaced = sum(abs(hists[0].get(k, 0) - hists[1].get(k, 0))
                        for k in set(hists[0]) | set(hists[1])) // 2
        assert misplaced <= max(2, ios // 10), hists
