"""ftracetools: the shared library of the ftrace-tools suite.

Each module does one thing: finding tracefs (``tracefs``), probing what the
kernel offers (``features``), a tracing session that undoes every change it
makes (``session``, with ``journal`` and ``lock``), reading and decoding
events (``events``, ``reader``), and the helpers the tools share (``cpus``,
``procs``, ``devices``, ``symbols``, ``hist``, ``output``, ``cli``).
"""

__version__ = "0.1.0"
