"""Terminal-safe text, JSON lines and tables (report.text)."""

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
