"""Tiny end-to-end searches with a real local Ray and a real MLflow (SQLite) store.

Each test runs ``python -m tune_m3.search`` as a user would, on a tiny dataset (dims 8/4/3,
L = 10) with a tiny model, and checks what lands in MLflow and on disk.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from searchutil import (
    TINY_FIXED,
    kill_tree,
    make_search_env,
    mlflow_runs,
    run_search,
    start_search,
    write_space,
)

from tune_m3.names import TAG_STATUS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def search_env(tmp_path_factory) -> dict:
    return make_search_env(tmp_path_factory.mktemp("e2e"))


def test_optuna_asha_search_logs_nested_runs_and_stops_bad_trials(search_env, tmp_path):
    space = write_space(
        tmp_path / "asha.yaml",
        search={"lr": {"choice": [1.0e-7, 1.0e-2]}, "p_mask": {"uniform": [0.0, 0.3]}},
        fixed={**TINY_FIXED, "scheme": "m3", "max_epochs": 4},
        algorithm={"type": "optuna", "seed": 3},
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3},
        num_samples=6,
    )
    out = run_search(search_env, "--space", str(space), "--experiment", "e2e_asha")
    assert "best configuration:" in out.stdout and "mlflow ui --backend-store-uri" in out.stdout
    c, parents, children = mlflow_runs(search_env, "e2e_asha")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.tags["tune_m3.synthetic"] == "true"
    assert len(children) == 6
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert all(r.info.status == "FINISHED" for r in children)
    statuses = [r.data.tags[TAG_STATUS] for r in children]
    assert "stopped_by_scheduler" in statuses  # the designed case: lr 1e-7 cannot keep up
    for r in children:
        steps = [m.step for m in c.get_metric_history(r.info.run_id, "val_mae")]
        assert steps == list(range(1, len(steps) + 1))  # one value per epoch, step = epoch
        assert r.data.params["dataset"] == "tiny" and "pi_audio" in r.data.params
        if r.data.tags[TAG_STATUS] == "completed":
            assert (
                "test_mae" in r.data.metrics
                and "diag_test_text_missing_30_corr_drop" in r.data.metrics
            )
    table = next((Path(search_env["TUNE_M3_RESULTS"]) / "ray").glob("asha-*/trials.parquet"))
    df = pd.read_parquet(table)
    assert len(df) == 6 and set(df["status"]) <= {"completed", "stopped_by_scheduler"}
    _study_reads_like_optunas(search_env, table.parent.name, c, children)


def _study_reads_like_optunas(env: dict, study_name: str, c, children: list) -> None:
    """The persisted study: ASHA-stopped trials PRUNED with their per-epoch values, the rest
    COMPLETE, the metric named (optuna-dashboard shows "val_mae", not "Objective 0")."""
    import optuna

    storage = f"sqlite:///{env['TUNE_M3_RESULTS']}/optuna.db"
    study = optuna.load_study(study_name=study_name, storage=storage)
    assert study.metric_names == ["val_mae"]
    state = {"completed": optuna.trial.TrialState.COMPLETE}
    state["stopped_by_scheduler"] = optuna.trial.TrialState.PRUNED
    want = sorted(
        (round(float(r.data.params["p_mask"]), 9), state[r.data.tags[TAG_STATUS]]) for r in children
    )
    got = sorted((round(t.params["p_mask"], 9), t.state) for t in study.trials)
    assert got == want and optuna.trial.TrialState.PRUNED in {s for _, s in got}
    for t in study.trials:
        steps = sorted(t.intermediate_values)
        assert steps == list(range(1, len(steps) + 1)) and steps  # one value per epoch
        if t.state == optuna.trial.TrialState.PRUNED:  # Optuna's value: the last one reported
            assert t.value == t.intermediate_values[steps[-1]]
            # every epoch the run trained, the one ASHA stopped it on included
            run = next(r for r in children if float(r.data.params["p_mask"]) == t.params["p_mask"])
            assert len(steps) == len(c.get_metric_history(run.info.run_id, "val_mae"))


def test_grid_with_seeds_expands_exactly(search_env, tmp_path):
    space = write_space(
        tmp_path / "grid.yaml",
        search={"p_mask": {"grid": [0.1, 0.3]}},
        fixed={**TINY_FIXED, "scheme": "m3", "max_epochs": 1},
        seeds=[0, 1],
        algorithm={"type": "grid"},
        scheduler={"type": "fifo"},
    )
    run_search(search_env, "--space", str(space), "--experiment", "e2e_grid")
    _, parents, children = mlflow_runs(search_env, "e2e_grid")
    got = sorted((float(r.data.params["p_mask"]), int(r.data.params["seed"])) for r in children)
    assert got == [(0.1, 0), (0.1, 1), (0.3, 0), (0.3, 1)]
    assert all(r.data.tags[TAG_STATUS] == "completed" for r in children)


def test_resume_after_driver_kill_finishes_without_duplicates(search_env, tmp_path):
    space = write_space(
        tmp_path / "resume.yaml",
        search={"p_mask": {"uniform": [0.0, 0.3]}},
        fixed={**TINY_FIXED, "scheme": "m3", "max_epochs": 3},
        algorithm={"type": "optuna", "seed": 0},
        scheduler={"type": "fifo"},
        num_samples=4,
        max_concurrent=1,
    )
    args = ["--space", str(space), "--experiment", "e2e_resume", "--name", "resume-me"]
    proc = start_search(search_env, *args)
    seen = []
    deadline = time.time() + 300
    try:
        for line in proc.stdout:  # wait until two trials finished, then kill the driver hard
            seen.append(line)
            if sum("finished after" in s for s in seen) >= 2 or time.time() > deadline:
                break
        time.sleep(1.0)
    finally:
        kill_tree(proc.pid)  # the driver and everything it started, as a crash would
        proc.wait(timeout=30)
    assert sum("finished after" in s for s in seen) >= 2, "".join(seen)[-3000:]
    out = run_search(search_env, *args, "--resume")
    assert "resuming search 'resume-me'" in out.stdout
    c, parents, children = mlflow_runs(search_env, "e2e_resume")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    live = [r for r in children if r.info.lifecycle_stage == "active"]
    trial_ids = [r.data.tags["tune_m3.trial_id"] for r in live]
    assert len(trial_ids) == len(set(trial_ids)) == 4  # the planned trials, no duplicates
    for r in live:
        assert r.info.status == "FINISHED"
        steps = [m.step for m in c.get_metric_history(r.info.run_id, "val_mae")]
        assert steps == [1, 2, 3], steps  # each epoch exactly once, also for the resumed trial
    # Optuna's history was kept: the first two trials' p_mask values are still there
    df = pd.read_parquet(
        next((Path(search_env["TUNE_M3_RESULTS"]) / "ray").glob("resume-me/trials.parquet"))
    )
    assert len(df) == 4 and (df["status"] == "completed").all()
    # the persisted Optuna study (ahead of Ray's snapshot when the driver was killed) ends with
    # no trial left RUNNING, and every planned trial told
    import optuna

    study = optuna.load_study(
        study_name="resume-me",
        storage=f"sqlite:///{search_env['TUNE_M3_RESULTS']}/optuna.db",
    )
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states, states
    assert states.count(optuna.trial.TrialState.COMPLETE) >= 4, states


def test_a_reused_worker_trains_as_a_fresh_one(search_env, tmp_path):
    """Trials reuse their worker process (reuse_actors, issue 22): a trial run second in a
    reused worker gives the same numbers as the same configuration run first in a fresh one
    (every random stream is reseeded per trial), and the worker really was reused."""
    import json

    results = {}
    for order in ([0.1, 0.3], [0.3, 0.1]):
        name = f"reuse-{order[0]}"
        space = write_space(
            tmp_path / f"{name}.yaml",
            search={"p_mask": {"grid": order}},
            fixed={**TINY_FIXED, "scheme": "m3", "max_epochs": 2},
            algorithm={"type": "grid"},
            scheduler={"type": "fifo"},
            max_concurrent=1,
        )
        run_search(search_env, "--space", str(space), "--experiment", name, "--name", name)
        folder = Path(search_env["TUNE_M3_RESULTS"]) / "ray" / name
        pids = {
            json.loads(f.read_text().splitlines()[0])["pid"] for f in folder.glob("*/result.json")
        }
        assert len(pids) == 1, pids  # both trials ran in one worker process
        df = pd.read_parquet(folder / "trials.parquet")
        results[name] = {
            round(float(r["param_p_mask"]), 6): (r["val_mae"], r["test_mae"])
            for _, r in df.iterrows()
        }
    assert results["reuse-0.1"] == results["reuse-0.3"]  # first (fresh) == second (reused)
