"""A private loop device for block I/O tests, and fio to drive it.

``with LoopDevice() as dev:`` makes a file under /var/tmp (or /tmp, or
$FTT_LOOP_DIR), attaches it with ``losetup --direct-io=on`` and always
detaches and removes it afterwards. ``dev.stat()`` reads the kernel's own
accounting from /sys/block/DEV/stat. Nothing else does I/O to the device,
so its counters move only with the test's workload.
"""

import os
import shutil
import subprocess
import tempfile
import time
from typing import Dict, List, Optional

# /sys/block/DEV/stat columns (Documentation/block/stat.rst)
STAT_FIELDS = ("read_ios", "read_merges", "read_sectors", "read_ticks",
               "write_ios", "write_merges", "write_sectors", "write_ticks",
               "in_flight", "io_ticks", "time_in_queue")


def have_tools() -> Optional[str]:
    """None when losetup and fio are installed, else what is missing."""
    missing = [t for t in ("losetup", "fio") if shutil.which(t) is None]
    return ("not installed: " + ", ".join(missing)) if missing else None


class LoopDevice:
    def __init__(self, size_mb: int = 64) -> None:
        self.size = size_mb << 20
        self.file = ""
        self.path = ""
        self.name = ""
        self.direct_io = False

    def __enter__(self) -> "LoopDevice":
        if not os.path.exists("/dev/loop-control"):
            subprocess.run(["modprobe", "loop"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        dirs = [os.environ.get("FTT_LOOP_DIR", ""), "/var/tmp", "/tmp"]
        errs = []
        for d in (d for d in dirs if d):
            try:
                fd, self.file = tempfile.mkstemp(prefix="ftt-loop-", suffix=".img", dir=d)
                try:
                    os.posix_fallocate(fd, 0, self.size)
                finally:
                    os.close(fd)
                # Older kernels refuse direct I/O (EINVAL) where the backing
                # filesystem lacks it (tmpfs in the VM guests): go without.
                for dio in (["--direct-io=on"], []):
                    out = subprocess.run(["losetup", "--find", "--show"] + dio + [self.file],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
                    if not out.returncode:
                        break
                if out.returncode:
                    raise OSError(out.stderr.strip())
                self.path = out.stdout.strip()
                break
            except OSError as e:  # read-only, no fallocate, loop refuses it
                errs.append("%s: %s" % (d, e))
                self._unlink()
        else:
            raise RuntimeError("cannot make a loop device: " + "; ".join(errs))
        try:
            self.name = os.path.basename(self.path)
            with open("/sys/block/%s/loop/dio" % self.name) as f:
                self.direct_io = f.read().strip() == "1"
            self.settle()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.path:
            subprocess.run(["losetup", "-d", self.path], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            self.path = ""
        self._unlink()

    def _unlink(self) -> None:
        if self.file:
            try:
                os.unlink(self.file)
            except OSError:
                pass
            self.file = ""

    def stat(self) -> Dict[str, int]:
        with open("/sys/block/%s/stat" % self.name) as f:
            vals = [int(v) for v in f.read().split()]
        return dict(zip(STAT_FIELDS, vals))

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until nothing is in flight and the counters stand still
        (udev or blkid may probe a new device)."""
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            s = self.stat()
            if s["in_flight"] == 0 and s == last:
                return
            last = s
            time.sleep(0.2)

    def fio(self, rw: str = "randrw", seconds: float = 2, iodepth: int = 16,
            extra: Optional[List[str]] = None) -> None:
        """Random 4k direct I/O (``rw``: randread, randwrite, randrw)."""
        subprocess.run(["fio", "--name=ftt", "--filename=" + self.path,
                        "--direct=1", "--rw=" + rw, "--bs=4k",
                        "--ioengine=libaio", "--iodepth=%d" % iodepth,
                        "--runtime=%g" % seconds, "--time_based",
                        "--output=/dev/null"] + (extra or []),
                       check=True, stdout=subprocess.DEVNULL)


def delta(before: Dict[str, int], after: Dict[str, int]) -> Dict[str, int]:
    return {k: after[k] - before[k] for k in before}
