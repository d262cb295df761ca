"""One MLflow child run per Ray Tune trial, nested under the search's parent run.

How the parent learns each trial's run id (a DESIGN.md open question, decided here): the driver
owns every MLflow write. :class:`MlflowTrialLogger` runs in the driver, behind a Ray Tune
callback (``tune_m3/search/callback.py``): it creates the child run when a trial starts (tag
``mlflow.parentRunId`` = the parent, which is what makes the UI nest it, and
``tune_m3.trial_id`` = Ray's trial id), logs each reported epoch with ``step = epoch``, and
closes the run with the trial's outcome (tag ``tune_m3.status``, see ``tune_m3/names.py``).
Workers never talk to MLflow, so a cluster's workers need no access to the tracking server,
SQLite sees one writer per search, and the mapping trial id -> run id lives in the parent's
child runs, where ``--resume`` finds it again (:meth:`MlflowTrialLogger.recover`): no duplicate
child runs.

Exactly once: a trial retried from its checkpoint re-reports the epochs after that checkpoint;
the logger remembers the last step logged per trial (recovered from MLflow on resume) and skips
anything at or below it. Final results (``test_*``, ``diag_test_*``) are logged once.

Every write goes through :class:`~tune_m3.tracking.writes.WriteBehind`, so a tracking server
that is down delays writes instead of losing them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tune_m3.names import (
    KILLED,
    LOST,
    MLFLOW_STATUS,
    TAG_DEVICE,
    TAG_ERROR,
    TAG_NODE,
    TAG_PARENT,
    TAG_STATUS,
    TAG_TRIAL,
)
from tune_m3.tracking.writes import WriteBehind, metric, param

# per-epoch keys logged at step = epoch (besides val_*, train_*, diag_val_*)
EPOCH_KEYS = frozenset(
    {
        "epoch",
        "lr",
        "best_val_loss",
        "best_epoch",
        "epoch_seconds",
        "training_iteration",
        "train_p_mask",
    }
)
EPOCH_PREFIXES = ("val_", "train_", "diag_val_")
FINAL_PREFIXES = ("test_", "diag_test_")


def epoch_metric_keys(result: Mapping[str, Any]) -> list[str]:
    return [k for k in result if k in EPOCH_KEYS or k.startswith(EPOCH_PREFIXES)]


def final_metric_keys(result: Mapping[str, Any]) -> list[str]:
    return [k for k in result if k.startswith(FINAL_PREFIXES) or k == "stopped_early"]


RESULT_SEP = " | "  # "0.2841 | t03 pM=.27 πT=.45": the result, then the trial's own name


def base_name(run_name: str) -> str:
    """A trial run's name without the result its end put in (``with_result`` in
    ``search/callback.py``; names of searches before 2026-12 had it after `` → ``)."""
    return run_name.split(RESULT_SEP, 1)[-1].split(" → ")[0]


def finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric, finite entries (MLflow refuses NaN/inf in some stores; bools are not metrics)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(v):
            out[k] = float(v)
    return out


class MlflowTrialLogger:
    """Driver-side trial -> child-run logger with buffered writes. See module doc.

    A plain object (this module imports without Ray); ``tune_m3/search/callback.py`` wraps it
    into a ``ray.tune.Callback``.
    """

    def __init__(
        self,
        uri: str,
        experiment_id: str,
        parent_run_id: str,
        search_tags: Mapping[str, str],
        unlogged_path: Path,
        retry_every: float = 10.0,
        client: Any = None,
        dataset: Mapping[str, Any] | None = None,
    ):
        from tune_m3.tracking.store import client as make_client

        self.uri = uri
        self.experiment_id = experiment_id
        self.parent = parent_run_id
        self.search_tags = dict(search_tags)
        self.unlogged_path = unlogged_path
        self.dataset = dict(dataset) if dataset else None  # tracking/datasets.py dataset_record
        self.writes = WriteBehind(
            client if client is not None else make_client(uri), retry_every, on_bind=self._rebind
        )
        self.runs: dict[str, str] = {}  # trial id -> run id (or a placeholder while MLflow is down)
        self.last_step: dict[str, int] = {}
        self.last_result: dict[str, dict] = {}
        self.final_logged: set[str] = set()  # trials whose test_/diag_ metrics are in MLflow
        self.node_tagged: dict[str, str] = {}  # trial id -> node id last tagged
        self.names: dict[str, str] = {}  # trial id -> run name as created (before any result)
        self.closed: set[str] = set()  # trials whose runs ended for good in an earlier session
        self.recover()

    @property
    def c(self):
        return self.writes.client

    def __getstate__(self) -> dict:
        # Ray pickles callbacks into tuner.pkl; a database client does not pickle, and a
        # restored search gets a fresh logger anyway (search/stages.py), so drop it here.
        state = self.__dict__.copy()
        state["writes"] = WriteBehind(None, self.writes.retry_every)
        return state

    def __setstate__(self, state: dict) -> None:
        from tune_m3.tracking.store import client as make_client

        self.__dict__.update(state)
        self.writes.client = make_client(self.uri)
        self.writes.on_bind = self._rebind

    def _rebind(self, placeholder: str, run_id: str) -> None:
        for tid, rid in self.runs.items():
            if rid == placeholder:
                self.runs[tid] = run_id

    def run_id(self, trial_id: str) -> str | None:
        rid = self.runs.get(trial_id)
        return None if rid is None else self.writes.resolve(rid)

    # ----------------------------------------------------------------- resume

    def recover(self) -> None:
        """Find child runs of this parent (after --resume) and the last step each has logged."""
        runs = self.c.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_PARENT}` = '{self.parent}'",
            max_results=5000,
        )
        for r in runs:
            tid = r.data.tags.get(TAG_TRIAL)
            if not tid or r.info.lifecycle_stage == "deleted":
                continue
            self.runs[tid] = r.info.run_id
            self.names[tid] = base_name(r.info.run_name or "")
            status = r.data.tags.get(TAG_STATUS)
            if status is not None and status not in (KILLED, LOST):
                self.closed.add(tid)
            hist = self.c.get_metric_history(r.info.run_id, "epoch")
            self.last_step[tid] = max((int(m.value) for m in hist), default=0)
            if "test_mae" in r.data.metrics:
                self.final_logged.add(tid)

    # ----------------------------------------------------------------- trial events

    def trial_start(
        self,
        trial_id: str,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str] | None = None,
    ) -> None:
        if trial_id in self.runs:  # resumed or retried trial: keep its run, reopen it
            self.writes.update_run(self.runs[trial_id], status="RUNNING")
            self.closed.discard(trial_id)
            return
        all_tags = {
            TAG_PARENT: self.parent,
            TAG_TRIAL: trial_id,
            **self.search_tags,
            **(tags or {}),
        }
        # while MLflow is unreachable the run is created later (buffered): until then the
        # trial's writes refer to a placeholder id that the buffered create binds
        run_id = self.writes.create_run(self.experiment_id, trial_id, all_tags, run_name)
        self.runs[trial_id] = run_id
        self.names[trial_id] = run_name
        self.last_step.setdefault(trial_id, 0)
        self.writes.log_batch(run_id, params=[param(k, v) for k, v in sorted(params.items())])
        if self.dataset:  # the runs page's Dataset column and dataset filter
            self.writes.log_inputs(run_id, [self.dataset])

    def trial_result(self, trial_id: str, result: Mapping[str, Any]) -> None:
        run_id = self.runs.get(trial_id)
        self.last_result[trial_id] = dict(result)
        if not run_id:
            return
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        tags = self._node_tags(trial_id, result)
        keys: list[str] = []
        if step > self.last_step.get(trial_id, 0):  # each epoch exactly once (retries re-report)
            keys += epoch_metric_keys(result)
            self.last_step[trial_id] = step
        if any(k.startswith("test_") for k in result) and trial_id not in self.final_logged:
            keys += final_metric_keys(result)  # once (a re-run after a driver crash re-reports)
            self.final_logged.add(trial_id)
        values = finite({k: result[k] for k in keys})
        metrics = [metric(k, v, step) for k, v in sorted(values.items())]
        if metrics or tags:  # one write per result: its metrics and any new node tags
            self.writes.log_batch(run_id, metrics=metrics, tags=tags)

    def _node_tags(self, trial_id: str, result: Mapping[str, Any]) -> dict[str, str]:
        """Where the trial runs, when new (a retry may move it to another node): cluster checks."""
        node = result.get("node_id")
        if not isinstance(node, str) or self.node_tagged.get(trial_id) == node:
            return {}
        self.node_tagged[trial_id] = node
        tags = {TAG_NODE: node}
        if isinstance(result.get("device"), str):
            tags[TAG_DEVICE] = result["device"]
        return tags

    def trial_end(
        self, trial_id: str, status: str, error: str | None = None, run_name: str | None = None
    ) -> None:
        """Close the trial's run: ``status`` is one of names.TRIAL_STATUSES."""
        run_id = self.runs.get(trial_id)
        if not run_id:
            return
        tags = {TAG_STATUS: status, **({TAG_ERROR: error[:4000]} if error else {})}
        self.writes.end_run(run_id, MLFLOW_STATUS[status], tags, name=run_name)

    def finish(self) -> list:
        """Flush what is buffered (with retries); return what could not be written."""
        return self.writes.finish(self.unlogged_path)
