"""The confirm stage end to end (tiny data, local Ray): tags, links, ranking, resume."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from searchutil import TINY_FIXED, Search, make_search_env, mlflow_runs, write_space
from test_lifecycle import cli

from tune_m3.names import TAG_CONFIRM_OF, TAG_STAGE, TAG_TRIAL

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path):
    return make_search_env(tmp_path)


def _space(tmp_path, name, confirm=None, epochs=3):
    spec = dict(
        search={"p_mask": {"uniform": [0.05, 0.5]}},
        fixed={**TINY_FIXED, "scheme": "m3", "max_epochs": epochs},
        scheduler={"type": "fifo"},
        num_samples=3,
        max_concurrent=2,
    )
    if confirm:
        spec["confirm"] = confirm
    return write_space(tmp_path / f"{name}.yaml", **spec)


def _run(env, *args, timeout=600):
    out = cli(env, *args, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def _check(env, experiment, name, top_k, seeds, stdout=None):
    c, parents, children = mlflow_runs(env, experiment)
    (parent,) = parents
    assert parent.info.status == "FINISHED"
    search = [r for r in children if r.data.tags.get(TAG_STAGE, "search") == "search"]
    conf = [r for r in children if r.data.tags.get(TAG_STAGE) == "confirm"]
    assert len(search) == 3 and len(conf) == top_k * len(seeds), [r.info.run_name for r in conf]
    assert len({r.data.tags[TAG_TRIAL] for r in children}) == len(children)  # no duplicates
    search_ids = {r.info.run_id for r in search}
    assert {r.data.tags[TAG_CONFIRM_OF] for r in conf} <= search_ids
    assert len({r.data.tags[TAG_CONFIRM_OF] for r in conf}) == top_k
    assert sorted(int(r.data.params["seed"]) for r in conf) == sorted(seeds * top_k)
    df = pd.read_parquet(Path(env["TUNE_M3_RESULTS"]) / "ray" / name / "trials.parquet")
    assert sorted(df["stage"].unique()) == ["confirm", "search"]
    means = df[df["stage"] == "confirm"].groupby("confirm_of")["val_mae"].mean()
    winner = means.idxmin()
    assert (
        parent.data.params["best.run_id"] == winner
    )  # the best confirm mean, not the best single run
    assert parent.data.metrics["confirmed.val_mae_mean"] == pytest.approx(means.min())
    if stdout is not None:
        assert "confirmed ranking" in stdout and "CONFIRMED winner" in stdout
    return c, parent


def test_confirm_stage_retrains_the_top_k_over_seeds(env, tmp_path):
    space = _space(tmp_path, "conf", confirm={"top_k": 2, "seeds": [1, 2]})
    stdout = _run(env, "--space", str(space), "--name", "conf")
    _check(env, "conf", "conf", 2, [1, 2], stdout)


def test_confirm_only_on_a_finished_search(env, tmp_path):
    _run(env, "--space", str(_space(tmp_path, "later")), "--name", "later")
    with_confirm = _space(tmp_path, "later2", confirm={"top_k": 2, "seeds": [4, 5]})
    stdout = _run(
        env,
        "--space",
        str(with_confirm),
        "--name",
        "later",
        "--experiment",
        "later",
        "--confirm-only",
    )
    c, parent = _check_confirm_only(env)
    assert "confirmed ranking" in stdout


def _check_confirm_only(env):
    c, parents, children = mlflow_runs(env, "later")
    (parent,) = parents
    conf = [r for r in children if r.data.tags.get(TAG_STAGE) == "confirm"]
    assert len(conf) == 4 and parent.info.status == "FINISHED"
    assert "confirmed.run_id" in parent.data.params  # best.* (the search's pick) stays as it was
    return c, parent


def test_interrupted_confirm_stage_resumes_without_duplicates(env, tmp_path):
    space = _space(tmp_path, "cint", confirm={"top_k": 2, "seeds": [1, 2]}, epochs=40)
    out = Search(env, "--space", str(space), "--name", "cint")
    out.wait_for("confirm stage:", timeout=400)
    out.wait_for("confirm seed", timeout=200)
    time.sleep(1)  # 40-epoch confirm trainings: still running
    out.proc.send_signal(signal.SIGINT)
    assert out.finish() == 130, out.output[-3000:]
    _run(env, "--space", str(space), "--name", "cint", "--resume")
    _check(env, "cint", "cint", 2, [1, 2])
