"""``--prometheus [ADDR:]PORT`` and ``--textfile DIR``, the same in every
tool that counts.

``with cli.exporter(TOOL, args) as m:`` checks both options before
anything is traced (a bad port, address or directory: a usage error
naming the option, exit 2; prometheus_client missing: one line saying how
to install it, exit 1), binds the port (in use: one line, exit 1), and
yields a ``report.metrics.Metrics`` (None without either option) for the
tool to declare its families on and feed from its report. ``cli.trace(...,
metrics=m)`` writes the textfile after every report; leaving the block
stops serving, on every way out.
"""

import contextlib
import os
from typing import Dict, Iterator, Optional, Tuple

from ftracetools.cli.loop import warn
from ftracetools.errors import UsageError

__all__ = ["DEFAULT_ADDR", "listen", "textfile_dir", "exporter"]

DEFAULT_ADDR = "127.0.0.1"
_HINT = "PORT (on 127.0.0.1) or ADDR:PORT: 9100, 0.0.0.0:9100, [::1]:9100"


def listen(text: Optional[str], option: str = "--prometheus") -> Optional[Tuple[str, int]]:
    """``[ADDR:]PORT`` -> (address, port); 127.0.0.1 unless an address is
    given (an IP address: ``[...]`` around IPv6)."""
    if text is None:
        return None
    import ipaddress
    t = text.strip()
    addr, port = DEFAULT_ADDR, t
    if t.startswith("["):
        a, sep, rest = t[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise UsageError("%s %s: an IPv6 address goes as [ADDR]:PORT" % (option, text), _HINT)
        addr, port = a, rest[1:]
    elif ":" in t:
        addr, port = t.rsplit(":", 1)
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise UsageError("%s %s: %r is not an IP address" % (option, text, addr), _HINT) from None
    if ip.version == 6 and not t.startswith("["):
        raise UsageError("%s %s: an IPv6 address goes as [ADDR]:PORT" % (option, text), _HINT)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError("%s %s: the port must be a number from 1 to 65535" % (option, text),
                         _HINT)
    return str(ip), int(port)


def textfile_dir(text: Optional[str], option: str = "--textfile") -> Optional[str]:
    """A directory this process can write files in, or a usage error."""
    if text is None:
        return None
    if not os.path.isdir(text):
        raise UsageError("%s %s: %s" % (option, text, "not a directory" if os.path.exists(text)
                                         else "no such directory"),
                         "the directory node_exporter's --collector.textfile.directory reads")
    if not os.access(text, os.W_OK | os.X_OK):
        raise UsageError("%s %s: cannot write there" % (option, text),
                         "a directory this user may write")
    return text


@contextlib.contextmanager
def exporter(tool: str, args: Dict) -> Iterator:
    """See the module docstring."""
    where = listen(args.get("--prometheus"))
    tdir = textfile_dir(args.get("--textfile"))
    if where is None and tdir is None:
        yield None
        return
    from ftracetools.report import metrics
    metrics.require()
    m = metrics.Metrics(tool, textfile=tdir)
    if where is not None:
        m.serve(*where)
        warn(tool, "metrics on http://%s/metrics" % (
            "[%s]:%d" if ":" in where[0] else "%s:%d") % where)
    try:
        yield m
    finally:
        m.close()
