"""The real Prometheus and node_exporter (Debian's packages, installed by
tests/install.sh) for the metrics tests, each on a free 127.0.0.1 port
with its configuration and data in a temporary directory, always stopped
(and the directory removed) when the ``with`` block ends.

``with Prometheus([target, ...]) as p:`` scrapes the targets
(``127.0.0.1:PORT``) every second, once it has scraped each one; ``p.query(expr)`` asks its HTTP API
(``/api/v1/query``) and returns ``[(labels, timestamp, value)]``;
``p.wait_scraped(metric, after)`` waits until a sample of ``metric``
scraped after the epoch time ``after`` is in.
``with NodeExporter(textfile_dir) as n:`` serves only the textfile
collector, on ``n.target``.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from typing import Dict, List, Optional, Tuple

PROMETHEUS = "prometheus"
NODE_EXPORTER = "prometheus-node-exporter"


def missing() -> Optional[str]:
    """None when both servers are installed, else what is missing."""
    gone = [b for b in (PROMETHEUS, NODE_EXPORTER) if shutil.which(b) is None]
    return ("not installed (tests/install.sh installs them): " + ", ".join(gone)) \
        if gone else None


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5, accept: Optional[str] = None) -> bytes:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


class _Server:
    """A server process in a temporary directory; see the module docstring."""

    name = ""

    def __init__(self) -> None:
        self.dir = ""
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self.log = None

    @property
    def target(self) -> str:
        return "127.0.0.1:%d" % self.port

    def argv(self) -> List[str]:
        raise NotImplementedError

    def ready_path(self) -> str:
        raise NotImplementedError

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="ftt-%s-" % self.name)
        try:
            for _ in range(5):      # a port taken between the check and the bind
                self.port = free_port()
                self.log = open(os.path.join(self.dir, "log"), "w+")
                self.proc = subprocess.Popen(self.argv(), stdout=self.log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, cwd=self.dir)
                if self._wait_ready(30):
                    return self
                self._stop()
            raise AssertionError("%s did not start: %s" % (self.name, self.output()[-2000:]))
        except BaseException:
            self.__exit__()
            raise

    def _wait_ready(self, limit: float) -> bool:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            try:
                http_get("http://%s%s" % (self.target, self.ready_path()), timeout=2)
                return True
            except OSError:
                time.sleep(0.1)
        return False

    def output(self) -> str:
        if self.log is None:
            return ""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def _stop(self) -> None:
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.log is not None:
            self.log.close()
            self.log = None

    def __exit__(self, *exc) -> None:
        self._stop()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""


class NodeExporter(_Server):
    """node_exporter with only its textfile collector, reading ``directory``."""

    name = "node-exporter"

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.textfiles = directory

    def argv(self) -> List[str]:
        return [NODE_EXPORTER, "--web.listen-address=" + self.target,
                "--collector.disable-defaults", "--collector.textfile",
                "--collector.textfile.directory=" + self.textfiles,
                "--web.disable-exporter-metrics", "--log.level=warn"]

    def ready_path(self) -> str:
        return "/metrics"


class Prometheus(_Server):
    """A Prometheus server scraping ``targets`` every second."""

    name = "prometheus"

    def __init__(self, targets: List[str], interval: str = "1s") -> None:
        super().__init__()
        self.targets, self.interval = targets, interval

    def argv(self) -> List[str]:
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: %s\n  scrape_timeout: %s\n"
                    "scrape_configs:\n  - job_name: ftt\n    static_configs:\n"
                    "      - targets: [%s]\n" % (self.interval, self.interval, ", ".join(
                        "'%s'" % t for t in self.targets)))
        return [PROMETHEUS, "--config.file=" + cfg,
                "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
                "--web.listen-address=" + self.target, "--log.level=warn"]

    def ready_path(self) -> str:
        return "/-/ready"

    def __enter__(self):
        super().__enter__()
        try:    # ready is not scraping yet: the targets come some 5 s later
            end = time.monotonic() + 30
            while len(self.query("up")) < len(self.targets):
                if time.monotonic() > end:
                    raise AssertionError("prometheus scraped none of %s: %s"
                                         % (self.targets, self.output()[-2000:]))
                time.sleep(0.2)
        except BaseException:
            self.__exit__()
            raise
        return self

    def query(self, expr: str) -> List[Tuple[Dict[str, str], float, float]]:
        """An instant query now: [(labels, sample time, value)]."""
        url = "http://%s/api/v1/query?%s" % (self.target, urllib.parse.urlencode({"query": expr}))
        r = json.loads(http_get(url, timeout=10))
        assert r["status"] == "success", r
        return [(s["metric"], float(s["value"][0]), float(s["value"][1]))
                for s in r["data"]["result"]]

    def wait_scraped(self, metric: str, after: float, limit: float = 20) -> float:
        """Wait until a scrape of ``metric`` later than ``after`` (epoch
        seconds) is in; returns its time."""
        end = time.monotonic() + limit
        last = None
        while time.monotonic() < end:
            got = self.query("timestamp(%s)" % metric)
            if got:
                last = max(v for _, _, v in got)
                if last > after:
                    return last
            time.sleep(0.2)
        raise AssertionError("no scrape of %s after %.3f (last %s); prometheus said: %s"
                             % (metric, after, last, self.output()[-2000:]))
