"""The MLflow parts without a subprocess: write-behind queue, trial runs, recovery, resync.

A real local SQLite store where a store is needed; a client that fails on demand where an
outage is needed (the queue only ever calls the MlflowClient methods it names).
"""

from __future__ import annotations

import json

import pytest

from tune_m3.names import COMPLETED, KILLED, TAG_PARENT, TAG_STATUS, TAG_TRIAL
from tune_m3.tracking import MlflowTrialLogger, WriteBehind, client, resync
from tune_m3.tracking.writes import PENDING, Write, dump, load, metric, param


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_M3_RESULTS", str(tmp_path / "results"))
    uri = f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"
    c = client(uri)
    exp = c.create_experiment("units")
    parent = c.create_run(exp, run_name="search").info.run_id
    return uri, c, exp, parent


class Flaky:
    """Forwards to a real client, but raises ConnectionError while ``down``."""

    def __init__(self, real):
        self.real, self.down, self.calls = real, False, 0

    def __getattr__(self, name):
        fn = getattr(self.real, name)
        if not callable(fn):  # e.g. the client's store
            return fn

        def call(*a, **kw):
            self.calls += 1
            if self.down:
                raise ConnectionError("server down")
            return fn(*a, **kw)

        return call


def test_writes_wait_in_order_while_down_and_bind_placeholders(store, tmp_path):
    uri, c, exp, parent = store
    flaky = Flaky(c)
    q = WriteBehind(flaky, retry_every=0.0)
    flaky.down = True
    rid = q.create_run(exp, "t1", {TAG_PARENT: parent}, "t01")
    assert rid == PENDING + "t1" and len(q.pending) == 1
    q.log_batch(rid, metrics=[metric("val_mae", 0.5, 1)], params=[param("p_mask", 0.2)])
    q.set_terminated(rid, "FINISHED")
    assert len(q.pending) == 3  # nothing lost, nothing reordered
    flaky.down = False
    assert q.flush(force=True) and not q.pending
    real = q.resolve(rid)
    assert real != rid
    run = c.get_run(real)
    assert run.info.status == "FINISHED" and run.data.params["p_mask"] == "0.2"
    assert run.data.metrics["val_mae"] == 0.5


def test_retry_is_rate_limited(store):
    _, c, exp, parent = store
    flaky = Flaky(c)
    q = WriteBehind(flaky, retry_every=3600.0)
    flaky.down = True
    q.set_tag(parent, "a", "1")
    calls = flaky.calls
    for _ in range(20):  # every later write queues without touching the dead server
        q.set_tag(parent, "b", "2")
    assert flaky.calls == calls and len(q.pending) == 21


def test_finish_dumps_what_stays_unwritten_and_resync_replays_it(store, tmp_path):
    uri, c, exp, parent = store
    flaky = Flaky(c)
    q = WriteBehind(flaky, retry_every=0.0)
    flaky.down = True
    rid = q.create_run(exp, "t9", {TAG_PARENT: parent}, "t09")
    q.log_batch(rid, metrics=[metric("val_mae", 0.25, 3)])
    path = tmp_path / "unlogged.json"
    left = q.finish(path, retries=2, wait=0.0)
    assert len(left) == 2 and json.loads(path.read_text())[0]["kind"] == "create_run"
    assert [w.kind for w in load(path)] == ["create_run", "log_batch"]
    assert resync(path, uri) == 2
    (child,) = [r for r in c.search_runs([exp]) if r.info.run_name == "t09"]
    assert child.data.metrics["val_mae"] == 0.25


def test_resync_leaves_no_placeholder_and_a_second_resync_changes_nothing(store, tmp_path):
    """Issue 21 item 5: placeholders in values (best.run_id, tags) and in the search's tables
    become real run ids; the replayed file is renamed, and a second resync replays nothing."""
    import pandas as pd

    from tune_m3.tracking.resync import replayed_path

    uri, c, exp, parent = store
    flaky = Flaky(c)
    q = WriteBehind(flaky, retry_every=0.0)
    flaky.down = True
    rid = q.create_run(exp, "t9", {TAG_PARENT: parent}, "t09")
    assert rid == PENDING + "t9"
    table = tmp_path / "trials.parquet"
    pd.DataFrame({"trial_id": ["t9"], "run_id": [rid], "val_mae": [0.25]}).to_parquet(table)
    (tmp_path / "summary.csv").write_text(f"trial_id,run_id\nt9,{rid}\n")
    q.log_batch(parent, params=[param("best.run_id", rid)])
    q.set_tag(parent, "tune_m3.best_run", rid)
    q.log_artifact(parent, table)
    path = tmp_path / "unlogged.json"
    assert len(q.finish(path, retries=1)) == 4  # create, params, tag, artifact
    assert resync(path, uri) == 4
    (child,) = [r for r in c.search_runs([exp]) if r.info.run_name == "t09"]
    real = child.info.run_id
    got = c.get_run(parent).data
    assert got.params["best.run_id"] == real and got.tags["tune_m3.best_run"] == real
    assert pd.read_parquet(table)["run_id"].tolist() == [real]
    assert PENDING not in (tmp_path / "summary.csv").read_text()
    art = c.download_artifacts(parent, "trials.parquet", str(tmp_path / "dl"))
    assert pd.read_parquet(art)["run_id"].tolist() == [real]
    # a second resync of the same path: nothing replayed, no duplicate run
    assert not path.exists() and replayed_path(path).exists()
    assert resync(path, uri) == 0
    assert len([r for r in c.search_runs([exp]) if r.info.run_name == "t09"]) == 1


def test_resync_that_fails_part_way_keeps_the_rest_for_the_next_try(store, tmp_path):
    from tune_m3.errors import UserError

    uri, c, exp, parent = store
    q = WriteBehind(Flaky(c), retry_every=0.0)
    q.client.down = True
    rid = q.create_run(exp, "t7", {TAG_PARENT: parent}, "t07")
    q.log_batch(rid, metrics=[metric("val_mae", 0.5, 1)])
    path = tmp_path / "unlogged.json"
    q.finish(path, retries=1)
    real_apply = WriteBehind._apply

    def fail_second(self, item):
        if item.kind == "log_batch":
            raise ConnectionError("server down again")
        return real_apply(self, item)

    WriteBehind._apply = fail_second
    try:
        with pytest.raises(UserError, match="after 1 of 2 writes"):
            resync(path, uri)
    finally:
        WriteBehind._apply = real_apply
    left = load(path)
    assert [x.kind for x in left] == ["log_batch"] and not left[0].args["run_id"].startswith(
        PENDING
    )
    assert resync(path, uri) == 1
    assert len([r for r in c.search_runs([exp]) if r.info.run_name == "t07"]) == 1


def test_final_retry_window_is_read_from_the_environment(monkeypatch):
    from tune_m3.errors import UserError
    from tune_m3.tracking.writes import DEFAULT_RETRY_S, RETRY_ENV, retry_window

    monkeypatch.delenv(RETRY_ENV, raising=False)
    assert retry_window() == DEFAULT_RETRY_S
    monkeypatch.setenv(RETRY_ENV, "7.5")
    assert retry_window() == 7.5
    for bad in ("soon", "-1"):
        monkeypatch.setenv(RETRY_ENV, bad)
        with pytest.raises(UserError, match=RETRY_ENV):
            retry_window()


def test_unknown_write_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown MLflow write"):
        Write("drop_table", {})
    (tmp_path / "x.json").write_text('[{"kind": "create_run", "args": {}, "bogus": 1}]')
    with pytest.raises(ValueError):
        load(tmp_path / "x.json")
    dump(
        [Write("set_tag", {"run_id": "pending:x", "key": "k", "value": "v"})],
        tmp_path / "y.json",
        {"pending:x": "real"},
    )
    assert load(tmp_path / "y.json")[0].args["run_id"] == "real"


def _logger(store, tmp_path):
    uri, _, exp, parent = store
    return MlflowTrialLogger(uri, exp, parent, {"tune_m3.search_id": "s"}, tmp_path / "u.json")


def test_each_epoch_once_and_recovery_after_a_restart(store, tmp_path):
    uri, c, exp, parent = store
    log = _logger(store, tmp_path)
    log.trial_start("tA", "t01 pM=0.2", {"p_mask": 0.2})
    for epoch in (1, 2, 3, 2, 3):  # a retry re-reports epochs 2 and 3
        log.trial_result("tA", {"epoch": epoch, "val_mae": 1.0 / epoch})
    log.trial_result("tA", {"epoch": 3, "val_mae": 0.3, "test_mae": 0.4, "trial_done": 1})
    log.trial_end("tA", COMPLETED, run_name="t01 pM=0.2 → val_mae 0.333")
    log.trial_start("tB", "t02 pM=0.3", {"p_mask": 0.3})
    log.trial_result("tB", {"epoch": 1, "val_mae": 0.9})
    log.trial_end("tB", KILLED)
    assert log.finish() == []
    rid = log.run_id("tA")
    assert [m.step for m in c.get_metric_history(rid, "val_mae")] == [1, 2, 3]
    run = c.get_run(rid)
    assert run.data.tags[TAG_STATUS] == COMPLETED and run.data.tags[TAG_TRIAL] == "tA"
    assert run.info.run_name == "t01 pM=0.2 → val_mae 0.333" and run.data.metrics["test_mae"] == 0.4
    assert c.get_run(log.run_id("tB")).info.status == "KILLED"

    again = _logger(store, tmp_path)  # a resumed search: a new logger finds everything
    assert again.runs == log.runs
    assert again.last_step == {"tA": 3, "tB": 1}
    assert again.final_logged == {"tA"}
    assert again.names == {"tA": "t01 pM=0.2", "tB": "t02 pM=0.3"}
    assert again.closed == {"tA"}  # the killed trial is still open: a resume reopens it
    again.trial_start("tB", "ignored", {})
    again.trial_result("tB", {"epoch": 1, "val_mae": 0.1})  # already logged: skipped
    again.trial_result("tB", {"epoch": 2, "val_mae": 0.8})
    again.finish()
    assert [m.step for m in c.get_metric_history(again.run_id("tB"), "val_mae")] == [1, 2]
    assert c.get_run(again.run_id("tB")).info.status == "RUNNING"
    children = c.search_runs([exp], filter_string=f"tags.`{TAG_PARENT}` = '{parent}'")
    assert len(children) == 2  # no duplicate run for the resumed trial


def test_logger_pickles_without_its_client(store, tmp_path):
    import pickle

    log = _logger(store, tmp_path)
    log.trial_start("tA", "t01", {})
    clone = pickle.loads(pickle.dumps(log))
    assert clone.runs == log.runs and clone.writes.client is not None


def test_store_is_created_once_under_a_lock_by_concurrent_processes(tmp_path):
    """Four processes open a fresh SQLite store at once: all succeed, one migration."""
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    code = (
        "import sys; from tune_m3.tracking import client; "
        "c = client(sys.argv[1]); print(len(c.search_experiments()))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, uri],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e[-1500:] for _, e in outs]
    assert all(o.strip() == "1" for o, _ in outs)  # the Default experiment, once


def test_ray_token_readable_by_others_is_tightened_and_said(tmp_path, monkeypatch, capsys):
    import os
    import stat

    from tune_m3.search.ray_setup import tighten_token

    token = tmp_path / "auth_token"
    token.write_text("secret")
    token.chmod(0o644)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    tighten_token()
    assert stat.S_IMODE(os.stat(token).st_mode) == 0o600
    assert "readable by other users (mode 644); tightened it to 600" in capsys.readouterr().out
    tighten_token()  # already private: nothing to say
    assert capsys.readouterr().out == ""


def _meta(synthetic: bool):
    from tune_m3.data.store import DatasetMeta

    return DatasetMeta(
        name="tiny",
        synthetic=synthetic,
        modalities=("text", "audio", "vision"),
        dims={"text": 4, "audio": 3, "vision": 2},
        seq_len=5,
        sizes={"train": 96, "valid": 32, "test": 48},
        source={"kind": "synthetic", "fingerprint": "0123456789abcdef0123"},
    )


def test_dataset_input_waits_for_its_run_and_replays_after_resync(store, tmp_path):
    """A trial's dataset input is a write like the others: queued behind the run's create while
    MLflow is down, saved with the placeholder, replayed by resync onto the created run."""
    from tune_m3.tracking import dataset_record

    uri, c, exp, parent = store
    flaky = Flaky(c)
    log = MlflowTrialLogger(
        uri, exp, parent, {}, tmp_path / "u.json", client=flaky, dataset=dataset_record(_meta(True))
    )
    log.writes.retry_every = 0.0
    flaky.down = True
    log.trial_start("tA", "t01 pM=.2", {"p_mask": 0.2})
    path = tmp_path / "unlogged.json"
    left = log.writes.finish(path, retries=1, wait=0.0)
    assert [w.kind for w in left] == ["create_run", "log_batch", "log_inputs"]
    assert json.loads(path.read_text())[2]["args"]["run_id"] == PENDING + "tA"
    assert resync(path, uri) == 3
    (run,) = [r for r in c.search_runs([exp]) if r.info.run_name == "t01 pM=.2"]
    (inp,) = run.inputs.dataset_inputs
    assert (inp.dataset.name, inp.dataset.digest, inp.dataset.source_type) == (
        "tiny",
        "0123456789abcdef",
        "tune_m3",
    )
    tags = {t.key: t.value for t in inp.tags}
    assert tags == {
        "mlflow.data.context": "train/val/test SYNTHETIC",
        "tune_m3.synthetic": "SYNTHETIC",
    }
    assert json.loads(inp.dataset.source)["kind"] == "synthetic"


def test_dataset_input_that_lost_a_race_to_another_search_is_tried_again(store):
    """Two searches starting at once in one experiment may both insert the dataset; the second
    gets the store's unique-key error (as a PostgreSQL-backed server said in
    bench_concurrent_searches). Its parent's input is logged again and linked; other errors are
    not retried."""
    from mlflow.exceptions import MlflowException

    from tune_m3.tracking import dataset_record
    from tune_m3.tracking.datasets import log_dataset_inputs

    uri, c, exp, parent = store
    race = 'duplicate key value violates unique constraint "dataset_pk"'

    class LosesOnce:
        def __init__(self, error):
            self.error, self.calls = error, 0

        def log_inputs(self, run_id, datasets):
            self.calls += 1
            if self.calls == 1:
                raise MlflowException(self.error)
            c.log_inputs(run_id, datasets=datasets)

    lost = LosesOnce(race)
    log_dataset_inputs(lost, parent, [dataset_record(_meta(True))])
    assert lost.calls == 2
    (inp,) = c.get_run(parent).inputs.dataset_inputs
    assert (inp.dataset.name, inp.dataset.digest) == ("tiny", "0123456789abcdef")
    other = LosesOnce("RESOURCE_DOES_NOT_EXIST: run not found")
    with pytest.raises(MlflowException, match="not found"):
        log_dataset_inputs(other, parent, [dataset_record(_meta(True))])
    assert other.calls == 1


def test_real_data_is_not_marked_synthetic():
    from tune_m3.tracking import dataset_record

    rec = dataset_record(_meta(False))
    assert rec["tags"] == {"mlflow.data.context": "train/val/test", "tune_m3.synthetic": "real"}


def test_run_names_lead_with_the_result_and_recover_their_base():
    from tune_m3.search.callback import run_name, with_result
    from tune_m3.tracking.trials import base_name

    name = run_name(2, {"p_mask": 0.4721, "pi_text": 0.05, "lr": 3e-4}, ["p_mask", "pi_text", "lr"])
    assert name == "t03 pM=.472 πT=.05 lr=.0003"
    done = with_result(name, "val_mae", 0.28412)
    assert done == "0.2841 | t03 pM=.472 πT=.05 lr=.0003"
    assert done[:20] == "0.2841 | t03 pM=.472"  # what the runs table shows of a name
    assert with_result(name, "val_mae", float("nan")) == name
    assert base_name(done) == name and base_name(name) == name
    assert base_name("t01 pM=0.2 → val_mae 0.333") == "t01 pM=0.2"  # names of older searches


def test_search_view_is_a_saved_view_the_ui_reads(store):
    from tune_m3.tracking import compare_url, save_view, search_view, view_url

    _, c, exp, parent = store
    state = search_view(parent, ["val_mae"], True, ["p_mask", "lr"], "search")
    save_view(c, exp, parent, "s: trials by val_mae", state)
    value = json.loads(c.get_experiment(exp).tags[f"mlflow.sharedViewState.{parent}"])
    assert value["name"] == "s: trials by val_mae" and isinstance(value["createdAt"], int)
    saved = json.loads(value["state"])
    assert saved["orderByKey"] == "metrics.`val_mae`" and saved["orderByAsc"] is True
    assert saved["selectedColumns"][:4] == [
        "attributes.`Dataset`",
        "metrics.`val_mae`",
        "params.`p_mask`",
        "params.`lr`",
    ]
    # the filter is valid MLflow search syntax and selects the search's trials only
    child = c.create_run(exp, tags={TAG_PARENT: parent, "tune_m3.stage": "search"}).info.run_id
    c.create_run(exp, tags={TAG_PARENT: parent, "tune_m3.stage": "confirm"})
    assert [r.info.run_id for r in c.search_runs([exp], saved["searchFilter"])] == [child]
    assert view_url("sqlite:///x.db", exp, parent, 5001) == (
        f"http://127.0.0.1:5001/#/experiments/{exp}/runs?viewStateShareKey={parent}"
    )
    url = compare_url("http://h:5000/", "7", ["a", "b"])
    assert (
        url
        == "http://h:5000/#/compare-runs?runs=%5B%22a%22%2C%20%22b%22%5D&experiments=%5B%227%22%5D"
    )


def test_a_trial_run_ends_in_two_writes_and_replays_after_an_outage(store, tmp_path):
    """Status tag, error tag, MLflow status, end time and name: one batch and one update (the
    public update_run + set_terminated pair read the whole run twice; 500-trial profile)."""
    from tune_m3.names import FAILED, TAG_ERROR

    uri, c, exp, parent = store
    log = _logger(store, tmp_path)
    flaky = Flaky(log.writes.client)
    log.writes.client = flaky
    log.trial_start("tA", "t01", {"p_mask": 0.2})
    log.trial_result("tA", {"epoch": 1, "val_mae": 0.5})
    before = flaky.calls
    log.trial_end("tA", FAILED, error="loss became nan", run_name="t01 → failed")
    # one client call (the tags' batch); status, end time and name go to the store in one update
    assert flaky.calls - before == 1
    run = c.get_run(log.run_id("tA"))
    assert run.info.status == "FAILED" and run.info.end_time is not None
    assert run.info.run_name == "t01 → failed"
    assert run.data.tags[TAG_STATUS] == FAILED and run.data.tags[TAG_ERROR] == "loss became nan"

    log.trial_start("tB", "t02", {"p_mask": 0.3})
    flaky.down = True  # the server goes away before the trial ends: the end waits, then replays
    log.trial_end("tB", COMPLETED, run_name="t02 → val_mae 0.4")
    log.writes.retry_every = 0.0
    flaky.down = False
    assert log.finish() == []
    run = c.get_run(log.run_id("tB"))
    assert run.info.status == "FINISHED" and run.info.run_name == "t02 → val_mae 0.4"
    assert run.data.tags[TAG_STATUS] == COMPLETED and run.info.end_time is not None
