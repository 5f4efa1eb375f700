"""One engine per subject, each arming a session and keeping its numbers:
scheduler books (``sched``, and ``schedarrays``, its numpy twin), block
I/O pairing (``blockio``, ``blockarrays``), call graphs (``callgraph``),
page faults (``faults``), function and tracepoint counting (``funcs``).
Imports every layer below (``ring``, ``kernel``, ``host``, ``errors``,
``switches``), never ``report`` or ``cli``: engines hand on numbers."""

__all__: list = []
