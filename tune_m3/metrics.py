"""Sentiment-regression metrics of CMU-MOSI / CMU-MOSEI, with both binary conventions.

``compute_metrics(preds, labels)`` returns exactly these keys (``METRIC_NAMES``, in this order):

    mae        mean absolute error, in label units (sentiment scale [-3, 3]); lower is better
    corr       Pearson correlation r between predictions and labels, in [-1, 1]
    acc7       7-class accuracy in %: both clipped to [-3, 3] and rounded to integers
    acc5       5-class accuracy in %: both clipped to [-2, 2] and rounded to integers
    acc2       binary accuracy in %, NON-ZERO convention: samples with label == 0 are dropped,
               negative = label < 0, positive = label > 0, predicted positive iff pred > 0
    f1         weighted F1 in %, same samples and classes as acc2
    acc2_has0  binary accuracy in %, HAS-ZERO convention: all samples, negative = < 0 versus
               non-negative = >= 0 (for labels and predictions alike)
    f1_has0    weighted F1 in %, same samples and classes as acc2_has0

The two conventions and their names in MMSA (``metricsTop``), whose values these equal:

    acc2 / f1             Non0_acc_2 / Non0_F1_score
    acc2_has0 / f1_has0   Has0_acc_2 / Has0_F1_score

The non-zero convention is the M3 paper's ("negative in [-3, 0), positive in (0, 3]"); the
has-zero convention is the other one found in the literature (MISA, Self-MM report both). The two
differ only when some labels are exactly 0. MulT's evaluation code (``eval_mosei_senti`` with
``exclude_zero=True``, also used by the robustness paper's code) selects the same samples and
classes as ``acc2``, so its accuracy equals ``acc2``, but its F1 does NOT equal ``f1``: it calls
``f1_score(preds > 0, truth > 0, average="weighted")`` with the arguments swapped, which weights
the classes by their *predicted* support. Published MulT-style F1s can therefore differ from
``f1`` (see docs/fidelity.md for the measured size); compare with them with care.

Surprises, stated plainly:

- Rounding for acc7/acc5 is ``np.round``, i.e. half to even (0.5 -> 0, 1.5 -> 2, 2.5 -> 2), as in
  MulT's code; a label of 0.5 is class 0, not 1.
- Weighted F1 follows ``sklearn.metrics.f1_score(average="weighted")``: per-class F1 over the
  classes present in truth or predictions, weighted by true support; a class with no true
  positives scores 0. Implemented with numpy (no sklearn dependency).
- Degenerate inputs do not crash: constant predictions or constant labels give ``corr = nan``,
  and a set whose labels are all 0 gives ``acc2 = f1 = nan``; each case emits one
  :class:`MetricWarning` (a ``RuntimeWarning``). Empty input, mismatched shapes and non-finite
  values raise ``ValueError``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from tune_m3.failures import NonFinitePredictions

METRIC_NAMES: tuple[str, ...] = (
    "mae",
    "corr",
    "acc7",
    "acc5",
    "acc2",
    "f1",
    "acc2_has0",
    "f1_has0",
)
HEADLINE: tuple[str, ...] = ("acc2", "f1", "acc7", "corr", "mae")
LOWER_IS_BETTER: frozenset[str] = frozenset({"mae"})

__all__ = ["HEADLINE", "LOWER_IS_BETTER", "METRIC_NAMES", "MetricWarning", "compute_metrics"]


class MetricWarning(RuntimeWarning):
    """A metric is undefined on this input and was returned as NaN."""


def _as_array(x: Any, name: str, error: type[ValueError] = ValueError) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors, possibly on a GPU or requiring grad
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.isfinite(arr).sum())
        raise error(f"{name}: {bad} of {arr.size} values are NaN or infinite")
    return arr


def _weighted_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """sklearn's f1_score(truth, pred, average="weighted") for boolean arrays, in [0, 1]."""
    score = 0.0
    for c in np.unique(np.concatenate([truth, pred])):
        tp = np.sum((pred == c) & (truth == c))
        fp = np.sum((pred == c) & (truth != c))
        fn = np.sum((pred != c) & (truth == c))
        support = tp + fn
        # F1 = 2PR / (P + R) = 2tp / (2tp + fp + fn); 0 when tp == 0, whatever P and R are
        score += support * (2 * tp / (2 * tp + fp + fn))
    return float(score / truth.size)


def _binary(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(accuracy %, weighted F1 %) of boolean class arrays."""
    return 100.0 * float(np.mean(truth == pred)), 100.0 * _weighted_f1(truth, pred)


def _multiclass_acc(preds: np.ndarray, labels: np.ndarray, bound: float) -> float:
    p = np.round(np.clip(preds, -bound, bound))
    y = np.round(np.clip(labels, -bound, bound))
    return 100.0 * float(np.mean(p == y))


def compute_metrics(preds: Any, labels: Any) -> dict[str, float]:
    """All metrics of the project's vocabulary (see the module docstring) for one prediction set.

    Args:
        preds: predicted sentiment scores, array-like of shape (N,) (numpy, list, torch tensor).
        labels: true sentiment scores, same shape.

    Returns:
        ``{name: float}`` with exactly the keys of ``METRIC_NAMES``, in that order. Accuracies and
        F1 are percentages; mae is in label units; corr is unitless.

    Raises:
        ValueError: empty input, shapes that differ, or NaN/inf in preds or labels.
    """
    # a model that predicts NaN does so again when retried: a trial failure, not retried
    p = _as_array(preds, "the model's predictions", NonFinitePredictions)
    y = _as_array(labels, "labels")
    if p.shape != y.shape:
        raise ValueError(f"preds and labels must have the same shape; got {p.shape} and {y.shape}")
    if p.size == 0:
        raise ValueError("preds and labels are empty")
    p, y = p.ravel(), y.ravel()

    if np.ptp(p) == 0 or np.ptp(y) == 0:
        which = " and ".join(
            name for name, a in (("predictions", p), ("labels", y)) if np.ptp(a) == 0
        )
        warnings.warn(
            f"corr is undefined (NaN): the {which} are constant", MetricWarning, stacklevel=2
        )
        corr = float("nan")
    else:
        pc, yc = p - p.mean(), y - y.mean()
        corr = float(np.clip(pc @ yc / np.sqrt((pc @ pc) * (yc @ yc)), -1.0, 1.0))

    nonzero = y != 0
    if nonzero.any():
        acc2, f1 = _binary(y[nonzero] > 0, p[nonzero] > 0)
    else:
        warnings.warn(
            "acc2 and f1 are undefined (NaN): every label is 0, and the non-zero convention "
            "drops zero labels (acc2_has0/f1_has0 are still defined)",
            MetricWarning,
            stacklevel=2,
        )
        acc2 = f1 = float("nan")
    acc2_has0, f1_has0 = _binary(y >= 0, p >= 0)

    return {
        "mae": float(np.mean(np.abs(p - y))),
        "corr": corr,
        "acc7": _multiclass_acc(p, y, 3.0),
        "acc5": _multiclass_acc(p, y, 2.0),
        "acc2": acc2,
        "f1": f1,
        "acc2_has0": acc2_has0,
        "f1_has0": f1_has0,
    }
