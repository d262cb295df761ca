"""Where one search writes, decided in one place, and who owns that place.

A search named NAME (``--name``, default ``SPACE-YYYYmmdd-HHMMSS``) owns one folder of the Ray
storage (default ``./tune_m3_results/ray/NAME``)::

    NAME/                      Ray Tune's experiment (trials, checkpoints, tuner.pkl)
      tune_m3_search.json      our state: parent run, experiment, space, status, pid
      .tune_m3.lock            flock'ed by the process running the search
      confirm/                 Ray Tune's experiment of the confirm stage (if the space has one)
      confirm_ranking.csv      the confirmed ranking (mean ± std over the confirm seeds)
      trials.parquet           one row per trial (and per confirm run), written at the end
      summary.csv              the same as CSV (also an artifact of the parent run)
      unlogged.json            MLflow writes that could not be made (only if the server stayed down)
      ray_messages.log         Ray Tune's own messages (trial tracebacks), unless --verbose

Two searches never share a folder: a new search creates its folder with an atomic ``mkdir``
(a default name that is taken gets ``-2``, ``-3``, ...; an explicit ``--name`` that is taken
is refused with exit 2, naming the other search), and the running one holds an exclusive lock
on ``.tune_m3.lock`` until it exits, which is how ``--resume`` and a second search can tell a
running search from an interrupted one. A remote ``--storage`` URI (s3://, gs://) cannot be
locked: there, ``--name`` must be unique by the user's care, and ``--resume`` needs ``--name``.

A search's name is one path component (``path_names.py``: letters, digits, ``._-``, no leading
dot), checked before anything is written (:func:`check_search_name`, also for ``--dry-run``);
and before a search takes its folder, every path it writes there is checked to resolve, symbolic
links followed, inside the storage folder (:func:`check_contained`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tune_m3.errors import UserError
from tune_m3.names import SEARCH_RUNNING
from tune_m3.path_names import check_component, check_inside
from tune_m3.tracking.store import (
    artifact_root,
    default_tracking_uri,
    first_existing,
    is_http,
    results_dir,
)

STATE_FILE = "tune_m3_search.json"
LOCK_FILE = ".tune_m3.lock"


@dataclass
class SearchPaths:
    """Every path of one search. ``storage`` is local; ``storage_uri`` a remote Ray storage."""

    name: str
    storage: Path | None
    storage_uri: str | None = None

    @property
    def exp_dir(self) -> Path:
        """Local folder of the search (for a remote storage: ./NAME for our own files)."""
        return self.storage / self.name if self.storage else Path.cwd() / self.name

    @property
    def ray_storage(self) -> str:
        return str(self.storage) if self.storage else str(self.storage_uri)

    @property
    def ray_path(self) -> str:
        """What ``Tuner.restore`` takes."""
        if self.storage_uri:
            return f"{self.storage_uri.rstrip('/')}/{self.name}"
        return str(self.exp_dir)

    @property
    def confirm_path(self) -> str:
        """Ray's experiment of the confirm stage, inside the search's folder."""
        return f"{self.ray_path.rstrip('/')}/confirm"

    state_file = property(lambda self: self.exp_dir / STATE_FILE)
    lock_file = property(lambda self: self.exp_dir / LOCK_FILE)
    trials_table = property(lambda self: self.exp_dir / "trials.parquet")
    summary_csv = property(lambda self: self.exp_dir / "summary.csv")
    unlogged = property(lambda self: self.exp_dir / "unlogged.json")
    confirm_ranking = property(lambda self: self.exp_dir / "confirm_ranking.csv")
    ray_messages = property(lambda self: self.exp_dir / "ray_messages.log")  # Ray's own log


def storage_from_arg(arg: str | None, default: Path) -> tuple[Path | None, str | None]:
    """``--storage``: (local path, None) or (None, remote URI)."""
    if arg and "://" in arg:
        return None, arg
    return (Path(arg).expanduser().resolve() if arg else default), None


def check_storage(storage: Path | None) -> None:
    """The local storage is a writable folder or can be created (nothing is created here)."""
    if storage is None:
        return
    if storage.exists() and not storage.is_dir():
        raise UserError(f"--storage {storage}: is a file, not a folder; give a folder")
    p = first_existing(storage)
    if not p.is_dir():
        raise UserError(f"--storage {storage}: cannot be created ({p} is a file)")
    if not os.access(p, os.W_OK | os.X_OK):
        raise UserError(
            f"--storage {storage}: {p} is not writable by this user; choose another folder"
        )


# ------------------------------------------------------------------------------ state file


def read_state(paths: SearchPaths) -> dict[str, Any]:
    try:
        return json.loads(paths.state_file.read_text())
    except (OSError, ValueError):
        return {}


def write_state(paths: SearchPaths, **updates: Any) -> dict[str, Any]:
    """Merge ``updates`` into the state file, atomically (write + rename)."""
    state = {**read_state(paths), **updates}
    tmp = paths.state_file.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(paths.state_file)
    return state


def is_running(paths: SearchPaths) -> bool:
    """True while another process holds the search's lock."""
    if not paths.lock_file.exists():
        return False
    with open(paths.lock_file, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def describe_search(paths: SearchPaths) -> str:
    st = read_state(paths)
    status = SEARCH_RUNNING if is_running(paths) else st.get("status", "unknown")
    pid = f", pid {st['pid']}" if status == SEARCH_RUNNING and st.get("pid") else ""
    parent = f", MLflow parent run {st['parent_run_id']}" if st.get("parent_run_id") else ""
    return f"search '{paths.name}' in {paths.exp_dir} ({status}{pid}{parent})"


# ------------------------------------------------------------------------------ claiming


@dataclass
class Claim:
    """A search folder owned by this process (its lock held until :meth:`release`)."""

    paths: SearchPaths
    resumed: bool
    state: dict[str, Any] = field(default_factory=dict)
    _fh: Any = None

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def _lock(paths: SearchPaths) -> Any:
    fh = open(paths.lock_file, "a")  # noqa: SIM115 - held for the life of the search
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise UserError(
            f"{describe_search(paths)} is running in another process; wait for it, or start a "
            "new search with another --name"
        ) from None
    return fh


def claim_new(storage: Path | None, name: str | None, space_name: str) -> SearchPaths:
    """Create the folder of a new search atomically; refuse a name in use (exit 2)."""
    if storage is None:  # remote storage: nothing to lock, the name is the user's
        return SearchPaths(name or default_name(space_name), None)
    storage.mkdir(parents=True, exist_ok=True)
    if name:
        paths = SearchPaths(name, storage)
        try:
            paths.exp_dir.mkdir(parents=True)
        except FileExistsError:
            raise UserError(
                f"the name '{name}' is in use: {describe_search(paths)}. Pick another --name, "
                f"or add --resume to continue that search"
            ) from None
        return paths
    base = default_name(space_name)
    for i in range(1, 1000):
        paths = SearchPaths(base if i == 1 else f"{base}-{i}", storage)
        with contextlib.suppress(FileExistsError):
            paths.exp_dir.mkdir(parents=True)  # parents: another search's failure may rmdir it
            return paths
    raise UserError(f"{storage}: could not find a free search name for {base}")


def default_name(space_name: str) -> str:
    return f"{space_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_search_name(name: str | None, space_name: str) -> None:
    """``--name``, or the default name the space file's name gives, is one path component."""
    if name is not None:
        check_component(name, "--name")
        return
    check_component(
        default_name(space_name),
        f"the default search name (from the space file's name {space_name!r})",
        "rename the space file or give --name",
    )


def check_contained(paths: SearchPaths) -> None:
    """Every path the search writes resolves (links followed) inside its local storage."""
    if paths.storage is None:
        return
    files = (paths.lock_file, paths.state_file, paths.trials_table, paths.summary_csv)
    more = (paths.unlogged, paths.confirm_ranking, Path(paths.confirm_path))
    for p in (paths.exp_dir, *files, *more):
        check_inside(p, paths.storage, f"search '{paths.name}': {p.name}")


def latest_search(storage: Path, space_name: str) -> Path | None:
    if not storage.is_dir():
        return None
    cands = [
        p
        for p in storage.iterdir()
        if p.is_dir() and p.name.startswith(space_name + "-") and (p / STATE_FILE).exists()
    ]
    return max(cands, key=lambda p: p.stat().st_mtime, default=None)


def find_existing(
    storage: Path | None, storage_uri: str | None, name: str | None, space_name: str
) -> SearchPaths:
    """The search ``--resume`` (or ``--confirm-only``) continues; UserError if there is none."""
    if storage is None:
        if not name:
            raise UserError("--resume with a remote --storage needs --name (the search to resume)")
        return SearchPaths(name, None, storage_uri)
    exp_dir = storage / name if name else latest_search(storage, space_name)
    if exp_dir is None or not (exp_dir / STATE_FILE).exists():
        raise UserError(
            f"nothing to resume: no search of space '{space_name}' in {storage}"
            + (f" named '{name}'" if name else "")
            + "; start one without --resume"
        )
    return SearchPaths(exp_dir.name, storage)


def take(paths: SearchPaths, resumed: bool) -> Claim:
    """Lock the search's folder for this process (UserError if another process runs it)."""
    check_contained(paths)
    fh = _lock(paths) if paths.storage is not None else None
    claim = Claim(paths, resumed, read_state(paths), fh)
    if paths.storage is not None:
        write_state(paths, pid=os.getpid())
    return claim


def where_it_goes(storage_arg: str | None, tracking_uri: str | None, optuna_url: str, space) -> str:
    """The lines ``--dry-run`` prints: every place a search of ``space`` will write, resolved."""
    storage, remote = storage_from_arg(storage_arg, results_dir() / "ray")
    uri = tracking_uri or default_tracking_uri()
    lines = [
        "writes to:",
        f"  Ray results, checkpoints, trials.parquet: {storage or remote}/<search name>",
        f"  MLflow runs: {uri}"
        + ("" if is_http(uri) else f" (artifacts of new experiments: {artifact_root(uri)})"),
    ]
    if space.algorithm.type == "optuna":
        lines.append(f"  Optuna study (named after the search): {optuna_url}")
    return "\n".join(lines)
