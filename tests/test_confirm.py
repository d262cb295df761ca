"""The confirm stage's laws (tune_m3/search/confirm.py): candidates, points, ranking, separation."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml

from tune_m3.errors import UserError
from tune_m3.names import COMPLETED, FAILED, SCHEDULER_STOPPED
from tune_m3.search.confirm import CONFIRM_OF, candidates, points, ranking, separation
from tune_m3.search.space import POINT, load_space


def _space(tmp_path, **extra):
    spec = {
        "dataset": {"name": "tiny"},
        "search": {"p_mask": {"uniform": [0.0, 0.5]}, "pi_text": {"uniform": [0.2, 0.8]}},
        "confirm": {"top_k": 2, "seeds": [1, 2, 3]},
        **extra,
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(spec))
    return load_space(str(tmp_path / "c.yaml"))


def _search_rows():
    return pd.DataFrame(
        {
            "trial_id": ["a", "b", "c", "d"],
            "run_id": ["ra", "rb", "rc", "rd"],
            "stage": "search",
            "status": [COMPLETED, FAILED, SCHEDULER_STOPPED, COMPLETED],
            "param_p_mask": [0.1, 0.05, 0.3, 0.2],
            "param_pi_text": [0.5, 0.5, 0.6, 0.7],
            "val_mae": [0.30, 0.10, 0.29, 0.31],
        }
    )


def test_candidates_are_the_top_k_that_did_not_fail(tmp_path):
    space = _space(tmp_path)
    c = candidates(_search_rows(), space)
    assert list(c["trial_id"]) == ["c", "a"]  # b failed (its 0.10 does not count)


def test_points_cross_candidates_with_seeds_and_validate(tmp_path):
    space = _space(tmp_path)
    pts = points(candidates(_search_rows(), space), space)
    assert len(pts) == 2 * 3
    assert {p["seed"] for p in pts} == {1, 2, 3} and {p[CONFIRM_OF] for p in pts} == {"rc", "ra"}
    values = space.trial_values({POINT: pts[0]})
    assert values["seed"] == 1 and values["p_mask"] == 0.3 and "_confirm_of" not in values
    assert values["pi_audio"] == pytest.approx(0.2)


def test_ranking_is_the_mean_over_seeds_and_the_gap_in_seed_stds():
    rows = []
    for of, vals in {"ra": [0.30, 0.32, 0.34], "rc": [0.28, 0.36, 0.35]}.items():
        for seed, v in enumerate(vals, 1):
            rows.append(
                {
                    "stage": "confirm",
                    "status": COMPLETED,
                    "confirm_of": of,
                    "confirm_trial": of[1],
                    "param_p_mask": 0.1,
                    "param_seed": seed,
                    "val_mae": v,
                    "test_mae": v + 0.01,
                }
            )
    rank = ranking(pd.DataFrame(rows), "val_mae", "min")
    assert list(rank["confirm_of"]) == ["ra", "rc"]  # 0.32 < 0.33: the single best run (0.28) loses
    assert rank.loc[0, "val_mae_mean"] == pytest.approx(0.32)
    assert rank.loc[0, "val_mae_std"] == pytest.approx(0.02)
    s2 = pd.Series([0.28, 0.36, 0.35]).std()
    assert separation(rank, "val_mae") == pytest.approx(0.01 / math.sqrt((0.02**2 + s2**2) / 2))
    assert "param_seed" not in rank
    assert math.isnan(separation(rank.head(1), "val_mae"))


@pytest.mark.parametrize(
    "confirm, msg",
    [
        ({"top_k": 0, "seeds": [1]}, "top_k"),
        ({"top_k": 2, "seeds": []}, "seeds"),
        ({"top_k": 2}, "seeds"),
    ],
)
def test_bad_confirm_blocks_are_refused(tmp_path, confirm, msg):
    with pytest.raises(UserError, match=msg):
        _space(tmp_path, confirm=confirm)
