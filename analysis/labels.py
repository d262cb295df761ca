"""The words, orders and decimals the tables and plots print: one home for each.

Metric names and their decimals (``acc2`` -> ``Acc2``, 2 decimals; 3 when not listed), masking
schemes by the M3 paper's names and in its row order, schemes as training regimes (the
robustness paper's Table 1 rows) and the diagnostics by the robustness paper's words.
"""

from __future__ import annotations

from tune_m3.names import DIAG_KINDS

__all__ = [
    "DECIMALS",
    "DIAG_LABELS",
    "KINDS",
    "METRIC_LABELS",
    "REGIME_SCHEME",
    "SCHEME_LABELS",
    "SCHEME_ORDER",
    "scheme_label",
    "scheme_rank",
]

METRIC_LABELS = {
    "acc2": "Acc2",
    "f1": "F1",
    "acc7": "Acc7",
    "acc5": "Acc5",
    "corr": "Corr",
    "mae": "MAE",
    "acc2_has0": "Acc2 (has-0)",
    "f1_has0": "F1 (has-0)",
}
DECIMALS = {"acc2": 2, "f1": 2, "acc7": 2, "acc5": 2, "acc2_has0": 2, "f1_has0": 2}  # else 3
SCHEME_LABELS = {
    "none": "Baseline",
    "baseline": "Baseline",
    "random_mask": "Random Mask",
    "soft_m3": "Soft M3",
    "m3": "M3",
}
SCHEME_ORDER = ["none", "random_mask", "soft_m3", "m3"]
# a masking scheme as a training regime (Robustness Table 1 rows)
REGIME_SCHEME = {"m3": "M3", "soft_m3": "soft M3", "random_mask": "random mask"}
DIAG_LABELS = {"clean": "clean", "missing": "missing", "noisy": "noise"}  # the paper's words
KINDS: tuple[str, ...] = DIAG_KINDS


def scheme_label(scheme: object) -> str:
    """The paper's name of a masking scheme (``m3`` -> ``M3``); an unknown one as it is."""
    return SCHEME_LABELS.get(str(scheme), str(scheme))


def scheme_rank(scheme: object) -> int:
    """A scheme's place in the papers' row order (:data:`SCHEME_ORDER`); 99 when unknown."""
    s = str(scheme)
    return SCHEME_ORDER.index(s) if s in SCHEME_ORDER else 99
