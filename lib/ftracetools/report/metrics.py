"""Metrics for Prometheus: a run's counts and histograms, cumulative since
it started, served over HTTP and written for node_exporter's textfile
collector. The exposition formats (Prometheus text, OpenMetrics) are
prometheus_client's, imported only when a run asks for metrics.

A tool declares its families on a ``Metrics`` (``counter``,
``histogram``) and feeds them every interval with the numbers its report
already has: ``add(name, labels, n)`` for a count, ``observe(name,
labels, buckets, seconds)`` for a log2 histogram (counts per bucket index
of ``report.histogram``, in the family's unit, and their sum in seconds).
Values only grow: counters add up the intervals (an interval that takes
back time counted ahead is held against the next ones, never subtracted),
histograms are cumulative, their ``le`` bounds the log2 boundaries in
seconds: ``2**i`` units, from one unit up to the first bound past
``TOP_SECONDS``, then ``+Inf``. A bucket counts the values below its
bound (the log2 buckets are half-open: [low, high)).

Label sets stay bounded: the first ``COMM_CAP`` process names get a
series of their own, later ones count under ``comm="other"``; a name
keeps its series once it has one, after its processes exit. Every run
has ``ftrace_events_lost_total{tool}`` and ``ftrace_tracing_info{tool,
release, tracefs, method}``.

``serve(addr, port)`` binds (a port in use: a ``ToolError``) and answers
scrapes from a thread; ``write(dir)`` replaces ``DIR/TOOL.prom``
atomically (a temporary file in DIR, renamed), as ``publish()`` does
after each report with the run's ``textfile`` directory; ``close()``
stops serving.
"""

import errno
import os
import threading
from typing import Dict, Iterator, List, Optional, Sequence

from ftracetools.errors import ToolError

__all__ = ["COMM_CAP", "OTHER", "TOP_SECONDS", "INSTALL_HINT", "require", "le_bounds",
           "Metrics"]

COMM_CAP = 1000
OTHER = "other"
TOP_SECONDS = 60
INSTALL_HINT = "python3 -m pip install prometheus_client (or ftrace-tools[metrics])"


def require() -> None:
    """prometheus_client is importable, or a ToolError (exit 1) that says
    how to install it."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ToolError("the prometheus_client module is missing: " + INSTALL_HINT) from None


def le_bounds(unit_ns: int) -> List[float]:
    """Upper bounds in seconds of log2 buckets 0, 1, ... of a histogram in
    a unit of ``unit_ns`` nanoseconds: bucket i holds values below 2**i
    units; the last is the first past TOP_SECONDS."""
    out, i = [], 0
    while True:
        out.append((1 << i) * unit_ns / 1e9)
        if (1 << i) * unit_ns >= TOP_SECONDS * 10**9:
            return out
        i += 1


def _label(v) -> str:
    """A label value the exposition can encode: names from the kernel may
    hold bytes that are not UTF-8 (surrogate escapes): shown as \\xNN."""
    s = str(v)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        try:
            return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return s.encode("utf-8", "backslashreplace").decode("ascii")


class _Family:
    __slots__ = ("kind", "name", "doc", "labels", "comm", "bounds", "series")

    def __init__(self, kind: str, name: str, doc: str, labels: Sequence[str],
                 bounds: Optional[List[float]] = None) -> None:
        self.kind, self.name, self.doc = kind, name, doc
        self.labels = tuple(labels)
        self.comm = self.labels.index("comm") if "comm" in self.labels else -1
        self.bounds = bounds
        # counter: labels -> [value, held back]; histogram: labels ->
        # [count per bound (not cumulative) + above the last, sum]
        self.series: Dict[tuple, list] = {}


class Metrics:
    """One run's metric families and their values; see the module docstring."""

    def __init__(self, tool: str, release: Optional[str] = None, cap: int = COMM_CAP,
                 textfile: Optional[str] = None) -> None:
        self.tool, self.cap, self.textfile = tool, cap, textfile
        self.info = {"tool": tool, "release": release or os.uname().release,
                     "tracefs": "", "method": ""}
        # held by each feeding call, and by a whole report (``batch``): a
        # scrape sees an interval whole, never half fed
        self._lock = threading.RLock()
        self._fams: Dict[str, _Family] = {}
        self._comms: set = set()
        self._server = self._thread = None
        self.counter("ftrace_events_lost_total", "Events the kernel could not keep "
                     "(buffers full, tables full, probes missed).", ("tool",))
        self.add("ftrace_events_lost_total", (tool,), 0)

    # -- declaring and feeding

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        if not name.endswith("_total"):
            raise ValueError("a counter's name ends in _total: " + name)
        self._fams[name] = _Family("counter", name, doc, labels)

    def histogram(self, name: str, doc: str, labels: Sequence[str] = (),
                  unit_ns: int = 1000) -> None:
        """A histogram fed with log2 buckets of ``unit_ns``; without labels
        its one series is there from the start, empty."""
        self._fams[name] = f = _Family("histogram", name, doc, labels, le_bounds(unit_ns))
        if not f.labels:
            self.observe(name, (), {}, 0.0)

    def set_info(self, **info: str) -> None:
        """Fill in ``ftrace_tracing_info``: tracefs (the mount used), method
        (the way the numbers are got)."""
        with self._lock:
            self.info.update({k: str(v) for k, v in info.items()})

    def _key(self, f: _Family, labels: Sequence) -> tuple:
        if len(labels) != len(f.labels):
            raise ValueError("%s takes labels %s" % (f.name, f.labels))
        key = tuple(_label(v) for v in labels)
        if f.comm >= 0:
            c = key[f.comm]
            if c not in self._comms:
                if len(self._comms) >= self.cap:
                    key = key[:f.comm] + (OTHER,) + key[f.comm + 1:]
                else:
                    self._comms.add(c)
        return key

    def batch(self):
        """``with m.batch():`` around one report's additions: a scrape (or
        a textfile write) waits until they are all in. A scrape in the
        middle of schedtrace's feed of some 300 tasks saw some of them
        added and not the others (a CI run, 2026-11-30)."""
        return self._lock

    def add(self, name: str, labels: Sequence, value: float) -> None:
        """Add ``value`` to a counter; a negative value (time counted ahead
        and taken back) is held against later additions."""
        f = self._fams[name]
        with self._lock:
            key = self._key(f, labels)
            s = f.series.get(key)
            if s is None:
                s = f.series[key] = [0, 0]
            if value < 0:
                s[1] -= value
                return
            take = min(value, s[1])
            s[0] += value - take
            s[1] -= take

    def lost(self, n: int) -> None:
        """``n`` more events lost."""
        self.add("ftrace_events_lost_total", (self.tool,), n)

    def observe(self, name: str, labels: Sequence, buckets: Dict[int, int],
                seconds: float) -> None:
        """Add a log2 histogram's counts (bucket index -> n, in the family's
        unit) and their sum in seconds."""
        f = self._fams[name]
        top = len(f.bounds)
        with self._lock:
            key = self._key(f, labels)
            s = f.series.get(key)
            if s is None:
                s = f.series[key] = [[0] * (top + 1), 0.0]
            for i, n in buckets.items():
                s[0][min(i, top)] += n
            s[1] += seconds

    # -- what is served

    def collect(self) -> Iterator:
        """prometheus_client metric families of the values as they stand
        (a collector: the registry calls this at each scrape)."""
        from prometheus_client.core import (CounterMetricFamily, HistogramMetricFamily,
                                            InfoMetricFamily)
        from prometheus_client.utils import floatToGoString
        with self._lock:
            info = dict(self.info)
            snap = [(f, [(k, [list(v[0]), v[1]] if f.kind == "histogram" else v[0])
                         for k, v in f.series.items()]) for f in self._fams.values()]
        i = InfoMetricFamily("ftrace_tracing", "The tool, the kernel release, the tracefs "
                             "mount and the way the numbers are got.", labels=())
        i.add_metric((), info)
        yield i
        for f, series in snap:
            if f.kind == "counter":
                m = CounterMetricFamily(f.name, f.doc, labels=f.labels)
                for k, v in sorted(series):
                    m.add_metric(k, v)
            else:
                m = HistogramMetricFamily(f.name, f.doc, labels=f.labels)
                les = [floatToGoString(b) for b in f.bounds] + ["+Inf"]
                for k, (counts, total) in sorted(series):
                    cum, run = [], 0
                    for le, n in zip(les, counts):
                        run += n
                        cum.append((le, run))
                    m.add_metric(k, cum, total)
            yield m

    def registry(self, process: bool = False):
        """A prometheus_client registry with these metrics (``process``:
        and the serving process's own, process_*)."""
        from prometheus_client import CollectorRegistry
        reg = CollectorRegistry(auto_describe=False)
        reg.register(self)
        if process:
            from prometheus_client import ProcessCollector
            ProcessCollector(registry=reg)
        return reg

    def exposition(self, openmetrics: bool = False) -> bytes:
        """The metrics in the Prometheus text format, or OpenMetrics."""
        if openmetrics:
            from prometheus_client.openmetrics.exposition import generate_latest
        else:
            from prometheus_client import generate_latest
        return generate_latest(self.registry())

    # -- serving and writing

    def serve(self, addr: str, port: int) -> None:
        """Answer scrapes on addr:port from a thread (prometheus_client's WSGI
        app: text or OpenMetrics as the scraper asks); a ToolError if the
        address cannot be bound."""
        import socket
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        from prometheus_client import make_wsgi_app

        class Quiet(WSGIRequestHandler):
            def log_message(self, *a) -> None:
                pass

        class Server(ThreadingMixIn, WSGIServer):
            daemon_threads = True
            address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

            def handle_error(self, request, client_address) -> None:
                pass    # a scraper that went away: nothing to say on stderr

        where = ("[%s]:%d" if ":" in addr else "%s:%d") % (addr, port)
        try:
            self._server = make_server(addr, port, make_wsgi_app(self.registry(True)),
                                       Server, handler_class=Quiet)
        except OSError as e:
            why = "in use by another program: choose another port" \
                if e.errno == errno.EADDRINUSE else \
                "not an address of this machine" if e.errno == errno.EADDRNOTAVAIL else \
                e.strerror or str(e)
            raise ToolError("--prometheus %s: cannot listen there: %s" % (where, why)) from None
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),
                                        name="metrics", daemon=True)
        self._thread.start()

    @property
    def port(self) -> Optional[int]:
        """The port served (None when not serving)."""
        return self._server.server_address[1] if self._server else None

    def close(self) -> None:
        """Stop serving; the port is free when this returns."""
        srv, self._server = self._server, None
        if srv is not None:
            srv.shutdown()
            srv.server_close()
            self._thread.join(5)

    def publish(self) -> None:
        """After a report: the textfile rewritten (when there is one)."""
        if self.textfile is not None:
            self.write(self.textfile)

    def write(self, directory: str) -> str:
        """Replace DIR/TOOL.prom with the metrics, atomically: written to a
        temporary file in DIR (a name node_exporter skips), then renamed;
        the temporary file never stays. Returns the path."""
        import tempfile
        path = os.path.join(directory, self.tool + ".prom")
        data = self.exposition()
        tmp = ""
        try:
            fd, tmp = tempfile.mkstemp(prefix="." + self.tool + ".prom.", dir=directory)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)    # node_exporter may run as another user
            os.replace(tmp, path)
            tmp = ""
        except OSError as e:
            raise ToolError("--textfile: cannot write %s: %s" % (
                path, e.strerror or e)) from None
        finally:
            if tmp:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        return path
