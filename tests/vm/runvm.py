#!/usr/bin/env python3
"""Run the live tests inside Debian 12's stock kernels under QEMU (virtme-ng).

For each kernel (by default the newest Debian 6.1 ``/boot/vmlinuz-6.1.0-N-amd64``
and the newest ``/boot/vmlinuz-6.12.N+deb12-amd64``) boot ONCE with
``vng --disable-kvm --memory 2G --cpus 2`` and run, inside the guest,

    python3 -m pytest -p no:cacheprovider -p no:benchmark tests/live -m vm [EXTRA...]

as root, with the host's Python (``sys.executable``, by absolute path: the
guest sees the host's root filesystem read-only, but with another PATH), the
checkout read-only at the same path, PYTHONDONTWRITEBYTECODE=1, and JUnit XML
written to the ``--rwdir`` directory (the only writable host directory).
Then print, per kernel: tests ran/passed/failed/skipped, skip reasons, the
guest's tracefs features, and boot/run timings.

Usage:
    tests/vm/runvm.py [options] [PYTEST_ARG ...]

    PYTEST_ARG...       appended to the guest's pytest command (e.g. -k canary,
                        or another path such as tests/unit). The environment
                        variable FTT_VM_PYTEST_ARGS (shell words) is
                        appended too.
    --paths P,P         test paths to run (default: tests/live)
    --marker EXPR       pytest -m expression (default: vm; '' for none)
    --kernel PATH       a vmlinuz to boot; repeat for several (default: 6.1 and 6.12)
    --rwdir DIR         where results go (default: a new /tmp/ftracetools-vm-*)
    --timeout SEC       per boot, boot included (default 3600, env
                        FTT_VM_TIMEOUT); past it the qemu process
                        group is killed and the kernel counts as failed
    --test-timeout SEC  per test (each of setup, call, teardown) in the guest
                        (default 300, env FTT_VM_TEST_TIMEOUT; 0: none):
                        the test fails and the run goes on (tests/vm/vmprogress.py)
    --guest-cmd CMD     run CMD in the guest instead of pytest (debugging;
                        the kernel passes when CMD exits 0)
    --cold-tracefs      leave every guest's top-level trace buffer unallocated,
                        as a machine boots (default: only the 6.1 guest, see
                        --warm; the others write 0 to events/enable first,
                        allocating it as any first use of tracing does)
    --warm              allocate it in every guest, 6.1 included
    --parallel N        boot up to N kernels at once (default: one per host
                        CPU; env FTT_VM_PARALLEL)
    --verbose           also print the guest's boot messages (they always go
                        to RWDIR/console-KERNEL.log)

Exit status:
    0   every kernel booted, ran at least one test, and no test failed
    1   a guest test failed or errored, a guest died or hung, no JUnit XML
        came back, no test ran; or, with CI=true, the tier cannot run here
    2   bad usage
    77  the VM tier cannot run here (no vng, QEMU or kernels; run
        tests/vm/install.sh as root) and CI is not "true": a line
        "VM tier skipped: <reason>" is printed. Callers treat 77 as skipped.
"""

import argparse
import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_SKIPPED = 77

DEFAULT_TIMEOUT = 3600
DEFAULT_TEST_TIMEOUT = 300
KERNEL_LINE = re.compile(r"^\[\s*\d+\.\d+\]")
KERNEL_TROUBLE = re.compile(r"(WARNING:|BUG:|\bBUG\b at|Oops|[Pp]anic|PANIC|Call Trace:|RIP:|ftrace failed|ftrace faulted)")
# What fails a guest: the kernel found a bug (a WARNING, an Oops, a BUG, a
# panic) or ftrace disabled itself. Stalls are not failures: under QEMU's
# software emulation a vCPU patching kernel text for function tracing can
# hold a CPU for 20 s and more ("watchdog: BUG: soft lockup", "rcu: INFO:
# ... stall"), which says the emulator is slow, not that the kernel or a
# tool is wrong; they are shown all the same.
KERNEL_FAILURE = re.compile(r"(WARNING:|Oops|\bBUG\b at|kernel BUG|BUG: (?!soft lockup)"
                            r"|[Pp]anic|PANIC|ftrace failed|ftrace faulted)")
UP_MARK = "FTT-VM-GUEST-UP"

FEATURES_SCRIPT = r"""
import sys
try:
    from ftracetools.kernel.features import Features, FEATURES
    f = Features()
    print("tracefs: %s" % f.root)
    for n in FEATURES:
        w = f.why_not(n)
        print("  %-24s %s" % (n, "yes" if w is None else "no: " + w))
except Exception as e:
    print("features: cannot probe: %r" % (e,))
"""


def log(msg: str) -> None:
    print(msg, flush=True)


# --- finding what we need ---------------------------------------------------

def _version_key(s: str) -> Tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", s))


def find_kernels(boot: str = "/boot") -> Tuple[List[str], List[str]]:
    """(kernels found, names of the kinds that are missing)."""
    kinds = [
        ("6.1 (linux-image-amd64)", re.compile(r"^vmlinuz-6\.1\.0-\d+-amd64$")),
        ("6.12 (linux-image-6.12.*+deb12-amd64)", re.compile(r"^vmlinuz-6\.12\.\d+\+deb12-amd64$")),
    ]
    found, missing = [], []
    names = [os.path.basename(p) for p in glob.glob(os.path.join(boot, "vmlinuz-*"))]
    for what, rx in kinds:
        match = sorted((n for n in names if rx.match(n)), key=_version_key)
        if match:
            found.append(os.path.join(boot, match[-1]))
        else:
            missing.append(what)
    return found, missing


def find_vng() -> Optional[str]:
    """vng installed for this Python first (it must be the tests' Python)."""
    mine = os.path.join(os.path.dirname(sys.executable), "vng")
    if os.access(mine, os.X_OK):
        return mine
    return shutil.which("vng")


def cannot_run(kernels: List[str], missing: List[str]) -> Optional[str]:
    """Why the VM tier cannot run on this machine, or None."""
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if find_vng() is None:
        return "virtme-ng (vng) is not installed (run tests/vm/install.sh as root)"
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (run tests/vm/install.sh as root)"
    if missing:
        return "no %s kernel in /boot (run tests/vm/install.sh as root)" % " or ".join(missing)
    for k in kernels:
        if not os.path.isfile(k):
            return "no kernel image %s" % k
        if not os.access(k, os.R_OK):
            return "cannot read %s (run as root)" % k
    return None


def kernel_release(vmlinuz: str) -> str:
    return os.path.basename(vmlinuz)[len("vmlinuz-"):]


# --- one boot -----------------------------------------------------------------

class Boot:
    """The result of booting one kernel and running the guest command."""

    def __init__(self, kernel: str) -> None:
        self.kernel = kernel
        self.release = kernel_release(kernel)
        self.short = self.release.split("-")[0].split("+")[0]
        self.status: Optional[int] = None      # vng's exit status
        self.timed_out = False
        self.boot_s: Optional[float] = None    # start -> guest command running
        self.total_s = 0.0
        self.guest_rc: Optional[int] = None    # written by the guest itself
        self.console: List[str] = []
        self.up_at = 0                         # console index of the guest's first line

    @property
    def run_s(self) -> Optional[float]:
        return None if self.boot_s is None else self.total_s - self.boot_s


def cold(args: argparse.Namespace, release: str) -> bool:
    """Whether this guest starts with its top-level buffer unallocated.

    A machine boots so ("7 (expanded: 1408)"), and 6.1 is where it bites:
    a tracer set or a buffer sized in an instance marks the buffers
    expanded without growing the top level, which then stays at 7 KB for
    every later user unless the tools restore it (session._keep_expansion).
    The 6.1 guest runs cold so that every live test checks that.
    """
    if args.cold_tracefs:
        return True
    return not args.warm and release.startswith("6.1.")


def startup_hooks() -> List[str]:
    """The .pth files of this interpreter's site-packages that import
    certifi at each start (not Python's, not a dependency of ours)."""
    import site
    found = []
    for d in site.getsitepackages():
        for pth in sorted(glob.glob(os.path.join(d, "*.pth"))):
            try:
                with open(pth, errors="replace") as f:
                    if "import certifi" in f.read(65536):
                        found.append(pth)
            except OSError:
                pass
    return found


def guest_script(args: argparse.Namespace, rel: str, extra: List[str]) -> str:
    q = shlex.quote
    rw = args.rwdir
    py = sys.executable
    lines = [
        "mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null",
    ]
    if not cold(args, rel):
        # Allocate the top-level ring buffer now, as any first use of
        # tracing does.
        lines.append("echo 0 > /sys/kernel/tracing/events/enable 2>/dev/null")
    lines.append("echo \"top-level buffer_size_kb at start: $(cat "
                 "/sys/kernel/tracing/buffer_size_kb)\"")
    for hook in startup_hooks():
        # This host's Python runs a hook at every start that the guests
        # have no use for: a .pth file that imports certifi to trust a
        # network proxy (1.7 s of a 3.4 s interpreter start under the
        # emulation, paid by every tool a test starts: hundreds a guest).
        # Masked in the guest's own mount namespace; the host keeps it.
        lines.append("mount --bind /dev/null %s" % q(hook))
    lines += [
        "echo %s" % UP_MARK,
        "cd %s || exit 90" % q(REPO),
        # Nothing may be written into the read-only checkout: no bytecode,
        # no pytest cache (-p no:cacheprovider), no pytest-benchmark storage
        # (-p no:benchmark, it mkdirs .benchmarks at start-up), Hypothesis's
        # example database in the results directory.
        "export PYTHONDONTWRITEBYTECODE=1",
        "export PYTHONUNBUFFERED=1",
        "export HYPOTHESIS_STORAGE_DIRECTORY=%s" % q(os.path.join(rw, ".hypothesis")),
        # tests/vm/vmprogress.py: progress log and per-test time limit.
        "export FTT_VM_PROGRESS=%s" % q(os.path.join(rw, "progress-%s.tsv" % rel)),
        "export FTT_VM_TEST_TIMEOUT=%d" % args.test_timeout,
        # limits on a tool's start and end (tests/tooling.py LIMIT_SCALE)
        "export FTT_LIMIT_SCALE=30",
        "export FTT_EMULATED=1",
        # (numpy's AVX2 code, whose gathers QEMU 7.2's emulation faults
        # on, is turned off by the tools themselves under emulation:
        # host.cpus.guard_numpy, proven in test_vm_canary.py)
        # the whole selection runs: every skip must be in tests/ledger.py
        "export FTT_LEDGER=%d" % (0 if extra else 1),
    ]
    if args.guest_cmd is not None:
        lines.append(args.guest_cmd)
    else:
        lines.append("PYTHONPATH=%s %s -c %s > %s 2>&1" % (
            q(os.path.join(REPO, "lib")), q(py), q(FEATURES_SCRIPT),
            q(os.path.join(rw, "features-%s.txt" % rel))))
        cmd = ["env", "PYTHONPATH=" + HERE, py, "-m", "pytest", "-p", "vmprogress",
               "-p", "no:cacheprovider", "-p", "no:benchmark", "-rfEs",
               "-v", "--junitxml=" + os.path.join(rw, "junit-%s.xml" % rel)]
        cmd += args.paths
        if args.marker:
            cmd += ["-m", args.marker]
        cmd += extra
        lines.append(" ".join(q(c) for c in cmd))
    lines += [
        "rc=$?",
        "echo \"top-level buffer_size_kb at end: $(cat /sys/kernel/tracing/buffer_size_kb)\"",
        "echo $rc > %s" % q(os.path.join(rw, "rc-%s" % rel)),
        "exit $rc",
    ]
    return "\n".join(lines)


def _kill_group(proc: "subprocess.Popen[bytes]") -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def boot(kernel: str, args: argparse.Namespace, extra: List[str]) -> Boot:
    b = Boot(kernel)
    rel = b.release
    for name in ("junit-%s.xml", "rc-%s", "features-%s.txt", "progress-%s.tsv", "guest-%s.sh"):
        try:
            os.unlink(os.path.join(args.rwdir, name % rel))
        except FileNotFoundError:
            pass
    # vng passes --exec on the kernel command line (2048 bytes on x86; the
    # 6.1 kernel panics at boot in __fortify_strlen when it is too long), so
    # the guest gets a short command that runs a script from the results
    # directory, which it sees at the same path.
    script = os.path.join(args.rwdir, "guest-%s.sh" % rel)
    with open(script, "w") as f:
        f.write(guest_script(args, rel, extra) + "\n")
    # Single-threaded TCG: the guest's two vCPUs take turns on one host
    # thread. With QEMU's default multi-threaded TCG, 6.12 died with an int3
    # Oops while function_graph patched kernel text (text_poke_bp across
    # vCPUs); one thread per guest also lets both kernels boot side by side.
    cmd = [find_vng() or "vng", "-r", kernel, "--memory", "2G", "--cpus", "2",
           "--disable-kvm", "--qemu-opts=-accel tcg,thread=single",
           "--rwdir", args.rwdir, "--verbose",
           "--exec", "sh " + shlex.quote(script)]
    logf = open(os.path.join(args.rwdir, "console-%s.log" % rel), "w")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=args.rwdir)

    def pump() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\r\n")
            logf.write(line + "\n")
            logf.flush()
            b.console.append(line)
            if b.boot_s is None:
                if UP_MARK in line:
                    b.boot_s = time.monotonic() - t0
                    b.up_at = len(b.console)
                    log("[%s] guest up after %.1f s" % (b.short, b.boot_s))
                elif args.verbose:
                    log("[%s] %s" % (b.short, line))
                continue
            # After boot: the tests' output, and kernel messages they caused.
            log("[%s] %s" % (b.short, line))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        b.status = proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        b.timed_out = True
        log("[%s] TIMEOUT after %d s: killing the qemu process group" % (b.short, args.timeout))
        _kill_group(proc)
        b.status = proc.returncode
    except BaseException:
        _kill_group(proc)
        raise
    else:
        # Leave nothing behind (vng's helpers share its process group).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    reader.join(timeout=10)
    logf.close()
    b.total_s = time.monotonic() - t0
    try:
        with open(os.path.join(args.rwdir, "rc-%s" % rel)) as f:
            b.guest_rc = int(f.read().strip())
    except (OSError, ValueError):
        b.guest_rc = None
    return b


# --- the report ---------------------------------------------------------------

class Results:
    def __init__(self) -> None:
        self.tests = 0
        self.passed = 0
        self.failed: List[Tuple[str, str]] = []
        self.skipped: List[Tuple[str, str]] = []


def parse_junit(path: str) -> Results:
    r = Results()
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        name = "%s::%s" % (case.get("classname", ""), case.get("name", ""))
        r.tests += 1
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            msg = (bad.get("message") or bad.text or "").strip().splitlines()
            r.failed.append((name, msg[0] if msg else ""))
        elif skip is not None:
            r.skipped.append((name, (skip.get("message") or "").strip()))
        else:
            r.passed += 1
    return r


def fmt_s(v: Optional[float]) -> str:
    return "?" if v is None else "%.1f s" % v


class Progress:
    """What tests/vm/vmprogress.py logged: survives a hung or dead guest."""

    def __init__(self) -> None:
        self.started: List[str] = []
        self.outcome: Dict[str, Tuple[str, str]] = {}   # nodeid -> (outcome, message)
        self.duration: Dict[str, float] = {}


def parse_progress(path: str) -> Optional[Progress]:
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    p = Progress()
    for line in lines:
        f = line.split("\t")
        if f[0] == "start" and len(f) >= 2:
            p.started.append(f[1])
        elif f[0] == "report" and len(f) >= 5:
            nodeid, when, outcome = f[1], f[2], f[3]
            msg = f[5] if len(f) > 5 else ""
            try:
                p.duration[nodeid] = p.duration.get(nodeid, 0.0) + float(f[4])
            except ValueError:
                pass
            prev = p.outcome.get(nodeid)
            if outcome == "failed":
                if prev is None or prev[0] != "failed":
                    p.outcome[nodeid] = ("failed", ("%s: " % when if when != "call" else "") + msg)
            elif outcome == "skipped":
                if prev is None:
                    p.outcome[nodeid] = ("skipped", msg)
            elif prev is None and when == "call":
                p.outcome[nodeid] = ("passed", "")
    return p


def results_from_progress(p: Progress) -> Results:
    r = Results()
    for nodeid in p.started:
        if nodeid not in p.outcome:
            continue
        r.tests += 1
        outcome, msg = p.outcome[nodeid]
        if outcome == "failed":
            r.failed.append((nodeid, msg))
        elif outcome == "skipped":
            r.skipped.append((nodeid, msg))
        else:
            r.passed += 1
    return r


def report(b: Boot, args: argparse.Namespace) -> bool:
    """Print this kernel's report; True when it passed."""
    rel = b.release
    log("")
    log("=== VM %s: %s ===" % (b.short, b.kernel))
    log("  time: boot %s, run %s, total %s" % (fmt_s(b.boot_s), fmt_s(b.run_s), fmt_s(b.total_s)))
    try:
        with open(os.path.join(args.rwdir, "features-%s.txt" % rel)) as f:
            log("  guest features:")
            for line in f.read().splitlines():
                log("    " + line)
    except OSError:
        pass
    problems: List[str] = []
    panicked = any(re.search(r"Kernel panic|PANIC:|kernel BUG at", ln) for ln in b.console)
    if panicked:
        problems.append("guest kernel panicked (see the console lines below)")
    if b.timed_out:
        problems.append("guest hung %s: killed after the %d s timeout" % (
            "while booting" if b.boot_s is None else "running the tests", args.timeout))
    elif b.boot_s is None:
        problems.append("guest never started the test command (boot failed?); "
                        "vng exit status %s" % b.status)
    elif b.guest_rc is None:
        problems.append("guest died before the test command finished "
                        "(vng exit status %s)" % b.status)
    if args.guest_cmd is not None:
        if b.guest_rc not in (None, 0):
            problems.append("guest command exited %d" % b.guest_rc)
    else:
        xml = os.path.join(args.rwdir, "junit-%s.xml" % rel)
        prog = parse_progress(os.path.join(args.rwdir, "progress-%s.tsv" % rel))
        res: Optional[Results] = None
        if not os.path.exists(xml):
            problems.append("no JUnit XML came back (%s)" % xml)
        else:
            try:
                res = parse_junit(xml)
            except (ET.ParseError, OSError) as e:
                problems.append("unreadable JUnit XML %s: %s" % (xml, e))
        partial = res is None and prog is not None
        if partial and prog is not None:
            res = results_from_progress(prog)
            running = [n for n in prog.started if n not in prog.outcome]
            log("  (from the progress log: the run did not finish)")
            for n in running:
                log("    RUNNING when it ended: %s" % n)
        if res is not None:
            log("  tests: %d ran, %d passed, %d failed, %d skipped%s" % (
                res.tests, res.passed, len(res.failed), len(res.skipped),
                " (incomplete)" if partial else ""))
            for name, why in res.skipped:
                log("    SKIP %s: %s" % (name, why))
            for name, why in res.failed:
                log("    FAIL %s: %s" % (name, why))
            if res.failed:
                problems.append("%d test(s) failed" % len(res.failed))
            if res.tests == 0 and not partial:
                problems.append("no test ran in the guest")
            if b.guest_rc not in (None, 0, 5) and not res.failed:
                problems.append("pytest exited %d" % b.guest_rc)
        if prog is not None and prog.duration:
            slow = sorted(prog.duration.items(), key=lambda kv: -kv[1])[:5]
            log("  slowest: " + ", ".join("%s %.0f s" % (n.split("::", 1)[-1], d) for n, d in slow))
    problems += buffer_problems(b.console)
    trouble = [ln for ln in b.console[b.up_at:] if KERNEL_TROUBLE.search(ln)]
    if b.boot_s is None:
        trouble = []   # boot messages: shown below with the last console lines
    failures = kernel_failures(trouble)
    if failures:
        problems.append("the guest kernel reported a bug: %s" % failures[0].strip())
    if trouble:
        log("  kernel messages to look at (full log: console-%s.log):" % rel)
        for ln in trouble[:10]:
            log("    | " + ln)
    ok = not problems
    if not ok:
        if b.console and (b.timed_out or b.guest_rc is None):
            show = b.console[-25:]
            where = "last console lines"
            for i, ln in enumerate(b.console):
                if re.search(r"cut here|Oops|BUG:|Kernel panic|PANIC:|kernel BUG at", ln):
                    show, where = b.console[max(0, i - 3):i + 40], "console at the panic"
                    break
            log("  %s (full log: %s):" % (where, os.path.join(args.rwdir, "console-%s.log" % rel)))
            for line in show:
                log("    | " + line)
        for p in problems:
            log("  FAILED: " + p)
    log("  result: %s" % ("ok" if ok else "FAILED"))
    return ok


def kernel_failures(lines: List[str]) -> List[str]:
    """The kernel's own messages (timestamped) that fail a guest."""
    return [ln for ln in lines if KERNEL_LINE.match(ln) and KERNEL_FAILURE.search(ln)]


BUFFER_LINE = re.compile(r"top-level buffer_size_kb at (start|end): (.*)$")


def buffer_problems(console: List[str]) -> List[str]:
    """A top-level buffer found unexpanded ("7 (expanded: 1408)") must not
    be left at a plain 7: the kernel would never expand it again, and
    every later user of the top level would get 7 KB per CPU."""
    seen = {}
    for ln in console:
        m = BUFFER_LINE.search(ln)
        if m:
            seen[m.group(1)] = m.group(2).strip()
    start, end = seen.get("start", ""), seen.get("end", "")
    m = re.match(r"^(\d+) \(expanded: (\d+)\)$", start)
    if m and end == m.group(1):
        return ["the top-level buffer was left unexpanded: it read %r at boot "
                "and %r after the tests" % (start, end)]
    return []


# --- main -----------------------------------------------------------------------

def parse_args(argv: List[str]) -> Tuple[argparse.Namespace, List[str]]:
    ap = argparse.ArgumentParser(
        description="Run the live tests inside Debian's 6.1 and 6.12 kernels under QEMU.",
        epilog="Exit: 0 ok, 1 failed, 77 skipped (tier cannot run here; not under CI=true).")
    ap.add_argument("--paths", default="tests/live",
                    help="comma-separated test paths (default tests/live)")
    ap.add_argument("--marker", default="vm", help="pytest -m expression (default vm)")
    ap.add_argument("--kernel", action="append", default=[], help="vmlinuz to boot (repeatable)")
    ap.add_argument("--rwdir", help="results directory (default: new /tmp/ftracetools-vm-*)")
    ap.add_argument("--timeout", type=int,
                    default=int(os.environ.get("FTT_VM_TIMEOUT") or DEFAULT_TIMEOUT),
                    help="seconds per boot (default %d)" % DEFAULT_TIMEOUT)
    ap.add_argument("--test-timeout", type=int,
                    default=int(os.environ.get("FTT_VM_TEST_TIMEOUT") or DEFAULT_TEST_TIMEOUT),
                    help="seconds per test phase in the guest, 0 for none (default %d)"
                    % DEFAULT_TEST_TIMEOUT)
    ap.add_argument("--guest-cmd", help="run this shell command in the guest instead of pytest")
    ap.add_argument("--cold-tracefs", action="store_true",
                    help="do not allocate the top-level trace buffer before the tests "
                    "in any guest (default: only in the 6.1 guest)")
    ap.add_argument("--warm", action="store_true",
                    help="allocate the top-level trace buffer in every guest")
    ap.add_argument("--parallel", type=int, default=int(os.environ.get("FTT_VM_PARALLEL") or 0),
                    help="kernels booted at once (default: one per host CPU)")
    ap.add_argument("--verbose", action="store_true")
    args, extra = ap.parse_known_args(argv)
    args.paths = [p for p in args.paths.split(",") if p]
    extra += shlex.split(os.environ.get("FTT_VM_PYTEST_ARGS", ""))
    return args, extra


def compile_library() -> None:
    """The library byte-compiled here, once, by the interpreter the guests
    run: they see the checkout read-only and never write bytecode, and
    without the .pyc files every tool a guest started compiled its modules
    anew (a tool's start took 7 s of emulated time where the interpreter
    alone takes 3)."""
    p = subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(REPO, "lib")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        log("(could not byte-compile lib: the guests will compile it at every start)\n"
            + p.stdout[-2000:])


def main(argv: Optional[List[str]] = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    ci = os.environ.get("CI", "").lower() == "true"
    if args.kernel:
        kernels, missing = args.kernel, []
    else:
        kernels, missing = find_kernels()
    why = cannot_run(kernels, missing)
    if why:
        if ci:
            log("VM tier FAILED: cannot run under CI: %s" % why)
            return EXIT_FAIL
        log("VM tier skipped: %s" % why)
        return EXIT_SKIPPED
    if args.rwdir:
        os.makedirs(args.rwdir, exist_ok=True)
        args.rwdir = os.path.abspath(args.rwdir)
    else:
        args.rwdir = tempfile.mkdtemp(prefix="ftracetools-vm-")
    compile_library()
    log("VM tier: kernels %s; results in %s; timeout %d s per boot" % (
        ", ".join(kernel_release(k) for k in kernels), args.rwdir, args.timeout))
    t0 = time.monotonic()
    boots: Dict[str, bool] = {}
    done: Dict[str, Boot] = {}

    def one(k: str) -> None:
        log("--- booting %s (QEMU TCG, no KVM: 20-35 s to boot, code runs slowly)" % k)
        done[k] = boot(k, args, extra)

    # One guest per host CPU at a time (each guest runs on one TCG thread).
    width = max(1, min(len(kernels), args.parallel or (os.cpu_count() or 1)))
    for i in range(0, len(kernels), width):
        ts = [threading.Thread(target=one, args=(k,)) for k in kernels[i:i + width]]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    for k in kernels:
        b = done[k]
        boots[b.release] = report(b, args)
    total = time.monotonic() - t0
    log("")
    bad = [r for r, ok in boots.items() if not ok]
    for r, ok in boots.items():
        log("VM %-28s %s" % (r, "ok" if ok else "FAILED"))
    log("VM tier %s in %.1f s (%d kernel(s))" % (
        "FAILED" if bad else "passed", total, len(boots)))
    return EXIT_FAIL if bad else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
