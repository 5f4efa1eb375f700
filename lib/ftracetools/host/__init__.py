"""The machine outside tracefs: processes and commands (``procs``), CPU
lists (``cpus``), block devices (``devices``), address maps (``maps``),
cgroups v2 and PID namespaces (``cgroups``).
Imports only ``errors``."""

__all__: list = []
