"""Helpers for tests that run real searches (``python -m tune_m3.search``) as a user would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml
from conftest import tiny_arrays

from tune_m3.data.formats import CanonicalSplit
from tune_m3.data.store import write_dataset

TINY_FIXED = {
    "hidden": 8,
    "proj": 8,
    "batch_size": 16,
    "threads": 1,
    "max_epochs": 3,
    "diag_fractions": [0.3],
    "checkpoint_every": 1,
}


def make_search_env(root: Path) -> dict:
    """A store with the tiny dataset 'tiny' and a results dir under ``root``; returns the env."""
    store = root / "store"
    write_tiny_dataset(store, "tiny", tiny_arrays(n=(96, 32, 48)), like="mosei")
    return {
        **os.environ,
        "TUNE_M3_DATA_DIR": str(store),
        "TUNE_M3_RESULTS": str(root / "results"),
        "PYTHONUNBUFFERED": "1",
    }


def write_tiny_dataset(store, name: str, arrays: dict, like: str | None = None) -> None:
    """``tiny_arrays(...)`` as dataset ``name`` in ``store`` (SYNTHETIC, fingerprint = name)."""
    splits = {
        s: CanonicalSplit(
            features={m: a[m] for m in ("text", "audio", "vision")},
            labels=a["labels"],
            ids=pd.Series(range(len(a["labels"]))).astype(str).to_numpy(),
            lengths=a["lengths"],
        )
        for s, a in arrays.items()
    }
    source = {"kind": "synthetic", "fingerprint": name}
    write_dataset(store, name, splits, synthetic=True, source=source, like=like)


def write_space(path: Path, **spec) -> Path:
    base = {
        "dataset": {"name": "tiny"},
        "fixed": dict(TINY_FIXED),
        "max_concurrent": 2,
        "resources": {"cpu": 1},
    }
    base.update(spec)
    path.write_text(yaml.safe_dump(base))
    return path


def start_search(env: dict, *args: str, stderr=subprocess.STDOUT) -> subprocess.Popen:
    """``python -m tune_m3.search ARGS`` in the background, in its own session (text output)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tune_m3.search", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )


def run_search(env: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the CLI; on timeout kill it and every process it started (Ray's too), by pid."""
    proc = start_search(env, *args, stderr=subprocess.PIPE)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        stdout, stderr = proc.communicate()
        pytest.fail(f"search timed out after {timeout} s:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def grid_store(root: Path, experiment: str, timeout: int = 600, **spec) -> dict:
    """A tiny FIFO grid search (``spec``: :func:`write_space`'s keys) run through the CLI into
    a fresh store under ``root``; returns ``{"uri": its MLflow URI, "results": results dir}``."""
    env = make_search_env(root)
    space = write_space(
        root / f"{experiment}.yaml", algorithm={"type": "grid"}, scheduler={"type": "fifo"}, **spec
    )
    run_search(env, "--space", str(space), "--experiment", experiment, timeout=timeout)
    results = Path(env["TUNE_M3_RESULTS"])
    return {"uri": f"sqlite:///{results}/mlflow.db", "results": results}


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its descendants (processes this test started), by process id."""
    for p in [pid, *_descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def mlflow_runs(env: dict, experiment: str):
    """(client, parent runs, child runs) of ``experiment`` in the env's results dir."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{env['TUNE_M3_RESULTS']}/mlflow.db")
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return c, parents, children


class Search:
    """``python -m tune_m3.search`` in the background; its output collected line by line."""

    def __init__(self, env: dict, *args: str):
        self.proc = start_search(env, *args)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, what: str, count: int = 1, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while sum(what in s for s in self.lines) < count:
            if self.proc.poll() is not None or time.time() > deadline:
                self.kill()  # a test that fails here must not leave the search (and its Ray) behind
                pytest.fail(f"never saw {what!r} x{count}:\n{self.output[-4000:]}")
            time.sleep(0.2)

    def finish(self, timeout: float = 400) -> int:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"search did not finish in {timeout} s:\n{self.output[-4000:]}")
        self._reader.join(timeout=10)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            kill_tree(self.proc.pid)
            self.proc.wait(timeout=30)
