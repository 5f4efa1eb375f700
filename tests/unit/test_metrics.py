"""report.metrics and cli.exporter without a kernel: what a registry says
for given numbers, read back with prometheus_client's own parsers (the
Prometheus text format and OpenMetrics); counters that never go down;
bounded process names; the textfile written atomically; the HTTP server
on 127.0.0.1, stopped; the options checked with their name."""

import http.client
import os
import socket
import stat
import subprocess
import sys

import pytest

from ftracetools.cli import export
from ftracetools.errors import ToolError, UsageError
from ftracetools.report import metrics

pc = pytest.importorskip("prometheus_client")
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse  # noqa: E402,E501
from prometheus_client.parser import text_string_to_metric_families as text_parse  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def families(m, openmetrics=False):
    text = m.exposition(openmetrics).decode()
    parse = om_parse if openmetrics else text_parse
    return {f.name: f for f in parse(text)}


def samples(fam, suffix=""):
    return {tuple(sorted(s.labels.items())): s.value for s in fam.samples
            if s.name == fam.name + suffix}


def test_le_bounds_are_the_log2_boundaries_in_seconds():
    us = metrics.le_bounds(1000)
    assert us[:4] == [1e-6, 2e-6, 4e-6, 8e-6]
    assert us[-2] < metrics.TOP_SECONDS <= us[-1] and len(us) == 27
    ms = metrics.le_bounds(10**6)
    assert ms[0] == 0.001 and ms[-1] == 65.536


@pytest.mark.parametrize("openmetrics", [False, True])
def test_histogram_is_cumulative_in_seconds(openmetrics):
    m = metrics.Metrics("iolatency", release="6.18.0")
    m.histogram("ftrace_iolatency_seconds", "latency", ("device",), 1000)
    # log2 buckets in us: 0 = [0,1), 3 = [4,8), 10 = [512,1024); 40: past the top
    m.observe("ftrace_iolatency_seconds", ("loop0",), {0: 2, 3: 5}, 0.25)
    m.observe("ftrace_iolatency_seconds", ("loop0",), {3: 1, 10: 4, 40: 1}, 0.5)
    m.observe("ftrace_iolatency_seconds", ("vda",), {1: 1}, 1e-6)
    f = families(m, openmetrics)["ftrace_iolatency_seconds"]
    assert f.type == "histogram"
    b = {(s.labels["device"], s.labels["le"]): s.value for s in f.samples
         if s.name.endswith("_bucket")}
    le = lambda x: pc.utils.floatToGoString(x)   # noqa: E731
    assert b[("loop0", le(1e-6))] == 2          # below 1 us
    assert b[("loop0", le(4e-6))] == 2          # below 4 us
    assert b[("loop0", le(8e-6))] == 8          # below 8 us
    assert b[("loop0", le(0.001024))] == 12
    assert b[("loop0", le(67.108864))] == 12
    assert b[("loop0", "+Inf")] == 13           # one past the last bound
    assert b[("vda", le(2e-6))] == 1 and b[("vda", le(1e-6))] == 0
    count = {s.labels["device"]: s.value for s in f.samples if s.name.endswith("_count")}
    total = {s.labels["device"]: s.value for s in f.samples if s.name.endswith("_sum")}
    assert count == {"loop0": 13, "vda": 1} and total == {"loop0": 0.75, "vda": 1e-6}
    vals = [b[("loop0", le(x))] for x in metrics.le_bounds(1000)] + [b[("loop0", "+Inf")]]
    assert vals == sorted(vals), "buckets are cumulative"


def test_a_histogram_without_labels_is_there_from_the_start():
    m = metrics.Metrics("schedtrace")
    m.histogram("ftrace_runqueue_latency_seconds", "waits", (), 1000)
    f = families(m)["ftrace_runqueue_latency_seconds"]
    assert samples(f, "_count") == {(): 0} and samples(f, "_sum") == {(): 0}


@pytest.mark.parametrize("openmetrics", [False, True])
def test_counters_info_and_lost(openmetrics):
    m = metrics.Metrics("schedtrace", release="6.18.0")
    m.counter("ftrace_task_switches_total", "switches", ("comm",))
    m.add("ftrace_task_switches_total", ("sh",), 3)
    m.add("ftrace_task_switches_total", ("sh",), 4)
    m.add("ftrace_task_switches_total", ("make",), 1)
    m.lost(5)
    m.lost(2)
    m.set_info(tracefs="/sys/kernel/tracing", method="stream-arrays")
    fams = families(m, openmetrics)
    sw = fams["ftrace_task_switches"]
    assert sw.type == "counter"
    assert samples(sw, "_total") == {(("comm", "sh"),): 7, (("comm", "make"),): 1}
    assert samples(fams["ftrace_events_lost"], "_total") == {(("tool", "schedtrace"),): 7}
    info = fams["ftrace_tracing" if openmetrics else "ftrace_tracing_info"]
    assert info.type == ("info" if openmetrics else "gauge")
    assert [s.labels for s in info.samples] == [{
        "tool": "schedtrace", "release": "6.18.0", "tracefs": "/sys/kernel/tracing",
        "method": "stream-arrays"}]


def test_a_scrape_sees_a_report_whole():
    """A scrape during a report's additions (``batch``) waits for all of
    them: it sees the interval before or after, never part of it."""
    import threading
    m = metrics.Metrics("schedtrace")
    m.counter("ftrace_task_switches_total", "switches", ("comm",))
    got = []
    with m.batch():
        m.add("ftrace_task_switches_total", ("sh",), 3)
        t = threading.Thread(target=lambda: got.append(families(m, False)))
        t.start()
        t.join(0.3)
        assert t.is_alive() and not got      # the scrape waits ...
        m.add("ftrace_task_switches_total", ("make",), 1)
    t.join(5)
    assert samples(got[0]["ftrace_task_switches"], "_total") == {   # ... for both
        (("comm", "sh"),): 3, (("comm", "make"),): 1}


def test_every_run_counts_lost_events_from_zero():
    fams = families(metrics.Metrics("pagefaults"))
    assert samples(fams["ftrace_events_lost"], "_total") == {(("tool", "pagefaults"),): 0}
    assert fams["ftrace_tracing_info"].samples[0].labels["release"] == os.uname().release


def test_time_taken_back_is_held_against_later_additions():
    """A counter never goes down: an interval that takes back time counted
    ahead (negative) is held until later intervals cover it."""
    m = metrics.Metrics("schedtrace")
    m.counter("ftrace_task_run_seconds_total", "run", ("comm",))
    seen = []
    for v in (0.5, -0.2, 0.1, 0.3, -0.05, 0.05):
        m.add("ftrace_task_run_seconds_total", ("a",), v)
        seen.append(samples(families(m)["ftrace_task_run_seconds"], "_total")[(("comm", "a"),)])
    assert seen == sorted(seen)
    assert seen[-1] == pytest.approx(0.7)       # the sum once covered


def test_process_names_are_capped_and_keep_their_series():
    m = metrics.Metrics("pagefaults", cap=3)
    m.counter("ftrace_page_faults_total", "faults", ("comm", "kind"))
    m.counter("ftrace_task_switches_total", "switches", ("comm",))
    for i, c in enumerate(["a", "b", "c", "d", "e", "a"]):
        m.add("ftrace_page_faults_total", (c, "unknown"), i + 1)
    m.add("ftrace_task_switches_total", ("b",), 1)    # a name with a series already
    m.add("ftrace_task_switches_total", ("f",), 1)    # past the cap in any family
    fams = families(m)
    got = {dict(k)["comm"]: v for k, v in samples(fams["ftrace_page_faults"], "_total").items()}
    assert got == {"a": 1 + 6, "b": 2, "c": 3, metrics.OTHER: 4 + 5}
    assert {dict(k)["comm"] for k in samples(fams["ftrace_task_switches"], "_total")} == \
        {"b", metrics.OTHER}


def test_names_that_are_not_utf8_are_escaped():
    m = metrics.Metrics("schedtrace")
    m.counter("ftrace_task_switches_total", "switches", ("comm",))
    bad = b"a\xc3\x1bb\"\\\n".decode("utf-8", "surrogateescape")
    m.add("ftrace_task_switches_total", (bad,), 1)
    for om in (False, True):
        (k,) = samples(families(m, om)["ftrace_task_switches"], "_total")
        assert dict(k)["comm"] == "a\\xc3\x1bb\"\\\n"


def test_wrong_labels_are_a_bug_said_at_once():
    m = metrics.Metrics("x")
    m.counter("ftrace_x_total", "x", ("comm",))
    with pytest.raises(ValueError):
        m.add("ftrace_x_total", (), 1)
    with pytest.raises(ValueError):
        m.counter("ftrace_x", "not a counter's name")


def test_textfile_is_replaced_atomically(tmp_path):
    m = metrics.Metrics("iolatency", textfile=str(tmp_path))
    m.counter("ftrace_iolatency_unmatched_total", "u", ("device",))
    m.add("ftrace_iolatency_unmatched_total", ("loop0",), 2)
    m.publish()
    path = tmp_path / "iolatency.prom"
    first = os.stat(str(path))
    assert stat.S_IMODE(first.st_mode) == 0o644     # node_exporter may be another user
    m.add("ftrace_iolatency_unmatched_total", ("loop0",), 1)
    m.publish()
    assert os.stat(str(path)).st_ino != first.st_ino, "renamed over, not rewritten in place"
    fams = {f.name: f for f in text_parse(path.read_text())}
    assert samples(fams["ftrace_iolatency_unmatched"], "_total") == {(("device", "loop0"),): 3}
    assert os.listdir(str(tmp_path)) == ["iolatency.prom"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    m = metrics.Metrics("iolatency", textfile=str(tmp_path))

    def fail(a, b):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(ToolError, match="--textfile: cannot write .*iolatency.prom: No space"):
        m.publish()
    assert os.listdir(str(tmp_path)) == []
    monkeypatch.undo()
    gone = tmp_path / "gone"
    with pytest.raises(ToolError, match="No such file"):
        m.write(str(gone))


def test_without_a_textfile_publish_writes_nothing(tmp_path):
    m = metrics.Metrics("iolatency")
    m.publish()
    assert os.listdir(str(tmp_path)) == []


def _get(port, accept=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics", headers={"Accept": accept} if accept else {})
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        c.close()


def _free(port) -> bool:
    """Nothing listens on the port (and a new listener may take it)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return False
    except ConnectionRefusedError:
        pass
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)     # as servers do
        s.bind(("127.0.0.1", port))
    return True


def test_served_over_http_in_both_formats_and_stopped():
    m = metrics.Metrics("funccount")
    m.counter("ftrace_tracepoint_hits_total", "hits", ("tracepoint",))
    m.add("ftrace_tracepoint_hits_total", ("sched:sched_switch",), 9)
    m.serve("127.0.0.1", 0)
    port = m.port
    try:
        st, ctype, body = _get(port)
        assert st == 200 and ctype.startswith("text/plain")
        fams = {f.name: f for f in text_parse(body)}
        assert samples(fams["ftrace_tracepoint_hits"], "_total") == \
            {(("tracepoint", "sched:sched_switch"),): 9}
        assert "process_resident_memory_bytes" in fams   # the serving process's own
        m.add("ftrace_tracepoint_hits_total", ("sched:sched_switch",), 1)
        st, ctype, body = _get(port, "application/openmetrics-text; version=1.0.0")
        assert st == 200 and ctype.startswith("application/openmetrics-text")
        fams = {f.name: f for f in om_parse(body)}
        assert samples(fams["ftrace_tracepoint_hits"], "_total") == \
            {(("tracepoint", "sched:sched_switch"),): 10}
    finally:
        m.close()
    assert _free(port), "the port is free once closed"
    m.close()       # twice: nothing more to do


def test_a_port_in_use_is_one_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(ToolError, match=r"--prometheus 127.0.0.1:%d: cannot listen "
                           r"there: in use by another program" % port):
            metrics.Metrics("x").serve("127.0.0.1", port)


def test_missing_client_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ToolError, match="prometheus_client module is missing: python3 -m pip"):
        metrics.require()


@pytest.mark.parametrize("text,want", [
    ("9100", ("127.0.0.1", 9100)), (" 9100 ", ("127.0.0.1", 9100)),
    ("0.0.0.0:9100", ("0.0.0.0", 9100)), ("127.0.0.2:1", ("127.0.0.2", 1)),
    ("[::1]:65535", ("::1", 65535)), (None, None)])
def test_listen_addresses(text, want):
    assert export.listen(text) == want


@pytest.mark.parametrize("text,first", [
    ("0", "--prometheus 0: the port must be a number from 1 to 65535"),
    ("65536", "--prometheus 65536: the port must be"),
    ("x", "--prometheus x: the port must be"),
    ("", "--prometheus : the port must be"),
    ("localhost:9100", "--prometheus localhost:9100: 'localhost' is not an IP address"),
    ("1.2.3:9100", "--prometheus 1.2.3:9100: '1.2.3' is not an IP address"),
    ("::1:9100", "--prometheus ::1:9100: an IPv6 address goes as [ADDR]:PORT"),
    ("[::1]9100", "--prometheus [::1]9100: an IPv6 address goes as [ADDR]:PORT"),
    ("127.0.0.1:", "--prometheus 127.0.0.1:: the port must be"),
])
def test_bad_listen_addresses_name_the_option(text, first):
    with pytest.raises(UsageError) as e:
        export.listen(text)
    assert str(e.value).startswith(first) and e.value.hint


def test_textfile_directory_checked(tmp_path):
    assert export.textfile_dir(str(tmp_path)) == str(tmp_path)
    assert export.textfile_dir(None) is None
    with pytest.raises(UsageError, match="--textfile .*: no such directory"):
        export.textfile_dir(str(tmp_path / "nope"))
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match="--textfile .*: not a directory"):
        export.textfile_dir(str(tmp_path / "f"))


def test_the_exporter_serves_and_always_stops(capsys):
    with export.exporter("x", {}) as m:
        assert m is None
    with pytest.raises(UsageError):
        with export.exporter("x", {"--prometheus": "127.0.0.1:0"}):
            pass
    holder = []
    with pytest.raises(KeyError):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with export.exporter("x", {"--prometheus": str(port)}) as m:
            holder.append(m.port)
            raise KeyError("a way out")
    assert holder == [port] and _free(port)
    assert capsys.readouterr().err == "x: metrics on http://127.0.0.1:%d/metrics\n" % port


# the tools: the same checks and words in each, before anything is traced
TOOLS = {"iolatency": [], "schedtrace": ["-s"], "pagefaults": [], "offcputime": [],
         "funccount": ["t:sched:sched_switch"]}


def _tool(tool, *args, env=None):
    return subprocess.run([sys.executable, os.path.join(REPO, "bin", tool)] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=60, cwd="/", env=env)


@pytest.mark.parametrize("tool", sorted(TOOLS))
@pytest.mark.parametrize("args,first", [
    (["--prometheus", "99999"], "--prometheus 99999: the port must be a number"),
    (["--prometheus", "host:1"], "--prometheus host:1: 'host' is not an IP address"),
    (["--textfile", "/nonexistent/dir"], "--textfile /nonexistent/dir: no such directory"),
])
def test_each_tool_refuses_bad_metrics_options(tool, args, first):
    p = _tool(tool, *(TOOLS[tool] + args))
    lines = p.stderr.splitlines()
    assert p.returncode == 2, p.stderr
    assert lines[0].startswith("%s: %s" % (tool, first)), p.stderr
    assert len(lines) == 2 and "Traceback" not in p.stderr and p.stdout == ""


@pytest.mark.parametrize("tool", ["iolatency", "schedtrace", "pagefaults", "offcputime"])
def test_a_port_in_use_ends_a_tool_before_tracing(tool):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        p = _tool(tool, *(TOOLS[tool] + ["--prometheus", str(port)]))
    assert p.returncode == 1, p.stderr
    assert p.stderr == "%s: --prometheus 127.0.0.1:%d: cannot listen there: in use by " \
        "another program: choose another port\n" % (tool, port)


def test_a_tool_without_the_client_says_how_to_install(tmp_path):
    fake = tmp_path / "prometheus_client"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('not here')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    p = _tool("iolatency", "--textfile", str(tmp_path), env=env)
    assert p.returncode == 1 and p.stderr == (
        "iolatency: the prometheus_client module is missing: %s\n" % metrics.INSTALL_HINT)


def test_pagefaults_metrics_count_by_process_only():
    for args in (["-e"], ["--by", "mapping"]):
        p = _tool("pagefaults", "--prometheus", "9", *args)
        assert p.returncode == 2 and p.stderr.startswith(
            "pagefaults: --prometheus counts faults by process: not with %s" % args[0])


def test_offcputime_metrics_not_with_folded_stacks():
    for opt in ("--prometheus", "--textfile"):
        p = _tool("offcputime", "--folded", opt, "9" if opt == "--prometheus" else "/tmp")
        assert p.returncode == 2 and p.stderr.splitlines()[0] == \
            "offcputime: --folded: not with %s" % opt, p.stderr
