"""Ctrl-C and SIGTERM during a search: stop cleanly, say so, exit 130 / 143.

Ray Tune stops an experiment gracefully on SIGINT (and SIGUSR1): running trials are stopped,
the experiment state is saved, and ``Tuner.fit`` returns as if the search had ended. Nothing in
what it returns says it was interrupted, which is how a Ctrl-C used to read as success. So
tune_m3 owns the signals:

- Ray's own SIGINT handler is switched off (``TUNE_DISABLE_SIGINT_HANDLER``); ours records the
  signal and hands it to Ray's SIGUSR1 handler, which makes Ray stop gracefully;
- SIGTERM (a scheduler's kill, ``kill PID``) does the same; Ray would otherwise die mid-write;
- before Ray's loop runs (dataset loading, Ray start-up), a signal raises
  :class:`SearchInterrupted` at once;
- a second signal while Ray is stopping gives up waiting: :class:`SearchInterrupted` is raised.

The search then marks running trials and its parent run KILLED and exits with 128 + the signal
number (130 for SIGINT, 143 for SIGTERM), printing the exact ``--resume`` command.
"""

from __future__ import annotations

import os
import signal
from types import FrameType


class SearchInterrupted(Exception):
    """Raised when a signal stops the search before (or while) Ray's loop ends."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(signum: int) -> int:
    return 128 + signum


class DiskLow(Exception):
    """Raised when the search stopped itself because a disk it writes to is nearly full."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Interrupts:
    """Context manager that catches SIGINT and SIGTERM for the search (see module doc).

    The search may also stop itself the same graceful way (:meth:`stop`, e.g. a nearly full
    disk): trials stopped and saved, then :class:`DiskLow` instead of SearchInterrupted.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.reason: str | None = None  # why the search stopped itself (None: it did not)
        self.in_fit = False  # True while Ray's loop runs (its SIGUSR1 handler is live)
        self._old: dict[int, object] = {}

    @property
    def interrupted(self) -> bool:
        return self.signum is not None or self.reason is not None

    def stop(self, reason: str) -> None:
        """Stop the search gracefully from inside Ray's loop (a callback), for ``reason``."""
        if self.interrupted:
            return
        self.reason = reason
        ray_handler = signal.getsignal(signal.SIGUSR1)
        print(f"\n[tune_m3] stopping the search: {reason}", flush=True)
        if self.in_fit and callable(ray_handler):
            ray_handler(signal.SIGUSR1, None)

    def raise_if_stopped(self) -> None:
        """After Ray's loop: SearchInterrupted (a signal) or DiskLow (the search stopped)."""
        if self.signum is not None:
            raise SearchInterrupted(self.signum)
        if self.reason is not None:
            raise DiskLow(self.reason)

    def __enter__(self) -> Interrupts:
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for s in (signal.SIGINT, signal.SIGTERM):
            self._old[s] = signal.signal(s, self._handle)
        return self

    def reinstall(self) -> None:
        """Take the signals back: ``ray.init`` installs its own C-level SIGTERM handler in the
        driver (it aborts the process), so call this once Ray has started."""
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._handle)

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        ray_handler = signal.getsignal(signal.SIGUSR1)
        if first and self.in_fit and callable(ray_handler):
            print(
                f"\n[tune_m3] {signal.Signals(signum).name}: stopping the search (trials are "
                "stopped and saved; press Ctrl-C again to stop without waiting)",
                flush=True,
            )
            ray_handler(signal.SIGUSR1, frame)  # Ray's graceful stop (only set inside fit)
            return
        raise SearchInterrupted(self.signum)
