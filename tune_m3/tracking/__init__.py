"""MLflow tracking: one parent run per search, one nested child run per trial.

The parts, each testable alone:

- :mod:`~tune_m3.tracking.store`: where runs go (results folder, tracking URI, a checked client
  whose SQLite store is created once under a file lock, experiments);
- :mod:`~tune_m3.tracking.writes`: the write-behind queue (ordered, buffered while MLflow is
  down, dumped to ``unlogged.json`` at the end if it stays down);
- :mod:`~tune_m3.tracking.trials`: trial -> child run (nesting, exactly-once epochs, recovery
  on ``--resume``, statuses);
- :mod:`~tune_m3.tracking.datasets`: the search's dataset as an MLflow dataset input;
- :mod:`~tune_m3.tracking.views`: links into the UI (a saved runs-page view of the search, the
  compare page of its trials);
- :mod:`~tune_m3.tracking.resync`: ``python -m tune_m3.tracking resync FILE``.

Any tracking URI works instead of the default SQLite store (``--tracking-uri http://host:5000``
for a team server). Tag keys and statuses are in ``tune_m3/names.py``.
"""

from __future__ import annotations

from tune_m3.tracking.datasets import dataset_record
from tune_m3.tracking.resync import resync
from tune_m3.tracking.store import (
    ENV_RESULTS,
    HTTP_RETRY_DEFAULTS,
    check_server,
    check_uri,
    client,
    default_tracking_uri,
    file_lock,
    get_or_create_experiment,
    git_commit,
    results_dir,
    runs_page_url,
    ui_command,
)
from tune_m3.tracking.trials import MlflowTrialLogger
from tune_m3.tracking.views import compare_url, save_view, search_view, view_url
from tune_m3.tracking.writes import PENDING, WriteBehind

__all__ = [
    "ENV_RESULTS",
    "HTTP_RETRY_DEFAULTS",
    "PENDING",
    "MlflowTrialLogger",
    "WriteBehind",
    "check_server",
    "check_uri",
    "client",
    "compare_url",
    "dataset_record",
    "default_tracking_uri",
    "file_lock",
    "get_or_create_experiment",
    "git_commit",
    "resync",
    "results_dir",
    "runs_page_url",
    "save_view",
    "search_view",
    "ui_command",
    "view_url",
]
