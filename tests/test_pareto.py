"""Pareto sets and hypervolume (tune_m3/pareto.py) against hand computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tune_m3.pareto import hypervolume, non_dominated, pareto_rows, reference_point


def test_non_dominated_min_min():
    v = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [2, 2], [np.nan, 0]])
    assert non_dominated(v, ["min", "min"]).tolist() == [True, True, True, False, True, False]


def test_max_objective_flips():
    v = np.array([[0.30, 80.0], [0.28, 70.0], [0.31, 79.0]])  # mae min, acc max
    assert non_dominated(v, ["min", "max"]).tolist() == [True, True, False]


def test_hypervolume_two_d_by_hand():
    pts = np.array([[1.0, 3.0], [2.0, 1.0]])
    # union of [1,4]x[3,4] (3) and [2,4]x[1,4] (6), overlapping in [2,4]x[3,4] (2): 7
    assert hypervolume(pts, [4.0, 4.0], ["min", "min"]) == pytest.approx(7.0)
    assert hypervolume(pts[:1], [4.0, 4.0], ["min", "min"]) == pytest.approx(3.0)
    assert hypervolume(np.array([[5.0, 0.0]]), [4.0, 4.0], ["min", "min"]) == 0.0


def test_hypervolume_three_d_matches_monte_carlo():
    rng = np.random.default_rng(0)
    pts = rng.random((6, 3))
    ref = np.ones(3)
    samples = rng.random((200_000, 3))
    dominated = (pts[None, :, :] <= samples[:, None, :]).all(axis=2).any(axis=1)
    assert hypervolume(pts, ref, ["min"] * 3) == pytest.approx(dominated.mean(), abs=0.01)


def test_reference_is_the_worst_and_rows_keep_the_front():
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [3.0, 1.0, 3.5]})
    assert reference_point(df.to_numpy(), ["min", "min"]).tolist() == [3.0, 3.5]
    assert list(pareto_rows(df, [("a", "min"), ("b", "min")]).index) == [0, 1]
