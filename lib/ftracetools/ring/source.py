"""What the tracing loop (``cli.loop.trace``) drives: an engine's reading
side. Every engine that gathers events is a ``Source``.
"""

from typing import Optional

from ftracetools.kernel import signals

__all__ = ["Source", "preload"]


class Source:
    """Override ``drain`` (and what else applies). The loop calls ``live``
    once tracing runs, then ``wait`` and ``drain`` at least every ``tick``
    seconds, then, after tracing stopped, ``finish``; ``lost`` is read for
    the last warning."""

    #: the longest the loop sleeps between drains (seconds)
    tick = 0.1
    #: what to do about lost events, for the warning
    lost_hint = "enlarge the buffer with -b"

    def live(self) -> None:
        """Tracing runs and the banner is out."""

    def wait(self, timeout: float) -> object:
        """Sleep until the kernel has something, or ``timeout`` seconds,
        or an end signal."""
        signals.sleep(timeout)
        return None

    def drain(self) -> None:
        """Take in what the kernel has now."""

    def finish(self, why: str) -> None:
        """Tracing stopped (``why``: duration, count, exited, signal): take
        in the rest."""
        self.drain()

    def lost(self) -> int:
        """Events lost so far (the kernel's count)."""
        return 0

    def unread(self) -> Optional[int]:
        """Events left unread at the end (ended before they were read)."""
        return None


def preload(module: str) -> None:
    """Import ``module`` in a background thread while the tool waits for
    its first round (numpy takes 70 to 140 ms to import here); the
    round's own import then finds it loaded, or waits for it."""
    import importlib
    import threading

    def load():
        try:
            importlib.import_module(module)
        except Exception:   # the round's own import reports it
            pass
    threading.Thread(target=load, name="preload", daemon=True).start()
