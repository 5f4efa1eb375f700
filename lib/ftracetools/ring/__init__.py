"""Reading the ring buffer: sub-buffer pages (``pages``), every CPU's
buffer (``reader``), the time-ordered merge across CPUs (``merge``),
pages decoded as numpy arrays (``arrays``), and ``source.Source``, what
the tracing loop drives. Imports the layers below (``kernel``, ``host``,
``errors``)."""

__all__: list = []
