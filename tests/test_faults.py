"""Faults against real processes: a killed trial worker, an MLflow server outage (with and
without recovery before the search ends), and a trial whose loss diverges.

Each test runs ``python -m tune_m3.search`` as a user would, on the tiny dataset, and stops
every process it started by process id (the search and what it started, the MLflow server and
its workers). Numbers each test measures are printed (``pytest -s`` shows them) and written up
in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from mlflowserver import MlflowServer
from searchutil import (
    TINY_FIXED,
    make_search_env,
    mlflow_runs,
    write_space,
)
from test_lifecycle import cli

from tune_m3.names import TAG_STATUS

pytestmark = pytest.mark.slow

EPOCH_KEYS = ("epoch", "train_loss", "val_loss", "val_mae", "val_corr", "lr", "best_val_loss")


@pytest.fixture(scope="module")
def search_env(tmp_path_factory) -> dict:
    return make_search_env(tmp_path_factory.mktemp("faults"))


@pytest.fixture
def server(tmp_path):
    srv = MlflowServer(tmp_path / "mlflow_server")
    yield srv
    srv.stop(hard=True)


def _results(path: Path) -> list[dict]:
    """Ray's result.json of a trial (one JSON object per reported result), as far as written."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # the line being written right now
            break
    return out


def _check_epochs_exactly_once(c, run, epochs: int) -> None:
    for key in EPOCH_KEYS:
        steps = [m.step for m in c.get_metric_history(run.info.run_id, key)]
        assert steps == list(range(1, epochs + 1)), (run.info.run_name, key, steps)
    values = [int(m.value) for m in c.get_metric_history(run.info.run_id, "epoch")]
    assert values == list(range(1, epochs + 1))


# ------------------------------------------------------------------------------ killed worker


def test_killed_trial_worker_resumes_from_its_last_checkpoint(search_env, tmp_path, searches):
    """SIGKILL the Ray worker process of a running trial: Ray retries it from its checkpoint.

    The worker is found from outside: Ray writes every result the trial reports, with the
    reporting process's ``pid``, to the trial's ``result.json`` (written by the driver, not by
    the trial's code), and the test kills that pid only after checking it descends from the
    search it started itself.
    """
    epochs = 6
    space = write_space(
        tmp_path / "kill.yaml",
        search={"p_mask": {"grid": [0.2]}},
        # batch 4: about 1 s an epoch, room to kill the worker between two epochs
        fixed={**TINY_FIXED, "scheme": "m3", "max_epochs": epochs, "batch_size": 4},
        algorithm={"type": "grid"},
        scheduler={"type": "fifo"},
        max_concurrent=1,
    )
    name = "kill-worker"
    search = searches(
        search_env, "--space", str(space), "--experiment", "fault_kill", "--name", name
    )
    exp_dir = Path(search_env["TUNE_M3_RESULTS"]) / "ray" / name
    killed_pid, killed_after = None, None
    deadline = time.time() + 300
    while killed_pid is None:
        assert time.time() < deadline and search.proc.poll() is None, search.output[-4000:]
        for f in exp_dir.glob("run_trial_*/result.json"):
            rows = _results(f)
            if rows and rows[-1].get("epoch", 0) >= 2 and not rows[-1].get("trial_done"):
                pid = rows[-1]["pid"]
                ours = {p.pid for p in psutil.Process(search.proc.pid).children(recursive=True)}
                assert pid in ours, f"pid {pid} from {f} is not a process of this search"
                os.kill(pid, signal.SIGKILL)
                killed_pid, killed_after = pid, rows[-1]["epoch"]
                break
        time.sleep(0.1)
    rc = search.finish()
    assert rc == 0, search.output[-4000:]
    assert "1 completed" in search.output and "0 failed" in search.output, search.output[-3000:]
    # issue 21 item 8: a search that exits 0 prints no traceback; Ray's account of the dead
    # worker is in the search's ray_messages.log
    for noise in ("Traceback", "ActorDiedError", "Trial task failed"):
        assert noise not in search.output, search.output[-4000:]
    assert "Trial task failed" in (exp_dir / "ray_messages.log").read_text()

    rows = _results(next(exp_dir.glob("run_trial_*/result.json")))
    restarts = [r for r in rows if r["iterations_since_restore"] == 1]
    assert len(restarts) == 2, [(r["epoch"], r["pid"]) for r in rows]  # first start + one retry
    resumed_at = restarts[1]["epoch"]
    assert restarts[1]["pid"] != killed_pid
    assert resumed_at > 1 and resumed_at >= killed_after, (killed_after, resumed_at)
    print(
        f"\nworker {killed_pid} killed after epoch {killed_after}; retry resumed at epoch "
        f"{resumed_at} of {epochs} in worker {restarts[1]['pid']}"
    )

    c, parents, children = mlflow_runs(search_env, "fault_kill")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    (run,) = children
    assert run.info.status == "FINISHED"
    assert run.data.tags[TAG_STATUS] == "completed"
    _check_epochs_exactly_once(c, run, epochs)
    assert "test_mae" in run.data.metrics


# ------------------------------------------------------------------------------ MLflow outages


def _outage_space(tmp_path: Path, name: str, n: int, epochs: int) -> Path:
    return write_space(
        tmp_path / f"{name}.yaml",
        search={"p_mask": {"grid": [0.1 * (i + 1) for i in range(n)]}},
        fixed={**TINY_FIXED, "scheme": "m3", "max_epochs": epochs},
        algorithm={"type": "grid"},
        scheduler={"type": "fifo"},
        max_concurrent=1,  # trials one after the other: one starts while the server is down
    )


def _http_runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return c, parents, children


def _check_complete(uri: str, experiment: str, n: int, epochs: int) -> None:
    c, parents, children = _http_runs(uri, experiment)
    assert len(parents) == 1, [r.info.run_name for r in parents]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert "best.val_mae" in parent.data.metrics
    assert len(children) == n, [r.info.run_name for r in children]
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED", run.info
        assert run.data.tags[TAG_STATUS] == "completed"
        assert "p_mask" in run.data.params
        assert "test_mae" in run.data.metrics
        _check_epochs_exactly_once(c, run, epochs)


def test_mlflow_outage_mid_search_loses_nothing(search_env, tmp_path, server, searches):
    """The server dies while trial 1 trains and trial 2 starts, and comes back mid-search."""
    n, epochs = 5, 3  # 3 trials after the restart began: the search outlives the restart
    server.start()
    name = "outage"
    space = _outage_space(tmp_path, name, n, epochs)
    search = searches(
        search_env,
        *("--space", str(space), "--mlflow-uri", server.uri, "--experiment", "fault_outage"),
        *("--name", name),
    )
    search.wait_for("started", 1)  # trial 1's run exists; its epochs go into the outage
    t0 = time.time()
    server.stop(hard=True)  # a crash: no goodbye
    search.wait_for("started", 2)  # trial 2 starts while the server is down: no run id yet
    server.start()
    down = time.time() - t0
    done = sum("finished after" in s for s in search.lines)
    assert search.proc.poll() is None, "the search ended before the server came back"
    rc = search.finish()
    assert rc == 0, search.output[-4000:]
    assert "MLflow write failed" in search.output  # the outage was hit, and buffered
    assert "MLflow writes failed" not in search.output, search.output[-3000:]
    assert not (Path(search_env["TUNE_M3_RESULTS"]) / "ray" / name / "unlogged.json").exists()
    _check_complete(server.uri, "fault_outage", n, epochs)
    print(
        f"\nMLflow server down for {down:.0f} s while {done} of {n} trials finished; "
        f"all {n} runs complete"
    )


def test_mlflow_down_until_the_end_then_resync(search_env, tmp_path, server, searches):
    """The server dies after trial 1 started and stays down: unlogged.json, then resync."""
    n, epochs = 2, 3
    server.start()
    name = "resync"
    space = _outage_space(tmp_path, name, n, epochs)
    # a user's own MLflow retry setting wins over tune_m3's default (2); 0 also keeps this
    # test short: each failed write fails at once instead of after about 2 s
    # and a short final retry window (the default, 120 s, outlasts a server restart)
    env = {**search_env, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "TUNE_M3_MLFLOW_RETRY_S": "6"}
    search = searches(
        env,
        *("--space", str(space), "--mlflow-uri", server.uri, "--experiment", "fault_resync"),
        *("--name", name),
    )
    search.wait_for("started", 1)
    time.sleep(1)
    server.stop(hard=True)
    t0 = time.time()
    rc = search.finish()
    after = time.time() - t0
    assert rc == 0, search.output[-4000:]
    unlogged = Path(search_env["TUNE_M3_RESULTS"]) / "ray" / name / "unlogged.json"
    assert unlogged.exists(), search.output[-4000:]
    assert f"python -m tune_m3.tracking resync {unlogged} --tracking-uri {server.uri}" in (
        search.output
    )
    n_items = len(json.loads(unlogged.read_text()))

    server.start()
    out = _resync(unlogged, server.uri, search_env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"replayed {n_items} MLflow writes" in out.stdout
    _check_complete(server.uri, "fault_resync", n, epochs)
    _check_no_placeholder(server.uri, "fault_resync", unlogged.parent)
    # a second resync says so and changes nothing (no duplicate runs)
    again = _resync(unlogged, server.uri, search_env)
    assert again.returncode == 0 and "already replayed" in again.stdout, again.stdout + again.stderr
    _check_complete(server.uri, "fault_resync", n, epochs)
    print(f"\nsearch finished {after:.0f} s after the server died; {n_items} writes replayed")


def _resync(unlogged: Path, uri: str, env: dict) -> subprocess.CompletedProcess:
    """``python -m tune_m3.tracking resync FILE --mlflow-uri URI``, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "tune_m3.tracking", "resync", str(unlogged), "--mlflow-uri", uri],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _check_no_placeholder(uri: str, experiment: str, search_dir: Path) -> None:
    """No ``pending:`` run id anywhere: params, tags, trials.parquet and its MLflow copy."""
    c, parents, children = _http_runs(uri, experiment)
    for run in parents + children:
        values = [*run.data.params.values(), *run.data.tags.values()]
        assert not [v for v in values if "pending:" in v], run.info.run_name
    df = pd.read_parquet(search_dir / "trials.parquet")
    assert set(df["run_id"]) == {r.info.run_id for r in children}
    assert "pending:" not in (search_dir / "summary.csv").read_text()
    copy = c.download_artifacts(parents[0].info.run_id, "trials.parquet", str(search_dir / "dl"))
    assert set(pd.read_parquet(copy)["run_id"]) == set(df["run_id"])
    assert parents[0].data.params["best.run_id"] in set(df["run_id"])


# ------------------------------------------------------------------------------ diverging trial


def test_diverging_trial_is_failed_and_the_search_goes_on(search_env, tmp_path):
    """Also: no secret of the environment ends up in MLflow or the results (security claim)."""
    token, secret = secrets.token_hex(32), "TUNE_M3_TEST_SECRET_" + secrets.token_hex(8)
    env = {**search_env, "RAY_AUTH_TOKEN": token, "AWS_SECRET_ACCESS_KEY": secret}
    space = write_space(
        tmp_path / "nan.yaml",
        search={"lr": {"grid": [1.0e30, 1.0e-3]}},  # Adam with lr 1e30: loss NaN in epoch 1
        fixed={**TINY_FIXED, "max_epochs": 2},
        algorithm={"type": "grid"},
        scheduler={"type": "fifo"},
        max_concurrent=1,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tune_m3.search", "--space", str(space)]
        + ["--experiment", "fault_nan", "--name", "nan"],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]  # some trials finished: the search succeeded
    assert "1 completed" in out and "1 failed" in out, out[-3000:]
    assert " FAILED after " in out and "loss became nan at epoch 1" in out
    c, parents, children = mlflow_runs(search_env, "fault_nan")
    assert parents[0].info.status == "FINISHED"
    by_lr = {float(r.data.params["lr"]): r for r in children}
    bad, good = by_lr[1.0e30], by_lr[1.0e-3]
    assert bad.info.status == "FAILED"
    assert bad.data.tags[TAG_STATUS] == "failed"
    assert "loss became nan at epoch 1" in bad.data.tags["tune_m3.error"]
    assert good.info.status == "FINISHED"
    assert good.data.tags[TAG_STATUS] == "completed"
    starts = out.count(f"trial {bad.info.run_name} started")
    assert starts == 1  # divergence is deterministic: the trial is failed, not retried
    print(f"\ndiverging trial started {starts} times; error tag: {bad.data.tags['tune_m3.error']}")
    df = pd.read_parquet(Path(search_env["TUNE_M3_RESULTS"]) / "ray" / "nan" / "trials.parquet")
    assert sorted(df["status"]) == ["completed", "failed"]
    assert "loss became nan" in df.loc[df["status"] == "failed", "error"].iloc[0]

    # the Ray token and a cloud secret were in the search's environment: they are nowhere in
    # what it wrote (MLflow's database and artifacts, Ray's results and checkpoints)
    results = Path(search_env["TUNE_M3_RESULTS"])
    files = [f for f in results.rglob("*") if f.is_file()]
    assert any(f.name == "mlflow.db" for f in files) and any(f.suffix == ".yaml" for f in files)
    for f in files:
        data = f.read_bytes()
        assert token.encode() not in data and secret.encode() not in data, f


def test_a_model_that_predicts_nan_fails_its_trial_once_with_its_reason(search_env, tmp_path):
    """A grid of two trials of a user model (``tests/failing_models.py``), one of which
    predicts NaN in evaluation: that trial is started exactly once (Ray retried it twice before:
    the NaN was a ValueError in ``compute_metrics``), ends FAILED with its reason in MLflow and
    trials.parquet; the other finishes; exit 0."""
    env = dict(search_env)
    tests = str(Path(__file__).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests, env.get("PYTHONPATH")]))
    starts = tmp_path / "starts.txt"
    space = write_space(
        tmp_path / "nan_model.yaml",
        model={"class": "failing_models:NaNInEval", "kwargs": {"starts_file": str(starts)}},
        search={"model.nan": {"grid": [True, False]}},
        fixed={k: v for k, v in TINY_FIXED.items() if k not in ("hidden", "proj")},
        algorithm={"type": "grid"},
        scheduler={"type": "fifo"},
        max_concurrent=1,
    )
    argv = ["--space", str(space), "--experiment", "fault_nan_model", "--name", "nan_model"]
    proc = cli(env, *argv, timeout=400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "1 completed" in out and "1 failed" in out, out[-3000:]
    assert " FAILED after 0 epochs" in out  # it failed evaluating epoch 1 (was: "after ?")
    assert len(starts.read_text().splitlines()) == 1  # started once: not retried
    _, parents, children = mlflow_runs(search_env, "fault_nan_model")
    assert parents[0].info.status == "FINISHED"
    by_nan = {r.data.params["model.nan"]: r for r in children}
    bad, good = by_nan["True"], by_nan["False"]
    assert (bad.info.status, bad.data.tags[TAG_STATUS]) == ("FAILED", "failed")
    reason = "the model's predictions: 32 of 32 values are NaN or infinite"
    assert reason in bad.data.tags["tune_m3.error"]
    assert (good.info.status, good.data.tags[TAG_STATUS]) == ("FINISHED", "completed")
    results = Path(search_env["TUNE_M3_RESULTS"]) / "ray" / "nan_model"
    df = pd.read_parquet(results / "trials.parquet")
    assert sorted(df["status"]) == ["completed", "failed"]
    assert reason in df.loc[df["status"] == "failed", "error"].iloc[0]
    print(f"\nNaN trial started {len(starts.read_text().splitlines())} time(s): {reason}")


# ------------------------------------------------------------------------------ a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MB tmpfs mounted for this test (root only), unmounted after it."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_filling_up_mid_search_stops_cleanly_and_resumes(
    search_env, tmp_path, small_disk, searches
):
    """Issue 21 item 4: results on a small disk that another program fills while trials run:
    one error line (the place, its free space, the resume command), exit 2, no run left
    RUNNING, the state file says failed; after space is freed, --resume finishes with every
    epoch's metrics in MLflow exactly once."""
    import shutil

    epochs = 40
    env = {
        **search_env,
        "TUNE_M3_RESULTS": str(small_disk / "results"),
        "TUNE_M3_MIN_FREE_MB": "16",
    }
    space = write_space(
        tmp_path / "full.yaml",
        search={"p_mask": {"uniform": [0.05, 0.5]}},
        fixed={**TINY_FIXED, "scheme": "m3", "max_epochs": epochs, "patience": 100},
        scheduler={"type": "fifo"},
        num_samples=2,
    )
    args = ["--space", str(space), "--experiment", "full", "--name", "full"]
    search = searches(env, *args)
    search.wait_for("started")
    filler = small_disk / "filler.bin"
    free = shutil.disk_usage(small_disk).free
    with open(filler, "wb") as fh:  # another program fills the disk: 8 MB stay free
        fh.truncate(0)
        fh.write(b"\0" * max(0, free - 8_000_000))
    rc = search.finish()
    text = search.output
    assert rc == 2, text[-4000:]
    errors = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in text, text[-4000:]
    assert "disk almost full" in errors[0] and "MB free" in errors[0] and "--resume" in errors[0]
    state = json.loads(
        (small_disk / "results" / "ray" / "full" / "tune_m3_search.json").read_text()
    )
    assert state["status"] == "failed"
    _, parents, children = mlflow_runs(env, "full")
    assert [p.info.status for p in parents] == ["FAILED"]
    assert children and all(r.info.status != "RUNNING" for r in children)

    filler.unlink()  # space freed: the resume finishes the search, nothing lost
    done = subprocess.run(
        [sys.executable, "-m", "tune_m3.search", *args, "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    c, parents, children = mlflow_runs(env, "full")
    assert [p.info.status for p in parents] == ["FINISHED"] and len(children) == 2
    for run in children:
        assert run.info.status == "FINISHED"
        steps = [m.step for m in c.get_metric_history(run.info.run_id, "val_mae")]
        assert sorted(steps) == list(range(1, epochs + 1)), steps  # every epoch, once
