"""Before anything is written: the space, and every check that needs neither Ray nor MLflow.

:func:`plan` turns the options into a :class:`~tune_m3.search.state.Search` (also all that
``--dry-run`` runs, then :func:`dry_run` prints it); :func:`preflight` makes the checks that
need a server or the data (an unreachable tracking server or cluster, missing data), still
before the search's folder exists.
"""

from __future__ import annotations

import sys
from typing import Any

from tune_m3.errors import UserError
from tune_m3.search.diskspace import check_before_start
from tune_m3.search.options import SearchOptions
from tune_m3.search.paths import (
    SearchPaths,
    check_search_name,
    check_storage,
    describe_search,
    storage_from_arg,
    where_it_goes,
)
from tune_m3.search.ray_setup import check_address, check_local_gpus, ray_environment, tighten_token
from tune_m3.search.space import (
    SearchSpace,
    check_space_models,
    describe,
    grid_table,
    load_space,
)
from tune_m3.search.state import Search
from tune_m3.tracking.store import results_dir


def plan(options: SearchOptions) -> Search:
    """The space (file + ``--set`` + the command line) and the checks; nothing written."""
    # first: a bad space file is refused before torch loads
    space = load_space(
        options.space, options.overrides, options.space_overrides(), check_models=False
    )
    check_search_name(options.name, space.name)  # one path component, before anything is written
    from tune_m3.linear_kernel import kernel_setting  # no torch: no kernel timed here

    kernel_setting()  # a typo in $TUNE_M3_CPU_LINEAR ends here, not in every trial
    if options.confirm_only and space.confirm is None:
        raise UserError(
            f"--confirm-only: space '{space.name}' has no confirm block; add e.g. "
            "confirm: {top_k: 3, seeds: [1, 2, 3]} to it"
        )
    note_confirm_seeds(space)
    storage, storage_uri = storage_from_arg(options.storage, results_dir() / "ray")
    check_storage(storage)
    check_local_gpus(space, options.address)
    search = Search(options, space, storage, storage_uri)
    if space.algorithm.type == "optuna":
        from tune_m3.search import optuna_store

        optuna_store.check_url(search.optuna_url)
    if options.name and not options.continues and storage is not None:
        paths = SearchPaths(options.name, storage)
        if paths.exp_dir.exists():
            raise UserError(
                f"the name '{options.name}' is in use: {describe_search(paths)}. Pick another "
                "--name, or add --resume to continue that search"
            )
    if not options.dry_run and space.dataset.synthetic is None:  # missing data: before torch
        check_dataset(space, options.data_dir, build=False)
    check_space_models(space.example_configs())  # torch: after every cheaper check
    return search


def preflight(search: Search) -> None:
    """Checks that talk to the outside, before the search's folder is claimed."""
    options = search.options
    ray_environment(options.verbose)
    from tune_m3 import tracking
    from tune_m3.tracking.writes import retry_window

    retry_window()  # a typo in $TUNE_M3_MLFLOW_RETRY_S ends here, not after the search
    search.tracking_uri = options.tracking_uri or tracking.default_tracking_uri()
    tracking.check_uri(search.tracking_uri)  # an unreachable server fails here, before Ray
    check_before_start(search.places())  # a (nearly) full disk: before anything is written
    if options.address:
        check_address(options.address)  # and an unreachable cluster, before a dataset is built
        tighten_token()


def check_dataset(space: SearchSpace, data_dir: str | None, build: bool) -> Any:
    """Fail fast if the dataset is missing (or build a synthetic one the space declares)."""
    from tune_m3.data import ensure_synthetic, read_meta
    from tune_m3.data.store import resolve_data_dir

    ds = space.dataset
    root = resolve_data_dir(data_dir)
    if ds.synthetic is not None:
        if (root / ds.name / "meta.json").is_file():
            return read_meta(ds.name, root)
        if not build:
            return None
        s = ds.synthetic
        return ensure_synthetic(ds.name, s.like, s.scale, s.seed, root, unaligned=s.unaligned)
    return read_meta(ds.name, root)  # UserError with the import / synth instructions


def note_confirm_seeds(space: SearchSpace) -> None:
    """Say so when a confirm seed also trained the search's trials (allowed, but biased)."""
    used = space.training_seeds() if space.confirm else None
    both = [s for s in space.confirm.seeds if s in used] if used else []
    if both:
        fresh = [s for s in range(1, 1000) if s not in used][: len(space.confirm.seeds)]
        print(
            f"note: confirm seed(s) {both} also trained the search's trials: such a confirm run "
            "repeats its search trial (bit for bit on CPU), so the confirmed mean keeps the "
            "value the search picked for being best and leans optimistic; seeds the search did "
            f"not use avoid both, e.g. confirm: {{seeds: {fresh}}}",
            file=sys.stderr,
        )


def dry_run(search: Search) -> int:
    """``--dry-run``: the resolved space, the grid, whether the dataset is there; exit 0."""
    space, options = search.space, search.options
    print(describe(space))
    print(where_it_goes(options.storage, options.tracking_uri, search.optuna_url, space))
    if space.algorithm.type == "grid":
        print("grid trials:")
        print(grid_table(space))
    try:
        meta = check_dataset(space, search.options.data_dir, build=False)
    except UserError as err:
        print(f"dataset: MISSING. {err}")
    else:
        if meta is None:
            print(
                f"dataset: '{space.dataset.name}' will be built (synthetic) on the first real run"
            )
        else:
            kind = "SYNTHETIC" if meta.synthetic else "imported"
            print(f"dataset: '{meta.name}' found ({kind}; {meta.sizes})")
            check_models_on(space, meta)
    print("dry run: nothing trained")
    return 0


def check_models_on(space: SearchSpace, meta: Any) -> None:
    """Every distinct model of the space, checked again at the dataset's dims and step counts
    (what training will feed it; the space's own check used MOSEI's dims and 50 steps)."""
    from tune_m3.search.space import check_space_models

    steps = {m: int(meta.seq_lens.get(m, meta.seq_len)) for m in meta.dims}
    check_space_models(space.example_configs(), dict(meta.dims), steps)
    print(f"models: checked at the dataset's dims {meta.dims} and steps {steps}")
