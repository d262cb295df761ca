"""The persisted Optuna study and the two-objective (clean vs robust) search, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from searchutil import TINY_FIXED, make_search_env, mlflow_runs, write_space
from test_lifecycle import cli

from tune_m3.names import TAG_PARETO
from tune_m3.pareto import non_dominated

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path):
    return make_search_env(tmp_path)


def _storage(env) -> str:
    return f"sqlite:///{env['TUNE_M3_RESULTS']}/optuna.db"


def test_plain_search_writes_a_study_optuna_can_load(env, tmp_path):
    space = write_space(
        tmp_path / "plain.yaml",
        search={"p_mask": {"uniform": [0.05, 0.5]}},
        fixed={**TINY_FIXED, "scheme": "m3", "max_epochs": 2},
        scheduler={"type": "fifo"},
        num_samples=3,
    )
    out = cli(env, "--space", str(space), "--name", "plain", timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"optuna-dashboard {_storage(env)}" in out.stdout
    study = optuna.load_study(study_name="plain", storage=_storage(env))
    assert len(study.trials) == 3 and len(study.directions) == 1
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}  # FIFO
    assert study.metric_names == ["val_mae"]
    # a new search may not take over that study
    again = cli(env, "--space", str(space), "--name", "plain", "--storage", str(tmp_path / "other"))
    assert again.returncode == 2 and "already holds a study named 'plain'" in again.stderr


def test_two_objectives_pareto_set_and_study(env, tmp_path):
    objectives = [
        {"metric": "val_mae", "mode": "min"},
        {"metric": "diag_val_text_missing_30_mae_drop", "mode": "min"},
    ]
    space = write_space(
        tmp_path / "pareto.yaml",
        search={"p_mask": {"uniform": [0.0, 0.6]}, "pi_text": {"uniform": [0.2, 0.9]}},
        fixed={**TINY_FIXED, "scheme": "m3", "max_epochs": 2},
        scheduler={"type": "fifo"},
        objectives=objectives,
        num_samples=5,
    )
    out = cli(env, "--space", str(space), "--name", "pareto", timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Pareto set (" in out.stdout and "hypervolume " in out.stdout
    study = optuna.load_study(study_name="pareto", storage=_storage(env))
    assert len(study.directions) == 2 and len(study.best_trials) >= 1
    assert study.metric_names == [o["metric"] for o in objectives]  # not "Objective 0, 1"
    df = pd.read_parquet(Path(env["TUNE_M3_RESULTS"]) / "ray" / "pareto" / "trials.parquet")
    cols = [o["metric"] for o in objectives]
    expect = set(df.loc[non_dominated(df[cols].to_numpy(float), ["min", "min"]), "run_id"])
    assert set(df.loc[df["pareto"], "run_id"]) == expect and expect
    c, parents, children = mlflow_runs(env, "pareto")
    tagged = {r.info.run_id for r in children if r.data.tags.get(TAG_PARETO) == "true"}
    assert tagged == expect
    assert "objectives" in parents[0].data.params
    assert np.isfinite(parents[0].data.metrics["pareto.hypervolume"])
    # each trial logged the validation diagnostic every epoch
    for r in children:
        hist = c.get_metric_history(r.info.run_id, cols[1])
        assert [m.step for m in hist] == [1, 2]
