"""The driver: :func:`run_search`, the stages in the order they run.

1. :func:`~tune_m3.search.plan.plan`: the space and every check without Ray or MLflow (all
   that ``--dry-run`` runs); :func:`~tune_m3.search.plan.preflight`: the tracking server, the
   cluster and the data, still before anything is written;
2. :func:`claim`: the search's folder (new, or the one ``--resume`` continues), locked; a new
   search records what defines it, a resumed one must match it (``identity.py``);
3. :func:`run`: the data, Ray and the MLflow parent run (``parent.py``), the trainable, then
   the search and confirm stages and the summary (``stages.py``); an interrupt or an error ends
   through ``endings.py``.
"""

from __future__ import annotations

import contextlib

from tune_m3 import names
from tune_m3.errors import UserError
from tune_m3.search import identity
from tune_m3.search.diskspace import disk_error, full_now
from tune_m3.search.endings import disk_full_error, end_disk_low, end_failed, end_interrupted
from tune_m3.search.interrupts import DiskLow, SearchInterrupted
from tune_m3.search.leftovers import reap
from tune_m3.search.options import SearchOptions
from tune_m3.search.parent import open_parent
from tune_m3.search.paths import Claim, claim_new, describe_search, find_existing, take
from tune_m3.search.plan import check_dataset, dry_run, plan, preflight
from tune_m3.search.space import describe
from tune_m3.search.stages import load_data, prepare_trials, summarise
from tune_m3.search.state import Search


def run_search(options: SearchOptions) -> int:
    """Run the search ``options`` describe; the exit code (0 finished, 3 every trial failed,
    130 / 143 interrupted; a user error raises :class:`~tune_m3.errors.UserError`, exit 2)."""
    search = plan(options)
    if options.dry_run:
        return dry_run(search)
    preflight(search)
    reap(search.storage)  # what searches killed with SIGKILL left behind
    search.claim = claim(search)
    try:
        if search.resumed:
            identity.check_same(search, _fingerprint(search))
        else:
            identity.record(search)
        finished = search.state.get("status") == names.SEARCH_FINISHED
        if search.resumed and finished and not options.confirm_only:
            print(
                f"search '{search.paths.name}' has already finished (MLflow parent run "
                f"{search.state.get('parent_run_id')}); nothing to resume, nothing changed"
            )
            return 0
        return run(search)
    finally:
        search.claim.release()


def claim(search: Search) -> Claim:
    """This process's search folder: a new one, or the one ``--resume`` continues."""
    options, space = search.options, search.space
    if options.continues:
        paths = find_existing(search.storage, search.storage_uri, options.name, space.name)
        c = take(paths, resumed=True)
        if options.confirm_only and c.state.get("status") not in (names.SEARCH_FINISHED, None):
            c.release()
            raise UserError(
                f"--confirm-only: {describe_search(paths)} has not finished its search; "
                "finish it with --resume first"
            )
        return c
    paths = claim_new(search.storage, options.name, space.name)
    paths.storage_uri = search.storage_uri
    paths.exp_dir.mkdir(parents=True, exist_ok=True)
    return take(paths, resumed=False)


def _fingerprint(search: Search) -> str | None:
    """The fingerprint of the dataset this command would train on (None: not built yet)."""
    meta = check_dataset(search.space, search.options.data_dir, build=False)
    return meta.fingerprint if meta is not None else None


def _settle_study(search: Search) -> None:
    """The Optuna study's place: recorded by a new search (which refuses a name whose study
    exists there), read back by ``--resume`` (``optuna_store.settle``)."""
    from tune_m3.search import optuna_store

    o = search.options
    o.optuna_storage = optuna_store.settle(o.optuna_storage, o.storage, search.claim)
    if not search.resumed:
        optuna_store.refuse_existing(search.optuna_url, search.paths.name)


def run(search: Search) -> int:
    """Data, Ray, MLflow, search, summary; interrupts and late failures end cleanly."""
    with search.interrupts as intr:
        try:
            if search.space.algorithm.type == "optuna":
                _settle_study(search)
            meta, ds = load_data(search)
            print(describe(search.space))
            open_parent(search, meta)
            intr.reinstall()  # after ray.init, which took SIGTERM
            prepare_trials(search, ds)
            del ds
            return summarise(search)
        except SearchInterrupted as stop:
            return end_interrupted(search, stop.signum)
        except DiskLow as stop:
            end_disk_low(search, stop.reason)
        except BaseException as err:
            disk = disk_error(err) or full_now(search.places())
            with contextlib.suppress(Exception) if disk else contextlib.nullcontext():
                end_failed(search)  # on a full disk: as far as MLflow can still write
            if disk is not None:
                raise disk_full_error(search, disk) from None
            raise
