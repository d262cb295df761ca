"""Read untrusted pickles without running their code.

A ``.pkl`` downloaded from the internet can execute anything when loaded with plain
:func:`pickle.load`: its ``__reduce__`` may name ``os.system`` or any other callable. The
published CMU-MOSEI/MOSI feature files are pickles, so tune_m3 reads them only through
:class:`RestrictedUnpickler`, which resolves a global only if it is on a short allow-list:
numpy's array/dtype/scalar reconstructors and a few plain builtin containers. Dicts, lists,
tuples, strings, bytes and numbers need no globals at all. Anything else (``posix.system``,
``builtins.eval``, a pandas DataFrame, a custom class) is refused *before* it is called, so
nothing in the file runs.

Surprise worth knowing: numpy renamed ``numpy.core`` to ``numpy._core`` in 2.0. Pickles written
by numpy 1.x (all the public MOSEI files) name ``numpy.core.multiarray._reconstruct``; we map
both spellings to the installed numpy's function so old files load on numpy 2 without warnings.
"""

from __future__ import annotations

import codecs
import collections
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from tune_m3.errors import UserError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

# (module, name) -> the object it resolves to. Both numpy spellings map to the installed one.
_ALLOWED: dict[tuple[str, str], Any] = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(_mod, "scalar")] = _multiarray.scalar
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = _numeric._frombuffer
_ALLOWED.update(
    {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "complex"): complex,
        ("__builtin__", "set"): set,  # protocol < 3 spells builtins the Python 2 way
        ("__builtin__", "frozenset"): frozenset,
        ("__builtin__", "bytearray"): bytearray,
        ("__builtin__", "complex"): complex,
        # protocol-2 pickles of bytes made under Python 3 call _codecs.encode(str, "latin1")
        ("_codecs", "encode"): codecs.encode,
    }
)


class UnsafePickleError(UserError):
    """The pickle asked for a global that is not on the allow-list; nothing was executed."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only resolves allow-listed globals (numpy arrays, plain containers)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load: the pickle asks for '{module}.{name}', which could run code. "
                "tune_m3 only reads pickles made of dicts, lists, strings, numbers and numpy arrays. "
                "If you trust this file, convert it to that form (or to the store) yourself."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused to load: the pickle uses persistent ids")


def safe_load(path: str | Path) -> Any:
    """Load a pickle file through :class:`RestrictedUnpickler`.

    Raises :class:`~tune_m3.errors.UserError` (never a bare pickle error) when the file is
    missing, truncated, not a pickle, or asks for a disallowed global.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file. Give the path of a published feature file (.pkl).")
    try:
        with path.open("rb") as fh:
            return RestrictedUnpickler(fh, encoding="latin1").load()
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{path}: {err}") from None
    except (
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        IndexError,
        MemoryError,
    ) as err:
        raise UserError(
            f"{path}: not a readable pickle ({type(err).__name__}: {err}); the file may be "
            "truncated or corrupt. Download it again and check its size."
        ) from None
