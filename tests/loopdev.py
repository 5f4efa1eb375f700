"""Private block devices for block I/O tests, and fio to drive them.

``with LoopDevice() as dev:`` makes a file under /var/tmp (or /tmp, or
$FTT_LOOP_DIR), attaches it with ``losetup --direct-io=on`` and always
detaches and removes it afterwards. ``with DmLinear(loop) as dm:`` maps a
device-mapper linear target (``ftt-PID``) over a loop device, and
``with Zram() as z:`` adds a zram device: both are bio-based (no request
queue), and both are removed on every way out. ``dev.stat()`` reads the
kernel's own accounting from /sys/block/DEV/stat. Nothing else does I/O
to the devices, so their counters move only with the test's workload.
"""

import json
import os
import shutil
import stat as statmod
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


class BlockDevice:
    """What the test devices share: the kernel's counters, settling, fio."""

    name = ""
    path = ""

    def stat(self) -> Dict[str, int]:
        with open("/sys/block/%s/stat" % self.name) as f:
            vals = [int(v) for v in f.read().split()]
        return dict(zip(STAT_FIELDS, vals))

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until nothing is in flight and the counters stand still
        (udev or blkid may probe a new device). udev's probe of a new
        device can begin a second after it is made on a busy machine,
        after the counters have stood still for a while (seen in the 6.1
        guest: 50-100 reads landing in a test's traced window): where udev
        runs, wait for its queue first."""
        if shutil.which("udevadm") and os.path.exists("/run/udev/control"):
            subprocess.run(["udevadm", "settle", "--timeout=%d" % timeout],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            s = self.stat()
            if s["in_flight"] == 0 and s == last:
                return
            last = s
            time.sleep(0.2)

    def fio_argv(self, rw: str = "randrw", seconds: float = 2, iodepth: int = 16,
                 extra: Optional[List[str]] = None, output: str = "/dev/null") -> List[str]:
        """Random 4k direct I/O (``rw``: randread, randwrite, randrw)."""
        return ["fio", "--name=ftt", "--filename=" + self.path,
                "--direct=1", "--rw=" + rw, "--bs=4k",
                "--ioengine=libaio", "--iodepth=%d" % iodepth,
                "--runtime=%g" % seconds, "--time_based",
                "--output=" + output] + (["--output-format=json"] if output != "/dev/null"
                                         else []) + (extra or [])

    def fio(self, rw: str = "randrw", seconds: float = 2, iodepth: int = 16,
            extra: Optional[List[str]] = None) -> None:
        subprocess.run(self.fio_argv(rw, seconds, iodepth, extra),
                       check=True, stdout=subprocess.DEVNULL)

    def full_speed(self, seconds: float):
        """fio at the highest rate the device gives (random 4k reads and
        writes, 2 jobs x iodepth 32) as a callable, and the IOPS of one
        untraced run of it (the benchmarks' workload)."""
        def fio():
            self.fio("randrw", seconds, iodepth=32, extra=["--numjobs=2", "--group_reporting"])
        before, t0 = self.stat(), time.monotonic()
        fio()
        d = delta(before, self.stat())
        return fio, (d["read_ios"] + d["write_ios"]) / (time.monotonic() - t0)

    def _ready(self, name_it) -> "BlockDevice":
        """The device made: its name (from ``name_it()``), a node, settled;
        undone (``__exit__``) if any of it fails."""
        try:
            self.name = name_it()
            self.path = _node(self.name)
            self.settle()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _drop_node(self) -> None:
        """Forget the device's path (and remove a node made by ``_node``)."""
        if self.path.startswith(tempfile.gettempdir() + "/ftt-node-"):
            shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)
        self.path = ""

    def fio_process(self, json_file: str, seconds: float = 2, rate: int = 8000,
                    iodepth: int = 16, extra: Optional[List[str]] = None) -> subprocess.Popen:
        """A fio process in the background whose job is a thread (its I/O
        is the process's own), at most ``rate`` IOPS, writing its JSON
        (``fio_ios`` reads its count)."""
        return subprocess.Popen(self.fio_argv("randrw", seconds, iodepth,
                                              ["--thread", "--rate_iops=%d" % rate]
                                              + (extra or []), output=json_file),
                                stdout=subprocess.DEVNULL)


def fio_ios(json_file: str) -> int:
    """The I/Os fio itself counted (reads, writes, trims), from its JSON."""
    with open(json_file) as f:
        text = f.read()
    jobs = json.loads(text[text.index("{"):])["jobs"]   # (notes may come first)
    return sum(j[d]["total_ios"] for j in jobs for d in ("read", "write", "trim"))


class LoopDevice(BlockDevice):
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
                # The device holds the file open: unlinked now, an
                # interrupted run leaves no 64 MB file behind.
                self._unlink()
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


def _modprobe(module: str) -> None:
    subprocess.run(["modprobe", module], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def have_dm() -> Optional[str]:
    """None when device-mapper and dmsetup are there, else why not."""
    if shutil.which("dmsetup") is None:
        return "no device-mapper: dmsetup is not installed (tests/install.sh)"
    if not _misc("device-mapper"):
        _modprobe("dm_mod")
    return None if _misc("device-mapper") else "no device-mapper in this kernel"


def have_zram() -> Optional[str]:
    if not os.path.isdir("/sys/class/zram-control"):
        _modprobe("zram")
    return None if os.path.isdir("/sys/class/zram-control") else "no zram in this kernel"


def _misc(name: str) -> bool:
    try:
        with open("/proc/misc") as f:
            return any(l.split()[1:] == [name] for l in f)
    except OSError:
        return False


def _retry(action, what: str) -> None:
    """Do ``action`` until it works (a device is busy while a prober still
    has it open), 5 s at most; then say what to remove by hand."""
    for _ in range(25):
        try:
            action()
            return
        except (OSError, subprocess.CalledProcessError):
            time.sleep(0.2)
    raise RuntimeError("%s failed: remove it by hand" % what)


def traced(tool: str, dev, args, work, env=None):
    """Run TOOL --json ARGS around work() on dev: (JSON objects, the
    device's stat delta, stderr)."""
    import json
    import signal
    import tooling
    r = tooling.start(tool, "--json", *args, env=env)
    try:
        before = dev.stat()
        work()
        dev.settle()
        after = dev.stat()
    finally:
        rc, out, err = r.stop(signal.SIGINT)
    assert rc == 0, err
    return [json.loads(l) for l in out.splitlines()], delta(before, after), err


def _node(name: str) -> str:
    """/dev/NAME, or a node of our own where /dev has none (no udev)."""
    path = "/dev/" + name
    if os.path.exists(path):
        return path
    with open("/sys/block/%s/dev" % name) as f:
        ma, mi = (int(x) for x in f.read().split(":"))
    path = os.path.join(tempfile.mkdtemp(prefix="ftt-node-"), name)
    os.mknod(path, statmod.S_IFBLK | 0o600, os.makedev(ma, mi))
    return path


class DmLinear(BlockDevice):
    """``dmsetup create ftt-PID --table '0 SECTORS linear LOOP 0'``: a
    bio-based device over a loop device; removed on every way out, before
    the loop device is detached."""

    def __init__(self, loop: LoopDevice) -> None:
        self.loop = loop
        self.dm = "ftt-%d" % os.getpid()
        self.made = False

    def __enter__(self) -> "DmLinear":
        with open("/sys/block/%s/size" % self.loop.name) as f:
            sectors = int(f.read())
        table = "0 %d linear %s 0" % (sectors, self.loop.path)
        out = subprocess.run(["dmsetup", "create", "--noudevsync", self.dm, "--table", table],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if out.returncode:
            raise RuntimeError("dmsetup create: " + out.stdout.strip())
        self.made = True
        return self._ready(self._name)

    def _name(self) -> str:
        info = subprocess.run(["dmsetup", "info", "-c", "--noheadings", "-o", "major,minor",
                               self.dm], stdout=subprocess.PIPE, text=True, check=True)
        ma, mi = info.stdout.strip().split(":")
        return os.path.basename(os.path.realpath("/sys/dev/block/%s:%s" % (ma, mi)))

    def __exit__(self, *exc) -> None:
        self._drop_node()
        if self.made:
            _retry(lambda: subprocess.run(["dmsetup", "remove", "--noudevsync", self.dm],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                          check=True), "dmsetup remove " + self.dm)
            self.made = False


class Zram(BlockDevice):
    """A zram device of its own (zram-control/hot_add), bio-based; reset
    and removed on every way out."""

    def __init__(self, size_mb: int = 64) -> None:
        self.size_mb = size_mb
        self.num = -1

    def __enter__(self) -> "Zram":
        with open("/sys/class/zram-control/hot_add") as f:
            self.num = int(f.read())
        return self._ready(self._size)

    def _size(self) -> str:
        with open("/sys/block/zram%d/disksize" % self.num, "w") as f:
            f.write("%dM" % self.size_mb)
        return "zram%d" % self.num

    def __exit__(self, *exc) -> None:
        self._drop_node()
        if self.num >= 0:
            _retry(self._remove, "removing zram%d" % self.num)
            self.num = -1

    def _remove(self) -> None:
        with open("/sys/block/zram%d/reset" % self.num, "w") as f:
            f.write("1")
        with open("/sys/class/zram-control/hot_remove", "w") as f:
            f.write(str(self.num))


def delta(before: Dict[str, int], after: Dict[str, int]) -> Dict[str, int]:
    return {k: after[k] - before[k] for k in before}
