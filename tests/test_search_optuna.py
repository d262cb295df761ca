"""The persisted Optuna study and the two-objective (clean vs robust) search, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from searchutil import TINY_FIXED, make_search_env, mlflow_runs, write_space
from test_lifecycle import cli

from tune_m3.names import TAG_PARETO, TAG_STATUS
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
    # a new search may not take over that study (in a new --storage, pointed at it explicitly)
    other = ["--storage", str(tmp_path / "other"), "--optuna-storage", _storage(env)]
    again = cli(env, "--space", str(space), "--name", "plain", *other)
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


def test_everything_lives_under_the_storage_given_and_nan_trials_fail_once(env, tmp_path):
    """``--storage DIR --tracking-uri sqlite:///DIR/mlflow.db`` from an empty folder, no
    $TUNE_M3_RESULTS: the plan names DIR/optuna.db and the search writes under DIR only (its
    study went to ./tune_m3_results/optuna.db). Its model predicts NaN in evaluation
    (``tests/failing_models.py``): each of the 2 trials is started once (was 3 times), FAIL in
    the study, FAILED with its reason in MLflow and trials.parquet; all failed: exit 1."""
    tests = str(Path(__file__).resolve().parent)
    run_env = {k: v for k, v in env.items() if k != "TUNE_M3_RESULTS"}
    run_env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests, env.get("PYTHONPATH")]))
    starts, where, cwd = tmp_path / "starts.txt", tmp_path / "DIR", tmp_path / "cwd"
    cwd.mkdir()
    kwargs = {"nan": True, "starts_file": str(starts)}
    space = write_space(
        tmp_path / "nan.yaml",
        model={"class": "failing_models:NaNInEval", "kwargs": kwargs},
        search={"lr": {"loguniform": [1e-3, 1e-2]}},
        fixed={k: v for k, v in TINY_FIXED.items() if k not in ("hidden", "proj")},
        scheduler={"type": "fifo"},
        num_samples=2,
    )
    args = ["--space", str(space), "--name", "nan", "--storage", str(where)]
    args += ["--tracking-uri", f"sqlite:///{where}/mlflow.db", "--experiment", "nan"]

    def run(*more: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "tune_m3.search", *args, *more]
        return subprocess.run(argv, env=run_env, cwd=cwd, capture_output=True, text=True)

    plan = run("--dry-run")
    assert f"Optuna study (named after the search): sqlite:///{where}/optuna.db" in plan.stdout
    assert not where.exists() and not any(cwd.iterdir())
    out = run()
    assert out.returncode == 3 and "every trial failed" in out.stdout, out.stdout + out.stderr
    assert not any(cwd.iterdir()) and sorted(p.name for p in where.iterdir()) == [
        "mlartifacts",
        "mlflow.db",
        "mlflow.db.lock",
        "nan",
        "optuna.db",
        "optuna.db.lock",
    ]
    assert len(starts.read_text().splitlines()) == 2  # two trials, each started once
    study = optuna.load_study(study_name="nan", storage=f"sqlite:///{where}/optuna.db")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    df = pd.read_parquet(where / "nan" / "trials.parquet")
    assert list(df["status"]) == ["failed"] * 2
    assert df["error"].str.contains("predictions: 32 of 32 values are NaN").all(), df["error"]
    _, _, children = mlflow_runs({"TUNE_M3_RESULTS": str(where)}, "nan")
    assert [r.info.status for r in children] == ["FAILED"] * 2
    for r in children:
        assert r.data.tags[TAG_STATUS] == "failed" and "NaN" in r.data.tags["tune_m3.error"]
