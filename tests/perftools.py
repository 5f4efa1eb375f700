"""perf-tools beside the suite: its scripts want debugfs, take the top
level of tracefs without a lock, and leave some of it changed. The guard
mounts debugfs if needed and puts back what perf-tools leaves, also when
a script had to be killed: its lock file (which would refuse every later
perf-tools run on the machine) and the top-level events it enabled."""

import os
import subprocess

import tooling

tooling.default_signals()   # perf-tools must be able to trap Ctrl-C

TRACING = "/sys/kernel/tracing"
LOCK = "/var/tmp/.ftrace-lock"     # perf-tools' own, holding its PID


class TopLevelGuard:
    """Puts back what iolatency-perf leaves changed in the top level."""

    def __enter__(self):
        self.mounted = False
        if not os.path.isdir("/sys/kernel/debug/tracing"):
            subprocess.run(["mount", "-t", "debugfs", "nodev", "/sys/kernel/debug"], check=True)
            self.mounted = True
            print("note: mounted debugfs on /sys/kernel/debug for iolatency-perf")
        with open(TRACING + "/buffer_size_kb") as f:
            self.kb = f.read().split()[0]
        with open(TRACING + "/set_event") as f:
            self.events = f.read().split()
        self.had_lock = os.path.exists(LOCK)
        self.snap = True  # no snapshot file: iolatency-perf reads trace, then clears it
        if os.path.exists(TRACING + "/snapshot"):
            with open(TRACING + "/snapshot") as f:
                self.snap = "not allocated" not in f.read(4096)
        return self

    def __exit__(self, *exc):
        with open(TRACING + "/set_event") as f:
            now = f.read().split()
        for ev in now:
            if ev not in self.events:
                fd = os.open(TRACING + "/set_event", os.O_WRONLY | os.O_APPEND)
                try:
                    os.write(fd, ("!" + ev).encode())
                finally:
                    os.close(fd)
        if not self.had_lock:
            try:
                os.unlink(LOCK)
            except FileNotFoundError:
                pass
        with open(TRACING + "/buffer_size_kb", "w") as f:
            f.write(self.kb)
        if not self.snap:
            with open(TRACING + "/snapshot", "w") as f:
                f.write("0")
        if self.mounted:
            subprocess.run(["umount", "/sys/kernel/debug"])
