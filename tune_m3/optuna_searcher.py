"""Ray Tune's OptunaSearch, made safe for a persisted study after a killed driver.

With the study in an RDB storage (``tune_m3/optuna_store.py``), the database can be *ahead* of
the searcher state Ray pickled at its last experiment snapshot: a trial that finished (and was
told to Optuna) after the snapshot is, to the restored searcher, still running. When ``--resume``
re-runs it from its checkpoint, its intermediate reports would update a finished Optuna trial,
which Optuna refuses (``UpdateFinishedTrialError``), and Ray turns that into a failed search.
Those reports are dropped here: Optuna already holds the trial's final value, and a completion
told twice is already ignored by Ray's searcher.

Imported lazily by ``tune_m3/ray_setup.py`` (it imports Ray).
"""

from __future__ import annotations

import contextlib

from optuna.exceptions import UpdateFinishedTrialError
from ray.tune.search.optuna import OptunaSearch

from tune_m3.failures import FAILED_KEY


class ResumableOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that ignores intermediate results of trials Optuna has closed, and
    tells Optuna FAIL (not a NaN value) for a trial failed for good (``failures.py``)."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if result and result.get(FAILED_KEY):
            result, error = None, True  # no value: Optuna's state FAIL
        super().on_trial_complete(trial_id, result, error)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # the study may be ahead of Ray's snapshot: see the module doc
        with contextlib.suppress(UpdateFinishedTrialError):
            super().on_trial_result(trial_id, result)


def fail_running_trials(storage_url: str, study_name: str) -> int:
    """Mark trials of the study left RUNNING (lost with a killed driver) as FAIL; their count."""
    import optuna

    from tune_m3 import optuna_store

    study = optuna.load_study(study_name=study_name, storage=optuna_store.storage(storage_url))
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for t in running:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return len(running)
