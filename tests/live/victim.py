#!/usr/bin/env python3
"""A minimal tool built only from the library, for the session tests.

Usage:
  victim.py [-t] [-p PID] [-s SECS] [--slow-cleanup] [--print]

Options:
  -t              Take the top level (under the lock) instead of an instance.
  -p PID          Filter on this process.
  -s SECS         Stop after SECS.
  --slow-cleanup  Sleep in teardown so that signals arrive during it.
  --print         Print a line after every read.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))

from ftracetools import cli  # noqa: E402
from ftracetools.ring.reader import RawReader  # noqa: E402
from ftracetools.kernel.session import Session  # noqa: E402


def body(args) -> int:
    targets = cli.Targets(args)
    dur = cli.seconds(args["-s"], "-s")
    with Session("victim", top_level=args["-t"]) as s:
        s.set("buffer_size_kb", "2048")
        s.set("trace_clock", "mono")
        targets.arm(s)
        s.enable_event("sched", "sched_switch")
        s.enable_event("sched", "sched_wakeup", "prio < 200")
        r = RawReader(s.dir, s.root)
        s.own(r)
        if args["--slow-cleanup"]:
            import time
            s.own(type("Slow", (), {"close": lambda self: time.sleep(1.0)})())
        cli.banner("victim")
        n = [0]

        def drain():
            got = len(r.drain())
            n[0] += got
            if args["--print"]:
                print("read", got, flush=True)
        cli.trace_loop(drain, duration=dur, alive=targets.alive)
        print("events", n[0], "lost", r.lost())
    return 0


if __name__ == "__main__":
    sys.exit(cli.run("victim", __doc__, body))
