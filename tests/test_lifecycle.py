"""How a search ends, with real processes: Ctrl-C, SIGTERM, resume, several searches at once.

Contract (tune_m3/search/, DESIGN.md): SIGINT / SIGTERM -> exit 130 / 143, running trials
and the parent run KILLED, no ``best.*``, one line with the exact ``--resume`` command; the
resume finishes the planned trials in the same parent run (one child run per trial) and only
then logs ``best.*`` (= the best trial of ``trials.parquet``) and marks the parent FINISHED;
a resume of a finished search changes nothing. Searches started at the same moment on a fresh
results folder all succeed; a second search under a name in use is refused (exit 2) and the
first one's results are intact.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import tiny_arrays
from searchutil import (
    TINY_FIXED,
    Search,
    make_search_env,
    mlflow_runs,
    write_space,
    write_tiny_dataset,
)

from tune_m3.names import COMPLETED, KILLED, TAG_STATUS, TAG_TRIAL

pytestmark = pytest.mark.slow

# epochs of a trial that must still be running a few seconds after it started (tiny data trains
# an epoch in about 0.1-0.3 s on an idle core; 14 epochs were over before the signal in CI)
EPOCHS = 40


def cli(env, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """``python -m tune_m3.search ARGS``, to the end, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "tune_m3.search", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def env(tmp_path):
    return make_search_env(tmp_path)


def _space(tmp_path: Path, name: str, epochs: int, n: int) -> Path:
    return write_space(
        tmp_path / f"{name}.yaml",
        search={"p_mask": {"uniform": [0.05, 0.5]}, "pi_text": {"uniform": [0.2, 0.8]}},
        fixed={**TINY_FIXED, "scheme": "m3", "max_epochs": epochs, "patience": 100},
        scheduler={"type": "fifo"},
        num_samples=n,
        max_concurrent=2,
    )


def _parent(env, experiment):
    c, parents, children = mlflow_runs(env, experiment)
    assert len(parents) == 1
    return c, parents[0], children


def _interrupt(env, space: Path, experiment: str, name: str, sig: int) -> str:
    """Start a search, signal it once two trials run, check the interrupted state; its output."""
    out = Search(env, "--space", str(space), "--experiment", experiment, "--name", name)
    out.wait_for("started")
    # the trials are long (EPOCHS) so that they are still running after this on a quiet machine
    time.sleep(1.5)
    out.proc.send_signal(sig)
    rc = out.finish()
    assert rc == 128 + sig, out.output[-3000:]
    assert f"interrupted by {signal.Signals(sig).name}" in out.output
    assert "Traceback" not in out.output, out.output[-3000:]
    _, parent, children = _parent(env, experiment)
    assert parent.info.status == "KILLED"
    assert not [k for k in parent.data.params if k.startswith("best.")]
    assert children, "no trial had started"
    for r in children:  # finished before the signal, or killed by it: never RUNNING, never lying
        assert (r.info.status, r.data.tags[TAG_STATUS]) in {
            ("KILLED", KILLED),
            ("FINISHED", COMPLETED),
        }
    assert any(r.data.tags[TAG_STATUS] == KILLED for r in children)
    return out.output


def test_sigint_then_resume_finishes_in_the_same_parent(env, tmp_path):
    space = _space(tmp_path, "ctrlc", epochs=EPOCHS, n=4)
    text = _interrupt(env, space, "ctrlc", "ctrlc", signal.SIGINT)
    line = next(ln for ln in text.splitlines() if "Resume it with: " in ln)
    cmd = shlex.split(line.split("Resume it with: ", 1)[1])
    assert cmd[:3] == ["python", "-m", "tune_m3.search"] and cmd[-3:] == [
        "--name",
        "ctrlc",
        "--resume",
    ]

    done = cli(env, *cmd[3:], timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    c, parent, children = _parent(env, "ctrlc")
    assert parent.info.status == "FINISHED"
    trial_ids = [r.data.tags[TAG_TRIAL] for r in children]
    assert len(trial_ids) == len(set(trial_ids)) == 4  # one child run per planned trial
    assert all(
        r.info.status == "FINISHED" and r.data.tags[TAG_STATUS] == COMPLETED for r in children
    )
    df = pd.read_parquet(Path(env["TUNE_M3_RESULTS"]) / "ray" / "ctrlc" / "trials.parquet")
    best = df.loc[df["val_mae"].idxmin()]
    assert parent.data.params["best.trial_id"] == best["trial_id"]
    assert float(parent.data.params["best.p_mask"]) == pytest.approx(best["param_p_mask"])
    assert parent.data.metrics["best.val_mae"] == pytest.approx(best["val_mae"])
    # the best epoch's value, not the last epoch's
    hist = [m.value for m in c.get_metric_history(best["run_id"], "val_mae")]
    assert len(hist) == EPOCHS and best["val_mae"] == pytest.approx(min(hist))

    # a resume of a finished search says so and changes nothing
    again = cli(env, *cmd[3:])
    assert again.returncode == 0 and "already finished" in again.stdout, again.stdout + again.stderr
    _, after, _ = _parent(env, "ctrlc")
    assert (after.info.status, after.info.end_time) == (parent.info.status, parent.info.end_time)


def test_sigterm_exits_143_and_kills_the_runs(env, tmp_path):
    _interrupt(env, _space(tmp_path, "term", epochs=EPOCHS, n=2), "term", "term", signal.SIGTERM)


def test_three_searches_at_once_on_a_fresh_results_folder(env, tmp_path):
    space = _space(tmp_path, "together", epochs=2, n=1)
    outs = [Search(env, "--space", str(space), "--max-concurrent", "1") for _ in range(3)]
    rcs = [o.finish(timeout=600) for o in outs]
    assert rcs == [0, 0, 0], "\n----\n".join(o.output[-2000:] for o in outs)
    dirs = sorted(p.name for p in (Path(env["TUNE_M3_RESULTS"]) / "ray").iterdir())
    assert len(dirs) == 3 and len(set(dirs)) == 3, dirs  # never one Ray folder for two searches
    _, parents, children = mlflow_runs(env, "together")
    assert len(parents) == 3 and len(children) == 3
    assert {p.info.status for p in parents} == {"FINISHED"}
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis.report",
            "--experiment",
            "together",
            "--out",
            str(tmp_path / "rep"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr[-2000:]


def test_a_name_in_use_is_refused_and_the_first_search_is_intact(env, tmp_path):
    space = _space(tmp_path, "named", epochs=EPOCHS, n=2)  # still running when the 2nd starts
    first = Search(env, "--space", str(space), "--name", "taken")
    first.wait_for("started")
    second = cli(env, "--space", str(space), "--name", "taken", timeout=120)
    assert second.returncode == 2, second.stdout + second.stderr
    err = second.stderr
    assert err.startswith("error: ") and "'taken' is in use" in err and "running" in err
    assert "--name" in err and "--resume" in err and "Traceback" not in err
    # --resume of a running search is refused too
    busy = cli(env, "--space", str(space), "--name", "taken", "--resume", timeout=120)
    assert busy.returncode == 2 and "running in another process" in busy.stderr, busy.stderr
    assert first.finish() == 0, first.output[-3000:]
    df = pd.read_parquet(Path(env["TUNE_M3_RESULTS"]) / "ray" / "taken" / "trials.parquet")
    assert len(df) == 2 and (df["status"] == COMPLETED).all()
    _, parents, children = mlflow_runs(env, "named")
    assert len(parents) == 1 and len(children) == 2
    # after it finished, the name is still taken (a finished search), and said so
    late = cli(env, "--space", str(space), "--name", "taken", "--dry-run", timeout=120)
    assert late.returncode == 2 and "finished" in late.stderr, late.stderr


def _state(env, name: str) -> dict:
    return json.loads(
        (Path(env["TUNE_M3_RESULTS"]) / "ray" / name / "tune_m3_search.json").read_text()
    )


def test_resume_refuses_a_search_that_is_not_the_one_it_resumes(env, tmp_path):
    """Issue 21 item 1: an edit between interrupt and resume is refused (exit 2, one error line
    naming each changed key old -> new); nothing of the interrupted search changes; an edit
    that does not define the search (a comment) resumes, and the search finishes."""
    space = _space(tmp_path, "edit", epochs=EPOCHS, n=3)
    _interrupt(env, space, "edit", "edit", signal.SIGINT)
    before = _state(env, "edit")
    assert before["definition"]["resolved"]["num_samples"] == 3
    assert before["dataset_fingerprint"]
    base = ["--space", str(space), "--experiment", "edit", "--name", "edit", "--resume"]
    original = space.read_text()

    def refused(*extra: str, expect: list[str]) -> None:
        out = cli(env, *base, *extra)
        assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
        errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
        for key in expect:
            assert key in errors[0], errors[0]

    # a searched range edited in the file
    space.write_text(original.replace("- 0.5\n", "- 0.9\n", 1))
    refused(expect=["search.p_mask.uniform: [0.05, 0.5] -> [0.05, 0.9]"])
    space.write_text(original)
    # more trials and fewer epochs from the command line
    refused(
        "--num-samples",
        "5",
        "--set",
        "max_epochs=2",
        expect=["num_samples: 3 -> 5", f"fixed.max_epochs: {EPOCHS} -> 2"],
    )
    # another dataset (other dims) under --dataset
    arrays = tiny_arrays(n=(40, 16, 16), dims=(6, 4, 3), seed=1)
    write_tiny_dataset(env["TUNE_M3_DATA_DIR"], "tiny2", arrays)
    refused("--dataset", "tiny2", expect=["dataset.name: tiny -> tiny2"])
    after = _state(env, "edit")
    assert {k: after[k] for k in ("status", "definition", "parent_run_id")} == {
        k: before[k] for k in ("status", "definition", "parent_run_id")
    }
    _, parent, _ = _parent(env, "edit")
    assert parent.info.status == "KILLED"

    # a comment is not a change of the search: it resumes (with a note) and finishes
    space.write_text("# tuned by hand\n" + original)
    done = cli(env, *base, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "changed since search 'edit' started, but not in anything" in done.stderr
    _, parent, children = _parent(env, "edit")
    assert parent.info.status == "FINISHED" and len(children) == 3


def test_sigkilled_driver_leaves_nothing_after_the_next_search(env, tmp_path):
    """Issue 21 item 8: SIGKILL of the driver alone (not its process group) orphans Ray's
    agents and the trials' scratch folders; the resume ends the recorded processes (by pid and
    start time) and removes the scratch folders; nothing of ours outlives it."""
    import psutil

    space = _space(tmp_path, "sigkill", epochs=EPOCHS, n=2)
    out = Search(env, "--space", str(space), "--experiment", "sigkill", "--name", "sigkill")
    out.wait_for("started")
    time.sleep(1.5)
    os.kill(out.proc.pid, signal.SIGKILL)  # the driver only: what a crash or the OOM killer does
    out.proc.wait(timeout=30)
    time.sleep(3)
    state = _state(env, "sigkill")
    recorded = state["ray_processes"]
    assert recorded, state

    def alive() -> list[int]:
        out = []
        for pid, started in recorded:
            try:
                if abs(psutil.Process(pid).create_time() - started) < 1e-3:
                    out.append(pid)
            except psutil.NoSuchProcess:
                pass
        return out

    orphans = alive()
    print(f"\n{len(orphans)} of {len(recorded)} recorded Ray processes outlived the driver")
    folder = Path(env["TUNE_M3_RESULTS"]) / "ray" / "sigkill"
    try:
        done = cli(
            env,
            "--space",
            str(space),
            "--experiment",
            "sigkill",
            "--name",
            "sigkill",
            "--resume",
            timeout=600,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert not alive(), alive()
        assert not list(folder.glob("*/tune_m3_trial_*")), list(folder.glob("*/tune_m3_trial_*"))
    finally:
        for pid in alive():  # a failed assertion must not leave them (ours, by pid) behind
            os.kill(pid, signal.SIGKILL)
