"""The Optuna study of a search, persisted so Optuna's own tools can read it.

Every Optuna search writes its study to an Optuna RDB storage, one study per search name:
any Optuna RDB URL given with ``--optuna-storage`` (``postgresql://...``, ``mysql://...``), or
else SQLite where the user put the search (:func:`default_url`):

- a local ``--storage DIR``: ``DIR/optuna.db``, beside the search folders it holds, so
  everything a search writes lives where the user pointed it, and study names are unique
  exactly where search names are (one folder per name in DIR);
- no ``--storage``, or a remote one (``s3://``): ``<results dir>/optuna.db`` (the results dir is
  ``$TUNE_M3_RESULTS`` or ``./tune_m3_results``, beside the default MLflow store and ``ray/``).

The location is recorded in the search's state file when it starts, and ``--resume`` uses the
recorded one (:func:`settle`; a search started before it was recorded had its study in the
results dir). ``--dry-run`` prints it. So
``optuna.load_study(study_name=NAME, storage=URL)``, ``optuna.importance``,
``optuna.visualization`` and ``optuna-dashboard URL`` work on it, and ``--resume`` continues
the same study (Ray's searcher state holds the storage URL and reconnects).

Surprises: a study name is unique in its storage, and a new search refuses a name whose study
already exists there (it would otherwise silently continue someone else's study). The SQLite
file is created under a file lock (several searches may start at once), like the MLflow store.
"""

from __future__ import annotations

from pathlib import Path

from tune_m3.errors import UserError
from tune_m3.tracking.store import file_lock, first_existing, results_dir, sqlite_path

STATE_KEY = "optuna_storage"  # the study's URL in the search's state file


def default_url(storage_arg: str | None = None) -> str:
    """``sqlite:///DIR/optuna.db`` for a local ``--storage DIR``, else in the results dir."""
    if storage_arg and "://" not in storage_arg:
        return f"sqlite:///{Path(storage_arg).expanduser().resolve() / 'optuna.db'}"
    return f"sqlite:///{results_dir() / 'optuna.db'}"


def url(arg: str | None, storage_arg: str | None = None) -> str:
    """``--optuna-storage``, or the default for the ``--storage`` given (:func:`default_url`)."""
    return arg or default_url(storage_arg)


def settle(arg: str | None, storage_arg: str | None, claim) -> str:
    """The study's URL for the search ``claim`` holds: recorded in its state file when it starts,
    read back from there by ``--resume`` (an explicit ``--optuna-storage`` wins)."""
    from tune_m3.search.paths import write_state

    if claim.resumed:
        return arg or claim.state.get(STATE_KEY) or default_url(None)  # before: results dir
    chosen = url(arg, storage_arg)
    if claim.paths.storage is not None:
        write_state(claim.paths, **{STATE_KEY: chosen})
    return chosen


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
            "a reachable Optuna RDB URL, or drop the option for SQLite beside the search folders"
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
