"""A full disk is a clear failure, and a resumable one.

A search writes to up to three places (Ray's storage, a SQLite MLflow store, a SQLite Optuna
study), often on one disk. When a disk fills mid-write, Ray's experiment state, its checkpoints
and SQLite all fail at once and the search used to die with dozens of tracebacks and runs left
RUNNING. So the search keeps a margin: it refuses to start with less than
:func:`min_free` bytes free on any of its places, and while it runs the callback looks every
few seconds (:class:`DiskWatch`); below the margin it stops the trials gracefully (as Ctrl-C
does: checkpoints kept), marks its runs FAILED while MLflow still has room, and ends with one
``error:`` line naming the place, its free space and the ``--resume`` command (exit 2).

``$TUNE_M3_MIN_FREE_MB`` sets the margin (default 64 MB: a checkpoint of the built-in models is
under 10 MB, an epoch's MLflow rows a few kB). A disk that fills faster than the watch looks
(or an ``ENOSPC`` / ``EDQUOT`` / ``EROFS`` the watch cannot foresee) ends the same way through
:func:`disk_error` (the runs marked FAILED where MLflow can still write; otherwise saved for
``resync``).
"""

from __future__ import annotations

import errno
import shutil
import time
from pathlib import Path

from tune_m3.envvars import env_number
from tune_m3.errors import UserError
from tune_m3.tracking.store import first_existing

ENV = "TUNE_M3_MIN_FREE_MB"
DEFAULT_MB = 64.0
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def min_free() -> int:
    """The margin in bytes (``$TUNE_M3_MIN_FREE_MB``; a bad value is a UserError)."""
    return int(env_number(ENV, DEFAULT_MB, "megabytes") * 1e6)


def free_bytes(place: Path) -> int:
    return shutil.disk_usage(first_existing(place)).free


def low_space(places: dict[str, Path]) -> str | None:
    """``"PATH (what) has N MB free"`` for the first place under the margin; None if all fit."""
    need = min_free()
    for what, place in places.items():
        free = free_bytes(place)
        if free < need:
            return (
                f"{first_existing(place)} ({what}) has {free / 1e6:.1f} MB free, under the "
                f"{need / 1e6:.0f} MB a search keeps in reserve (${ENV})"
            )
    return None


def check_before_start(places: dict[str, Path]) -> None:
    """Refuse to start a search on a disk that is already (nearly) full."""
    low = low_space(places)
    if low:
        raise UserError(
            f"not enough disk space: {low}; free space there, or point --storage / "
            f"--tracking-uri / --optuna-storage elsewhere"
        )


class DiskWatch:
    """Looks at the search's places at most every ``every`` seconds (see module doc)."""

    def __init__(self, places: dict[str, Path], every: float = 2.0):
        self.places, self.every, self._next = places, every, 0.0

    def check(self) -> str | None:
        if time.monotonic() < self._next:
            return None
        self._next = time.monotonic() + self.every
        return low_space(self.places)


def disk_error(err: BaseException) -> OSError | None:
    """The ENOSPC / EDQUOT / EROFS behind ``err`` (its cause chain), or None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
            return err
        if "No space left on device" in str(err) or "database or disk is full" in str(err):
            return OSError(errno.ENOSPC, str(err).strip().splitlines()[-1][:200])
        err = err.__cause__ or err.__context__
    return None


def full_now(places: dict[str, Path], under: int = 1_000_000) -> OSError | None:
    """An ENOSPC for the first place with less than ``under`` bytes free now: an error whose
    own text hides the cause (Ray reading a truncated file) on a disk that is full."""
    for place in places.values():
        if free_bytes(place) < under:
            return OSError(errno.ENOSPC, "No space left on device", str(first_existing(place)))
    return None
