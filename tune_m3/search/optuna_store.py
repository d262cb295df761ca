"""The Optuna study of a search, persisted so Optuna's own tools can read it.

Every Optuna search writes its study to an Optuna RDB storage, one study per search name:
by default SQLite beside the MLflow store (``tune_m3_results/optuna.db``), or any Optuna RDB URL
given with ``--optuna-storage`` (``postgresql://...``, ``mysql://...``). So
``optuna.load_study(study_name=NAME, storage=URL)``, ``optuna.importance``,
``optuna.visualization`` and ``optuna-dashboard URL`` work on it, and ``--resume`` continues
the same study (Ray's searcher state holds the storage URL and reconnects).

Surprises: a study name is unique in its storage, and a new search refuses a name whose study
already exists there (it would otherwise silently continue someone else's study). The SQLite
file is created under a file lock (several searches may start at once), like the MLflow store.
"""

from __future__ import annotations

from tune_m3.errors import UserError
from tune_m3.tracking.store import file_lock, first_existing, results_dir, sqlite_path


def default_url() -> str:
    return f"sqlite:///{results_dir() / 'optuna.db'}"


def url(arg: str | None) -> str:
    """``--optuna-storage`` or the default SQLite file beside the MLflow store."""
    return arg or default_url()


def check_url(url: str) -> None:
    """Refuse a storage URL that cannot work, without creating anything (also for --dry-run)."""
    db = sqlite_path(url)
    if db is not None:
        p = first_existing(db.parent)
        if not p.is_dir():
            raise UserError(f"--optuna-storage {url}: cannot create {db.parent} ({p} is a file)")
        return
    if url.startswith("sqlite:"):
        raise UserError(f"--optuna-storage {url}: use sqlite:///path/to/optuna.db")
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(url, connect_args=_timeout_args(url))
        with engine.connect():
            pass
    except Exception as err:  # noqa: BLE001 - bad URL, missing driver, unreachable server
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"--optuna-storage {url}: cannot connect ({type(err).__name__}: {first[:200]}); give "
            "a reachable Optuna RDB URL, or drop the option for SQLite beside the MLflow store"
        ) from None


def _timeout_args(url: str) -> dict:
    if url.startswith("postgresql"):
        return {"connect_timeout": 5}
    if url.startswith("mysql"):
        return {"connect_timeout": 5}
    return {}


def storage(url: str):
    """An ``optuna.storages.RDBStorage`` for ``url`` (SQLite created under a file lock)."""
    import optuna

    db = sqlite_path(url)
    if db is None:
        return optuna.storages.RDBStorage(url)
    db.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(db.with_name(db.name + ".lock")):
        # SQLite: wait for a lock held by another search's write rather than failing at once
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})


def refuse_existing(url: str, name: str) -> None:
    """A new search must not continue a study of the same name already in the storage."""
    import optuna

    if sqlite_path(url) is not None and not sqlite_path(url).exists():
        return
    if name in optuna.study.get_all_study_names(storage(url)):
        raise UserError(
            f"the Optuna storage {url} already holds a study named '{name}'; pick another "
            "--name, or add --resume to continue that search"
        )


def dashboard_command(url: str) -> str:
    return f"optuna-dashboard {url}   (pip install optuna-dashboard)"
