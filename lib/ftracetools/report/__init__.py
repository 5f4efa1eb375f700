"""Showing the numbers, one way in every tool: log2 histograms and their
summary (``histogram``), terminal-safe text, tables and JSON lines
(``text``), Trace Event Format timelines (``timeline``), output files
written as a shell would (``outfile``). Imports only ``errors``."""

__all__: list = []
