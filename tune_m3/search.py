"""``python -m tune_m3.search --space NAME``: the main job.

Reads a search space (``search_spaces/NAME.yaml`` or a path), checks the dataset is there
(seconds, before Ray starts), starts or joins Ray, runs Ray Tune with Optuna (seeded TPE) or a
grid, ASHA or FIFO, logs every trial as a nested MLflow child run under one parent run, writes
all trials' final results to ``trials.parquet`` beside Ray's results, and ends by printing the
best configuration, where everything is, and the command that opens the MLflow UI.

``--dry-run`` prints the resolved space, the trial count (every trial of a grid) and resources,
and never imports Ray. ``--resume`` continues the most recent search of the space (or the one
named by ``--name``) where it stopped: finished trials stay finished, unfinished ones resume
from their checkpoints, Optuna's history is restored, and the same MLflow parent run is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tune_m3.config import add_overrides_argument, make_config
from tune_m3.errors import UserError, cli_main
from tune_m3.spaces import SearchSpace, available_spaces, describe, grid_table, load_space
from tune_m3.tracking import results_dir

STATE_FILE = "tune_m3_search.json"  # in the Ray experiment dir: parent run id, experiment id, space


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
        "--mlflow-uri", help="MLflow tracking URI (default: SQLite in ./tune_m3_results/mlflow.db)"
    )
    p.add_argument("--experiment", help="MLflow experiment name (default: the space's name)")
    p.add_argument(
        "--name", help="name of this search (Ray experiment dir); default SPACE-YYYYmmdd-HHMMSS"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the latest interrupted search of this space"
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

    space = load_space(args.space, parse_overrides(args.overrides))
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


# ------------------------------------------------------------------------------------- Ray side


def ray_param_space(space: SearchSpace) -> dict[str, Any]:
    from ray import tune

    if space.algorithm.type == "grid":
        return {k: tune.grid_search(v) for k, v in space.grid_axes().items()}
    out: dict[str, Any] = {}
    for k, d in space.search.items():
        a = d.args
        out[k] = {
            "uniform": lambda a=a: tune.uniform(a[0], a[1]),
            "loguniform": lambda a=a: tune.loguniform(a[0], a[1]),
            "quniform": lambda a=a: tune.quniform(a[0], a[1], a[2]),
            "choice": lambda a=a: tune.choice(list(a)),
        }[d.kind]()
    return out


def make_searcher(space: SearchSpace):
    if space.algorithm.type == "grid":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=space.algorithm.seed))


def make_scheduler(space: SearchSpace, max_epochs: int):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if space.scheduler.type == "fifo":
        return FIFOScheduler()
    # ASHA stops any trial whose time reaches max_t. A trial that trains its max_epochs must
    # still get to its final report (test metrics + diagnostics), so the cap is one epoch later.
    return ASHAScheduler(
        time_attr="epoch",
        max_t=max_epochs + 1,
        grace_period=space.scheduler.grace_period,
        reduction_factor=space.scheduler.reduction_factor,
    )


def ray_environment(verbose: bool) -> None:
    """Environment Ray reads at import time: call before the first ``import ray``."""
    # Ray 2.60 turns token authentication on for clusters; keep it on, and say so explicitly,
    # which also lets this driver join an explicit --address (docs/cluster.md)
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    # one forced experiment snapshot per checkpoint is what we want (resume loses nothing);
    # Ray warns about it when epochs are short, as in the demo
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # snapshot the experiment state at least every 5 s (Ray's "auto" starts at 10 s and grows),
    # so a killed driver loses little and --resume re-runs little
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")
    if not verbose:  # Ray's new output engine prints boxes even at verbose=0
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def check_address(address: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not minutes, when a Ray address cannot be reached.

    ``ray.init`` retries an unreachable GCS for minutes, and swaps 127.0.0.1 for the machine's
    routable IP in its messages; a plain TCP connect says "nobody listens there" at once.
    """
    import socket

    hint = (
        "Check that the head node runs (ray status), the address and port, and that this "
        "machine has the cluster's token (RAY_AUTH_MODE=token, ~/.ray/auth_token); see docs/cluster.md"
    )
    if address == "auto":
        if os.environ.get("RAY_ADDRESS") or Path("/tmp/ray/ray_current_cluster").exists():
            return
        raise UserError(
            f"--address auto: no running Ray cluster found on this machine (no RAY_ADDRESS, no "
            f"/tmp/ray/ray_current_cluster). Start one with `ray start --head`, or drop --address "
            f"to run on a local Ray. {hint}"
        )
    hostport = address.removeprefix("ray://").rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"--address {address}: expected 'auto', 'HOST:PORT' or 'ray://HOST:PORT'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise UserError(
            f"cannot reach the Ray cluster at --address {address} ({err.strerror or err}). {hint}"
        ) from None


def init_ray(address: str | None, verbose: bool) -> None:
    if address:
        check_address(address)  # seconds, before the slow import and ray.init's retries
    import ray

    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": verbose,
        "configure_logging": True,
        "logging_level": "INFO" if verbose else "WARNING",
    }
    if address:
        try:
            ray.init(address=address, **kwargs)
        except Exception as err:  # ConnectionError, TimeoutError, auth errors: all user-fixable
            raise UserError(
                f"cannot join the Ray cluster at --address {address} ({type(err).__name__}: "
                f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}). Check that the "
                "head node runs (ray status), the address and port, and that this machine has the "
                "cluster's token (RAY_AUTH_MODE=token, ~/.ray/auth_token); see docs/cluster.md"
            ) from None
    else:
        # address="local" always starts a fresh local Ray, even if a stale
        # /tmp/ray/ray_current_cluster from a killed cluster is lying around
        ray.init(address="local", num_cpus=os.cpu_count() or 1, **kwargs)


class _Progress:
    """Short progress lines of our own (trial finished / stopped / failed)."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.done = 0
        self.t0 = time.time()

    def line(self, msg: str) -> None:
        el = time.time() - self.t0
        print(f"[tune_m3 {el:6.0f}s] {msg}", flush=True)


def make_callback(logger, space: SearchSpace, progress: _Progress):
    """Wrap the MLflow logger (and our progress lines) as a Ray Tune callback."""
    from ray.tune import Callback

    metric = space.metric

    class TuneM3Callback(Callback):
        last_status = 0.0

        def on_step_end(self, iteration, trials, **info):
            now = time.time()
            if now - self.last_status < 30:
                return
            self.last_status = now
            running = [t for t in trials if t.status == "RUNNING"]
            epochs = [str(logger.last_result.get(t.trial_id, {}).get("epoch", 0)) for t in running]
            vals = [
                r.get(metric)
                for r in logger.last_result.values()
                if isinstance(r.get(metric), int | float)
            ]
            best = (min(vals) if space.mode == "min" else max(vals)) if vals else float("nan")
            progress.line(
                f"{progress.done}/{space.num_trials()} trials done, {len(running)} running "
                f"(at epochs {', '.join(epochs) or '-'}), best latest {metric} {best:.4f}"
            )

        def on_trial_start(self, iteration, trials, trial, **info):
            # every TrialConfig field (defaults too), plus the grid row's variant name
            full = make_config(space.trial_values(trial.config)).params()
            if "variant" in trial.config:
                full["variant"] = trial.config["variant"]
            logger.trial_start(trial.trial_id, str(trial), full)
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.config.items())
            progress.line(f"trial {trial} started: {shown}")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            logger.trial_result(trial.trial_id, result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            last = logger.last_result.get(trial.trial_id, {})
            status = "completed" if last.get("trial_done") else "stopped_by_scheduler"
            logger.trial_end(trial.trial_id, status)
            progress.done += 1
            best = last.get("best_val_loss", float("nan"))
            what = "finished" if status == "completed" else "stopped by ASHA"
            progress.line(
                f"trial {trial} {what} after {last.get('epoch', '?')} epochs: {metric}={last.get(metric, float('nan')):.4f} "
                f"best_val_loss={best:.4f} ({progress.done}/{space.num_trials()} done)"
            )

        def on_trial_error(self, iteration, trials, trial, **info):
            err = ""
            if trial.error_file and Path(trial.error_file).exists():
                text = Path(trial.error_file).read_text().strip().splitlines()
                err = text[-1] if text else ""
            logger.trial_end(trial.trial_id, "failed", err)
            progress.done += 1
            progress.line(f"trial {trial} FAILED: {err}")

    return TuneM3Callback()


def drop_lost_trial_runs(logger, results) -> None:
    """After --resume: delete child runs of trials that died with the driver and were never saved.

    Ray snapshots the experiment every few seconds; a trial started after the last snapshot is
    unknown to the restored search, which samples a replacement under a new trial id. Its
    MLflow run would be a duplicate, left RUNNING forever, so it is tagged and deleted (MLflow
    keeps deleted runs restorable: ``mlflow gc`` removes them for good).
    """
    from tune_m3.tracking import TAG_STATUS

    known = {r.metrics.get("trial_id") for r in results if r.metrics}
    for trial_id, run_id in list(logger.runs.items()):
        if trial_id in known or not run_id:
            continue
        try:
            logger.c.set_tag(run_id, TAG_STATUS, "lost_with_driver")
            logger.c.set_terminated(run_id, "KILLED")
            logger.c.delete_run(run_id)
            print(
                f"[tune_m3] trial {trial_id} was lost with the killed driver and re-sampled; "
                f"its partial MLflow run {run_id} was deleted"
            )
        except Exception as err:  # noqa: BLE001
            print(
                f"[tune_m3] could not delete the run of lost trial {trial_id} ({err})",
                file=sys.stderr,
            )


def latest_search(storage: Path, space_name: str) -> Path | None:
    if not storage.is_dir():
        return None
    cands = [
        p
        for p in storage.iterdir()
        if p.is_dir() and p.name.startswith(space_name + "-") and (p / STATE_FILE).exists()
    ]
    return max(cands, key=lambda p: p.stat().st_mtime, default=None)


def _error_line(err: BaseException) -> str:
    """The exception's own message: the last line of Ray's error text (its first line is Ray's
    task header, ``ray::ImplicitFunc.train() (pid=...)`` with terminal colours)."""
    lines = [s.strip() for s in str(err).splitlines() if s.strip()]
    return lines[-1][:500] if lines else type(err).__name__


def write_trials_table(results, path: Path, space: SearchSpace) -> Any:
    import pandas as pd

    rows = []
    for r in results:
        m = dict(r.metrics or {})
        row = {
            "trial_id": m.get("trial_id"),
            "status": "failed"
            if r.error
            else ("completed" if m.get("trial_done") else "stopped_by_scheduler"),
        }
        row.update(
            {
                f"param_{k}": v
                for k, v in space.trial_values(r.config or {}).items()
                if not isinstance(v, list | tuple)
            }
        )
        row.update(
            {k: v for k, v in m.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        )
        row["error"] = _error_line(r.error) if r.error else ""
        rows.append(row)
    df = pd.DataFrame(rows)
    df.to_parquet(path, index=False)
    return df


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    space = resolve_space(args)

    if args.dry_run:
        print(describe(space))
        if space.algorithm.type == "grid":
            print("grid trials:")
            print(grid_table(space))
        try:
            meta = check_dataset(space, args.data_dir, build=False)
        except UserError as err:
            print(f"dataset: MISSING. {err}")
            meta = False
        if meta is False:
            pass
        elif meta is None:
            print(
                f"dataset: '{space.dataset.name}' will be built (synthetic) on the first real run"
            )
        else:
            print(
                f"dataset: '{meta.name}' found ({'SYNTHETIC' if meta.synthetic else 'imported'}; {meta.sizes})"
            )
        print("dry run: nothing trained")
        return 0

    ray_environment(args.verbose)
    from tune_m3 import tracking

    uri = args.mlflow_uri or tracking.default_tracking_uri()
    tracking.check_uri(uri)  # an unreachable server fails here, before Ray starts
    if args.address:
        check_address(args.address)  # and an unreachable cluster, before a dataset is built
    storage = (
        Path(args.storage).expanduser().resolve()
        if args.storage and "://" not in args.storage
        else None
    )
    storage_uri = args.storage if args.storage and "://" in args.storage else None
    if storage is None and storage_uri is None:
        storage = results_dir() / "ray"

    exp_dir: Path | None = None
    state: dict[str, Any] = {}
    if args.resume:
        if storage is None:
            raise UserError("--resume with a remote --storage needs --name (the search to resume)")
        exp_dir = storage / args.name if args.name else latest_search(storage, space.name)
        if exp_dir is None or not (exp_dir / STATE_FILE).exists():
            raise UserError(
                f"nothing to resume: no search of space '{space.name}' in {storage}"
                + (f" named '{args.name}'" if args.name else "")
                + "; start one without --resume"
            )
        state = json.loads((exp_dir / STATE_FILE).read_text())
        name = exp_dir.name
    else:
        name = args.name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"

    # the inputs last, once the cheap checks passed: a synthetic dataset may be built here, and
    # a corrupt split fails in load_dataset, before Ray starts and before MLflow has a run
    meta = check_dataset(space, args.data_dir, build=True)
    from tune_m3.data import load_dataset

    ds = load_dataset(meta.name, args.data_dir)

    print(describe(space))
    # join/start Ray before writing anything to MLflow: an unreachable cluster leaves no trace
    init_ray(args.address, args.verbose)
    mlc = tracking.client(uri)
    experiment_name = args.experiment or state.get("experiment") or space.name
    exp_id = tracking.get_or_create_experiment(mlc, experiment_name)
    synthetic = bool(meta.synthetic)
    search_tags = {
        "tune_m3.space": space.name,
        "tune_m3.dataset": meta.name,
        "tune_m3.synthetic": str(synthetic).lower(),
        tracking.TAG_SEARCH: name,
    }
    if state.get("parent_run_id"):
        parent_id = state["parent_run_id"]
        mlc.update_run(parent_id, status="RUNNING")
        print(f"resuming search '{name}' (MLflow parent run {parent_id})")
    else:
        import mlflow
        import optuna
        import ray
        import torch

        parent = mlc.create_run(
            exp_id,
            run_name=name,
            tags={
                **search_tags,
                "mlflow.source.git.commit": tracking.git_commit(),
                "tune_m3.dataset_fingerprint": meta.fingerprint,
                "tune_m3.versions": f"ray {ray.__version__}, optuna {optuna.__version__}, torch {torch.__version__}, mlflow {mlflow.__version__}",
                "mlflow.note.content": (space.description or "")
                + ("\n\nSYNTHETIC data: not a MOSEI/MOSI result." if synthetic else ""),
            },
        )
        parent_id = parent.info.run_id
        from mlflow.entities import Param

        mlc.log_batch(
            parent_id,
            params=[
                Param(k, str(v)[:6000])
                for k, v in {
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
                    "synthetic": synthetic,
                }.items()
            ],
        )
        mlc.log_artifact(parent_id, space.path)

    import ray
    from ray import tune

    from tune_m3.trainable import make_trainable

    data = {s: sp.arrays() for s, sp in ds.splits.items()}
    trainable = make_trainable(space, data)
    del ds, data  # the object store holds the one shared copy now

    logger = tracking.MlflowTrialLogger(
        uri,
        exp_id,
        parent_id,
        base_params={},
        search_tags=search_tags,
        unlogged_path=(exp_dir or (storage or Path.cwd()) / name) / "unlogged.json",
    )
    progress = _Progress(space)
    callback = make_callback(logger, space, progress)
    max_epochs = space.example_configs()[0].max_epochs
    run_config = tune.RunConfig(
        name=name,
        storage_path=str(storage) if storage else storage_uri,
        callbacks=[callback],
        failure_config=tune.FailureConfig(max_failures=2),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        verbose=1 if args.verbose else 0,
    )
    path = f"{storage_uri.rstrip('/')}/{name}" if storage_uri else str(storage / name)
    if args.resume:
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
        # callbacks are not pickled with the experiment: hand ours to the restored tuner
        tuner._local_tuner._run_config.callbacks = [callback]
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=ray_param_space(space),
            tune_config=tune.TuneConfig(
                metric=space.metric,
                mode=space.mode,
                search_alg=make_searcher(space),
                scheduler=make_scheduler(space, max_epochs),  # max_t = max_epochs + 1, see there
                num_samples=1 if space.algorithm.type == "grid" else space.num_samples,
                max_concurrent_trials=space.max_concurrent,
            ),
            run_config=run_config,
        )
        if storage is not None:
            (storage / name).mkdir(parents=True, exist_ok=True)
            (storage / name / STATE_FILE).write_text(
                json.dumps(
                    {
                        "parent_run_id": parent_id,
                        "experiment": experiment_name,
                        "experiment_id": exp_id,
                        "space": space.name,
                        "space_path": space.path,
                    },
                    indent=2,
                )
            )
    t0 = time.time()
    results = tuner.fit()
    wall = time.time() - t0

    if args.resume:
        drop_lost_trial_runs(logger, results)
    out_dir = (storage / name) if storage else Path.cwd()
    table_path = out_dir / "trials.parquet"
    df = write_trials_table(results, table_path, space)
    n_failed = int((df["status"] == "failed").sum()) if len(df) else 0
    n_stopped = int((df["status"] == "stopped_by_scheduler").sum()) if len(df) else 0

    try:
        best = results.get_best_result(metric=space.metric, mode=space.mode, scope="all")
    except Exception:  # noqa: BLE001 - every trial failed
        best = None
    from mlflow.entities import Metric, Param

    ts = int(time.time() * 1000)
    if best is not None:
        best_values = space.trial_values(best.config)
        best_metrics = {
            k: v
            for k, v in best.metrics.items()
            if k.startswith(("val_", "test_", "best_")) and isinstance(v, int | float)
        }
        # through the logger: buffered like the trials' writes, so a tracking server that is
        # down now gets them later (or from unlogged.json) instead of losing them
        logger.call(
            "log_batch",
            parent_id,
            metrics=[
                Metric(f"best_{k}" if not k.startswith("best_") else k, float(v), ts, 0)
                for k, v in best_metrics.items()
            ],
            params=[Param(f"best.{k}", str(v)[:6000]) for k, v in best.config.items()],
        )
        summary = out_dir / "summary.csv"
        df.to_csv(summary, index=False)
        logger.call("log_artifact", parent_id, str(summary))
        logger.call("log_artifact", parent_id, str(table_path))
    status = "FINISHED" if n_failed < len(df) else "FAILED"
    logger.call("set_terminated", parent_id, status)
    unlogged = logger.finish()
    ray.shutdown()

    tag = " [SYNTHETIC data]" if synthetic else ""
    print()
    print(
        f"search '{name}' done in {wall:.0f} s: {len(df)} trials ({len(df) - n_failed - n_stopped} completed, "
        f"{n_stopped} stopped early by the scheduler, {n_failed} failed){tag}"
    )
    if best is not None:
        shown = {
            k: best_values[k]
            for k in [*best.config.keys(), "pi_audio", "pi_vision"]
            if k in best_values
        }
        print("best configuration: " + ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items()))
        keys = [
            space.metric,
            "best_val_loss",
            "test_mae",
            "test_corr",
            "test_acc2",
            "test_f1",
            "test_acc7",
            "diag_test_text_missing_30_corr_drop",
            "diag_test_text_noisy_30_corr_drop",
        ]
        print(
            "its metrics: "
            + ", ".join(f"{k}={best.metrics[k]:.4g}" for k in keys if k in best.metrics)
        )
    print(f"trial results: {table_path}")
    print(f"Ray results and checkpoints: {path}")
    print(f"MLflow: experiment '{experiment_name}', parent run {parent_id} in {uri}")
    print(f"open the UI: {tracking.ui_command(uri)}")
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    # MLflow 3 opens on its GenAI overview; the runs (parent + nested trials) are here:
    print(f"  runs of this search: {base}/#/experiments/{exp_id}/runs")
    if unlogged:
        print(
            f"WARNING: {len(unlogged)} MLflow writes failed and are saved in {logger.unlogged_path}; "
            f"replay them with: python -m tune_m3.tracking resync {logger.unlogged_path} --mlflow-uri {uri}"
        )
    return 0 if best is not None else 1


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    sys.exit(main())
