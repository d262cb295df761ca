"""The published feature-file layouts, validated and turned into one canonical form.

Two layouts of word-aligned CMU-MOSEI/MOSI features are in common use:

``mult`` (MulT / MultiBench: ``mosei_senti_data.pkl``, ``mosi_data.pkl``)
    ``{"train"|"valid"|"test": {"text": (N, L, 300), "audio": (N, L, d_a), "vision": (N, L, d_v),
    "labels": (N, 1, 1), "id": (N, ...)}}``; d_a/d_v are 74/35 for MOSEI and 5/20 for MOSI.

``mmsa`` (MMSA / Self-MM: ``aligned_50.pkl``)
    same splits, keys ``text``, ``audio``, ``vision``, ``regression_labels`` (N,), ``id``, and
    optional ``raw_text``, ``audio_lengths``, ``vision_lengths``, ``text_bert`` (ignored here).

Both become a :class:`CanonicalSplit` per split: float32 features ``(N, L, d)`` keyed by
modality, labels ``(N,)``, string ids ``(N,)`` and valid lengths ``(N,)``. Dims and L are read
from the file, never assumed. Real-data quirks are handled here, once:

- non-finite feature values (MOSEI audio has -inf and NaN) are replaced by 0 and counted;
- labels must be finite and inside [-3, 3] (the annotation scale); anything else is an error;
- sequences are front-padded with all-zero steps; the valid length of a sample is L minus its
  number of leading steps that are zero in every modality (at least 1, so an all-zero sample
  still has one step to read).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tune_m3.errors import UserError
from tune_m3.names import MODALITIES, SPLITS  # noqa: F401  (re-exported; defined in names.py)

LABEL_RANGE: tuple[float, float] = (-3.0, 3.0)
FORMATS: tuple[str, ...] = ("mult", "mmsa")

# Alternative split names seen in the wild, mapped to ours.
_SPLIT_ALIASES = {"val": "valid", "dev": "valid", "validation": "valid"}
_LABEL_KEY = {"mult": "labels", "mmsa": "regression_labels"}


@dataclass
class CanonicalSplit:
    """One split in the canonical form the store writes."""

    features: dict[str, np.ndarray]  # modality -> (N, L, d) float32, finite
    labels: np.ndarray  # (N,) float32 in [-3, 3]
    ids: np.ndarray  # (N,) str
    lengths: np.ndarray  # (N,) int32, valid (non-padded) steps, 1..L
    nonfinite_replaced: dict[str, int] = field(default_factory=dict)  # modality -> count

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])


def valid_lengths(features: Mapping[str, np.ndarray]) -> np.ndarray:
    """Valid length of each front-padded sample: steps after the leading all-zero steps. (N,)"""
    nonpad = None
    for x in features.values():  # x: (N, L, d)
        step_used = np.any(x != 0, axis=2)  # (N, L)
        nonpad = step_used if nonpad is None else nonpad | step_used
    assert nonpad is not None
    seq_len = nonpad.shape[1]
    first = np.argmax(nonpad, axis=1)  # index of the first used step (0 if none)
    lengths = np.where(nonpad.any(axis=1), seq_len - first, 1)
    return lengths.astype(np.int32)


def sanitize_features(x: np.ndarray) -> tuple[np.ndarray, int]:
    """float32 copy-free where possible; non-finite values replaced by 0. Returns (x, count)."""
    x = np.asarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    count = int(bad.sum())
    if count:
        if not x.flags.writeable:
            x = x.copy()
        x[bad] = 0.0
    return x, count


def _ids_to_str(raw: Any, n: int, split: str, where: str) -> np.ndarray:
    if raw is None:
        return np.array([f"{split}_{i}" for i in range(n)])
    arr = np.asarray(raw)
    if arr.shape[:1] != (n,):
        raise UserError(
            f"{where}: 'id' has {arr.shape[0] if arr.ndim else 0} entries but the split has {n} samples"
        )

    def one(v: Any) -> str:
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        if isinstance(v, np.ndarray | list | tuple):
            return "_".join(one(u) for u in np.asarray(v).ravel())
        return str(v)

    return np.array([one(v) for v in arr])


def canonical_split(raw: Mapping[str, Any], split: str, fmt: str, source: str) -> CanonicalSplit:
    """Validate one split of a loaded feature file and convert it to the canonical form."""
    where = f"{source}: split '{split}'"
    if not isinstance(raw, Mapping):
        raise UserError(f"{where} is a {type(raw).__name__}, expected a dict of arrays")
    label_key = _LABEL_KEY[fmt]
    missing = [k for k in (*MODALITIES, label_key) if k not in raw]
    if missing:
        other = "mmsa" if fmt == "mult" else "mult"
        hint = ""
        if _LABEL_KEY[other] in raw and label_key not in raw:
            hint = f" This looks like the '{other}' layout: use --format {other}."
        raise UserError(f"{where} has no key(s) {missing} (keys found: {sorted(raw)}).{hint}")

    features: dict[str, np.ndarray] = {}
    replaced: dict[str, int] = {}
    for m in MODALITIES:
        try:
            x = np.asarray(raw[m])
        except Exception as err:  # ragged lists and the like
            raise UserError(f"{where}, key '{m}': not an array ({err})") from None
        if x.ndim != 3:
            raise UserError(f"{where}, key '{m}': expected rank 3 (N, L, d), got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.number):
            raise UserError(f"{where}, key '{m}': expected numbers, got dtype {x.dtype}")
        features[m], replaced[m] = sanitize_features(x)

    n = features["text"].shape[0]
    seq_len = features["text"].shape[1]
    for m, x in features.items():
        if x.shape[0] != n or x.shape[1] != seq_len:
            raise UserError(
                f"{where}, key '{m}': shape {x.shape} does not match text {features['text'].shape} "
                "in samples (N) or steps (L); modalities must be word-aligned"
            )
        if x.shape[2] == 0:
            raise UserError(f"{where}, key '{m}': feature size 0")
    if n == 0:
        raise UserError(f"{where} is empty (0 samples)")

    labels = np.asarray(raw[label_key])
    if labels.size != n or labels.shape[0] != n:
        raise UserError(
            f"{where}, key '{label_key}': shape {labels.shape} does not give one label per sample ({n})"
        )
    labels = labels.reshape(n).astype(np.float32)
    bad = ~np.isfinite(labels)
    if bad.any():
        raise UserError(
            f"{where}, key '{label_key}': {int(bad.sum())} non-finite label(s), first at index "
            f"{int(np.flatnonzero(bad)[0])}; fix or drop those samples"
        )
    lo, hi = LABEL_RANGE
    out = (labels < lo - 1e-4) | (labels > hi + 1e-4)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise UserError(
            f"{where}, key '{label_key}': {int(out.sum())} label(s) outside [{lo:g}, {hi:g}] "
            f"(e.g. {labels[i]:g} at index {i}); sentiment labels must be on the [-3, 3] scale"
        )
    labels = np.clip(labels, lo, hi)

    ids = _ids_to_str(raw.get("id"), n, split, where)
    return CanonicalSplit(
        features=features,
        labels=labels,
        ids=ids,
        lengths=valid_lengths(features),
        nonfinite_replaced=replaced,
    )


def canonical_splits(obj: Any, fmt: str, source: str) -> dict[str, CanonicalSplit]:
    """Validate a whole loaded file (dict of splits) of layout ``fmt``; all splits required."""
    if fmt not in FORMATS:
        raise UserError(f"unknown --format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if not isinstance(obj, Mapping):
        raise UserError(
            f"{source}: top level is a {type(obj).__name__}, expected a dict with splits {list(SPLITS)}"
        )
    by_name = {_SPLIT_ALIASES.get(str(k), str(k)): v for k, v in obj.items()}
    missing = [s for s in SPLITS if s not in by_name]
    if missing:
        raise UserError(
            f"{source}: missing split(s) {missing} (found: {sorted(map(str, obj))}); a feature file "
            "needs train, valid and test"
        )
    splits = {s: canonical_split(by_name[s], s, fmt, source) for s in SPLITS}
    dims = {s: tuple(sp.features[m].shape[2] for m in MODALITIES) for s, sp in splits.items()}
    if len(set(dims.values())) != 1:
        raise UserError(f"{source}: feature sizes differ between splits: {dims}")
    lens = {s: sp.features["text"].shape[1] for s, sp in splits.items()}
    if len(set(lens.values())) != 1:
        raise UserError(f"{source}: sequence lengths L differ between splits: {lens}")
    return splits
