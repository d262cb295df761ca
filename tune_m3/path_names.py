"""Names that become path components, and output paths that must stay inside their folder.

A name the user gives that tune_m3 turns into one folder or file name (a search's ``--name``:
the folder ``<storage>/NAME``; a dataset's name: ``<store>/NAME``) must be exactly *one* path
component:

- letters and digits (Unicode letters and digits count, as ``str.isalnum`` says), ``.``, ``_``
  and ``-``; nothing else: no ``/``, no space, no control character;
- not starting with ``.`` (so neither ``.`` nor ``..``, and no hidden folder);
- at most :data:`MAX_BYTES` bytes in UTF-8 (file systems allow 255; a default search name may
  still get a ``-2`` ... ``-999`` suffix).

Anything else is a :class:`~tune_m3.errors.UserError` (exit 2), raised before anything is
written. Names that never become paths (the MLflow ``--experiment``, run names, Optuna study
names) are not restricted here.

:func:`check_inside` is the second guard: a path that is a symbolic link (or has one on the way)
to somewhere outside the folder it belongs to is refused, after resolving every link.
"""

from __future__ import annotations

from pathlib import Path

from tune_m3.errors import UserError

MAX_BYTES = 200
RULE = "use letters, digits, '.', '_' and '-' (one path component, not starting with '.')"


def is_component(name: str) -> bool:
    """True if ``name`` is one allowed path component (see the module doc)."""
    return (
        bool(name)
        and all(c.isalnum() or c in "._-" for c in name)
        and not name.startswith(".")
        and len(name.encode("utf-8", "surrogatepass")) <= MAX_BYTES
    )


def check_component(name: str, what: str, fix: str = "") -> str:
    """``name`` if it is one allowed path component, else UserError naming ``what`` and the rule."""
    if not is_component(name):
        too_long = len(name.encode("utf-8", "surrogatepass")) > MAX_BYTES
        why = f"longer than {MAX_BYTES} bytes" if too_long else "not allowed"
        raise UserError(f"{what} {name!r} is {why}; {RULE}" + (f"; {fix}" if fix else ""))
    return name


def check_inside(path: Path, root: Path, what: str) -> None:
    """UserError if ``path``, every symbolic link resolved, is not ``root`` or inside it."""
    real, real_root = path.resolve(), root.resolve()
    if real != real_root and not real.is_relative_to(real_root):
        raise UserError(
            f"{what} {path} resolves to {real}, outside {real_root} (a symbolic link?); "
            "remove the link or choose another --name"
        )
