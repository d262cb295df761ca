"""Ray Tune's OptunaSearch, made to read like Optuna's own study and safe after a killed driver.

What differs from ``ray.tune.search.optuna.OptunaSearch``:

- **Scheduler-stopped trials are PRUNED.** Ray tells Optuna every trial that ends with a result
  as COMPLETE with its last value, so a trial ASHA cut after 2 epochs looked, in the study,
  like a finished one. Here a trial that ended without its final report (no ``trial_done``,
  not diverged, no error: :func:`tune_m3.search.callback.trial_status` says
  ``stopped_by_scheduler``) is told as ``TrialState.PRUNED``. Its per-epoch values are in the
  study as intermediate values (``step = training_iteration``): Ray reports every result but
  the one the scheduler stopped it on, which is added here; Optuna stores the last of them as
  the pruned trial's value. TPE then ranks it after every
  COMPLETE trial (see docs/search.md). Multi-objective searches are left alone: Optuna has no
  intermediate values there (and ASHA needs one metric).
- **The study names its metric(s)** (``study.set_metric_names``): ``val_mae`` rather than
  "Objective 0" in optuna-dashboard and ``optuna.visualization``.
- **Reports of closed trials are dropped.** With the study in an RDB storage
  (``optuna_store.py``), the database can be *ahead* of the searcher state Ray pickled
  at its last experiment snapshot: a trial that finished (and was told to Optuna) after the
  snapshot is, to the restored searcher, still running. When ``--resume`` re-runs it from its
  checkpoint, its intermediate reports would update a finished Optuna trial, which Optuna
  refuses (``UpdateFinishedTrialError``), and Ray turns that into a failed search. Optuna
  already holds the trial's final value, and a completion told twice is already ignored.

Interrupted trials (Ctrl-C) are not told at all: Ray stops them without calling the searcher,
so they stay RUNNING until ``--resume`` marks them FAIL (:func:`fail_running_trials`).

Imported lazily by ``ray_setup.py`` (it imports Ray).
"""

from __future__ import annotations

import contextlib

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search.optuna import OptunaSearch

from tune_m3.failures import FAILED_KEY
from tune_m3.names import SCHEDULER_STOPPED
from tune_m3.search.callback import trial_status


class ResumableOptunaSearch(OptunaSearch):
    """``OptunaSearch`` with PRUNED scheduler-stopped trials, FAIL for trials failed for good
    (``failures.py``: no NaN value), named metrics, and resume safety."""

    def _setup_study(self, mode: str | list) -> None:
        super()._setup_study(mode)
        metrics = self._metric if isinstance(self._metric, list) else [self._metric]
        if self._ot_study is not None and all(metrics):
            self._ot_study.set_metric_names([str(m) for m in metrics])

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # the study may be ahead of Ray's snapshot: see the module doc
        with contextlib.suppress(UpdateFinishedTrialError):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if result and result.get(FAILED_KEY):  # failed for good (failures.py): Optuna's FAIL
            result, error = None, True
        pruned = (
            result is not None
            and not isinstance(self.metric, list)
            and trial_id in self._ot_trials
            and trial_id not in self._completed_trials
            and trial_status(result, interrupted=False, errored=error) == SCHEDULER_STOPPED
        )
        if not pruned:
            super().on_trial_complete(trial_id, result, error)
            return
        ot_trial = self._ot_trials[trial_id]
        # Ray passes the result on which the scheduler stops a trial to the scheduler only, never
        # to on_trial_result: report it, so the curve ends where the trial stopped (a trial cut at
        # its first rung would have no value at all). Optuna takes the last intermediate value as
        # the value of a PRUNED trial.
        if self.metric in result and TRAINING_ITERATION in result:
            with contextlib.suppress(UpdateFinishedTrialError):
                ot_trial.report(result[self.metric], result[TRAINING_ITERATION])
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED, skip_if_finished=True)
        self._completed_trials.add(trial_id)


def fail_running_trials(storage_url: str, study_name: str) -> int:
    """Mark trials of the study left RUNNING (lost with a killed driver) as FAIL; their count."""
    import optuna

    from tune_m3.search import optuna_store

    study = optuna.load_study(study_name=study_name, storage=optuna_store.storage(storage_url))
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for t in running:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return len(running)
