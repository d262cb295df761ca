"""Pareto sets and hypervolume for multi-objective searches (clean accuracy vs robustness).

Objectives are (metric, mode) pairs. Internally every objective is turned into "smaller is
better" (a ``max`` objective is negated), so one dominance rule serves all: point a dominates
b when a <= b in every objective and a < b in at least one.

Hypervolume: the volume of objective space dominated by the Pareto set and bounded by a
reference point r (also "smaller is better" after the flip): the Lebesgue measure of the union
of the boxes [p, r] over the set's points p. A larger hypervolume is a better front. Points not
strictly better than r in every objective add nothing. The reference is the space's
``reference`` if given, else the worst value of each objective over the trials (so the
trials that are worst in some objective add zero volume in it). Computed exactly by slicing
along the last objective (fine for the tens of trials a search has, and 2 to 4 objectives).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _as_min(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    sign = np.array([1.0 if m == "min" else -1.0 for m in modes])
    return values * sign  # (n, d)


def non_dominated(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """(n,) bool: True for the points no other point dominates (NaN rows are never in it)."""
    v = _as_min(np.asarray(values, dtype=float), modes)  # (n, d)
    ok = ~np.isnan(v).any(axis=1)
    out = np.zeros(len(v), dtype=bool)
    for i in np.flatnonzero(ok):
        others = v[ok]
        dominated = ((others <= v[i]).all(axis=1) & (others < v[i]).any(axis=1)).any()
        out[i] = not dominated
    return out


def pareto_rows(df: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """The rows of ``df`` on the Pareto front of ``objectives`` [(metric, mode), ...]."""
    cols = [m for m, _ in objectives]
    if df.empty or not set(cols) <= set(df.columns):
        return df.iloc[0:0]
    mask = non_dominated(df[cols].to_numpy(dtype=float), [m for _, m in objectives])
    return df[mask]


def reference_point(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """The worst value of each objective over the (finite) points, in the original units."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v).any(axis=1)]
    return np.array([v[:, j].max() if m == "min" else v[:, j].min() for j, m in enumerate(modes)])


def hypervolume(points: np.ndarray, reference: Sequence[float], modes: Sequence[str]) -> float:
    """Exact hypervolume of ``points`` (n, d) against ``reference`` (d,) (see module doc)."""
    p = _as_min(np.asarray(points, dtype=float), modes)
    r = _as_min(np.asarray(reference, dtype=float)[None, :], modes)[0]
    p = p[~np.isnan(p).any(axis=1)]
    p = p[(p < r).all(axis=1)]
    return float(_hv(p, r))


def _hv(p: np.ndarray, r: np.ndarray) -> float:
    if len(p) == 0:
        return 0.0
    if p.shape[1] == 1:
        return float(r[0] - p[:, 0].min())
    order = np.argsort(p[:, -1])  # slice along the last objective, best first
    p = p[order]
    vol = 0.0
    for i in range(len(p)):
        upper = p[i + 1, -1] if i + 1 < len(p) else r[-1]
        depth = upper - p[i, -1]
        if depth > 0:
            vol += depth * _hv(p[: i + 1, :-1], r[:-1])
    return vol
