"""``python -m tune_m3.search --space NAME``: the main job.

Reads a search space (``search_spaces/NAME.yaml`` or a path), checks everything that can be
checked before Ray starts (the space, the metric, the storage, the GPUs, the dataset, the name),
starts or joins Ray, runs Ray Tune with Optuna (seeded TPE) or a grid, ASHA or FIFO, logs every
trial as a nested MLflow child run under one parent run, writes all trials to ``trials.parquet``,
and ends by printing the best configuration, where everything is, and how to look at it.

The stages, each a function of its own: :func:`plan` (space + checks), :func:`claim` (the
search's folder, see ``search_paths.py``), :func:`load_data`, :func:`open_parent` (Ray + the
MLflow parent run), :func:`fit` (Ray Tune), :func:`summarise`.

How it ends (exit code): 0 finished; 2 refused (a user error: nothing written, or every run
marked FAILED); 130 / 143 interrupted by SIGINT / SIGTERM (running trials and the parent run
marked KILLED, the ``--resume`` command printed, see ``interrupts.py``); 1 a bug in tune_m3.

``--dry-run`` runs the checks, prints the resolved space, the trial count and resources, and
never imports Ray. ``--resume`` continues an interrupted search: finished trials stay
finished, unfinished ones resume from their checkpoints, Optuna's history is restored, the same
MLflow parent run is continued, and only then are ``best.*`` logged and the parent FINISHED. A
``--resume`` of a finished search says so and changes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tune_m3 import names
from tune_m3.config import add_overrides_argument
from tune_m3.errors import UserError, cli_main
from tune_m3.interrupts import Interrupts, SearchInterrupted, exit_code
from tune_m3.ray_setup import (  # noqa: F401  (tighten_token: also a public helper)
    check_address,
    check_cluster_gpus,
    check_local_gpus,
    init_ray,
    make_scheduler,
    make_searcher,
    ray_environment,
    ray_param_space,
    tighten_token,
)
from tune_m3.search_paths import (
    FAILED,
    FINISHED,
    INTERRUPTED,
    RUNNING,
    SearchPaths,
    check_storage,
    claim_new,
    describe_search,
    find_existing,
    storage_from_arg,
    take,
    write_state,
)
from tune_m3.search_report import (
    log_best,
    log_confirmed,
    print_summary,
    report_pareto,
    save_table,
)
from tune_m3.spaces import SearchSpace, available_spaces, describe, grid_table, load_space
from tune_m3.tracking.store import results_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tune_m3.search",
        description="Search M3 / modality-perturbation hyperparameters with Ray Tune + Optuna + ASHA, "
        "tracked in MLflow.",
        epilog="named spaces: " + ", ".join(available_spaces()),
    )
    p.add_argument(
        "--space", required=True, help="a named space (see below) or a path to a .yaml file"
    )
    p.add_argument(
        "--dataset", help="train on this store dataset instead of the space's, e.g. synth_mosei"
    )
    p.add_argument(
        "--data-dir", help="dataset store (default: $TUNE_M3_DATA_DIR or ~/.cache/tune_m3/data)"
    )
    p.add_argument(
        "--address",
        help="Ray cluster to join: 'auto', 'HOST:PORT' or 'ray://HOST:10001' "
        "(default: start a local Ray on this machine)",
    )
    p.add_argument("--num-samples", type=int, help="number of Optuna trials (overrides the space)")
    p.add_argument(
        "--max-concurrent", type=int, help="trials running at once (overrides the space)"
    )
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (also torch threads)")
    p.add_argument(
        "--gpus-per-trial", type=float, help="GPUs per trial; fractional packs trials, e.g. 0.25"
    )
    p.add_argument(
        "--storage",
        help="Ray results/checkpoints: a local path or a URI Ray supports (s3://, gs://, "
        "an NFS path shared by all nodes); default ./tune_m3_results/ray",
    )
    p.add_argument(
        "--tracking-uri",
        "--mlflow-uri",
        dest="tracking_uri",
        help="MLflow tracking URI (default: SQLite in ./tune_m3_results/mlflow.db); "
        "--mlflow-uri is an alias",
    )
    p.add_argument(
        "--optuna-storage",
        metavar="URL",
        help="Optuna RDB storage for the study (one study per search name); default "
        "sqlite:///<results dir>/optuna.db. Read it with optuna.load_study or optuna-dashboard",
    )
    p.add_argument(
        "--ui-port",
        type=int,
        default=5000,
        help="port you run `mlflow ui` on, for the printed links (default 5000)",
    )
    p.add_argument("--experiment", help="MLflow experiment name (default: the space's name)")
    p.add_argument(
        "--name", help="name of this search (Ray experiment dir); default SPACE-YYYYmmdd-HHMMSS"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the latest interrupted search of this space (or the one named by --name)",
    )
    p.add_argument(
        "--confirm-only",
        action="store_true",
        help="run the space's confirm stage on a finished search (--name, or the latest one); "
        "nothing is re-searched",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved space and trial count; train nothing",
    )
    p.add_argument(
        "--seed", type=int, help="searcher seed (Optuna TPE); training seeds are in the space"
    )
    add_overrides_argument(
        p, "fix a TrialConfig field for every trial, e.g. --set max_epochs=5 (repeatable)"
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also show Ray's status tables and the trials' own output",
    )
    return p


def resolve_space(args: argparse.Namespace) -> SearchSpace:
    from tune_m3.config import parse_overrides

    space = load_space(args.space, parse_overrides(args.overrides), check_models=False)
    if args.num_samples is not None:
        if args.num_samples < 1:
            raise UserError(f"--num-samples must be >= 1 (got {args.num_samples})")
        space.num_samples = args.num_samples
    if args.max_concurrent is not None:
        if args.max_concurrent < 1:
            raise UserError(f"--max-concurrent must be >= 1 (got {args.max_concurrent})")
        space.max_concurrent = args.max_concurrent
    if args.cpus_per_trial is not None:
        if args.cpus_per_trial <= 0:
            raise UserError(f"--cpus-per-trial must be > 0 (got {args.cpus_per_trial})")
        space.resources.cpu = args.cpus_per_trial
    if args.gpus_per_trial is not None:
        if args.gpus_per_trial < 0:
            raise UserError(f"--gpus-per-trial must be >= 0 (got {args.gpus_per_trial})")
        space.resources.gpu = args.gpus_per_trial
    if args.seed is not None:
        space.algorithm.seed = args.seed
    if args.dataset:
        space.dataset = type(space.dataset)(name=args.dataset)
    return space


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


def plan(args: argparse.Namespace) -> tuple[SearchSpace, Path | None, str | None]:
    """The space and every check that needs neither Ray nor MLflow (also run by --dry-run)."""
    from tune_m3.linear_kernel import kernel_setting  # no torch: no kernel timed here

    kernel_setting()  # a typo in $TUNE_M3_CPU_LINEAR ends here, not in every trial
    space = resolve_space(args)
    if args.confirm_only and space.confirm is None:
        raise UserError(
            f"--confirm-only: space '{space.name}' has no confirm block; add e.g. "
            "confirm: {top_k: 3, seeds: [1, 2, 3]} to it"
        )
    note_confirm_seeds(space)
    storage, storage_uri = storage_from_arg(args.storage, results_dir() / "ray")
    check_storage(storage)
    check_local_gpus(space, args.address)
    if space.algorithm.type == "optuna":
        from tune_m3 import optuna_store

        optuna_store.check_url(optuna_url(args))
    if args.name and not (args.resume or args.confirm_only) and storage is not None:
        paths = SearchPaths(args.name, storage)
        if paths.exp_dir.exists():
            raise UserError(
                f"the name '{args.name}' is in use: {describe_search(paths)}. Pick another "
                "--name, or add --resume to continue that search"
            )
    from tune_m3.spaces import check_space_models  # [scale] missing data, then the model

    if not args.dry_run and space.dataset.synthetic is None:  # check (torch): after the rest
        check_dataset(space, args.data_dir, build=False)
    check_space_models(space.example_configs())
    return space, storage, storage_uri


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


def optuna_url(args: argparse.Namespace) -> str:
    from tune_m3 import optuna_store

    return optuna_store.url(args.optuna_storage)


def dry_run(args: argparse.Namespace, space: SearchSpace) -> int:
    print(describe(space))
    if space.algorithm.type == "grid":
        print("grid trials:")
        print(grid_table(space))
    try:
        meta = check_dataset(space, args.data_dir, build=False)
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
    print("dry run: nothing trained")
    return 0


# ------------------------------------------------------------------------------ stages


def claim(args, space: SearchSpace, storage: Path | None, storage_uri: str | None):
    """This process's search folder: a new one, or the one ``--resume`` continues."""
    if args.resume or args.confirm_only:
        paths = find_existing(storage, storage_uri, args.name, space.name)
        c = take(paths, resumed=True)
        if args.confirm_only and c.state.get("status") not in (FINISHED, None):
            c.release()
            raise UserError(
                f"--confirm-only: {describe_search(paths)} has not finished its search; "
                "finish it with --resume first"
            )
        return c
    paths = claim_new(storage, args.name, space.name)
    paths.storage_uri = storage_uri
    paths.exp_dir.mkdir(parents=True, exist_ok=True)
    return take(paths, resumed=False)


def load_data(space: SearchSpace, args: argparse.Namespace):
    """The dataset (built first if it is a synthetic one the space declares)."""
    meta = check_dataset(space, args.data_dir, build=True)
    from tune_m3.data import load_dataset

    return meta, load_dataset(meta.name, args.data_dir)


@dataclass
class Session:
    """The MLflow side of a running search."""

    uri: str
    mlc: Any
    experiment: str
    exp_id: str
    parent_id: str
    search_tags: dict[str, str]
    synthetic: bool
    logger: Any = None
    trainable: Any = None
    callbacks: list = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)  # trial id -> status, this session
    t0: float = field(default_factory=time.time)


def open_parent(args, space: SearchSpace, c, uri: str, meta) -> Session:
    """Join/start Ray (nothing written yet), then create or reopen the MLflow parent run."""
    init_ray(args.address, args.verbose)
    if args.address:
        check_cluster_gpus(space)
    tighten_token()
    from tune_m3 import tracking

    mlc = tracking.client(uri)
    experiment = args.experiment or c.state.get("experiment") or space.name
    exp_id = tracking.get_or_create_experiment(mlc, experiment)
    synthetic = bool(meta.synthetic)
    tags = {
        names.TAG_SPACE: space.name,
        names.TAG_DATASET: meta.name,
        names.TAG_SYNTHETIC: str(synthetic).lower(),
        names.TAG_SEARCH: c.paths.name,
    }
    parent_id = c.state.get("parent_run_id")
    if parent_id:
        mlc.update_run(parent_id, status="RUNNING")
        print(f"resuming {describe_search(c.paths)}")
    else:
        parent_id = _create_parent(args, mlc, exp_id, space, c.paths.name, tags, meta)
    if c.paths.storage is not None:
        write_state(
            c.paths,
            parent_run_id=parent_id,
            experiment=experiment,
            experiment_id=exp_id,
            space=space.name,
            space_path=space.path,
            status=RUNNING,
        )
    return Session(uri, mlc, experiment, exp_id, parent_id, tags, synthetic)


def _create_parent(args, mlc, exp_id: str, space: SearchSpace, name: str, tags: dict, meta) -> str:
    import mlflow
    import optuna
    import ray
    import torch
    from mlflow.entities import Param

    from tune_m3 import tracking

    note = (space.description or "") + (
        "\n\nSYNTHETIC data: not a MOSEI/MOSI result." if meta.synthetic else ""
    )
    versions = (
        f"ray {ray.__version__}, optuna {optuna.__version__}, torch {torch.__version__}, "
        f"mlflow {mlflow.__version__}"
    )
    parent = mlc.create_run(
        exp_id,
        run_name=name,
        tags={
            **tags,
            names.TAG_GIT_COMMIT: tracking.git_commit(),
            names.TAG_DATASET_FINGERPRINT: meta.fingerprint,
            names.TAG_VERSIONS: versions,
            names.TAG_NOTE: note,
        },
    )
    params = {
        "space": space.name,
        "algorithm": space.algorithm.type,
        "searcher_seed": space.algorithm.seed,
        "scheduler": space.scheduler.type,
        "metric": space.metric,
        "mode": space.mode,
        "num_trials": space.num_trials(),
        "max_concurrent": space.max_concurrent,
        "cpu_per_trial": space.resources.cpu,
        "gpu_per_trial": space.resources.gpu,
        "dataset": meta.name,
        "synthetic": bool(meta.synthetic),
    }
    if space.algorithm.type == "optuna":
        params["optuna_study"] = name
        params["optuna_storage"] = optuna_url(args)
    if space.objectives:
        import json

        params["objectives"] = json.dumps([o.model_dump() for o in space.objectives])
    mlc.log_batch(parent.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    mlc.log_artifact(parent.info.run_id, space.path)
    return parent.info.run_id


def prepare_trials(space: SearchSpace, c, s: Session, ds) -> None:
    """The trainable (data into Ray's object store, once for both stages) and the logger."""
    from tune_m3.tracking import MlflowTrialLogger
    from tune_m3.trainable import make_trainable

    data = {sp_name: sp.arrays() for sp_name, sp in ds.splits.items()}
    s.trainable = make_trainable(space, data)
    del data  # the object store holds the one shared copy now
    s.logger = MlflowTrialLogger(s.uri, s.exp_id, s.parent_id, s.search_tags, c.paths.unlogged)


def _run_tuner(args, s: Session, intr: Interrupts, path: str, new_tuner, callback):
    """``new_tuner(run_config)``, or Ray's experiment at ``path`` restored; fit it."""
    from ray import tune

    s.callbacks.append(callback)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    run_config = tune.RunConfig(
        name=name,
        storage_path=path.rstrip("/").rsplit("/", 1)[0],
        callbacks=[callback],
        failure_config=tune.FailureConfig(max_failures=2),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        verbose=1 if args.verbose else 0,
    )
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=s.trainable, resume_errored=True)
        # callbacks are not pickled with the experiment: hand ours to the restored tuner
        tuner._local_tuner._run_config.callbacks = [callback]
    else:
        tuner = new_tuner(run_config)
    if not args.verbose:  # Ray's "Resume experiment with: Tuner.restore(...)": we print ours
        import logging

        for logger_name in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
            logging.getLogger(logger_name).setLevel(logging.ERROR)
    intr.in_fit = True
    try:
        return tuner.fit()
    finally:
        intr.in_fit = False


def search_stage(args, space: SearchSpace, c, s: Session, intr: Interrupts):
    """Ray Tune over the space (or the restored search); returns Ray's ResultGrid."""
    from ray import tune

    from tune_m3.search_callback import Progress, make_callback

    callback = make_callback(s.logger, space, Progress(space.num_trials()), intr, s.ended)

    def new_tuner(run_config):
        return tune.Tuner(
            s.trainable,
            param_space=ray_param_space(space),
            tune_config=tune.TuneConfig(
                # several objectives: the searcher holds the lists, the scheduler the first
                metric=None if space.objectives else space.metric,
                mode=None if space.objectives else space.mode,
                search_alg=make_searcher(space, optuna_url(args), c.paths.name),
                scheduler=make_scheduler(space, space.example_configs()[0].max_epochs),
                num_samples=1 if space.algorithm.type == "grid" else space.num_samples,
                max_concurrent_trials=space.max_concurrent,
            ),
            run_config=run_config,
        )

    return _run_tuner(args, s, intr, c.paths.ray_path, new_tuner, callback)


def confirm_stage(args, space: SearchSpace, c, s: Session, search_df, intr: Interrupts):
    """Re-train the top-k search configurations once per confirm seed (see ``confirm.py``)."""
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from tune_m3 import confirm
    from tune_m3.search_callback import Progress, make_callback

    pts = confirm.points(confirm.candidates(search_df, space), space)
    if not pts:
        return None
    _set_status(c, RUNNING, stage=names.STAGE_CONFIRM)
    print(
        f"\nconfirm stage: the top {space.confirm.top_k} configurations x seeds "
        f"{space.confirm.seeds} = {len(pts)} trainings (no ASHA)",
        flush=True,
    )
    callback = make_callback(
        s.logger, space, Progress(len(pts)), intr, s.ended, stage=names.STAGE_CONFIRM
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
            ),
            run_config=run_config,
        )

    return _run_tuner(args, s, intr, c.paths.confirm_path, new_tuner, callback)


def trial_statuses(results, s: Session, intr: Interrupts) -> dict[str, str]:
    """trial id -> status: as a callback saw it end, else from Ray's record of it."""
    from tune_m3.search_callback import trial_status
    from tune_m3.search_results import result_trial_id

    out = {}
    for r in results:
        tid = result_trial_id(r)
        out[tid] = s.ended.get(tid) or trial_status(
            r.metrics or {}, intr.interrupted, errored=r.error is not None
        )
    return out


def table(results, space: SearchSpace, s: Session, intr: Interrupts, stage: str):
    """``trials.parquet`` rows of one stage's Ray results."""
    import pandas as pd

    from tune_m3.confirm import CONFIRM_OF, CONFIRM_TRIAL
    from tune_m3.search_results import result_trial_id, trial_row
    from tune_m3.spaces import POINT

    statuses = trial_statuses(results, s, intr)
    rows = []
    for r in results:
        tid = result_trial_id(r)
        row = trial_row(r, space, statuses[tid], s.logger.run_id(tid), stage=stage)
        point = (r.config or {}).get(POINT) or {}
        if point:
            row["confirm_of"], row["confirm_trial"] = point[CONFIRM_OF], point[CONFIRM_TRIAL]
        rows.append(row)
    return pd.DataFrame(rows)


def drop_lost_trial_runs(s: Session, results) -> None:
    """After --resume: delete child runs of trials that died with the driver and were never saved.

    Ray snapshots the experiment every few seconds; a trial started after the last snapshot is
    unknown to the restored search, which samples a replacement under a new trial id. Its
    MLflow run would be a duplicate, left RUNNING forever, so it is tagged and deleted (MLflow
    keeps deleted runs restorable: ``mlflow gc`` removes them for good).
    """
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


def searched_table(args, space: SearchSpace, c, s: Session, intr: Interrupts):
    """The search stage's table: run now, or read back when only the confirm stage is left."""
    import pandas as pd

    from tune_m3.names import STAGE_SEARCH

    if c.state.get("stage") == names.STAGE_CONFIRM or args.confirm_only:
        df = pd.read_parquet(c.paths.trials_table)
        return df[df["stage"] == STAGE_SEARCH].reset_index(drop=True)
    results = search_stage(args, space, c, s, intr)
    if c.resumed:
        drop_lost_trial_runs(s, results)
        if space.algorithm.type == "optuna" and not intr.interrupted:
            from tune_m3.optuna_searcher import fail_running_trials

            # trials the killed driver had started after Ray's last snapshot: re-sampled
            fail_running_trials(optuna_url(args), c.paths.name)
    df = table(results, space, s, intr, STAGE_SEARCH)
    save_table(df, c.paths)
    if intr.interrupted:
        raise SearchInterrupted(intr.signum)
    return df


def summarise(args, space: SearchSpace, c, s: Session, intr: Interrupts) -> int:
    """Both stages, the winner on the parent run, the closing lines; the exit code."""
    import pandas as pd

    from tune_m3.search_results import Counts, pick_best

    df = searched_table(args, space, c, s, intr)
    if space.objectives and not args.confirm_only:
        df = report_pareto(space, c, s, df)
    rank = None
    if space.confirm is not None and (pick_best(df, space.metric, space.mode) is not None):
        results = confirm_stage(args, space, c, s, df, intr)
        if results is not None:
            df = pd.concat([df, table(results, space, s, intr, names.STAGE_CONFIRM)])
            df = df.reset_index(drop=True)
            save_table(df, c.paths)
            if intr.interrupted:
                raise SearchInterrupted(intr.signum)
            rank = log_confirmed(args, space, c, s, df)
    best = pick_best(df[df["stage"] == names.STAGE_SEARCH], space.metric, space.mode)
    w = s.logger.writes
    if best is None:
        w.set_terminated(s.parent_id, "FAILED")
        _set_status(c, FAILED)
        s.logger.finish()
        print(
            f"\nsearch '{c.paths.name}': every trial failed ({Counts.of(df).text()}); see {c.paths.trials_table}"
        )
        return 1
    if not args.confirm_only:
        log_best(space, s, best, confirmed=rank)
    w.log_artifact(s.parent_id, c.paths.summary_csv)
    w.log_artifact(s.parent_id, c.paths.trials_table)
    w.set_terminated(s.parent_id, "FINISHED")
    unlogged = s.logger.finish()
    _set_status(c, FINISHED)
    _shutdown_ray()
    print_summary(args, space, c, s, df, best, unlogged, rank)
    return 0


def _set_status(c, status: str, **more) -> None:
    if c.paths.storage is not None:
        write_state(c.paths, status=status, **more)


def resume_command(argv: list[str], name: str) -> str:
    """The user's own command line, pointed at this search, with --resume."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--name", "--resume"):
            skip = a == "--name"
            continue
        if a.startswith("--name="):
            continue
        out.append(a)
    return shlex.join(["python", "-m", "tune_m3.search", *out, "--name", name, "--resume"])


def _open_trials(s: Session) -> list[str]:
    """Trials whose runs are still open: not ended in this session, nor in an earlier one."""
    return [t for t in s.logger.runs if t not in s.ended and t not in s.logger.closed]


def _shutdown_ray() -> None:
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()


def _abandon(c) -> None:
    """A new search that ends before its parent run exists leaves no folder behind."""
    import shutil

    if not c.resumed and c.paths.storage is not None:
        c.release()
        shutil.rmtree(c.paths.exp_dir, ignore_errors=True)
        with contextlib.suppress(
            OSError
        ):  # the storage folder too, if this made it and it is empty
            c.paths.storage.rmdir()


def end_interrupted(c, s: Session | None, signum: int, argv: list[str]) -> int:
    """Running trials and the parent run KILLED, no best.*, the resume command; 130 / 143."""
    import signal as _signal

    _shutdown_ray()
    if s is None and not c.resumed:
        _abandon(c)
        print(f"\nsearch '{c.paths.name}' interrupted before it started; nothing was written")
        return exit_code(signum)
    if s is not None and s.logger is not None:
        for tid in _open_trials(s):
            s.logger.trial_end(tid, names.KILLED)
        s.logger.writes.set_terminated(s.parent_id, "KILLED")
        s.logger.finish()
    elif s is not None:
        s.mlc.set_terminated(s.parent_id, "KILLED")
    _set_status(c, INTERRUPTED)
    sig = _signal.Signals(signum).name
    print(
        f"\nsearch '{c.paths.name}' interrupted by {sig}; nothing is lost. Resume it with: "
        f"{resume_command(argv, c.paths.name)}",
        flush=True,
    )
    return exit_code(signum)


def end_failed(c, s: Session | None) -> None:
    """After an error: no run of this search is left RUNNING (they become FAILED)."""
    _shutdown_ray()
    if s is None:
        _abandon(c)
        return
    try:
        if s.logger is not None:
            for tid in _open_trials(s):
                s.logger.trial_end(tid, names.FAILED)
            s.logger.writes.set_terminated(s.parent_id, "FAILED")
            s.logger.finish()
        else:
            s.mlc.set_terminated(s.parent_id, "FAILED")
    finally:
        _set_status(c, FAILED)


def run(args, argv: list[str], space: SearchSpace, c, uri: str) -> int:
    """Data, Ray, MLflow, search, summary; interrupts and late failures end cleanly."""
    s: Session | None = None
    with Interrupts() as intr:
        try:
            if space.algorithm.type == "optuna" and not c.resumed:
                from tune_m3 import optuna_store

                optuna_store.refuse_existing(optuna_url(args), c.paths.name)
            meta, ds = load_data(space, args)
            print(describe(space))
            s = open_parent(args, space, c, uri, meta)
            intr.reinstall()  # after ray.init, which took SIGTERM
            prepare_trials(space, c, s, ds)
            del ds
            return summarise(args, space, c, s, intr)
        except SearchInterrupted as stop:
            return end_interrupted(c, s, stop.signum, argv)
        except BaseException:
            end_failed(c, s)
            raise


@cli_main
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    space, storage, storage_uri = plan(args)
    if args.dry_run:
        return dry_run(args, space)
    ray_environment(args.verbose)
    from tune_m3 import tracking

    uri = args.tracking_uri or tracking.default_tracking_uri()
    tracking.check_uri(uri)  # an unreachable server fails here, before Ray starts
    if args.address:
        check_address(args.address)  # and an unreachable cluster, before a dataset is built
        tighten_token()
    c = claim(args, space, storage, storage_uri)
    try:
        if c.resumed and c.state.get("status") == FINISHED and not args.confirm_only:
            print(
                f"search '{c.paths.name}' has already finished (MLflow parent run "
                f"{c.state.get('parent_run_id')}); nothing to resume, nothing changed"
            )
            return 0
        return run(args, argv, space, c, uri)
    finally:
        c.release()


if __name__ == "__main__":
    sys.exit(main())
