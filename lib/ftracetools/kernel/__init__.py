"""Kernel control through tracefs: finding it (``tracefs``), what it
offers (``features``), the session that undoes every change (``session``,
``journal``, ``lock``, ``rundir``, ``signals``), event filters
(``filters``) and formats (``formats``), function names (``symbols``),
buffer sizes (``buffers``), hist triggers and synthetic events
(``triggers``). Imports ``errors``, ``switches`` and ``host``."""

__all__: list = []
