"""The skip ledger: on each kernel and tier, exactly which tests may skip,
and why; and how many tests must at least run.

A skip that is not listed here fails the tier (a feature probe that broke,
a missing tool, a fixture gone wrong would otherwise pass unnoticed); so
does a tier where fewer tests ran than it says. The check runs where the
whole tier runs (``FTT_LEDGER=1``: tests/run and the VM tier set it); a
run narrowed with ``-k`` only reports it.

Kernels: the development and CI host (6.18: no function tracing, no
kprobes, no hist triggers, no fprobes) and Debian's 6.1 and 6.12 under
QEMU (the VM tier runs the tests marked ``vm``).
"""

import os
import re
from typing import Dict, Optional, Tuple

__all__ = ["TIERS", "tier", "check"]

HOST_NEEDS_FUNCTIONS = "needs function"    # the host forbids function tracing
NO_HIST = "needs hist"
NO_KPROBES = "needs kprobes"
NO_FPROBES = "needs fprobes"
NO_PROFILER = "needs function_profiler"

# tier -> {"skips": {test id: the start of the reason}, "min_run": N}
TIERS: Dict[str, Dict] = {
    "unit": {"skips": {}, "min_run": 400},
    "live 6.18": {"skips": {}, "min_run": 100},
    "vm 6.1": {"skips": {}, "min_run": 40},
    "vm 6.12": {"skips": {}, "min_run": 40},
}


def tier(args) -> Optional[str]:
    """This session's tier, from its paths and the kernel it runs on."""
    paths = " ".join(str(a) for a in args)
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    kernel = "%s.%s" % m.groups() if m else os.uname().release
    if "tests/unit" in paths and "tests/live" not in paths:
        return "unit"
    if os.environ.get("FTT_EMULATED") == "1":
        return "vm " + kernel
    return "live " + kernel


def check(name: Optional[str], ran: int,
          skipped: Dict[str, str]) -> Tuple[bool, list]:
    """(whether the tier holds to its ledger, lines to show)."""
    if name not in TIERS:
        return False, ["skip ledger: no entry for tier %r: add one to tests/ledger.py" % name]
    entry = TIERS[name]
    allowed = entry["skips"]
    lines, ok = [], True
    for test, why in sorted(skipped.items()):
        want = allowed.get(test)
        if want is None or not why.startswith(want):
            ok = False
            lines.append("skip ledger: UNEXPECTED skip %s: %s" % (test, why))
    if ran < entry["min_run"]:
        ok = False
        lines.append("skip ledger: only %d tests ran in %s, the ledger expects at least %d"
                     % (ran, name, entry["min_run"]))
    lines.append("skip ledger: %s: %d ran, %d skipped (%d allowed) -> %s" % (
        name, ran, len(skipped), len(allowed), "ok" if ok else "FAILED"))
    return ok, lines
