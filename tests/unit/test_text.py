"""Terminal-safe text, JSON lines and tables (report.text)."""

import pytest

from ftracetools.report import text as output


def test_escape():
    assert output.escape("bash") == "bash"
    assert output.escape("a\x1b[31mb") == "a\\x1b[31mb"
    assert output.escape("x\ny\t") == "x\\x0ay\\x09"
    assert output.escape("\x9b") == "\\x9b"
    assert output.escape(b"\xff".decode("utf-8", "surrogateescape")) == "\\xff"
    assert output.escape("a\\b") == "a\\\\b"


def test_json_line(capsys):
    import json
    output.json_line({"comm": "a\x1b", "n": 1})
    assert json.loads(capsys.readouterr().out) == {"comm": "a\x1b", "n": 1}
    output.json_line({"comm": b"\xfe".decode("utf-8", "surrogateescape")})
    assert json.loads(capsys.readouterr().out) == {"comm": "\\xfe"}


def test_table():
    lines = output.table(["FUNC", "COUNT"], [["a", 1], ["bbbb", 1000]], "lr")
    assert lines == ["FUNC COUNT", "a        1", "bbbb  1000"]


def test_a_round_of_switches_prints_what_one_by_one_does(capsys):
    """report.schedlines: the bulk text of a round (comms as raw bytes, a
    hostile one among them) equals the lines printed one switch at a time;
    JSON likewise."""
    from ftracetools.report.schedlines import Lines
    rows = [(10 ** 9 * 5 + 1234567, 0, b"bash", 100, 120, "S", b"swapper/0", 0, 120),
            (10 ** 9 * 5 + 2234999, 1, b"a\x1b[2Jb", 7, 139, "R+", b"kworker/1:0", 8, 100),
            (10 ** 9 * 6 + 999, 12, b"bash", 100, 120, "S", b"swapper/0", 0, 120),
            (10 ** 9 * 6 + 1000, 0, b"\xff\xfe", 9, 120, "D|W", b"bash", 100, 120),
            (999999500, 3, b"bash", 100, 120, "S", b"swapper/3", 0, 120),  # -> 1.000000
            (499, 0, b"bash", 100, 120, "S", b"swapper/0", 0, 120),
            (10 ** 9 * 12345678 + 123456789, 1, b"x", 1, 120, "S", b"y", 2, 120)]
    names = ("ts", "cpu", "prev_comm", "prev_pid", "prev_prio", "state", "next_comm",
             "next_pid", "next_prio")
    np = pytest.importorskip("numpy")
    states = ["S", "R+", "D|W"]
    cols = {n: np.array([r[i] for r in rows], "S16" if n.endswith("comm") else np.int64)
            for i, n in enumerate(names) if n != "state"}
    cols.update(state=np.array([states.index(r[5]) for r in rows]), states=states)
    for json in (False, True):
        one = Lines(json, 1000.0)
        for r in rows:
            one.switch(r[0], r[1], r[2].decode("utf-8", "surrogateescape"), *r[3:6],
                       r[6].decode("utf-8", "surrogateescape"), *r[7:], None)
        want = capsys.readouterr().out
        bulk = Lines(json, 1000.0)
        bulk.switches(cols)
        bulk.switches(cols)     # (the second time from its kept texts)
        assert capsys.readouterr().out == want * 2
        assert len(want.splitlines()) == len(rows) and "\x1b" not in want
        if not json:
            assert "       1.000000 [003] " in want and "       0.000000 [000] " in want
            assert "12345678.123457 [001] x:1" in want
        # past 10^8 s (three years up) the seconds widen the column: the
        # lines are then made one by one
        big = dict(cols, ts=cols["ts"] + 10 ** 17)
        bulk.switches(big)
        tail = capsys.readouterr().out
        for r in rows:
            one.switch(r[0] + 10 ** 17, r[1], r[2].decode("utf-8", "surrogateescape"),
                       *r[3:6], r[6].decode("utf-8", "surrogateescape"), *r[7:], None)
        assert tail == capsys.readouterr().out
