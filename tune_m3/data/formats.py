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
    empty_modalities: dict[str, str] = field(default_factory=dict)  # modality -> "all zeros" | ...

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


def _read_modality(raw: Mapping[str, Any], m: str, where: str) -> tuple[np.ndarray, int, str]:
    """One modality's (N, L, d) float32 array, sanitized. Returns (x, non-finite count, empty).

    ``empty`` is "" normally, "all non-finite" when every value was NaN/inf (now all 0), or
    "all zeros" when the modality holds no non-zero value at all: either way it carries no
    information in this split, which the importer reports loudly.
    """
    try:
        x = np.asarray(raw[m])
    except Exception as err:  # ragged lists and the like
        raise UserError(f"{where}, key '{m}': not an array ({err})") from None
    if x.ndim != 3:
        raise UserError(f"{where}, key '{m}': expected rank 3 (N, L, d), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise UserError(f"{where}, key '{m}': expected numbers, got dtype {x.dtype}")
    if x.shape[1] == 0 and x.shape[0] > 0:
        raise UserError(
            f"{where}, key '{m}': shape {x.shape} has 0 time steps (L = 0); every sample needs "
            "at least one step (pad with zeros at the front)"
        )
    if x.shape[2] == 0:
        raise UserError(f"{where}, key '{m}': feature size 0")
    x, count = sanitize_features(x)
    empty = ""
    if x.size and count == x.size:
        empty = "all non-finite"
    elif x.size and not x.any():
        empty = "all zeros"
    return x, count, empty


def _read_labels(raw: Mapping[str, Any], key: str, n: int, where: str) -> np.ndarray:
    """(N,) float32 labels on [-3, 3]; anything non-numeric, non-finite or out of range refused."""
    labels = np.asarray(raw[key])
    if labels.size != n or labels.shape[:1] != (n,):
        raise UserError(
            f"{where}, key '{key}': shape {labels.shape} does not give one label per sample ({n})"
        )
    labels = labels.reshape(n)
    numeric = np.issubdtype(labels.dtype, np.number) and not np.issubdtype(
        labels.dtype, np.complexfloating
    )
    if labels.dtype == object:  # a list of Python numbers with a None or a string in it
        try:
            labels = labels.astype(np.float64)
            numeric = True
        except (TypeError, ValueError):
            numeric = False
    if not numeric:
        bad = next(
            (i for i, v in enumerate(labels) if not isinstance(v, int | float | np.number)), 0
        )
        raise UserError(
            f"{where}, key '{key}': labels must be numbers, got dtype {labels.dtype} "
            f"(e.g. {labels[bad]!r} at index {bad}); store sentiment scores as floats"
        )
    labels = labels.astype(np.float32)
    bad = ~np.isfinite(labels)
    if bad.any():
        raise UserError(
            f"{where}, key '{key}': {int(bad.sum())} non-finite label(s), first at index "
            f"{int(np.flatnonzero(bad)[0])}; fix or drop those samples"
        )
    lo, hi = LABEL_RANGE
    out = (labels < lo - 1e-4) | (labels > hi + 1e-4)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise UserError(
            f"{where}, key '{key}': {int(out.sum())} label(s) outside [{lo:g}, {hi:g}] "
            f"(e.g. {labels[i]:g} at index {i}); sentiment labels must be on the [-3, 3] scale"
        )
    return np.clip(labels, lo, hi)


def empty_modality_warning(split: str, modality: str, kind: str) -> str:
    """The one wording of the 'this modality carries nothing' warning (import and ``info``)."""
    what = (
        "every value was NaN/inf and is now 0" if kind == "all non-finite" else "every value is 0"
    )
    return (
        f"split '{split}', modality '{modality}' is {kind.upper()} ({what}): it carries no "
        "information there; check the source file"
    )


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
    empty: dict[str, str] = {}
    for m in MODALITIES:
        features[m], replaced[m], kind = _read_modality(raw, m, where)
        if kind:
            empty[m] = kind

    n = features["text"].shape[0]
    seq_len = features["text"].shape[1]
    for m, x in features.items():
        if x.shape[0] != n or x.shape[1] != seq_len:
            raise UserError(
                f"{where}, key '{m}': shape {x.shape} does not match text {features['text'].shape} "
                "in samples (N) or steps (L); modalities must be word-aligned"
            )
    if n == 0:
        raise UserError(f"{where} is empty (0 samples)")

    labels = _read_labels(raw, label_key, n, where)
    ids = _ids_to_str(raw.get("id"), n, split, where)
    return CanonicalSplit(
        features=features,
        labels=labels,
        ids=ids,
        lengths=valid_lengths(features),
        nonfinite_replaced=replaced,
        empty_modalities=empty,
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
