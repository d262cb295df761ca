"""MultiBench's two robustness numbers (Liang et al., NeurIPS 2021 Datasets & Benchmarks).

MultiBench (``pliang279/MultiBench``, ``eval_scripts/robustness.py``) summarises a model's
performance-versus-imperfection curve ``f(x_0 = 0), f(x_1), ..., f(x_K)`` (``x_0`` clean,
higher ``f`` better) by two numbers:

- **relative robustness**, the area under the curve by the trapezoid rule::

      RR = sum_{i<K} (x_{i+1} - x_i) * (f(x_i) + f(x_{i+1})) / 2

  MultiBench samples the imperfection at x = 0, 0.1, 0.2, ... and writes the step as the
  constant 0.1; with our fractions (a fraction of test samples with the modality missing or
  noisy, in [0, 1]) the step is the actual spacing, which is the same number on MultiBench's
  grid (``search_spaces/missing_rate_curve_mosi.yaml`` tests at 0, 0.1, ..., 0.9).
- **effective robustness**, the performance under imperfection beyond what a reference model
  with the same clean performance would keep: the reference curve ``g`` is shifted to start at
  ``f(x_0)`` and the differences are summed over the sampled levels (a sum, not an area)::

      ER = sum_{i=0..K} (f(x_i) - (g(x_i) + f(x_0) - g(x_0)))
         = sum_{i=1..K} ((f(x_i) - f(x_0)) - (g(x_i) - g(x_0)))

  MultiBench's reference is its late-fusion model (LF); here it is the ``baseline`` training
  regime of the same model (no masking, no perturbation), so ER says what a training regime
  buys under imperfection beyond its change of clean performance. ER of the reference is 0.

MultiBench then min-max normalises each number across the methods of its leaderboard; that is
not done here (it would make a run's number depend on which other runs are in the report).
Units: those of ``f`` (Corr: Pearson r; F1: %) times the fraction for RR, of ``f`` for ER.

The diagnostics log ``diag_test_<modality>_<kind>_auc_<metric>``: the same area divided by the
largest fraction (a mean level); ``RR = auc * x_K``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tune_m3.names import diag_key

__all__ = ["curve_columns", "curves", "effective_robustness", "relative_robustness"]


def relative_robustness(xs: Sequence[float], ys: np.ndarray) -> np.ndarray:
    """Trapezoid area under ``ys`` over ``xs`` (the law in the module doc).

    ``xs``: (K+1,) increasing imperfection levels starting at 0 (clean); ``ys``: (..., K+1)
    curves, higher = better. Returns (...,). NaN where a curve has a NaN.
    """
    x = np.asarray(xs, dtype=float)  # (K+1,)
    y = np.asarray(ys, dtype=float)  # (..., K+1)
    if x.ndim != 1 or x.size < 2 or y.shape[-1] != x.size or np.any(np.diff(x) <= 0):
        raise ValueError("relative_robustness needs >= 2 increasing levels, one value per level")
    return ((y[..., 1:] + y[..., :-1]) / 2 * np.diff(x)).sum(axis=-1)


def effective_robustness(ys: np.ndarray, reference: Sequence[float]) -> np.ndarray:
    """Sum over levels of ``ys`` minus the reference curve shifted to the same clean value.

    ``ys``: (..., K+1) curves with the clean value first; ``reference``: (K+1,) the reference
    curve at the same levels. Returns (...,): 0 for a curve parallel to the reference.
    """
    y = np.asarray(ys, dtype=float)  # (..., K+1)
    g = np.asarray(reference, dtype=float)  # (K+1,)
    if g.shape != y.shape[-1:]:
        raise ValueError(f"reference has {g.size} levels, the curves {y.shape[-1]}")
    shifted = g + (y[..., :1] - g[0])  # (..., K+1): the reference from the curve's clean value
    return (y - shifted).sum(axis=-1)


def curve_columns(modality: str, kind: str, metric: str, pcts: Sequence[str]) -> list[str]:
    """The columns of a run's curve: the clean ``test_<metric>`` then the perturbed values."""
    return [f"test_{metric}", *(diag_key(modality, kind, p, metric) for p in pcts)]


def curves(
    done: pd.DataFrame, modality: str, kind: str, metric: str, pcts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``(xs, ys)`` of every run: xs (K+1,) fractions in [0, 1] (0 = clean), ys (runs, K+1)."""
    cols = curve_columns(modality, kind, metric, pcts)
    data = done.reindex(columns=cols)  # a missing column is all NaN
    xs = np.array([0.0, *(float(p) / 100 for p in pcts)])  # (K+1,)
    return xs, data.to_numpy(dtype=float)  # (runs, K+1)
