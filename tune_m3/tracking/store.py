"""Where runs go: the results folder, the tracking URI, a checked client, experiments.

Default layout (one folder, printed at the end of every search)::

    ./tune_m3_results/            $TUNE_M3_RESULTS overrides
      mlflow.db                   the MLflow tracking store (SQLite: embedded, no server)
      mlflow.db.lock              taken while a process creates or migrates the store
      mlartifacts/                MLflow artifacts (space file, summaries, reports); with
                                  --tracking-uri sqlite:///DIR/mlflow.db: DIR/mlartifacts
      optuna.db                   Optuna studies, one per search name; with a local
                                  --storage DIR: DIR/optuna.db (optuna_store.py)
      ray/                        Ray Tune's storage: one folder per search name

Concurrency: MLflow creates and migrates a SQLite store the first time a client touches it.
Two processes doing that at once leave it half-migrated (``_alembic_tmp_experiments already
exists``), after which every search and report fails. :func:`client` therefore takes an
exclusive file lock beside the database while it builds the store, so exactly one process
creates and migrates it and the others find it ready.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tune_m3.errors import UserError

ENV_RESULTS = "TUNE_M3_RESULTS"
UI_PORT = 5000  # the port `mlflow ui` listens on unless told otherwise

# MLflow's client retries a failed HTTP request 7 times with exponential backoff (about four
# minutes) and waits 120 s for a response; every Ray event would stall that long while the
# server is down. The write-behind queue retries itself, so a few seconds per try is enough.
# Set any of these variables yourself to override.
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def results_dir() -> Path:
    return Path(os.environ.get(ENV_RESULTS) or "tune_m3_results").expanduser().resolve()


def default_tracking_uri() -> str:
    return f"sqlite:///{results_dir() / 'mlflow.db'}"


def artifact_root(uri: str) -> Path:
    """Where new experiments of a local store keep artifacts: ``mlartifacts/`` beside a SQLite
    file (``--tracking-uri sqlite:///DIR/mlflow.db``: ``DIR/mlartifacts``), else in the results
    dir. An existing experiment keeps the artifact location it was created with."""
    db = sqlite_path(uri)
    return (db.parent if db is not None else results_dir()) / "mlartifacts"


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def ui_command(uri: str, port: int = UI_PORT) -> str:
    if is_http(uri):
        return f"open {uri} in a browser"
    art = artifact_root(uri)
    return f"mlflow ui --backend-store-uri {uri} --default-artifact-root {art} --port {port}"


def runs_page_url(uri: str, experiment_id: str, port: int = UI_PORT) -> str:
    """The runs page of an experiment (MLflow 3 opens on its GenAI overview, not on the runs)."""
    from tune_m3.tracking.views import ui_base

    return f"{ui_base(uri, port)}/#/experiments/{experiment_id}/runs"


def quiet_mlflow() -> None:
    """MLflow's progress bars, git warnings and per-run "View run ..." lines stay out of our output."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    # MLflow prints "View run ... at: http://..." on stdout whenever a run on a server ends
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import logging

    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created), held for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def client(uri: str):
    """An MlflowClient for ``uri`` whose store exists and is migrated.

    An unreachable server is a UserError (checked in seconds). A SQLite store is created and
    migrated under :func:`file_lock`, once, whatever the number of processes starting at once.
    """
    quiet_mlflow()
    from mlflow.tracking import MlflowClient

    quiet_mlflow()  # mlflow sets its own logger levels on import
    if is_http(uri):
        for k, v in HTTP_RETRY_DEFAULTS.items():
            os.environ.setdefault(k, v)  # read by MLflow at every request
        check_server(uri)
        return MlflowClient(tracking_uri=uri)
    db = sqlite_path(uri)
    if db is None:
        return MlflowClient(tracking_uri=uri)
    with file_lock(db.with_name(db.name + ".lock")):
        c = MlflowClient(tracking_uri=uri)
        c.search_experiments(max_results=1)  # builds the store (tables, migrations) now
    return c


def check_uri(uri: str) -> None:
    """Refuse a tracking URI that cannot work, quickly and before anything is written."""
    if is_http(uri):
        check_server(uri)
    elif uri.startswith("file:") or "://" not in uri:
        raise UserError(
            f"tracking URI {uri}: MLflow 3 no longer supports plain-directory (file) stores by "
            "default; use sqlite:///path/to/mlflow.db or an http(s):// tracking server"
        )
    elif (db := sqlite_path(uri)) is not None:
        parent = first_existing(db.parent)
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise UserError(f"tracking URI {uri}: cannot create {db.parent} (not writable)")


def first_existing(p: Path) -> Path:
    """``p`` or its nearest ancestor that exists (what creating ``p`` would write into)."""
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_server(uri: str, timeout: float = 5.0) -> None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            r.read()
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise UserError(
            f"MLflow tracking server {uri} is not reachable ({getattr(err, 'reason', err)}). "
            "Start it (mlflow server --host 127.0.0.1 --port 5000 ...) or drop --tracking-uri "
            "to use the local SQLite store"
        ) from None


def get_or_create_experiment(c, name: str) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    art = None
    if not c.tracking_uri.startswith(("http://", "https://", "databricks")):
        art = artifact_root(c.tracking_uri).as_uri()
    from mlflow.exceptions import MlflowException

    try:
        return c.create_experiment(name, artifact_location=art)
    except MlflowException:  # created by a search that started at the same moment
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


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
