"""MLflow tracking: one parent run per search, one nested child run per trial.

Where things go by default (one folder, printed at the end of every search)::

    ./tune_m3_results/            $TUNE_M3_RESULTS overrides
      mlflow.db                   the MLflow tracking store (SQLite: embedded, no server)
      mlartifacts/                MLflow artifacts (space file, summaries, reports)
      ray/                        Ray Tune's storage: trial results and checkpoints

Any tracking URI works instead (``--mlflow-uri http://host:5000`` for a team server).

How the parent learns each trial's run id (a DESIGN.md open question, decided here): the driver
owns every MLflow write. :class:`MlflowTrialLogger` is a Ray Tune callback that runs in the
driver: it creates the child run when a trial starts (tags ``mlflow.parentRunId`` = the parent,
which is what makes the UI nest it, and ``tune_m3.trial_id`` = Ray's trial id), logs each
reported epoch with ``step = epoch``, and closes the run with the trial's outcome. Workers never
talk to MLflow, so a cluster's workers need no access to the tracking server, SQLite sees one
writer, and the mapping trial id -> run id lives in the parent's child runs, where ``--resume``
finds it again (no duplicate child runs).

Exactly once: a trial retried from its checkpoint re-reports the epochs after that checkpoint;
the logger remembers the last step logged per trial (recovered from MLflow on resume) and skips
anything at or below it.

Outages: a failed MLflow call is buffered and retried on a later event (at most every
``retry_every`` seconds, so a dead server does not stall Ray's event loop) and at the end of the
search. A trial that starts while the server is down gets a placeholder run id
(``pending:<trial id>``) that its buffered writes refer to; the buffered ``create_run`` binds it
to the real id once it goes through. What still cannot be logged at the end is written to
``unlogged.json`` with the command that replays it (``python -m tune_m3.tracking resync FILE``);
nothing is silently lost. MLflow's own client retries a failed HTTP request for about four
minutes by default; tune_m3 shortens that for its process (:data:`HTTP_RETRY_DEFAULTS`), since
it buffers and retries itself.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tune_m3.errors import UserError

ENV_RESULTS = "TUNE_M3_RESULTS"
TAG_PARENT = "mlflow.parentRunId"
TAG_TRIAL = "tune_m3.trial_id"
TAG_STATUS = "tune_m3.trial_status"  # completed | stopped_by_scheduler | failed
TAG_SEARCH = "tune_m3.search_id"


def results_dir() -> Path:
    return Path(os.environ.get(ENV_RESULTS) or "tune_m3_results").expanduser().resolve()


def default_tracking_uri() -> str:
    return f"sqlite:///{results_dir() / 'mlflow.db'}"


def ui_command(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    art = results_dir() / "mlartifacts"
    return f"mlflow ui --backend-store-uri {uri} --default-artifact-root {art}"


# MLflow's client retries a failed HTTP request 7 times with exponential backoff (about four
# minutes) and waits 120 s for a response; every Ray event would stall that long while the
# server is down. The logger buffers and retries itself, so a few seconds per try is enough.
# Set any of these variables yourself to override.
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
PENDING = "pending:"  # prefix of a placeholder run id (trial started while MLflow was down)


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    import logging

    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


def client(uri: str):
    """An MlflowClient for ``uri``; an unreachable server is a UserError (checked quickly)."""
    _quiet_mlflow()
    from mlflow.tracking import MlflowClient

    _quiet_mlflow()  # mlflow sets its own logger levels on import

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if uri.startswith(("http://", "https://")):
        for k, v in HTTP_RETRY_DEFAULTS.items():
            os.environ.setdefault(k, v)  # read by MLflow at every request
        check_server(uri)
    return MlflowClient(tracking_uri=uri)


def check_uri(uri: str) -> None:
    """Refuse a tracking URI that cannot work, quickly and before anything is written."""
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    elif uri.startswith("file:") or "://" not in uri:
        raise UserError(
            f"--mlflow-uri {uri}: MLflow 3 no longer supports plain-directory (file) stores by default; "
            "use sqlite:///path/to/mlflow.db or an http(s):// tracking server"
        )


def check_server(uri: str, timeout: float = 5.0) -> None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            r.read()
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise UserError(
            f"MLflow tracking server {uri} is not reachable ({getattr(err, 'reason', err)}). "
            "Start it (mlflow server --host 127.0.0.1 --port 5000 ...) or drop --mlflow-uri to "
            "use the local SQLite store"
        ) from None


def get_or_create_experiment(c, name: str) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    art = None
    if not c.tracking_uri.startswith(("http://", "https://", "databricks")):
        art = (results_dir() / "mlartifacts").as_uri()
    return c.create_experiment(name, artifact_location=art)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(v):
            out[k] = float(v)
    return out


def _str_param(v: Any) -> str:
    s = ",".join(map(str, v)) if isinstance(v, list | tuple) else str(v)
    return s[:6000]


class MlflowTrialLogger:
    """Driver-side Ray Tune callback: nested child runs, buffered writes. See module doc.

    Built as a plain object and wrapped into a ``ray.tune.Callback`` by :func:`make_callback`,
    so this module imports without Ray.
    """

    def __init__(
        self,
        uri: str,
        experiment_id: str,
        parent_run_id: str,
        base_params: Mapping[str, Any],
        search_tags: Mapping[str, str],
        unlogged_path: Path,
        retry_every: float = 10.0,
    ):
        self.uri = uri
        self.c = client(uri)
        self.experiment_id = experiment_id
        self.parent = parent_run_id
        self.base_params = dict(base_params)
        self.search_tags = dict(search_tags)
        self.unlogged_path = unlogged_path
        self.runs: dict[str, str] = {}  # trial id -> run id
        self.last_step: dict[str, int] = {}
        self.last_result: dict[str, dict] = {}
        self.pending: list[tuple[str, tuple, dict]] = []  # (method, args, kwargs) not yet logged
        self.final_logged: set[str] = set()  # trials whose test_/diag_ metrics are in MLflow
        self.node_tagged: dict[str, str] = {}  # trial id -> node id last tagged
        self.bound: dict[str, str] = {}  # placeholder run id -> real run id
        self.retry_every = retry_every  # seconds between tries while MLflow is unreachable
        self._next_try = 0.0  # time.monotonic() before which a buffered write is not retried
        self._recover()

    def __getstate__(self) -> dict:
        # Ray pickles callbacks into tuner.pkl; a database client does not pickle, and a
        # restored search gets a fresh logger anyway (search.py), so drop it here.
        state = self.__dict__.copy()
        state["c"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.c = client(self.uri)

    # ----------------------------------------------------------------- buffered MLflow calls

    def call(self, method: str, *args, **kwargs) -> Any:
        """Any ``MlflowClient`` method, buffered like the trial events (search.py: parent run)."""
        return self._call(method, *args, **kwargs)

    def _call(self, method: str, *args, **kwargs) -> Any:
        self._flush()
        if self.pending:  # keep order: queue behind what is already waiting
            self.pending.append((method, args, kwargs))
            return None
        try:
            return self._invoke(method, args, kwargs)
        except Exception as err:  # noqa: BLE001 - any transport error: buffer and go on
            self._failed(err)
            self.pending.append((method, args, kwargs))
            return None

    def _invoke(self, method: str, args: tuple, kwargs: dict) -> Any:
        """Run one client call; placeholder run ids in ``args`` become the real ones."""
        args = tuple(self.bound.get(a, a) if isinstance(a, str) else a for a in args)
        kwargs = dict(kwargs)
        bind = kwargs.pop("_bind", None)  # create_run of a placeholder: remember its real id
        out = getattr(self.c, method)(*args, **kwargs)
        if bind:
            self.bound[bind] = out.info.run_id
            for tid, rid in self.runs.items():
                if rid == bind:
                    self.runs[tid] = out.info.run_id
        return out

    def _flush(self, force: bool = False) -> bool:
        if self.pending and not force and time.monotonic() < self._next_try:
            return False  # tried a moment ago: do not stall every event on a dead server
        while self.pending:
            method, args, kwargs = self.pending[0]
            try:
                self._invoke(method, args, kwargs)
            except Exception as err:  # noqa: BLE001
                self._failed(err)
                return False
            self.pending.pop(0)
        return True

    def _failed(self, err: Exception) -> None:
        self._warn(err)
        self._next_try = time.monotonic() + self.retry_every

    _last_warn = 0.0

    def _warn(self, err: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warn > 30:
            print(
                f"[tune_m3] MLflow write failed ({type(err).__name__}: {str(err)[:120]}); "
                f"buffering and retrying ({len(self.pending) + 1} pending)",
                file=sys.stderr,
                flush=True,
            )
            self._last_warn = now

    # ----------------------------------------------------------------- resume

    def _recover(self) -> None:
        """Find child runs of this parent (after --resume) and the last step each has logged."""
        runs = self.c.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_PARENT}` = '{self.parent}'",
            max_results=5000,
        )
        for r in runs:
            tid = r.data.tags.get(TAG_TRIAL)
            if not tid:
                continue
            self.runs[tid] = r.info.run_id
            hist = self.c.get_metric_history(r.info.run_id, "epoch")
            self.last_step[tid] = max((int(m.value) for m in hist), default=0)
            if "test_mae" in r.data.metrics:
                self.final_logged.add(tid)

    # ----------------------------------------------------------------- trial events

    def trial_start(self, trial_id: str, trial_name: str, params: Mapping[str, Any]) -> None:
        if trial_id in self.runs:  # resumed or retried trial: keep its run, reopen it
            self._call("update_run", self.runs[trial_id], status="RUNNING")
            return
        tags = {
            TAG_PARENT: self.parent,
            TAG_TRIAL: trial_id,
            "mlflow.runName": trial_name,
            **self.search_tags,
        }
        # while MLflow is unreachable the run is created later (buffered): until then the
        # trial's writes refer to a placeholder id that the buffered create_run binds
        placeholder = PENDING + trial_id
        self.runs[trial_id] = placeholder
        run = self._call(
            "create_run", self.experiment_id, tags=tags, run_name=trial_name, _bind=placeholder
        )
        run_id = run.info.run_id if run is not None else placeholder
        self.last_step.setdefault(trial_id, 0)
        from mlflow.entities import Param

        merged = {**self.base_params, **params}
        items = [Param(k, _str_param(v)) for k, v in sorted(merged.items())]
        for i in range(0, len(items), 100):
            self._call("log_batch", run_id, params=items[i : i + 100])

    def trial_result(self, trial_id: str, result: Mapping[str, Any]) -> None:
        run_id = self.runs.get(trial_id)
        self.last_result[trial_id] = dict(result)
        if not run_id:
            return
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        node = result.get("node_id")
        if isinstance(node, str) and self.node_tagged.get(trial_id) != node:
            # where the trial runs (a retry may move it to another node): tags, for cluster checks
            self._call("set_tag", run_id, "tune_m3.node_id", node)
            if isinstance(result.get("device"), str):
                self._call("set_tag", run_id, "tune_m3.device", result["device"])
            self.node_tagged[trial_id] = node
        keys: list[str] = []
        if step > self.last_step.get(trial_id, 0):  # each epoch exactly once (retries re-report)
            keys += [k for k in result if k in _REPORTED or k.startswith(("val_", "train_"))]
            self.last_step[trial_id] = step
        if any(k.startswith("test_") for k in result) and trial_id not in self.final_logged:
            # final results, once (a trial re-run after a driver crash reports them again)
            keys += [k for k in result if k.startswith(("test_", "diag_")) or k == "stopped_early"]
            self.final_logged.add(trial_id)
        if not keys:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        metrics = _finite({k: result[k] for k in keys})
        items = [Metric(k, v, ts, step) for k, v in sorted(metrics.items())]
        for i in range(0, len(items), 900):
            self._call("log_batch", run_id, metrics=items[i : i + 900])

    def trial_end(self, trial_id: str, status: str, error: str | None = None) -> None:
        run_id = self.runs.get(trial_id)
        if not run_id:
            return
        self._call("set_tag", run_id, TAG_STATUS, status)
        if error:
            self._call("set_tag", run_id, "tune_m3.error", error[:4000])
        mlflow_status = {
            "completed": "FINISHED",
            "stopped_by_scheduler": "FINISHED",
            "failed": "FAILED",
        }[status]
        self._call("set_terminated", run_id, mlflow_status)

    def finish(self, retries: int = 5, wait: float = 2.0) -> list[tuple[str, tuple, dict]]:
        """Flush what is buffered (with retries); return what could not be written."""
        for i in range(retries):
            if self._flush(force=True):
                return []
            if i < retries - 1:
                time.sleep(wait * (i + 1))
        items = [
            _jsonable(
                (m, tuple(self.bound.get(a, a) if isinstance(a, str) else a for a in args), kw)
            )
            for m, args, kw in self.pending
        ]
        self.unlogged_path.parent.mkdir(parents=True, exist_ok=True)
        self.unlogged_path.write_text(json.dumps(items, indent=1))
        return self.pending


_REPORTED = {"epoch", "lr", "best_val_loss", "best_epoch", "epoch_seconds", "training_iteration"}


def _jsonable(item: tuple[str, tuple, dict]) -> dict:
    method, args, kwargs = item

    def conv(v):
        if hasattr(v, "to_proto") or hasattr(v, "key"):
            return {
                k: getattr(v, k) for k in ("key", "value", "timestamp", "step") if hasattr(v, k)
            }
        if isinstance(v, list | tuple):
            return [conv(x) for x in v]
        return v

    return {
        "method": method,
        "args": conv(list(args)),
        "kwargs": {k: conv(v) for k, v in kwargs.items()},
    }


def resync(path: str | Path, uri: str) -> int:
    """Replay ``unlogged.json`` (written when MLflow stayed unreachable) into ``uri``."""
    path = Path(path)
    try:
        items = json.loads(path.read_text())
        if not isinstance(items, list):
            raise ValueError(f"expected a list of writes, got {type(items).__name__}")
    except (OSError, ValueError) as err:  # missing, unreadable, not JSON (JSONDecodeError)
        raise UserError(
            f"{path}: not an unlogged.json written by a search ({type(err).__name__}: "
            f"{str(err)[:200]}); give the file named in the search's WARNING line"
        ) from None
    from mlflow.entities import Metric, Param

    c = client(uri)
    bound: dict[str, str] = {}  # placeholder run id -> the run created for it here
    for it in items:
        args = [bound.get(a, a) if isinstance(a, str) else a for a in it["args"]]
        kwargs = dict(it["kwargs"])
        bind = kwargs.pop("_bind", None)
        if "metrics" in kwargs:
            kwargs["metrics"] = [
                Metric(m["key"], m["value"], m["timestamp"], m["step"]) for m in kwargs["metrics"]
            ]
        if "params" in kwargs:
            kwargs["params"] = [Param(p["key"], p["value"]) for p in kwargs["params"]]
        out = getattr(c, it["method"])(*args, **kwargs)
        if bind:
            bound[bind] = out.info.run_id
    return len(items)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from tune_m3.errors import cli_main

    @cli_main
    def run(argv):
        p = argparse.ArgumentParser(prog="python -m tune_m3.tracking")
        sub = p.add_subparsers(dest="cmd", required=True)
        r = sub.add_parser("resync", help="replay MLflow writes that failed during a search")
        r.add_argument("file")
        r.add_argument("--mlflow-uri", default=None)
        args = p.parse_args(argv)
        n = resync(args.file, args.mlflow_uri or default_tracking_uri())
        print(f"replayed {n} MLflow writes from {args.file}")
        return 0

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
