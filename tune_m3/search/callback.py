"""The Ray Tune callback of a search: MLflow child runs, readable names, statuses, progress.

Runs in the driver. Each trial event goes to :class:`~tune_m3.tracking.MlflowTrialLogger`;
each trial gets a run name that shows what was searched (``t03 pM=.27 πT=.45``) and, once it
ends, its result first (``0.2841 | t03 pM=.27 πT=.45``): the runs table cuts names at about 20
characters, so the value, the trial and the first searched settings stay visible without
choosing columns (the search's saved view, ``tracking/views.py``, shows them as columns too). A trial's end is classified once, here
(:func:`trial_status`), with the statuses of ``tune_m3/names.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tune_m3.config import make_config
from tune_m3.failures import FAILED_KEY
from tune_m3.names import (
    COMPLETED,
    EARLY_STOPPED,
    FAILED,
    KILLED,
    SCHEDULER_STOPPED,
    STAGE_SEARCH,
    SYMBOLS,
    TAG_CONFIRM_OF,
    TAG_STAGE,
    fmt,
)
from tune_m3.search.space import SearchSpace
from tune_m3.tracking.trials import RESULT_SEP

try:  # imported after Ray's environment is set (ray_setup.ray_environment)
    from ray.tune import Callback
except ImportError:  # pragma: no cover
    Callback = object


def short(value: Any) -> str:
    """A searched value in few characters: 3 significant digits, no leading zero (``.472``)."""
    text = fmt(value, 3)
    if isinstance(value, float) and text.startswith(("0.", "-0.")):
        text = text.replace("0.", ".", 1)
    return text


def run_name(index: int, config: Mapping[str, Any], searched: list[str]) -> str:
    """``t03 pM=.27 πT=.45`` from the trial's searched values (1-based index)."""
    shown = " ".join(f"{SYMBOLS.get(k, k)}={short(config[k])}" for k in searched if k in config)
    return f"t{index + 1:02d} {shown}".strip()


def with_result(name: str, metric: str, value: Any) -> str:
    """``0.2841 | t03 pM=.27``: the trial's best ``metric`` first (the table cuts long names)."""
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{value:.4g}{RESULT_SEP}{name}"
    return name


def trial_status(last: Mapping[str, Any], interrupted: bool, errored: bool = False) -> str:
    """How a trial ended, from its last report (``trial_done``, ``stopped_early``, and
    ``trial_failed`` of a failure that would repeat, ``failures.py``; ``diverged`` in older runs)."""
    if errored or last.get(FAILED_KEY) or last.get("diverged"):
        return FAILED
    if last.get("trial_done"):
        return EARLY_STOPPED if last.get("stopped_early") else COMPLETED
    return KILLED if interrupted else SCHEDULER_STOPPED


class Progress:
    """Short progress lines of our own (trial started / finished / stopped / failed)."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0
        self.t0 = time.time()

    def line(self, msg: str) -> None:
        print(f"[tune_m3 {time.time() - self.t0:6.0f}s] {msg}", flush=True)


def confirm_identity(config: Mapping[str, Any]) -> tuple[str, str, int] | None:
    """(search trial's run id, its trial id, seed) of a confirm trial; None for a search trial."""
    from tune_m3.search.confirm import CONFIRM_OF, CONFIRM_TRIAL
    from tune_m3.search.space import POINT

    point = config.get(POINT)
    if not point:
        return None
    return point[CONFIRM_OF], point[CONFIRM_TRIAL], point["seed"]


def make_callback(
    logger,
    space: SearchSpace,
    progress: Progress,
    interrupts,
    ended: dict[str, str],
    stage: str = STAGE_SEARCH,
    watch=None,
    input_dims: Mapping[str, int] | None = None,
):
    """The Ray Tune callback of one stage (see :class:`TuneM3Callback`)."""
    return TuneM3Callback(logger, space, progress, interrupts, ended, stage, watch, input_dims)


class TuneM3Callback(Callback):
    """Ray Tune events -> the MLflow logger, run names, statuses and our progress lines.

    ``ended`` (trial id -> status) is filled as trials end; the search reads it (both stages).
    """

    def __init__(
        self,
        logger,
        space: SearchSpace,
        progress: Progress,
        interrupts,
        ended,
        stage,
        watch=None,
        input_dims: Mapping[str, int] | None = None,
    ):
        self.logger, self.space, self.progress = logger, space, progress
        self.interrupts = interrupts
        self.stage, self.metric, self.searched = stage, space.metric, space.searched_keys()
        self.names: dict[str, str] = {}
        self.ended = ended
        self.best: dict[str, float] = {}  # trial id -> best metric value so far
        self.last_status = 0.0
        self.watch = watch  # diskspace.DiskWatch: a nearly full disk stops the search
        self.input_dims = input_dims  # the dataset's: the model's own defaults depend on them

    def _name_and_tags(self, trial) -> tuple[str, dict[str, str]]:
        tags = {TAG_STAGE: self.stage}
        ident = confirm_identity(trial.config)
        if ident is not None:  # "t03 pM=0.27 πT=0.45 · confirm seed 2"
            run_of, trial_of, seed = ident
            tags[TAG_CONFIRM_OF] = run_of
            return f"{self.logger.names.get(trial_of, trial_of)} · confirm seed {seed}", tags
        # a new trial is numbered in order of first start (a resumed one keeps its name)
        return run_name(len(self.logger.runs), trial.config, self.searched), tags

    def on_step_end(self, iteration, trials, **info):
        low = self.watch.check() if self.watch is not None else None
        if low:
            self.interrupts.stop(f"disk almost full: {low}")
        if time.time() - self.last_status < 30:
            return
        self.last_status = time.time()
        running = [t for t in trials if t.status == "RUNNING"]  # Ray's Trial.RUNNING
        epochs = [str(self.logger.last_result.get(t.trial_id, {}).get("epoch", 0)) for t in running]
        self.progress.line(
            f"{self.progress.done}/{self.progress.total} trials done, {len(running)} running "
            f"(at epochs {', '.join(epochs) or '-'})"
        )

    def on_trial_start(self, iteration, trials, trial, **info):
        # every TrialConfig field (defaults too; where the model decides, what it decides), plus
        # the grid row's variant name
        cfg = make_config(self.space.trial_values(trial.config))
        full = cfg.params()
        if self.input_dims is not None:
            from tune_m3.models.seam import model_defaults

            full.update(model_defaults(cfg, self.input_dims))
        variant = self.space.trial_variant(trial.config)
        if variant is not None:
            full["variant"] = variant
        name, tags = self._name_and_tags(trial)
        name = self.logger.names.get(trial.trial_id) or name
        self.names[trial.trial_id] = name
        self.logger.trial_start(trial.trial_id, name, full, tags=tags)
        self.progress.line(f"trial {name} started")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.logger.trial_result(trial.trial_id, result)
        v = result.get(self.metric)
        if isinstance(v, int | float) and math.isfinite(v):
            old = self.best.get(trial.trial_id)
            better = old is None or (v < old if self.space.mode == "min" else v > old)
            self.best[trial.trial_id] = v if better else old

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = self.logger.last_result.get(trial.trial_id, {})
        status = trial_status(last, self.interrupts.interrupted)
        self._end(trial, status, last, error=last.get("error_message"))

    def on_trial_error(self, iteration, trials, trial, **info):
        err = ""
        if trial.error_file and Path(trial.error_file).exists():
            text = Path(trial.error_file).read_text().strip().splitlines()
            err = text[-1] if text else ""
        self._end(trial, FAILED, self.logger.last_result.get(trial.trial_id, {}), error=err)

    def _end(self, trial, status: str, last: Mapping[str, Any], error: str | None) -> None:
        name = self.names.get(trial.trial_id, str(trial))
        value = self.best.get(trial.trial_id, last.get(self.metric))
        self.logger.trial_end(
            trial.trial_id, status, error, run_name=with_result(name, self.metric, value)
        )
        self.ended[trial.trial_id] = status
        self.progress.done += 1
        what = {
            COMPLETED: "finished",
            EARLY_STOPPED: "finished (early stopping)",
            SCHEDULER_STOPPED: "stopped by ASHA",
            FAILED: "FAILED",
            KILLED: "stopped (interrupted)",
        }[status]
        detail = f": {error}" if status == FAILED and error else ""
        self.progress.line(
            f"trial {name} {what} after {last.get('epoch', '?')} epochs, {self.metric}="
            f"{fmt(last.get(self.metric, float('nan')), 3)} ({self.progress.done}/{self.progress.total} done){detail}"
        )
