"""The published feature-file layouts, validated and turned into one canonical form.

Two layouts of CMU-MOSEI/MOSI features are in common use, each word-aligned or unaligned:

``mult`` (MulT / MultiBench: ``mosei_senti_data.pkl``, ``mosi_data.pkl``, ``*_noalign.pkl``)
    ``{"train"|"valid"|"test": {"text": (N, L_t, 300), "audio": (N, L_a, d_a), "vision":
    (N, L_v, d_v), "labels": (N, 1, 1), "id": (N, ...)}}``; d_a/d_v are 74/35 for MOSEI and
    5/20 for MOSI. Aligned: L_t = L_a = L_v = 50. ``*_noalign.pkl``: e.g. 50/500/500 (MOSEI).
    FRONT-padded (zero steps first) in both.

``mmsa`` (MMSA / Self-MM: ``aligned_50.pkl``, ``unaligned_50.pkl``)
    same splits, keys ``text``, ``audio``, ``vision``, ``regression_labels`` (N,), ``id``, and
    ``raw_text``, ``audio_lengths``, ``vision_lengths``, ``text_bert`` (N, 3, L_t) (token ids,
    attention mask, segment ids). The unaligned file is END-padded (valid steps first; see
    :func:`_mmsa_unaligned` for the evidence) and is converted to front padding here.

The layout is unaligned when the three step counts differ; nothing else needs saying. Both
become a :class:`CanonicalSplit` per split: float32 features ``(N, L_m, d_m)`` keyed by
modality, labels ``(N,)``, string ids ``(N,)``, valid lengths ``(N,)`` per modality. Dims and
steps are read from the file, never assumed. Real-data quirks are handled here, once:

- non-finite feature values (MOSEI audio has -inf and NaN) are replaced by 0 and counted; a
  modality that is all zeros or all non-finite in a split is kept but reported loudly;
- labels must be numbers, finite and inside [-3, 3] (the annotation scale); anything else is an
  error, and so is a modality with 0 steps;
- sequences are stored front-padded with all-zero steps. Aligned: a sample's valid length is L
  minus its leading steps that are zero in every modality (at least 1, so an all-zero sample
  still has one step to read), the same for every modality. Unaligned: one length per modality,
  from that modality's leading zero steps (mult) or the file's length arrays (mmsa; text from
  ``text_bert``'s mask, else its trailing zero steps), again at least 1.
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
    lengths: np.ndarray  # (N,) int32, valid (non-padded) steps of text, 1..L_text
    nonfinite_replaced: dict[str, int] = field(default_factory=dict)  # modality -> count
    empty_modalities: dict[str, str] = field(default_factory=dict)  # modality -> "all zeros" | ...
    # modality -> (N,) int32 valid steps, 1..L_m; empty for aligned data (all equal ``lengths``)
    modality_lengths: dict[str, np.ndarray] = field(default_factory=dict)
    # modality -> samples whose non-zero steps past their stated length were dropped (MMSA only)
    padding_dropped: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])

    def lengths_of(self, modality: str) -> np.ndarray:
        """(N,) valid steps of one modality (aligned data: the shared ``lengths``)."""
        return self.modality_lengths.get(modality, self.lengths)

    @property
    def seq_lens(self) -> dict[str, int]:
        return {m: int(x.shape[1]) for m, x in self.features.items()}


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
    for m, x in features.items():
        if x.shape[0] != n:
            raise UserError(
                f"{where}, key '{m}': shape {x.shape} does not match text {features['text'].shape} "
                f"in samples (N): {x.shape[0]} vs {n}; every modality needs one entry per sample"
            )
    if n == 0:
        raise UserError(f"{where} is empty (0 samples)")

    labels = _read_labels(raw, label_key, n, where)
    ids = _ids_to_str(raw.get("id"), n, split, where)
    out = CanonicalSplit(
        features=features,
        labels=labels,
        ids=ids,
        lengths=np.zeros(0, np.int32),  # set below
        nonfinite_replaced=replaced,
        empty_modalities=empty,
    )
    if len(set(out.seq_lens.values())) == 1:  # word-aligned: one length per sample
        out.lengths = valid_lengths(features)
    elif fmt == "mult":  # MulT *_noalign.pkl: front-padded like the aligned file
        out.modality_lengths = {m: valid_lengths({m: x}) for m, x in features.items()}
    else:  # MMSA unaligned_*.pkl: end-padded; converted to front padding here
        _mmsa_unaligned(raw, out, where)
    if out.modality_lengths:
        out.lengths = out.modality_lengths["text"]
    return out


# ----------------------------------------------------------------------------- unaligned

_CHUNK = 1024  # samples converted at once (bounds temporary memory)


def _read_lengths(value: Any, n: int, steps: int, where: str, key: str) -> np.ndarray:
    """(N,) int32 valid lengths from a file's length array; every problem names split and key."""
    try:
        arr = np.asarray(value)
    except Exception as err:  # ragged lists and the like
        raise UserError(f"{where}, key '{key}': not an array ({err})") from None
    if arr.ndim == 2 and arr.shape[1:] == (1,):
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != n:
        raise UserError(
            f"{where}, key '{key}': shape {arr.shape} does not give one length per sample ({n})"
        )
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise UserError(f"{where}, key '{key}': expected whole numbers, got dtype {arr.dtype}")
    if (arr != np.round(arr)).any():
        i = int(np.flatnonzero(arr != np.round(arr))[0])
        raise UserError(f"{where}, key '{key}': {arr[i]!r} at index {i} is not a whole number")
    for bad, what in ((arr < 0, "negative"), (arr > steps, f"longer than the {steps} steps")):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"{where}, key '{key}': {int(bad.sum())} length(s) {what} of the array "
                f"(e.g. {int(arr[i])} at index {i}); lengths count valid steps, 0..{steps}"
            )
    return np.maximum(arr, 1).astype(np.int32)  # at least 1, as for aligned data


def _end_padded_lengths(x: np.ndarray) -> np.ndarray:
    """Valid length of each end-padded sample: steps before the trailing all-zero steps. (N,)"""
    used = np.any(x != 0, axis=2)  # (N, L)
    last = np.argmax(used[:, ::-1], axis=1)  # trailing unused steps
    return np.where(used.any(axis=1), x.shape[1] - last, 1).astype(np.int32)


def end_to_front(x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, int]:
    """Move each sample's first ``lengths[b]`` steps to the end (front padding); zero the rest.

    Returns the (N, L, d) front-padded copy and how many samples had a non-zero step at or
    after their length (those steps are dropped: the length array is the authority).
    """
    n, L, _ = x.shape
    out = np.empty_like(x)
    dropped = 0
    t = np.arange(L)
    for lo in range(0, n, _CHUNK):
        xb, lb = x[lo : lo + _CHUNK], lengths[lo : lo + _CHUNK].astype(np.int64)
        src = t[None, :] - (L - lb)[:, None]  # (b, L): source step of each target step
        keep = src >= 0  # (b, L): the target step is valid
        g = np.take_along_axis(xb, np.maximum(src, 0)[..., None], axis=1)  # (b, L, d)
        out[lo : lo + _CHUNK] = np.where(keep[..., None], g, 0)
        past = np.any(xb != 0, axis=2) & (t[None, :] >= lb[:, None])  # (b, L)
        dropped += int(past.any(axis=1).sum())
    return out, dropped


def _looks_front_padded(x: np.ndarray, lengths: np.ndarray) -> bool:
    """Most samples shorter than L start with a zero step and end with data: front padding."""
    short = lengths < x.shape[1]
    if not short.any():
        return False
    first_zero = ~np.any(x[short, 0] != 0, axis=1)
    last_used = np.any(x[short, -1] != 0, axis=1)
    return bool(np.mean(first_zero & last_used) > 0.5)


def _mmsa_unaligned(raw: Mapping[str, Any], out: CanonicalSplit, where: str) -> None:
    """MMSA ``unaligned_*.pkl``: per-modality lengths, end padding converted to front padding.

    MMSA stores valid steps FIRST (end padding): its ``data/getLengths.py`` sets
    ``audio_lengths`` / ``vision_lengths`` to the index of the first step whose features sum to 0,
    and its models read them with ``pack_padded_sequence`` (the first ``l`` steps). Text has no
    length key: it comes from ``text_bert``'s attention-mask row (index 1) when present, as MMSA's
    Self-MM does, else from the trailing all-zero steps.
    """
    n = out.size
    seq_lens = out.seq_lens
    lengths: dict[str, np.ndarray] = {}
    from_file: set[str] = set()  # modalities whose lengths the file states (drops are reported)
    for m in MODALITIES:
        key = f"{m}_lengths"
        if m == "text" and key not in raw:
            # BERT's padding positions hold non-zero outputs: the mask says where text ends
            bert = np.asarray(raw.get("text_bert", np.zeros(0)))
            if bert.ndim == 3 and bert.shape[:2] == (n, 3) and bert.shape[2] == seq_lens[m]:
                key = "text_bert"
                lengths[m] = _read_lengths(bert[:, 1].sum(axis=1), n, seq_lens[m], where, key)
            else:
                lengths[m] = _end_padded_lengths(out.features[m])
            continue
        from_file.add(m)
        if key not in raw:
            raise UserError(
                f"{where} has a different number of steps per modality ({_steps(seq_lens)}): "
                f"unaligned features, but no key '{key}'; MMSA's unaligned files carry "
                "'audio_lengths' and 'vision_lengths' (a MulT *_noalign.pkl needs --format mult)"
            )
        lengths[m] = _read_lengths(raw[key], n, seq_lens[m], where, key)
    for m, lm in lengths.items():
        if _looks_front_padded(out.features[m], lm):
            raise UserError(
                f"{where}, key '{m}': the sequences look FRONT-padded (most samples shorter than "
                f"{seq_lens[m]} steps start with zeros and end with data), but MMSA's unaligned "
                "files are end-padded (valid steps first); for a front-padded file use --format mult"
            )
        out.features[m], dropped = end_to_front(out.features[m], lm)
        if dropped and m in from_file:
            out.padding_dropped[m] = dropped
    out.modality_lengths = lengths


def _steps(seq_lens: Mapping[str, int]) -> str:
    return ", ".join(f"{m} {L}" for m, L in seq_lens.items())


def padding_dropped_warning(split: str, modality: str, count: int) -> str:
    return (
        f"split '{split}', modality '{modality}': {count} sample(s) had non-zero steps after "
        f"their '{modality}_lengths'; those steps were dropped (MMSA counts a sequence up to its "
        "first step whose features sum to 0)"
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
    first = SPLITS[0]
    for s, sp in splits.items():
        for m, steps in sp.seq_lens.items():
            if steps != splits[first].seq_lens[m]:
                raise UserError(
                    f"{source}: split '{s}', key '{m}': {steps} steps, but {splits[first].seq_lens[m]} "
                    f"in split '{first}'; every split needs the same number of steps per modality"
                )
    return splits
