"""ftracetools: the shared library of the ftrace-tools suite.

The folders are the layers, from the bottom up; each imports only from
the layers below it (tests/unit/test_architecture.py holds it to that,
docs/architecture.md tells the whole story):

- ``errors``, ``switches``: what every layer may raise or read;
- ``host``: the machine outside tracefs (processes, CPUs, block devices,
  address maps);
- ``kernel``: tracefs and its control: features, the session that undoes
  every change, its journal and lock, signals, filters, event formats,
  function names, buffer sizes, hist triggers and synthetic events;
- ``ring``: reading the ring buffer: pages, per-CPU readers, the time
  merge across CPUs, pages as arrays, and ``Source`` (what the loop drives);
- ``engines``: one per subject (scheduler books, block I/O pairing, call
  graphs, page faults, function counting), each arming a session and
  keeping its numbers;
- ``report``: histograms, tables, JSON lines, timelines, output files;
- ``cli``: the tool skeleton: parsing, usage errors, targets, the loop.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
