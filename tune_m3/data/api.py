"""Import a published feature file or build the synthetic benchmark into the store."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import asdict
from pathlib import Path

from tune_m3.data.formats import canonical_splits
from tune_m3.data.safe_pickle import safe_load
from tune_m3.data.store import DatasetMeta, read_meta, resolve_data_dir, write_dataset
from tune_m3.data.synthetic import SynthConfig, generate
from tune_m3.errors import UserError


class DataWarning(UserWarning):
    """Imported data that is usable but probably not what the user meant (e.g. an all-zero modality)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def import_file(
    path: str | Path,
    dataset: str,
    fmt: str = "mult",
    data_dir: str | Path | None = None,
    overwrite: bool = False,
) -> DatasetMeta:
    """Validate a MulT- or MMSA-layout pickle and store it as dataset ``dataset``.

    The pickle is read through the restricted unpickler (nothing in it can run). Non-finite
    feature values become 0 and are counted in the metadata; a modality that is all zeros or all
    non-finite in a split is stored (as zeros) but raises a :class:`DataWarning` and is recorded
    in ``meta.empty_modalities``. Every other problem raises
    :class:`~tune_m3.errors.UserError` before anything is written.
    """
    path = Path(path).expanduser()
    if fmt not in ("mult", "mmsa"):
        raise UserError(f"unknown --format '{fmt}'; choose mult or mmsa")
    root = resolve_data_dir(data_dir)
    if (root / dataset / "meta.json").exists() and not overwrite:
        raise UserError(
            f"dataset '{dataset}' already exists in {root}; pass --overwrite to replace it"
        )
    obj = safe_load(path)
    splits = canonical_splits(obj, fmt, str(path))
    source = {"kind": "import", "path": str(path.resolve()), "sha256": _sha256(path), "format": fmt}
    meta = write_dataset(
        root, dataset, splits, synthetic=False, source=source, like=dataset, overwrite=overwrite
    )
    for msg in meta.warnings():
        warnings.warn(f"{path}: {msg}", DataWarning, stacklevel=2)
    return meta


def build_synthetic(
    like: str = "mosei",
    scale: float = 1.0,
    seed: int = 0,
    name: str | None = None,
    data_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    unaligned: bool = False,
    **knobs: float,
) -> DatasetMeta:
    """Generate the synthetic benchmark (see :mod:`tune_m3.data.synthetic`) and store it.

    ``unaligned=True`` gives audio and vision more steps than text (``synth_<like>_unaligned``).
    """
    try:
        cfg = SynthConfig(like=like, scale=scale, seed=seed, unaligned=unaligned, **knobs)
    except (TypeError, ValueError) as err:
        raise UserError(f"synthetic benchmark: {err}") from None
    splits = generate(cfg, progress=progress)
    source = {"kind": "synthetic", "fingerprint": cfg.fingerprint(), "config": asdict(cfg)}
    return write_dataset(
        resolve_data_dir(data_dir),
        name or cfg.default_name,
        splits,
        synthetic=True,
        source=source,
        like=like,
        overwrite=overwrite,
    )


def ensure_synthetic(
    name: str,
    like: str,
    scale: float,
    seed: int = 0,
    data_dir: str | Path | None = None,
    progress: bool = True,
    unaligned: bool = False,
) -> DatasetMeta:
    """Return the stored synthetic dataset ``name``, building it first if it is missing."""
    root = resolve_data_dir(data_dir)
    if (root / name / "meta.json").is_file():
        return read_meta(name, root)
    if progress:
        kind = ", unaligned" if unaligned else ""
        print(
            f"building synthetic dataset '{name}' ({like}-shaped{kind}, scale {scale:g}) in {root}"
        )
    return build_synthetic(
        like, scale, seed, name=name, data_dir=root, progress=progress, unaligned=unaligned
    )
