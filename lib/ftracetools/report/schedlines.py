"""Scheduler events as lines: one per switch, wakeup or migration, as
text (the trace clock in seconds, the CPU, what happened) or as JSON
objects (their time moved to the epoch); busy rounds of switches
formatted at once."""

import sys
from typing import Any, Dict

from ftracetools.report import text

__all__ = ["HEAD", "Lines"]

HEAD = "%-15s %-5s %s" % ("TIME(s)", "CPU", "PREV_COMM:PID [PRIO] STATE ==> "
                          "NEXT_COMM:PID [PRIO]")


def _str(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


class Lines:
    """``json``: JSON objects, their trace-clock times plus ``offset``
    (the epoch less the monotonic clock) in seconds."""

    def __init__(self, json: bool, offset: float) -> None:
        self.json, self.offset = json, offset
        self.mids: Dict[tuple, str] = {}    # a switch's text after TIME and CPU

    def event(self, obj, line: str) -> None:
        if self.json:
            text.json_line(dict(obj, time=round(self.offset + obj["time"] / 1e9, 6)))
        else:   # (whole microseconds, rounded as switches() does)
            sec, us = divmod((obj["time"] + 500) // 1000, 1000000)
            sys.stdout.write("%8d.%06d [%03d] %s\n" % (sec, us, obj["cpu"], line))

    def switch(self, ts, cpu, pc, pp, ppr, state, nc, np_, npr, wait) -> None:
        e = {"event": "switch", "time": ts, "cpu": cpu, "prev_comm": pc, "prev_pid": pp,
             "prev_prio": ppr, "prev_state": state, "next_comm": nc, "next_pid": np_,
             "next_prio": npr}
        self.event(dict(e, wait_ns=wait) if wait is not None else e,
                   "%s:%d [%d] %s ==> %s:%d [%d]%s" % (
                       text.escape(pc), pp, ppr, state, text.escape(nc), np_, npr,
                       "  wait %.3f ms" % (wait / 1e6) if wait is not None else ""))

    def switches(self, c: Dict[str, Any]) -> None:
        """A round of switches (engines.sched.Events' ``on_switches``:
        numpy arrays, comms as raw bytes, ``state`` an index into the
        letters ``states``): the lines ``switch`` would print, made at
        once: the time and CPU columns as digits in arrays, the rest of a
        line once per task pair (up to 65,536 kept)."""
        import numpy as np
        n = len(c["ts"])
        if not n:
            return
        states = c["states"]
        us = (c["ts"] + 500) // 1000
        sec = us // 1000000
        # JSON, and text whose columns would widen (10^8 s up, CPU 1000 on):
        # a line at a time
        if self.json or sec.max() >= 10 ** 8 or c["cpu"].max() >= 1000:
            for t, cpu, pc, pp, ppr, st, nc, np_, npr in zip(*(c[k].tolist() for k in (
                    "ts", "cpu", "prev_comm", "prev_pid", "prev_prio", "state", "next_comm",
                    "next_pid", "next_prio"))):
                self.switch(t, cpu, _str(pc), pp, ppr, states[st], _str(nc), np_, npr, None)
            return
        # the rest of each line, by task pair: rows with equal fields share it
        words = [c[k].astype(np.uint64) for k in ("prev_pid", "prev_prio", "state",
                                                   "next_pid", "next_prio")]
        for k in ("prev_comm", "next_comm"):
            w = np.ascontiguousarray(c[k], "S16").view(np.uint64).reshape(n, 2)
            words += [w[:, 0], w[:, 1]]
        h = np.zeros(n, np.uint64)
        for w in words:
            h = h * np.uint64(0x9E3779B97F4A7C15) + w
        uniq, first, inv = np.unique(h, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        if not all((w[first][inv] == w).all() for w in words):   # (a hash collision)
            first, inv = np.arange(n), np.arange(n)
        mids, texts = self.mids, []
        if len(mids) > 65536:
            mids.clear()
        for key in zip(*(c[k][first].tolist() for k in (
                "prev_comm", "prev_pid", "prev_prio", "state", "next_comm", "next_pid",
                "next_prio"))):
            m = mids.get(key)
            if m is None:
                pc, pp, ppr, st, nc, np_, npr = key
                m = mids[key] = "%s:%d [%d] %s ==> %s:%d [%d]\n" % (
                    text.escape(_str(pc)), pp, ppr, states[st], text.escape(_str(nc)),
                    np_, npr)
            texts.append(m)
        # "SSSSSSSS.UUUUUU [CCC] ": seconds right-aligned, as "%15.6f" has it
        pre = np.empty((n, 22), np.uint32)
        pre[:] = np.array([ord(x) for x in "        .000000 [000] "], np.uint32)
        for i in range(8):
            d = (sec // 10 ** i) % 10 + 48
            pre[:, 7 - i] = d if i == 0 else np.where(sec >= 10 ** i, d, 32)
        frac = us % 1000000
        for i in range(6):
            pre[:, 14 - i] = (frac // 10 ** i) % 10 + 48
        cpu = c["cpu"]
        for i in range(3):
            pre[:, 19 - i] = (cpu // 10 ** i) % 10 + 48
        out = np.empty(2 * n, object)
        out[0::2] = pre.view("U22").reshape(n).tolist()
        out[1::2] = np.array(texts, object)[inv]
        sys.stdout.write("".join(out.tolist()))

    def waking(self, ts, cpu, waker, wcomm, comm, pid, prio, target) -> None:
        self.event({"event": "wakeup", "time": ts, "cpu": cpu, "waker_pid": waker,
                    "waker_comm": wcomm, "comm": comm, "pid": pid, "prio": prio,
                    "target_cpu": target},
                   "%s:%d wakes %s:%d [%d] on [%03d]" % (text.escape(wcomm), waker,
                                                         text.escape(comm), pid, prio, target))

    def migrate(self, ts, cpu, comm, pid, prio, orig, dest) -> None:
        self.event({"event": "migrate", "time": ts, "cpu": cpu, "comm": comm, "pid": pid,
                    "prio": prio, "orig_cpu": orig, "dest_cpu": dest},
                   "%s:%d [%d] migrates [%03d] -> [%03d]" % (text.escape(comm), pid, prio,
                                                             orig, dest))
