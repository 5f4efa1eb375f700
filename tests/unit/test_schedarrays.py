"""The scheduler's books on arrays (engines.schedarrays) against the
reference, Tracker, event by event: simulated machines whose event
streams have every irregularity the kernel produces (switches it did not
record, first switches of CPUs, wakeups of running tasks, exits, forks
of traced tasks), cut into rounds at random places."""

import random

import pytest

np = pytest.importorskip("numpy")
from ftracetools.engines import sched as st  # noqa: E402
from ftracetools.engines import schedarrays as schedvec  # noqa: E402
from test_sched import FMT_NEW  # noqa: E402

S, D, I, X, Z, PRE = 1, 2, 0x80, 0x10, 0x20, 0x100
SW, WK, FK = schedvec.SWITCH, schedvec.WAKE, schedvec.FORK


def simulate(seed, n=3000, cpus=3, tasks=8, drop=0.03, forks=True, drop_idle=0.0):
    """Events of a made-up machine: (kind, ts, cpu, a, state, b)."""
    rng = random.Random(seed)
    cur = {c: rng.choice([0] + list(range(1, tasks + 1))) for c in range(cpus)}
    running = {t for t in cur.values() if t}
    runnable = set(range(1, tasks + 1)) - running
    sleeping = set()
    nxt_pid = 1000
    out = []
    ts = 10 ** 9
    for _ in range(n):
        ts += rng.choice([0, 1, 50, 700, 3000, 20000])
        r = rng.random()
        c = rng.randrange(cpus)
        if r < 0.55:
            prev = cur[c]
            if prev:
                state = rng.choice([0, PRE, PRE, S, S, S, D, I] + ([X, Z] if rng.random() < 0.1 else []))
                running.discard(prev)
                if state in (0, PRE):
                    runnable.add(prev)
                elif state in (S, D, I):
                    sleeping.add(prev)
            else:
                state = 0
            cand = sorted(runnable)
            nxt = rng.choice(cand + [0]) if cand else 0
            if nxt:
                runnable.discard(nxt)
                running.add(nxt)
            if nxt == prev:
                continue
            cur[c] = nxt
            ev = (SW, ts, c, prev, state, nxt)
        elif r < 0.9:
            pool = sorted(sleeping) + sorted(running)[:1] + sorted(runnable)[:1]
            if not pool:
                continue
            t = rng.choice(pool)
            if t in sleeping:
                sleeping.discard(t)
                runnable.add(t)
            ev = (WK, ts, rng.randrange(cpus), t, 0, 0)
        elif forks:
            par = rng.choice(sorted(running)) if running else 1
            child = nxt_pid
            nxt_pid += 1
            runnable.add(child)
            out.append((FK, ts, c, par, 0, child))
            ev = (WK, ts, c, child, 0, 0)
        else:
            continue
        if rng.random() < drop or ev[0] == SW and ev[3] == 0 and rng.random() < drop_idle:
            continue    # a record the kernel did not make
        out.append(ev)
    return out


def pure(events, keep, start):
    tr = st.Tracker(st.States(FMT_NEW), keep=keep, start=start)
    waits = []
    tr.on_wait = lambda p, c, w: waits.append((p, c, w))
    for kind, ts, cpu, a, s, b in events:
        if kind == SW:
            tr.switch(ts, cpu, a, s, b)
        elif kind == WK:
            tr.wakeup(ts, a)
        elif keep is not None and a in keep:
            keep.add(b)
    return tr, waits


def arrays(events):
    cols = list(zip(*events)) if events else [[]] * 6
    return {c: np.array(cols[i], np.int64) for i, c in enumerate(schedvec.COLUMNS)}


def vector(events, keep, start, seed):
    tr = st.Tracker(st.States(FMT_NEW), keep=keep, start=start)
    waits = []
    rounds = schedvec.Rounds(tr)
    rounds.on_waits = lambda p, c, w: waits.extend(zip(p.tolist(), c.tolist(), w.tolist()))
    tr.on_wait = lambda p, c, w: waits.append((p, c, w))    # switches done one by one
    rng = random.Random(seed)
    i = 0
    while i < len(events):
        j = i + rng.choice([1, 5, 50, 400, 2000])
        rounds.advance(arrays(events[i:j]))
        i = j
    return tr, waits


def books(tr):
    return {
        "tasks": {p: (t.run, t.runs, t.vol, t.invol, t.wait, t.waits, t.max_wait,
                      t.migr, t.unrec, t.off) for p, t in tr.tasks.items()},
        "since": tr.since, "ready": tr.ready, "off": tr.off, "cpu": tr.cpu,
        "cur": tr.cur, "last": tr.last, "unrecorded": tr.unrecorded,
        "dead": sorted(tr.dead)}


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("traced", [False, True])
def test_rounds_keep_the_same_books_as_the_tracker(seed, traced):
    events = simulate(seed, forks=traced)
    keep = {1, 2, 3} if traced else None
    want, want_waits = pure(events, set(keep) if traced else None, 10 ** 9)
    got, got_waits = vector(events, set(keep) if traced else None, 10 ** 9, seed)
    assert books(got) == books(want)
    assert sorted(got_waits) == sorted(want_waits)
    assert want.unrecorded > 0 and any(t.waits for t in want.tasks.values())


@pytest.mark.parametrize("drop_idle", [0.0, 0.3])
def test_rounds_without_irregularities_never_fall_back(drop_idle):
    """Nor with switch-ins from idle left out (a quarter of them on the
    6.18 host under a ping-pong): those are counted on arrays too."""
    events = simulate(3, n=5000, drop=0.0, forks=False, drop_idle=drop_idle)
    tr = st.Tracker(st.States(FMT_NEW), start=10 ** 9)
    calls = []
    real = tr.switch
    tr.switch = lambda *a: (calls.append(a), real(*a))[1]
    schedvec.Rounds(tr).advance(arrays(events))
    # only each CPU's first switch (the trace's start) goes event by event
    assert len(calls) == len({e[2] for e in events if e[0] == SW})
    want, _ = pure(events, None, 10 ** 9)
    assert books(tr) == books(want)
    assert (want.unrecorded > 10) == (drop_idle > 0)


def truth_of(events, start):
    """What the made-up machine did, from its own moves (every one
    recorded): per task, run time and runs (switch-in to switch-out, the
    tasks on CPU at the start from the start), run-queue waits and their
    number (from a switch-out in R/R+, or a wakeup of a task not on a CPU,
    to its switch-in)."""
    on = {}         # task -> on a CPU since
    ready = {}      # task -> runnable since
    seen_cpu = set()
    out = {}

    def t(p):
        return out.setdefault(p, {"run": 0, "runs": 0, "wait": 0, "waits": 0})
    for kind, ts, cpu, a, st_, b in events:
        if kind == SW:
            if a:
                since = on.pop(a, start if cpu not in seen_cpu else None)
                if since is not None:
                    t(a)["run"] += ts - since
                if st_ in (0, PRE):
                    ready[a] = ts
            seen_cpu.add(cpu)
            if b:
                t(b)["runs"] += 1
                if b in ready:
                    t(b)["wait"] += ts - ready.pop(b)
                    t(b)["waits"] += 1
                on[b] = ts
        elif kind == WK and a not in on:
            ready[a] = ts
    return out


@pytest.mark.parametrize("seed", range(8))
def test_both_engines_keep_the_machines_true_books(seed):
    """Not only the same books as each other: the true ones, where every
    move of the machine was recorded (no switch left out)."""
    events = simulate(seed, drop=0.0, forks=True)
    want = truth_of(events, 10 ** 9)
    for tr in (pure(events, None, 10 ** 9)[0], vector(events, None, 10 ** 9, seed)[0]):
        got = {p: {"run": x.run, "runs": x.runs, "wait": x.wait, "waits": x.waits}
               for p, x in tr.tasks.items()}
        assert {p: v for p, v in got.items() if any(v.values())} == \
            {p: v for p, v in want.items() if any(v.values())}
        assert tr.unrecorded == 0
