"""The stages that train: the data into Ray, the search stage, the confirm stage, and the
summary that picks the winner. Each takes the :class:`~tune_m3.search.state.Search`.

Both stages run through :func:`run_tuner`: a new Ray Tune experiment, or the one a ``--resume``
finds on disk restored (Ray does not pickle callbacks, so ours is handed back to it).
Interrupts: a signal makes Ray stop gracefully; its results are saved, then
:class:`~tune_m3.search.interrupts.SearchInterrupted` ends the search (``endings.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tune_m3 import names
from tune_m3.search.ray_setup import (
    make_scheduler,
    make_searcher,
    ray_messages_to_file,
    ray_param_space,
)
from tune_m3.search.report import (
    log_best,
    log_confirmed,
    print_summary,
    report_pareto,
    save_table,
)
from tune_m3.search.state import Search

#: a finished trial's worker process runs the next trial (Ray resets it) instead of a new process
#: paying Python's and torch's start-up again (bench/bench_trial_overhead.py)
REUSE_ACTORS = True

# ------------------------------------------------------------------------------ data and trials


def load_data(search: Search) -> tuple[Any, Any]:
    """The dataset's meta and splits (built first if it is a synthetic one the space declares)."""
    from tune_m3.data import load_dataset
    from tune_m3.search.plan import check_dataset

    meta = check_dataset(search.space, search.options.data_dir, build=True)
    return meta, load_dataset(meta.name, search.options.data_dir)


def prepare_trials(search: Search, ds: Any) -> None:
    """The trainable (data into Ray's object store, once for both stages) and the logger."""
    from tune_m3.search.trainable import make_trainable
    from tune_m3.tracking import MlflowTrialLogger

    s = search.session
    data = {sp_name: sp.arrays() for sp_name, sp in ds.splits.items()}
    s.trainable = make_trainable(search.space, data)
    s.input_dims = dict(zip(ds.modalities, ds.input_dims(), strict=True))
    del data  # the object store holds the one shared copy now
    s.logger = MlflowTrialLogger(
        s.uri, s.exp_id, s.parent_id, s.search_tags, search.paths.unlogged, dataset=s.dataset
    )


# ------------------------------------------------------------------------------ Ray Tune

# Checkpoints Ray keeps per trial (each is the model, optimizer and best weights of one epoch).
# Ray snapshots the whole experiment (every trial's state: ~110 kB per trial of its metric
# bookkeeping, 55 MB at 500 trials) whenever a trial has made ``num_to_keep`` checkpoints since
# the last snapshot, so that the snapshot never names a deleted checkpoint. With 1 that is every
# epoch of every trial: O(trials) work per epoch, 17 % of a 500-trial search's driver samples.
# With 2 a trial forces one at most every second epoch, and only if Ray's own periodic snapshot
# (every >= 10 s, ~5 % of the time) did not come first; the cost is one more checkpoint per trial
# on disk.
CHECKPOINTS_KEPT = 2


def run_tuner(search: Search, path: str, new_tuner: Callable[[Any], Any], callback: Any) -> Any:
    """``new_tuner(run_config)``, or Ray's experiment at ``path`` restored; fit it."""
    from ray import tune

    s, intr = search.session, search.interrupts
    s.callbacks.append(callback)
    storage_path, name = path.rstrip("/").rsplit("/", 1)
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage_path,
        callbacks=[callback],
        failure_config=tune.FailureConfig(max_failures=2),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
        verbose=1 if search.options.verbose else 0,
    )
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=s.trainable, resume_errored=True)
        # callbacks are not pickled with the experiment: hand ours to the restored tuner
        tuner._local_tuner._run_config.callbacks = [callback]
    else:
        tuner = new_tuner(run_config)
    if not search.options.verbose:  # Ray's "Resume experiment with: Tuner.restore(...)"
        import logging

        for logger_name in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
            logging.getLogger(logger_name).setLevel(logging.ERROR)
        ray_messages_to_file(search.paths.ray_messages)  # trial tracebacks: to a file
    intr.in_fit = True
    try:
        return tuner.fit()
    finally:
        intr.in_fit = False


def _watch(search: Search) -> Any:
    from tune_m3.search.diskspace import DiskWatch

    return DiskWatch(search.places())


def search_stage(search: Search) -> Any:
    """Ray Tune over the space (or the restored search); returns Ray's ResultGrid."""
    from ray import tune

    from tune_m3.search.callback import Progress, make_callback

    space, s = search.space, search.session
    callback = make_callback(
        s.logger,
        space,
        Progress(space.num_trials()),
        search.interrupts,
        s.ended,
        watch=_watch(search),
        input_dims=s.input_dims,
    )

    def new_tuner(run_config):
        return tune.Tuner(
            s.trainable,
            param_space=ray_param_space(space),
            tune_config=tune.TuneConfig(
                # several objectives: the searcher holds the lists, the scheduler the first
                metric=None if space.objectives else space.metric,
                mode=None if space.objectives else space.mode,
                search_alg=make_searcher(space, search.optuna_url, search.paths.name),
                scheduler=make_scheduler(space, space.example_configs()[0].max_epochs),
                num_samples=1 if space.algorithm.type == "grid" else space.num_samples,
                max_concurrent_trials=space.max_concurrent,
                reuse_actors=REUSE_ACTORS,
            ),
            run_config=run_config,
        )

    return run_tuner(search, search.paths.ray_path, new_tuner, callback)


def confirm_stage(search: Search, search_df: Any) -> Any:
    """Re-train the top-k search configurations once per confirm seed (see ``confirm.py``)."""
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from tune_m3.search import confirm
    from tune_m3.search.callback import Progress, make_callback

    space, s = search.space, search.session
    pts = confirm.points(confirm.candidates(search_df, space), space)
    if not pts:
        return None
    search.set_status(names.SEARCH_RUNNING, stage=names.STAGE_CONFIRM)
    print(
        f"\nconfirm stage: the top {space.confirm.top_k} configurations x seeds "
        f"{space.confirm.seeds} = {len(pts)} trainings (no ASHA)",
        flush=True,
    )
    callback = make_callback(
        s.logger,
        space,
        Progress(len(pts)),
        search.interrupts,
        s.ended,
        stage=names.STAGE_CONFIRM,
        watch=_watch(search),
        input_dims=s.input_dims,
    )

    def new_tuner(run_config):
        return tune.Tuner(
            s.trainable,
            param_space=confirm.param_space(pts),
            tune_config=tune.TuneConfig(
                metric=space.metric,
                mode=space.mode,
                scheduler=FIFOScheduler(),
                num_samples=1,
                max_concurrent_trials=space.max_concurrent,
                reuse_actors=REUSE_ACTORS,
            ),
            run_config=run_config,
        )

    return run_tuner(search, search.paths.confirm_path, new_tuner, callback)


# ------------------------------------------------------------------------------ the trials table


def trial_statuses(search: Search, results: Any) -> dict[str, str]:
    """trial id -> status: as a callback saw it end, else from Ray's record of it."""
    from tune_m3.search.callback import trial_status
    from tune_m3.search.results import result_trial_id

    out = {}
    for r in results:
        tid = result_trial_id(r)
        out[tid] = search.session.ended.get(tid) or trial_status(
            r.metrics or {}, search.interrupts.interrupted, errored=r.error is not None
        )
    return out


def table(search: Search, results: Any, stage: str) -> Any:
    """``trials.parquet`` rows of one stage's Ray results."""
    import pandas as pd

    from tune_m3.search.confirm import CONFIRM_OF, CONFIRM_TRIAL
    from tune_m3.search.results import result_trial_id, trial_row
    from tune_m3.search.space import POINT

    statuses = trial_statuses(search, results)
    rows = []
    for r in results:
        tid = result_trial_id(r)
        run_id = search.session.logger.run_id(tid)
        row = trial_row(r, search.space, statuses[tid], run_id, stage=stage)
        point = (r.config or {}).get(POINT) or {}
        if point:
            row["confirm_of"], row["confirm_trial"] = point[CONFIRM_OF], point[CONFIRM_TRIAL]
        rows.append(row)
    return pd.DataFrame(rows)


def drop_lost_trial_runs(search: Search, results: Any) -> None:
    """After --resume: delete child runs of trials that died with the driver and were never saved.

    Ray snapshots the experiment every few seconds; a trial started after the last snapshot is
    unknown to the restored search, which samples a replacement under a new trial id. Its
    MLflow run would be a duplicate, left RUNNING forever, so it is tagged and deleted (MLflow
    keeps deleted runs restorable: ``mlflow gc`` removes them for good).
    """
    s = search.session
    known = {r.metrics.get("trial_id") for r in results if r.metrics}
    for trial_id, run_id in list(s.logger.runs.items()):
        if trial_id in known or not run_id or trial_id in s.ended:
            continue
        s.logger.trial_end(trial_id, names.LOST)
        s.logger.writes.delete_run(run_id)
        print(
            f"[tune_m3] trial {trial_id} was lost with the killed driver and re-sampled; "
            f"its partial MLflow run {run_id} was deleted"
        )


def searched_table(search: Search) -> Any:
    """The search stage's table: run now, or read back when only the confirm stage is left."""
    import pandas as pd

    if search.state.get("stage") == names.STAGE_CONFIRM or search.options.confirm_only:
        df = pd.read_parquet(search.paths.trials_table)
        return df[df["stage"] == names.STAGE_SEARCH].reset_index(drop=True)
    results = search_stage(search)
    if search.resumed:
        drop_lost_trial_runs(search, results)
        if search.space.algorithm.type == "optuna" and not search.interrupts.interrupted:
            from tune_m3.search.optuna_searcher import fail_running_trials

            # trials the killed driver had started after Ray's last snapshot: re-sampled
            fail_running_trials(search.optuna_url, search.paths.name)
    df = table(search, results, names.STAGE_SEARCH)
    save_table(df, search.paths)
    _stop_if_interrupted(search)
    return df


def _stop_if_interrupted(search: Search) -> None:
    search.interrupts.raise_if_stopped()


# ------------------------------------------------------------------------------ the summary


def summarise(search: Search) -> int:
    """Both stages, the winner on the parent run, the closing lines; the exit code."""
    from tune_m3.search.results import pick_best

    space = search.space
    df = searched_table(search)
    if space.objectives and not search.options.confirm_only:
        df = report_pareto(search, df)
    rank = None
    if space.confirm is not None and pick_best(df, space.metric, space.mode) is not None:
        df, rank = _confirm(search, df)
    best = pick_best(df[df["stage"] == names.STAGE_SEARCH], space.metric, space.mode)
    if best is None:
        return _all_failed(search, df)
    if not search.options.confirm_only:
        log_best(search, best, confirmed=rank)
    s = search.session
    s.logger.writes.log_artifact(s.parent_id, search.paths.summary_csv)
    s.logger.writes.log_artifact(s.parent_id, search.paths.trials_table)
    s.logger.writes.set_terminated(s.parent_id, names.RUN_FINISHED)
    unlogged = s.logger.finish()
    search.set_status(names.SEARCH_FINISHED)
    from tune_m3.search.endings import shutdown_ray

    shutdown_ray(search)
    print_summary(search, df, best, unlogged, rank)
    return 0


def _confirm(search: Search, df: Any) -> tuple[Any, Any]:
    """The confirm stage's rows added to the table, and the confirmed ranking (or None)."""
    import pandas as pd

    results = confirm_stage(search, df)
    if results is None:
        return df, None
    df = pd.concat([df, table(search, results, names.STAGE_CONFIRM)]).reset_index(drop=True)
    save_table(df, search.paths)
    _stop_if_interrupted(search)
    return df, log_confirmed(search, df)


def _all_failed(search: Search, df: Any) -> int:
    from tune_m3.search.results import Counts

    s = search.session
    s.logger.writes.set_terminated(s.parent_id, names.RUN_FAILED)
    search.set_status(names.SEARCH_FAILED)
    s.logger.finish()
    print(
        f"\nsearch '{search.paths.name}': every trial failed ({Counts.of(df).text()}); "
        f"see {search.paths.trials_table}"
    )
    return names.EXIT_ALL_FAILED
