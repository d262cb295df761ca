"""MLflow runs of tune_m3 searches -> pandas DataFrames.

A search (``python -m tune_m3.search``) writes, per MLflow experiment, one PARENT run per search
and one CHILD run per trial (tag ``mlflow.parentRunId``); see ``tune_m3/tracking.py``. This module
reads them back:

- :func:`load_runs`: one row per child run (trial) with its params (typed back to numbers), its
  final metrics (``test_*``, ``diag_test_*``, and the latest value of every per-epoch metric), its
  tags (space, dataset, synthetic flag, trial status, search id) and its run status.
- :func:`load_history`: the per-epoch values (``step = epoch``) of chosen metrics, long format,
  for learning curves.

Column names follow the project's one vocabulary (``p_mask``, ``pi_text``, ``test_mae``,
``diag_test_text_missing_30_corr_drop`` ...). The few columns that are neither a param nor a
metric are listed in :data:`RUN_COLUMNS`. A per-epoch metric whose name is also a param (``lr``:
the learning rate in the schedule versus the configured one) keeps the param's name for the
param and gets ``last_`` in front for the metric (``last_lr``).

Errors a user can cause raise :class:`tune_m3.errors.UserError` (exit code 2 in the CLI): an
unknown experiment (with the known names and a did-you-mean), an unreachable tracking server or a
store that does not exist, an experiment without finished trial runs.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tune_m3.errors import UserError
from tune_m3.names import (
    STAGE_SEARCH,
    TAG_CONFIRM_OF,
    TAG_DATASET,
    TAG_PARENT,
    TAG_PARETO,
    TAG_RUN_NAME,
    TAG_SEARCH,
    TAG_SPACE,
    TAG_STAGE,
    TAG_STATUS,
    TAG_STATUS_LEGACY,
    TAG_SYNTHETIC,
    TAG_TRIAL,
)

__all__ = ["DEFAULT_MODEL", "RUN_COLUMNS", "RunsInfo", "SearchInfo", "load_history", "load_runs"]

#: the model of a run without a ``model`` param (every run logged before models were pluggable)
DEFAULT_MODEL = "m3_baseline"

# columns of load_runs() that are neither params nor metrics
RUN_COLUMNS: tuple[str, ...] = (
    "run_id",
    "run_name",
    "parent_id",
    "search_id",
    "trial_id",
    "trial_status",
    "status",
    "stage",
    "confirm_of",
    "pareto",
    "space",
    "dataset_tag",
    "synthetic",
    "start_time",
    "duration_s",
)
_FINISHED = "FINISHED"


@dataclass
class SearchInfo:
    """One search: its parent run and the parent's params (algorithm, scheduler, metric, mode)."""

    parent_id: str
    search_id: str
    start_time: pd.Timestamp | None
    status: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def metric(self) -> str | None:
        return self.params.get("metric")

    @property
    def mode(self) -> str | None:
        return self.params.get("mode")

    @property
    def algorithm(self) -> str:
        """``grid`` or ``optuna`` (parent param ``algorithm``); ``""`` when not logged."""
        return self.params.get("algorithm", "")

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """``[(metric, mode), ...]`` of a multi-objective search (parent param ``objectives``, a
        JSON list of ``{"metric": ..., "mode": ...}``); ``[]`` for a single-objective one."""
        raw = self.params.get("objectives")
        if not raw:
            return []
        try:
            objs = json.loads(raw)
            return [(str(o["metric"]), str(o.get("mode", "min"))) for o in objs]
        except (ValueError, TypeError, KeyError):
            return []


@dataclass
class RunsInfo:
    """What :func:`load_runs` read and what it left out."""

    experiment: str
    experiment_id: str
    tracking_uri: str
    searches: list[SearchInfo]
    n_loaded: int
    left_out: dict[str, int]  # reason -> number of child runs not in the frame
    synthetic: bool  # any loaded trial ran on synthetic data
    datasets: list[str]
    param_columns: list[str]
    metric_columns: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def latest_search(self) -> SearchInfo | None:
        """The most recently started search that has runs in the frame (where reports go)."""
        return self.searches[-1] if self.searches else None

    @property
    def metric(self) -> str:
        """The search metric (parent param ``metric``) of the latest search; val_mae if unknown."""
        s = self.latest_search
        return (s.metric if s else None) or "val_mae"

    @property
    def mode(self) -> str:
        s = self.latest_search
        return (s.mode if s else None) or "min"

    @property
    def algorithm(self) -> str:
        """The latest search's algorithm (``grid``, ``optuna``; ``""`` when unknown)."""
        s = self.latest_search
        return s.algorithm if s else ""

    @property
    def objectives(self) -> list[tuple[str, str]]:
        s = self.latest_search
        return s.objectives if s else []

    def describe_left_out(self) -> str:
        if not self.left_out:
            return "none left out"
        parts = [f"{n} {why}" for why, n in sorted(self.left_out.items())]
        return "left out: " + ", ".join(parts)


# ----------------------------------------------------------------------------------- client


def _client(tracking_uri: str | None):
    """A checked MlflowClient: a missing local store or an unreachable server is a UserError."""
    from tune_m3 import tracking

    uri = tracking_uri or tracking.default_tracking_uri()
    path = _local_store_path(uri)
    if path is not None and not path.exists():
        # MLflow would silently create an empty store here; a typo should not do that
        raise UserError(
            f"no MLflow store at {path} (tracking URI {uri}). Run a search first "
            "(python -m tune_m3.search --space NAME), set $TUNE_M3_RESULTS to the results "
            "directory of your searches, or pass --tracking-uri"
        )
    c = tracking.client(uri)  # UserError for an http(s) server that does not answer
    return c, uri


def _local_store_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///"))
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if "://" not in uri and not uri.startswith(("databricks", "http")):
        return Path(uri)
    return None


def _get_experiment(c, name: str, uri: str):
    try:
        exp = c.get_experiment_by_name(name)
    except Exception as err:  # noqa: BLE001 - any transport/database error is the user's store
        raise UserError(
            f"cannot read the MLflow store {uri} ({type(err).__name__}: {str(err)[:200]})"
        ) from None
    if exp is None or exp.lifecycle_stage == "deleted":
        known = sorted(
            e.name for e in c.search_experiments(max_results=1000) if e.name != "Default"
        )
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        listed = ", ".join(known) if known else "none: run a search first"
        deleted = " (it was deleted)" if exp is not None else ""
        raise UserError(
            f"no MLflow experiment named '{name}'{deleted} in {uri}{hint}. "
            f"Known experiments: {listed}"
        )
    return exp


def _search_all(c, experiment_id: str, run_view_type) -> list:
    runs, token = [], None
    while True:
        page = c.search_runs(
            [experiment_id], run_view_type=run_view_type, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


# ----------------------------------------------------------------------------------- typing


def _typed(values: pd.Series) -> pd.Series:
    """MLflow params are strings: give back ints, floats and bools where every value is one."""
    s = values.astype("object")
    present = s.dropna()
    present = present[present != "None"]
    if present.empty:
        return pd.Series([None] * len(s), index=s.index, dtype="object")
    s = s.where(s != "None", None)
    if present.isin(["True", "False"]).all():
        return s.map({"True": True, "False": False, None: None})
    num = pd.to_numeric(present, errors="coerce")
    if num.notna().all():
        out = pd.to_numeric(s, errors="coerce")
        if all(
            float(v).is_integer() and "." not in str(raw)
            for v, raw in zip(num, present, strict=True)
        ):
            return out.astype("Int64") if out.isna().any() else out.astype("int64")
        return out.astype("float64")
    return s


def _ms(ts: int | None) -> pd.Timestamp | None:
    return pd.Timestamp(ts, unit="ms") if ts else None


# ----------------------------------------------------------------------------------- loading


def load_runs(
    experiment: str,
    tracking_uri: str | None = None,
    include_unfinished: bool = False,
    search: str | None = None,
) -> tuple[pd.DataFrame, RunsInfo]:
    """One row per trial (child run) of ``experiment``.

    Args:
        experiment: MLflow experiment name (a space's name, or the search's ``--experiment``).
        tracking_uri: defaults to ``tune_m3.tracking.default_tracking_uri()`` (the SQLite store
            in ``$TUNE_M3_RESULTS`` or ``./tune_m3_results``).
        include_unfinished: also keep child runs whose MLflow status is RUNNING, FAILED or
            KILLED (deleted runs, e.g. trials lost with a killed driver and re-sampled on
            ``--resume``, are never loaded).
        search: only the trials of this search (a ``tune_m3.search_id`` such as
            ``m3_grid_mosei-20250101-120000``, or ``"latest"``); default: every search of the
            experiment.

    Returns:
        ``(frame, info)``. The frame has the columns of :data:`RUN_COLUMNS`, one column per
        param (``info.param_columns``, numbers typed back from MLflow's strings, ``None`` for
        unset) and one per metric (``info.metric_columns``: the final ``test_*`` and
        ``diag_test_*`` metrics and the latest value of every per-epoch metric). Rows are in
        start-time order. Trials stopped by ASHA are FINISHED runs with ``trial_status ==
        "stopped_by_scheduler"`` and no ``test_*`` metrics.

    Raises:
        UserError: unknown experiment, unreachable tracking URI or missing store, or no finished
            trial runs left after filtering.
    """
    c, uri = _client(tracking_uri)
    exp = _get_experiment(c, experiment, uri)
    parents, children, left_out = _parents_and_children(c, exp.experiment_id)
    if search is not None:
        children = _of_search(children, parents, search, experiment, left_out)
    kept = _finished(children, include_unfinished, left_out, experiment, uri)
    df, param_cols, metric_cols = _frame(kept)
    info = RunsInfo(
        experiment=experiment,
        experiment_id=exp.experiment_id,
        tracking_uri=uri,
        searches=_searches(df, parents),
        n_loaded=len(df),
        left_out=left_out,
        synthetic=bool(df["synthetic"].any()),
        datasets=sorted(str(d) for d in df["dataset_tag"].dropna().unique() if d),
        param_columns=param_cols,
        metric_columns=metric_cols,
        warnings=_warnings(df, parents, param_cols),
    )
    return df, info


def _parents_and_children(c, experiment_id: str) -> tuple[dict, list, dict[str, int]]:
    """The experiment's active runs split into parents (by run id) and children (trial runs),
    and ``left_out`` counting the deleted children (``{"deleted": n}``, empty when none)."""
    from mlflow.entities import ViewType

    active = _search_all(c, experiment_id, ViewType.ACTIVE_ONLY)
    deleted = _search_all(c, experiment_id, ViewType.DELETED_ONLY)
    parents = {r.info.run_id: r for r in active if TAG_PARENT not in r.data.tags}
    children = [r for r in active if TAG_PARENT in r.data.tags]
    left_out: dict[str, int] = {}
    n_deleted = sum(TAG_PARENT in r.data.tags for r in deleted)
    if n_deleted:
        left_out["deleted"] = n_deleted
    return parents, children, left_out


def _of_search(
    children: list, parents: dict, search: str, experiment: str, left_out: dict[str, int]
) -> list:
    """The child runs of one search (a search id or "latest"); counts the others as left out."""
    search_ids = {r.data.tags.get(TAG_SEARCH, "") for r in children}
    wanted = search
    if search == "latest":
        latest = max(
            (p for p in parents.values()),
            key=lambda p: p.info.start_time or 0,
            default=None,
        )
        wanted = latest.data.tags.get(TAG_SEARCH, "") if latest else ""
    if wanted not in search_ids:
        known = sorted(s for s in search_ids if s)
        raise UserError(
            f"experiment '{experiment}' has no search '{search}'"
            f"{_did_you_mean(search, known)}; its searches: {', '.join(known) or 'none'}"
        )
    other = [r for r in children if r.data.tags.get(TAG_SEARCH, "") != wanted]
    if other:
        left_out["of other searches"] = len(other)
    children = [r for r in children if r.data.tags.get(TAG_SEARCH, "") == wanted]
    return children


def _finished(
    children: list, include_unfinished: bool, left_out: dict[str, int], experiment: str, uri: str
) -> list:
    """FINISHED child runs (any status with ``include_unfinished``); a UserError when none."""
    kept = []
    for r in children:
        st = r.info.status
        if st == _FINISHED or include_unfinished:
            kept.append(r)
        else:
            key = st.lower()
            left_out[key] = left_out.get(key, 0) + 1
    if not kept:
        what = describe_counts(left_out)
        raise UserError(
            f"experiment '{experiment}' in {uri} has no finished trial runs"
            + (f" ({what})" if what else " (no child runs at all)")
            + ". Wait for the search to finish, resume it (python -m tune_m3.search --space "
            "NAME --resume), or pass include_unfinished=True / --include-unfinished"
        )
    return kept


def _row(r, renamed: dict[str, str]) -> dict[str, Any]:
    """One child run as a row: the RUN_COLUMNS, its params (strings) and metrics."""
    t = r.data.tags
    status = t.get(TAG_STATUS) or t.get(TAG_STATUS_LEGACY)
    row: dict[str, Any] = {
        "run_id": r.info.run_id,
        "run_name": r.info.run_name or t.get(TAG_RUN_NAME, ""),
        "parent_id": t.get(TAG_PARENT),
        "search_id": t.get(TAG_SEARCH, ""),
        "trial_id": t.get(TAG_TRIAL, ""),
        "trial_status": status or ("running" if r.info.status == "RUNNING" else ""),
        "status": r.info.status,
        "stage": t.get(TAG_STAGE) or STAGE_SEARCH,
        "confirm_of": t.get(TAG_CONFIRM_OF, ""),
        "pareto": t.get(TAG_PARETO, "").lower() == "true",
        "space": t.get(TAG_SPACE, ""),
        "dataset_tag": t.get(TAG_DATASET, r.data.params.get("dataset", "")),
        "synthetic": t.get(TAG_SYNTHETIC, "").lower() == "true",
        "start_time": _ms(r.info.start_time),
        "duration_s": (r.info.end_time - r.info.start_time) / 1000
        if r.info.end_time and r.info.start_time
        else math.nan,
    }
    row.update(r.data.params)
    row.update({renamed[k]: v for k, v in r.data.metrics.items()})
    return row


def _frame(kept: list) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The frame of the kept runs, params typed, in start-time order; its param and metric
    columns. A per-epoch metric named like a param gets ``last_`` in front."""
    params, metric_names = set(), set()
    for r in kept:
        params.update(r.data.params)
        metric_names.update(r.data.metrics)
    renamed = {m: (f"last_{m}" if m in params else m) for m in metric_names}
    raw = pd.DataFrame([_row(r, renamed) for r in kept])
    if "model" not in raw:
        params.add("model")
    raw["model"] = raw["model"].fillna(DEFAULT_MODEL) if "model" in raw else DEFAULT_MODEL
    param_cols = sorted(params)
    metric_cols = sorted(renamed.values())
    # built in one go: column-by-column assignment of ~300 columns fragments the frame
    df = pd.concat(
        [
            raw[list(RUN_COLUMNS)],
            pd.DataFrame({p: _typed(raw[p]) for p in param_cols}),
            raw[metric_cols].astype("float64"),
        ],
        axis=1,
    )
    df = df.sort_values("start_time", kind="stable").reset_index(drop=True)
    return df, param_cols, metric_cols


def _searches(df: pd.DataFrame, parents: dict) -> list[SearchInfo]:
    """The parent runs of the loaded trials, oldest first."""
    used_parents = [parents[p] for p in df["parent_id"].unique() if p in parents]
    return sorted(
        (
            SearchInfo(
                parent_id=p.info.run_id,
                search_id=p.data.tags.get(TAG_SEARCH, ""),
                start_time=_ms(p.info.start_time),
                status=p.info.status,
                params=dict(p.data.params),
            )
            for p in used_parents
        ),
        key=lambda s: s.start_time or pd.Timestamp(0),
    )


def _warnings(df: pd.DataFrame, parents: dict, param_cols: list[str]) -> list[str]:
    warnings = []
    orphans = int((~df["parent_id"].isin(parents)).sum())
    if orphans:
        warnings.append(f"{orphans} trial runs have no parent run in this experiment")
    if df["search_id"].nunique() > 1:
        cfg = [p for p in param_cols if p not in ("seed",)]
        dup = df.duplicated(subset=[*cfg, "seed"] if "seed" in df else cfg, keep=False).sum()
        if dup:
            warnings.append(
                f"{dup} trials repeat a (configuration, seed) of another search of this "
                "experiment: means over seeds count them twice; use --search latest (or a "
                "search id) to read one search"
            )
    if df["synthetic"].nunique() > 1:
        warnings.append(
            "this experiment mixes SYNTHETIC and real-data trials (tables label it all "
            "synthetic; the dataset param separates their rows); use --search to read one search"
        )
    return warnings


def describe_counts(left_out: dict[str, int]) -> str:
    return ", ".join(f"{n} {why}" for why, n in sorted(left_out.items()))


def _did_you_mean(key: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(key, choices, n=1, cutoff=0.5)
    return f" (did you mean '{near[0]}'?)" if near else ""


def load_history(
    runs: pd.DataFrame,
    metrics: tuple[str, ...] | list[str] = ("val_mae", "train_loss"),
    tracking_uri: str | None = None,
) -> pd.DataFrame:
    """Per-epoch values of ``metrics`` for every run of ``runs`` (a :func:`load_runs` frame).

    Returns a long frame with columns ``run_id, metric, step, value, trial_status`` (``step`` is
    the epoch: the search logs every per-epoch metric with ``step = epoch``), sorted by run and
    step. Metrics a run never logged are simply absent. One MLflow call per (run, metric): ask
    for the few metrics you plot.
    """
    c, _ = _client(tracking_uri)
    rows = []
    status = dict(zip(runs["run_id"], runs["trial_status"], strict=True))
    for run_id in runs["run_id"]:
        for m in dict.fromkeys(metrics):
            for point in c.get_metric_history(run_id, m):
                rows.append((run_id, m, int(point.step), float(point.value), status[run_id]))
    out = pd.DataFrame(rows, columns=["run_id", "metric", "step", "value", "trial_status"])
    # a retried epoch is logged once (tracking.py), but keep the last value per step regardless
    out = out.drop_duplicates(subset=["run_id", "metric", "step"], keep="last")
    return out.sort_values(["run_id", "metric", "step"]).reset_index(drop=True)
