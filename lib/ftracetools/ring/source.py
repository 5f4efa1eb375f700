"""What the tracing loop (``cli.loop.trace``) drives: an engine's reading
side. Every engine that gathers events is a ``Source``.
"""

from typing import Optional

from ftracetools.kernel import signals

__all__ = ["Source", "Preload", "preload"]


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


class Preload:
    """A module imported in a background thread: ``ready()`` once the
    import has ended, ``module()`` waits for it and returns the module
    (None where it cannot be imported: the caller goes without).

    ``hold(round, wait)``: keep a round's pages (read, not decoded) while
    the import runs; once it has ended (``wait``: wait for it), returns
    (the module or None, every round kept, in order), else None."""

    def __init__(self, module: str) -> None:
        import threading
        self.mod = None
        self.held: list = []
        self._t = threading.Thread(target=self._load, args=(module,), name="preload",
                                   daemon=True)
        self._t.start()

    def _load(self, module: str) -> None:
        import importlib
        try:
            self.mod = importlib.import_module(module)
        except Exception:   # (ImportError: no numpy)
            pass

    def ready(self) -> bool:
        return not self._t.is_alive()

    def module(self):
        self._t.join()
        return self.mod

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the import; True once it ended."""
        self._t.join(max(0.0, timeout))
        return self.ready()

    def hold(self, round_, wait: bool = False):
        self.held.append(round_)
        if not (wait or self.ready()):
            return None
        held, self.held = self.held, []
        return self.module(), held


def preload(module: str) -> Preload:
    """Import ``module`` in the background: while the tool waits for its
    first round (numpy takes 70 to 140 ms to import here, seconds in the
    emulated guests), or while a busy round's pages wait, read but not
    decoded (imported in the round, the import let the kernel's buffer
    fill). The round's own import then finds it loaded, or waits for it."""
    return Preload(module)
