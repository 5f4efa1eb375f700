"""Histograms and their summary, one format everywhere (report.histogram):
log2 buckets, nearest-rank percentiles from values or from counts, the
summary line, the JSON form."""

import pytest

from ftracetools.report.histogram import UNITS, Histogram, Log2Hist, fmt_num


def test_log2_buckets_and_layout():
    h = Log2Hist()
    for v in (0, 0.5, 1, 1.9, 2, 3, 4, 1000):
        h.add(v)
    assert h.counts == {0: 2, 1: 2, 2: 2, 3: 1, 10: 1}
    lines = h.render("ms", "I/O")
    assert lines[0].startswith("  >=(ms) .. <(ms)   : I/O      |Distribution")
    assert lines[1].index(":") == lines[0].index(":")
    assert all(len(l) < 80 for l in lines)
    assert lines[1].endswith("|" + "#" * 38 + "|")
    assert [b["count"] for b in h.buckets()][:4] == [2, 2, 2, 1]


def test_percentiles_nearest_rank():
    s = Histogram.of_sorted(list(range(1, 101)), "us").stats
    assert (s["count"], s["p50"], s["p90"], s["p99"], s["max"]) == (100, 50, 90, 99, 100)
    assert s["avg"] == 50.5 and s["total"] == 5050
    assert Histogram.of_sorted([], "us").count == 0


@pytest.mark.parametrize("values", [[5], [1, 1, 1, 2], list(range(1, 1001)),
                                    [0, 0, 3, 3, 3, 70, 9000]])
def test_values_and_counts_agree(values):
    """A distribution kept as counts (schedtrace, the kernel's tables)
    says what the same values kept one by one (iolatency) say."""
    counts = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    a = Histogram.of_sorted(sorted(values), "us")
    b = Histogram.of_counts(counts, "us")
    assert a.stats == b.stats and a.json() == b.json() and a.render() == b.render()


def test_ns_shown_in_a_unit():
    """ns values shown in ms: buckets of whole ms, statistics in ms."""
    ns = [1500, 2500, 40000, 3000000]
    h = Histogram.of_sorted(ns, "ms", UNITS["ms"])
    assert [b["count"] for b in h.json()["buckets"]] == [3, 0, 1]
    assert h.stats["max"] == 3.0 and round(h.stats["p50"], 4) == 0.0025


def test_the_summary_line_and_json():
    h = Histogram.of_sorted([1000 * v for v in (1, 2, 3, 400)], "us", 1000)
    assert h.summary_line() == "count 4  avg 102  p50 2  p90 400  p99 400  max 400 us"
    assert h.summary_line("unmatched 0") == h.summary_line() + "  unmatched 0"
    long = h.summary_line("x" * 40)
    assert long.splitlines() == [h.summary_line(), "x" * 40]     # past 80 columns: below
    j = h.json()
    assert set(j) == {"unit", "count", "avg", "p50", "p90", "p99", "max", "total", "buckets"}
    assert j["unit"] == "us" and j["count"] == 4 and sum(b["count"] for b in j["buckets"]) == 4


def test_huge_counts_fit_80_columns():
    h = Histogram.of_counts({9999000: 999999, 123456000: 1}, "ms", 1000)
    lines = h.render("I/O") + [h.summary_line("unmatched 123456  lost 999999")]
    assert max(len(l) for l in "\n".join(lines).splitlines()) <= 80


def test_numbers():
    assert [fmt_num(v) for v in (0, 0.0004, 0.2357, 5, 12.34, 999.7, 123456.7)] == \
        ["0", "0.000", "0.236", "5", "12.3", "1000", "123457"]
