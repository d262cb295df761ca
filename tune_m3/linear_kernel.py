"""Which CPU kernel the built-in models' Linear layers use: ``$TUNE_M3_CPU_LINEAR`` and a cache.

``$TUNE_M3_CPU_LINEAR``:
  auto    (the default, also when unset or empty) the kernel chosen for this machine: timed once
          (``tune_m3.models.kernel_timing``, a fraction of a second) and cached per machine
  onednn  always the 1 x 1 channels-last convolution (oneDNN), where torch has oneDNN
  blas    always ``F.linear`` (PyTorch's own path, the BLAS)

The cache is one JSON file, ``$XDG_CACHE_HOME/tune_m3/cpu_linear.json`` (``~/.cache/...``),
mapping a machine key (CPU model, a hash of its feature flags, torch version, thread count, and
any instruction-set cap set through ``ISA_CAPS``, e.g. ``ONEDNN_MAX_CPU_ISA=AVX2``) to
the choice and the times it was made from. Several trial processes that start at once take an
exclusive lock (``cpu_linear.lock`` beside it) around read-time-write, so one of them times and
the others read its result; the file is replaced atomically (temporary file + rename). A corrupt
cache counts as empty; a cache that cannot be read, locked or written costs a timing in each
process (a one-line note on stderr), never an error.

This module imports no torch: the CLIs check the variable with :func:`kernel_setting` first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tune_m3.errors import UserError
from tune_m3.tracking.store import file_lock  # flock: POSIX

ENV = "TUNE_M3_CPU_LINEAR"
SETTINGS = ("auto", "onednn", "blas")


def kernel_setting() -> str:
    """``$TUNE_M3_CPU_LINEAR`` lower-cased: 'auto' (unset or empty), 'onednn' or 'blas'.

    Anything else is a UserError (one ``error:`` line, exit 2); the CLIs call this before any work.
    """
    choice = os.environ.get(ENV, "").strip().lower() or "auto"
    if choice not in SETTINGS:
        raise UserError(
            f"${ENV}={choice!r}: must be 'auto' (the default: chosen per machine), 'onednn' or "
            "'blas'; unset it or fix the value"
        )
    return choice


def cpu_identity() -> tuple[str, str]:
    """(CPU model name, its feature flags) from /proc/cpuinfo; ``platform`` strings elsewhere."""
    model, flags = "", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "cpu model") and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
            if model and flags:
                break
    return model or platform.processor() or platform.machine(), flags


# variables that cap the vector extensions oneDNN, MKL or ATen use: a capped process is another
# machine as far as the kernel choice goes (an AVX-512 CPU capped at AVX2 chose differently)
ISA_CAPS = (
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "ATEN_CPU_CAPABILITY",
)


def machine_key(torch_version: str, threads: int) -> str:
    """The cache key: what a choice depends on (CPU, its vector extensions, torch, threads, caps)."""
    model, flags = cpu_identity()
    digest = hashlib.sha256(flags.encode()).hexdigest()[:12]
    key = f"{model} | flags {digest} | {platform.machine()} | torch {torch_version} | threads {threads}"
    caps = [f"{v}={os.environ[v]}" for v in ISA_CAPS if os.environ.get(v)]
    return key + "".join(f" | {c}" for c in caps)


def cache_path() -> Path:
    """``$XDG_CACHE_HOME/tune_m3/cpu_linear.json`` (``~/.cache/tune_m3/cpu_linear.json``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "tune_m3" / "cpu_linear.json"


def read_cache(path: Path) -> dict[str, Any]:
    """The cache's entries; {} when it is missing, unreadable or not a JSON object."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def write_cache(path: Path, entries: dict[str, Any]) -> None:
    """Replace the cache file atomically (a reader sees the old or the new file, never half)."""
    fd, tmp = tempfile.mkstemp(prefix=".cpu_linear.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(entries, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _valid(entry: Any) -> bool:
    return isinstance(entry, dict) and entry.get("choice") in ("onednn", "blas")


def cached_choice(key: str, measure: Callable[[], dict[str, Any]], path: Path | None = None) -> str:
    """'onednn' or 'blas' for ``key``: from the cache, or ``measure()`` once and cached.

    ``measure`` returns the entry to store, with at least ``choice``. A cache that cannot be
    used (no lock, no write) leaves the measured choice valid for this process only.
    """
    path = path or cache_path()
    entry = read_cache(path).get(key)
    if _valid(entry):
        return entry["choice"]
    try:
        with file_lock(path.with_suffix(".lock")):
            entries = read_cache(path)  # another process may have timed while we waited
            if _valid(entries.get(key)):
                return entries[key]["choice"]
            entry = measure()
            entries[key] = entry
            write_cache(path, entries)
    except OSError as err:
        print(
            f"tune_m3: the CPU kernel cache {path} is not usable ({err}); "
            f"choosing for this process only (${ENV}=onednn|blas skips the timing)",
            file=sys.stderr,
        )
        if not _valid(entry):
            entry = measure()
    return entry["choice"]
