"""The MLflow parent run of a search: created once, reopened by ``--resume``.

:func:`open_parent` joins or starts Ray first (nothing is written if that fails), then creates
the parent run (its tags say the space, the dataset, whether it is SYNTHETIC, the search's name,
the git commit and the versions; its params the search's settings) or reopens the one the state
file names, and records it in the state file. It fills in ``search.session``.
"""

from __future__ import annotations

import json
from typing import Any

from tune_m3 import names
from tune_m3.search.leftovers import record_ray_processes
from tune_m3.search.paths import write_state
from tune_m3.search.ray_setup import check_cluster_gpus, init_ray, tighten_token
from tune_m3.search.state import Search, Session


def open_parent(search: Search, meta: Any) -> Session:
    """Join/start Ray (nothing written yet), then create or reopen the MLflow parent run."""
    options, space, paths = search.options, search.space, search.paths
    init_ray(options.address, options.verbose)
    if options.address:
        check_cluster_gpus(space)
    tighten_token()
    if not options.address:  # a local Ray: ours to clean up after a SIGKILL (leftovers.py)
        record_ray_processes(paths)
    from tune_m3 import tracking

    mlc = tracking.client(search.tracking_uri)
    experiment = options.experiment or search.state.get("experiment") or space.name
    exp_id = tracking.get_or_create_experiment(mlc, experiment)
    tags = {
        names.TAG_SPACE: space.name,
        names.TAG_DATASET: meta.name,
        names.TAG_SYNTHETIC: str(bool(meta.synthetic)).lower(),
        names.TAG_SEARCH: paths.name,
    }
    parent_id = search.state.get("parent_run_id")
    if parent_id:
        mlc.update_run(parent_id, status=names.RUN_RUNNING)
        print(f"resuming search '{paths.name}' in {paths.exp_dir} (MLflow parent run {parent_id})")
    else:
        parent_id = _create_parent(search, mlc, exp_id, tags, meta)
    _save_view(search, mlc, exp_id, parent_id)
    if paths.storage is not None:
        write_state(
            paths,
            parent_run_id=parent_id,
            experiment=experiment,
            experiment_id=exp_id,
            space=space.name,
            space_path=space.path,
            dataset_fingerprint=meta.fingerprint,
            status=names.SEARCH_RUNNING,
        )
    search.session = Session(
        search.tracking_uri, mlc, experiment, exp_id, parent_id, tags, bool(meta.synthetic)
    )
    search.session.dataset = tracking.dataset_record(meta)
    return search.session


def _save_view(search: Search, mlc: Any, exp_id: str, parent_id: str) -> None:
    """The runs-page view of the search's trials (``tracking/views.py``), id = the parent's."""
    from tune_m3 import tracking

    space = search.space
    metrics = [o.metric for o in space.objectives] if space.objectives else [space.metric]
    mode = space.objectives[0].mode if space.objectives else space.mode
    state = tracking.search_view(
        parent_id, metrics, mode == "min", space.searched_keys(), names.STAGE_SEARCH
    )
    name = f"{search.paths.name}: trials by {metrics[0]}"
    tracking.save_view(mlc, exp_id, parent_id, name, state)


def _create_parent(search: Search, mlc: Any, exp_id: str, tags: dict[str, str], meta: Any) -> str:
    from mlflow.entities import Param

    from tune_m3 import tracking

    space = search.space
    note = (space.description or "") + (
        "\n\nSYNTHETIC data: not a MOSEI/MOSI result." if meta.synthetic else ""
    )
    parent = mlc.create_run(
        exp_id,
        run_name=search.paths.name,
        tags={
            **tags,
            names.TAG_GIT_COMMIT: tracking.git_commit(),
            names.TAG_DATASET_FINGERPRINT: meta.fingerprint,
            names.TAG_VERSIONS: _versions(),
            names.TAG_NOTE: note,
        },
    )
    params = _parent_params(search, meta)
    mlc.log_batch(parent.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    mlc.log_artifact(parent.info.run_id, space.path)
    # a search starting at the same moment may insert the same dataset: tried again then
    tracking.datasets.log_dataset_inputs(mlc, parent.info.run_id, [tracking.dataset_record(meta)])
    return parent.info.run_id


def _versions() -> str:
    import mlflow
    import optuna
    import ray
    import torch

    return (
        f"ray {ray.__version__}, optuna {optuna.__version__}, torch {torch.__version__}, "
        f"mlflow {mlflow.__version__}"
    )


def _parent_params(search: Search, meta: Any) -> dict[str, Any]:
    """The search's settings as the parent run's params."""
    space = search.space
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
        params["optuna_study"] = search.paths.name
        params["optuna_storage"] = search.optuna_url
    if space.objectives:
        params["objectives"] = json.dumps([o.model_dump() for o in space.objectives])
    return params
