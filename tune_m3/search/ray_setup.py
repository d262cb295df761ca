"""Ray's side of a search: environment, joining or starting Ray, the param space, Optuna's
searcher, the scheduler, and the checks that need Ray or the GPUs (``tune_m3/search/`` calls
these; nothing here writes to MLflow).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from tune_m3.errors import UserError
from tune_m3.search.space import SearchSpace

# ------------------------------------------------------------------------------------- Ray side


def ray_param_space(space: SearchSpace) -> dict[str, Any]:
    from ray import tune

    if space.algorithm.type == "grid":
        return {k: tune.grid_search(v) for k, v in space.grid_axes().items()}
    from tune_m3.search.space import field_kind

    out: dict[str, Any] = {}
    for k, d in space.search.items():
        a = d.args
        if (
            d.kind == "quniform"
            and field_kind(k, space.fixed.get("model", space.model.class_)) == "int"
        ):
            out[k] = tune.qrandint(int(a[0]), int(a[1]), int(a[2]))
            continue
        out[k] = {
            "uniform": lambda a=a: tune.uniform(a[0], a[1]),
            "loguniform": lambda a=a: tune.loguniform(a[0], a[1]),
            "quniform": lambda a=a: tune.quniform(a[0], a[1], a[2]),
            "choice": lambda a=a: tune.choice(list(a)),
        }[d.kind]()
    return out


def make_searcher(space: SearchSpace, storage_url: str, study_name: str):
    """Optuna's seeded TPE, its study persisted in ``storage_url`` (see ``optuna_store.py``)."""
    if space.algorithm.type == "grid":
        return None
    import optuna

    from tune_m3.search import optuna_store

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    multi = {}
    if space.objectives:  # Optuna multi-objective: metric and mode lists, on the searcher
        multi = {
            "metric": [o.metric for o in space.objectives],
            "mode": [o.mode for o in space.objectives],
        }
    from tune_m3.search.optuna_searcher import ResumableOptunaSearch

    return ResumableOptunaSearch(
        sampler=optuna.samplers.TPESampler(seed=space.algorithm.seed),
        storage=optuna_store.storage(storage_url),
        study_name=study_name,
        **multi,
    )


def make_scheduler(space: SearchSpace, max_epochs: int):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if space.scheduler.type == "fifo":
        return FIFOScheduler()
    # ASHA stops any trial whose time reaches max_t. A trial that trains its max_epochs must
    # still get to its final report (test metrics + diagnostics), so the cap is one epoch later.
    # with several objectives the scheduler prunes on the first (docs: README, space.py)
    multi = {"metric": space.metric, "mode": space.mode} if space.objectives else {}
    return ASHAScheduler(
        time_attr="epoch",
        max_t=max_epochs + 1,
        **multi,
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


# ------------------------------------------------------------------------------ checks


def check_local_gpus(space: SearchSpace, address: str | None) -> None:
    """GPUs per trial must exist on this machine (a cluster's are checked once joined)."""
    need = space.resources.gpu
    if need <= 0 or address:
        return
    import torch

    have = torch.cuda.device_count()
    if need > have:
        raise UserError(
            f"resources.gpu / --gpus-per-trial is {need:g} but this machine has {have} GPU(s) "
            f"that torch {torch.__version__} can use; Ray would wait forever for them. Set "
            "--gpus-per-trial 0, or run on a GPU machine or cluster (--address)"
        )


def check_cluster_gpus(space: SearchSpace) -> None:
    import ray

    need = space.resources.gpu
    have = float(ray.cluster_resources().get("GPU", 0))
    if need > 0 and need > have:
        raise UserError(
            f"resources.gpu / --gpus-per-trial is {need:g} but the Ray cluster has {have:g} "
            "GPU(s); Ray would wait forever. Add GPU nodes or lower --gpus-per-trial"
        )


def tighten_token() -> None:
    """Ray's token file must be readable by its owner only; tighten it and say so."""
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token").expanduser()
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        path.chmod(0o600)
        print(
            f"[tune_m3] the Ray token {path} was readable by other users (mode {mode:o}); "
            "tightened it to 600",
            flush=True,
        )


#: the loggers of Ray's Tune and Train libraries (trial tracebacks, syncer warnings, ...)
RAY_LIBRARY_LOGGERS = ("ray.tune", "ray.train", "ray.air")


def ray_messages_to_file(path: Path) -> None:
    """Send Ray Tune/Train's own log records to ``path`` instead of the console (not --verbose).

    A trial that fails is reported once by tune_m3 (its progress line, its run's
    ``tune_m3.error`` tag, ``trials.parquet``); Ray's own account (``Trial task failed ...`` with
    its traceback) goes to this file, whose path the summary prints when a trial failed.
    """
    import logging

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in RAY_LIBRARY_LOGGERS:
        lg = logging.getLogger(name)
        for old in [h for h in lg.handlers if getattr(h, "_tune_m3", False)]:
            lg.removeHandler(old)
            old.close()
        handler._tune_m3 = True  # type: ignore[attr-defined]
        lg.addHandler(handler)
        lg.propagate = False
