"""What a search found: one row per trial, the winner, and what the parent run records.

Each trial is summarised by its BEST epoch for the search metric (not its last one: an
early-stopped or ASHA-stopped trial's last epoch is usually worse than its best), read from the
trial's full history in Ray's results. ``trials.parquet`` columns:

- ``trial_id``, ``run_id`` (its MLflow child run), ``stage`` (``search`` | ``confirm``),
  ``status`` (names.TRIAL_STATUSES), ``error``;
- ``param_<k>``: the trial's TrialConfig values (scalars) and searched values;
- ``epochs``: epochs trained; ``best_epoch_metric``: the epoch where the search metric was best;
- ``<metric>`` and every other per-epoch value (``val_*``, ``train_loss``, ...) AT that epoch
  (a multi-objective search: at the trial's LAST epoch, the values Optuna ranked it by);
- ``test_*``, ``diag_test_*``: the trial's final results (the weights of its best val-loss
  epoch, evaluated once at its end; absent for trials that did not finish).

The parent run gets the winner as params ``best.<setting>`` and metrics ``best.<metric>`` (the
same best-epoch and final values): one name per number, none logged twice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tune_m3 import names
from tune_m3.search.space import SearchSpace
from tune_m3.tracking.trials import EPOCH_PREFIXES, FINAL_PREFIXES

HEADLINE_KEYS = (
    "test_mae",
    "test_corr",
    "test_acc2",
    "test_f1",
    "test_acc7",
    "diag_test_text_missing_30_corr_drop",
    "diag_test_text_noisy_30_corr_drop",
)


def best_row(history: pd.DataFrame | None, metric: str, mode: str) -> dict[str, Any]:
    """The epoch row of ``history`` where ``metric`` is best (finite values only); {} if none."""
    if history is None or metric not in history or history.empty:
        return {}
    vals = pd.to_numeric(history[metric], errors="coerce")
    vals = vals[vals.map(lambda v: math.isfinite(v))]
    if vals.empty:
        return {}
    i = vals.idxmin() if mode == "min" else vals.idxmax()
    return history.loc[i].to_dict()


def last_row(history: pd.DataFrame | None) -> dict[str, Any]:
    """The last epoch row of ``history`` that has an epoch (the final report repeats it)."""
    if history is None or history.empty or "epoch" not in history:
        return {}
    rows = history[history["epoch"].notna()]
    return rows.iloc[-1].to_dict() if len(rows) else {}


def _numeric(d: Mapping[str, Any], keep) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in d.items()
        if keep(k) and isinstance(v, int | float) and not isinstance(v, bool)
    }


def trial_row(
    result, space: SearchSpace, status: str, run_id: str | None, stage: str = names.STAGE_SEARCH
) -> dict[str, Any]:
    """One ``trials.parquet`` row for a Ray ``Result`` (see module doc)."""
    last = dict(result.metrics or {})
    try:
        history = result.metrics_dataframe
    except Exception:  # noqa: BLE001 - a trial that never reported has no progress file
        history = None
    # several objectives: what Optuna was told, every objective at the trial's last epoch
    multi = bool(space.objectives)
    best = last_row(history) if multi else best_row(history, space.metric, space.mode)
    row: dict[str, Any] = {
        "trial_id": result_trial_id(result),
        "run_id": run_id,
        "stage": stage,
        "status": status,
    }
    values = space.trial_values(result.config or {})
    row.update(
        {f"param_{k}": v for k, v in values.items() if not isinstance(v, list | tuple | dict)}
    )
    if "variant" in (result.config or {}):
        row["param_variant"] = result.config["variant"]
    row["epochs"] = int(last.get("epoch") or 0)
    row["best_epoch_metric"] = int(best["epoch"]) if "epoch" in best else None
    row.update(
        _numeric(best, lambda k: k.startswith(EPOCH_PREFIXES) or k in ("lr", "best_val_loss"))
    )
    row.update(_numeric(last, lambda k: k.startswith(FINAL_PREFIXES)))
    row["error"] = (
        error_line(result.error) if result.error else str(last.get("error_message") or "")
    )
    return row


def trial_id_from_path(path: str | None) -> str | None:
    """The trial id in Ray's trial folder name: ``run_trial_<8 hex>_<n>_...`` (Ray 2.60) or
    ``run_trial_<5 hex>_<5 digits>_...`` (older Ray)."""
    name = str(path or "").rstrip("/").rsplit("/", 1)[-1]
    m = re.search(r"_([0-9a-f]{8}|[0-9a-f]{5}_\d{5})(?:_|$)", name)
    return m.group(1) if m else None


def result_trial_id(result) -> str | None:
    """A Ray ``Result``'s trial id: from its reports, or its folder if it never reported."""
    return (result.metrics or {}).get("trial_id") or trial_id_from_path(getattr(result, "path", ""))


def error_line(err: BaseException) -> str:
    """The exception's own message: the last line of Ray's error text (its first line is Ray's
    task header, ``ray::ImplicitFunc.train() (pid=...)`` with terminal colours)."""
    lines = [s.strip() for s in str(err).splitlines() if s.strip()]
    return lines[-1][:500] if lines else type(err).__name__


def pick_best(df: pd.DataFrame, metric: str, mode: str) -> pd.Series | None:
    """The row with the best best-epoch ``metric`` among trials that were not failed or killed."""
    ok = df[~df["status"].isin([names.FAILED, names.KILLED])] if len(df) else df
    if metric not in ok or ok[metric].isna().all():
        return None
    i = ok[metric].idxmin() if mode == "min" else ok[metric].idxmax()
    return ok.loc[i]


@dataclass
class Counts:
    total: int
    by_status: dict[str, int]

    @classmethod
    def of(cls, df: pd.DataFrame) -> Counts:
        by = df["status"].value_counts().to_dict() if len(df) else {}
        return cls(len(df), {k: int(v) for k, v in by.items()})

    def text(self) -> str:
        parts = [
            (names.COMPLETED, "completed"),
            (names.EARLY_STOPPED, "early-stopped"),
            (names.SCHEDULER_STOPPED, "stopped by ASHA"),
            (names.FAILED, "failed"),
            (names.KILLED, "killed"),
        ]
        return ", ".join(f"{self.by_status.get(s, 0)} {label}" for s, label in parts)


def best_params(best: pd.Series, space: SearchSpace) -> dict[str, Any]:
    """The winner's searched settings (plus the derived πA, πV) for ``best.*`` params."""
    keys = [k for k in space.search] + ["pi_audio", "pi_vision"]
    if "param_variant" in best and isinstance(best["param_variant"], str):
        keys.insert(0, "variant")
    if space.algorithm.type == "grid" and len(space.seeds) > 1:
        keys.append("seed")
    out = {
        k: best[f"param_{k}"]
        for k in keys
        if f"param_{k}" in best and not _isnan(best[f"param_{k}"])
    }
    out["trial_id"] = best["trial_id"]
    if best.get("run_id"):
        out["run_id"] = best["run_id"]
    return out


def best_metrics(best: pd.Series) -> dict[str, float]:
    """``best.<metric>`` values: the winner's best-epoch per-epoch values and final results."""
    out = {}
    for k, v in best.items():
        if (
            isinstance(k, str)
            and k.startswith((*EPOCH_PREFIXES, *FINAL_PREFIXES))
            and not _isnan(v)
        ):
            out[f"best.{k}"] = float(v)
    if not _isnan(best.get("best_epoch_metric")):
        out["best.epoch"] = float(best["best_epoch_metric"])
    return out


def _isnan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
