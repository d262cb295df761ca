"""bench/bench_search_efficiency.py: the confirm-stage arithmetic, on hand-made trial rows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench_search_efficiency as se  # noqa: E402


def _t(pi, pm, seed, val, test, epochs, stage="search", of=None, tid=None, reason="early_stopping"):
    return {
        "trial_id": tid,
        "stage": stage,
        "confirm_trial": of,
        "status": "x",
        "stop_reason": reason,
        "pi_text": pi,
        "p_mask": pm,
        "seed": seed,
        "epochs": epochs,
        "best_val_mae": val,
        "best_epoch": 1,
        "test_mae": test,
        "error": "",
    }


def _result():
    grid = [  # two points x two seeds; (0.6, 0.1) is best by mean val_mae
        _t(0.33, 0.1, 0, 0.30, 0.32, 10),
        _t(0.33, 0.1, 1, 0.32, 0.34, 10),
        _t(0.6, 0.1, 0, 0.28, 0.30, 10),
        _t(0.6, 0.1, 1, 0.28, 0.31, 10),
    ]
    search = [
        _t(0.5, 0.2, 0, 0.27, 0.33, 4, tid="a"),  # the search's pick (lucky seed)
        _t(0.4, 0.3, 0, 0.29, 0.31, 3, tid="b", reason="asha"),
    ]
    confirm = [  # "a" is worse over seeds than "b": the confirm stage swaps them
        _t(0.5, 0.2, s, 0.30, 0.33, 1, "confirm", "a") for s in (0, 1)
    ] + [_t(0.4, 0.3, s, 0.28 + 0.01 * s, 0.305, 1, "confirm", "b") for s in (0, 1)]
    searches = {
        "grid": {"kind": "grid", "trials": grid, "wall_s": 10.0},
        "optuna_seed0": {
            "kind": "optuna_asha",
            "search_seed": 0,
            "trials": search + confirm,
            "wall_s": 5.0,
        },
    }
    settings = {"confirm_top_k": 2, "confirm_seeds": [0, 1], "max_epochs": 40, "patience": 10}
    settings["max_concurrent"] = 2
    return {"dataset": "synth_mosei_x0.05", "settings": settings, "searches": searches}


def test_confirm_ranking_winner_epochs_and_verdicts():
    sm = se.summarize(_result())
    assert sm["grid_epochs"] == 40
    best = sm["grid_best"]
    assert (best["pi_text"], best["p_mask"]) == (0.6, 0.1)
    assert best["test_mean"] == pytest.approx(0.305)
    # pooled test seed-std over the grid points: sqrt(mean(std^2)), std of (0.32, 0.34) and (0.30, 0.31)
    want_sd = ((0.02**2 / 2 + 0.01**2 / 2) / 2) ** 0.5
    assert sm["pooled_test_seed_std"] == pytest.approx(want_sd)
    row = sm["optuna"][0]
    assert row["epochs"] == 7 and row["trials"] == 2  # search stage only
    c = row["confirm"]
    assert (c["search_epochs"], c["confirm_epochs"]) == (7, 4)
    assert [r["confirm_of"] for r in c["ranking"]] == ["b", "a"]
    assert c["winner"]["val_mean"] == pytest.approx(0.285)
    assert c["top_k"]["share"] == pytest.approx(11 / 40)
    assert c["top_k"]["within"] and c["top_k"]["met"]  # 0.305 <= 0.305 + sd, 27.5 % <= 35 %
    one = c["top_1"]  # top_k = 1 confirms the search's own pick "a" only
    assert one["config"]["confirm_of"] == "a"
    assert one["share"] == pytest.approx(9 / 40)
    assert not one["within"]  # 0.33 > 0.305 + sd


def test_report_prints_the_confirm_table(capsys):
    se.print_report(_result())
    out = capsys.readouterr().out
    assert "| search seed | epochs: search + confirm (% of grid) |" in out
    assert "| 0 | 7 + 4 (27.5 %) | πT=0.4, pM=0.3 |" in out
    assert "Search + confirm met the target in 1 of 1 search seeds (top_k = 1: 0 of 1)." in out


def test_repeats_are_confirm_runs_on_the_search_seed_of_a_trial_that_ended_on_its_own(capsys):
    res = _result()
    c = se.summarize(res)["optuna"][0]["confirm"]
    # "a" (seed 0, early-stopped) is repeated by its seed-0 confirm run, which came out different
    # here; "b" was stopped by ASHA, so its seed-0 confirm run trains further: not a repeat
    assert c["repeats"] == [{"confirm_trial": "a", "epochs": 1, "identical": False}]
    assert c["without_repeats"]["share"] == pytest.approx(10 / 40)
    trials = res["searches"]["optuna_seed0"]["trials"]
    trial = next(t for t in trials if t["trial_id"] == "a")
    trial.update(best_val_mae=0.30, epochs=1)  # what a deterministic re-run gives: the same
    assert se.repeats(trials) == [{"confirm_trial": "a", "epochs": 1, "identical": True}]
    se.print_report(res)  # search 4 + confirm 4 epochs, less the repeat's 1: 7 of 40
    assert "| 0 | 4 + 4 (20.0 %) |" in (out := capsys.readouterr().out)
    assert "| 1 of 1, 1; 17.5 %, yes |" in out


def test_read_trials_knows_every_status_the_search_writes(tmp_path):
    import math

    import pandas as pd

    from tune_m3 import names

    statuses = [names.COMPLETED, names.EARLY_STOPPED, names.SCHEDULER_STOPPED, names.FAILED]
    df = pd.DataFrame(
        {
            "trial_id": ["t1", "t2", "t3", "t4"],
            "stage": [names.STAGE_SEARCH] * 3 + [names.STAGE_CONFIRM],
            "status": statuses,
            "param_pi_text": [0.33] * 4,
            "param_p_mask": [0.1, 0.2, 0.3, 0.1],
            "param_seed": [0, 0, 0, 1],
            "epochs": [40, 12, 3, 0],
            "val_mae": [0.28, 0.29, 0.31, math.nan],
            "best_epoch_metric": [30, 2, 3, math.nan],
            "test_mae": [0.30, 0.31, math.nan, math.nan],
            "error": ["", "", "", "boom"],
            "confirm_trial": [None, None, None, "t1"],
        }
    )
    df.to_parquet(tmp_path / "trials.parquet")
    rows = se.read_trials(tmp_path / "trials.parquet")
    assert [r["stop_reason"] for r in rows] == ["max_epochs", "early_stopping", "asha", "failed"]
    assert [r["stage"] for r in rows] == ["search", "search", "search", "confirm"]
    assert rows[0]["best_val_mae"] == 0.28 and rows[3]["best_val_mae"] is None
    assert rows[3]["confirm_trial"] == "t1" and rows[3]["error"] == "boom"


def test_a_winner_just_past_one_seed_std_is_not_within():
    res = _result()
    sm = se.summarize(res)
    limit = sm["grid_best"]["test_mean"] + sm["pooled_test_seed_std"]
    for t in res["searches"]["optuna_seed0"]["trials"]:
        if t["stage"] == "confirm" and t["confirm_trial"] == "b":
            t["test_mae"] = limit + 1e-4
    c = se.summarize(res)["optuna"][0]["confirm"]
    assert c["winner"]["confirm_of"] == "b" and not c["top_k"]["within"]
    assert not c["top_k"]["met"]
