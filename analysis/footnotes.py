"""The footnotes of tables that sit beside published numbers: where a convention differs.

One home for the wording, so that every table (and docs/analysis.md, which quotes them) says the
same thing. ``docs/fidelity.md`` has the full list of departures from the papers' code.
"""

from __future__ import annotations

__all__ = ["ACC_CONVENTION", "F1_SWAPPED", "SYNTHETIC_TITLE", "UNITS"]

#: our metric names versus the MMSA toolkit's (tune_m3/metrics.py equals MMSA's metricsTop)
ACC_CONVENTION = (
    "Acc2/F1 are MMSA's Non0_acc_2/Non0_F1_score (non-zero convention: neutral clips left out); "
    "Acc2 (has-0)/F1 (has-0) are MMSA's Has0_acc_2/Has0_F1_score"
)

#: MulT's and the robustness paper's evaluation code call f1_score with the arguments swapped
F1_SWAPPED = (
    "published F1 of MulT and of the robustness paper comes from f1_score(preds, truth) with the "
    "arguments swapped (classes weighted by predicted support): it can differ from ours by up "
    "to ~0.2 points on the same predictions"
)

UNITS = "Acc/F1 in %, Corr = Pearson r, MAE in label units"

SYNTHETIC_TITLE = (
    "SYNTHETIC data — published {dataset} numbers shown for shape only, "
    "not a like-for-like comparison"
)
