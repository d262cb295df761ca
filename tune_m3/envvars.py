"""Numbers read from ``TUNE_M3_*`` environment variables: one parser, one error line.

A typo in such a variable must end a command at its start with one ``error:`` line naming the
variable, not minutes later in a trial or at the end of a search.
"""

from __future__ import annotations

import os

from tune_m3.errors import UserError


def env_number(name: str, default: float, unit: str) -> float:
    """``$name`` as a number >= 0 (``default`` when unset or empty); UserError otherwise."""
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise UserError(f"${name}={raw!r}: expected {unit} >= 0, e.g. {name}={default:g}")
    return value
