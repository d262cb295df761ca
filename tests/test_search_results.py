"""tune_m3/search/results.py without Ray: trial ids, best epoch, the winner."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tune_m3.names import COMPLETED, FAILED, KILLED, SCHEDULER_STOPPED
from tune_m3.search.results import best_row, last_row, pick_best, trial_id_from_path


@pytest.mark.parametrize(
    "path, expect",
    [
        (
            "/r/ray/s/run_trial_ee0a3293_3_p_mask=0.2406,pi_text=0.5875_2026-11-24_14-47-16",
            "ee0a3293",
        ),
        ("run_trial_9f3a2_00001_1_p_mask=0.2", "9f3a2_00001"),  # Ray before 2.60
        ("/r/ray/s/run_trial_ee0a3293/", "ee0a3293"),
        ("/r/ray/s/tuner.pkl", None),
        (None, None),
    ],
)
def test_trial_id_from_ray_folder(path, expect):
    assert trial_id_from_path(path) == expect


def test_best_row_is_the_best_epoch_not_the_last():
    h = pd.DataFrame({"epoch": [1, 2, 3], "val_mae": [0.5, 0.3, 0.4], "val_corr": [0.1, 0.2, 0.3]})
    assert best_row(h, "val_mae", "min")["epoch"] == 2
    assert best_row(h, "val_corr", "max")["epoch"] == 3
    assert last_row(h)["epoch"] == 3
    nan = h.assign(val_mae=[math.nan, math.nan, math.nan])
    assert best_row(nan, "val_mae", "min") == {} and best_row(None, "val_mae", "min") == {}


def test_pick_best_leaves_out_failed_and_killed_trials():
    df = pd.DataFrame(
        {
            "status": [FAILED, KILLED, SCHEDULER_STOPPED, COMPLETED],
            "val_mae": [0.1, 0.2, 0.35, 0.3],
        }
    )
    assert pick_best(df, "val_mae", "min").name == 3
    assert pick_best(df.iloc[:2], "val_mae", "min") is None
