"""The machine outside tracefs: processes and commands (``procs``), CPU
lists (``cpus``), block devices (``devices``), address maps (``maps``).
Imports only ``errors``."""

__all__: list = []
