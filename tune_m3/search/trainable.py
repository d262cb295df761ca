"""The Ray Tune trainable: config -> ``tune_m3.training`` -> ``tune.report``. Deliberately thin.

Everything here is also reachable without Ray through :func:`tune_m3.training.train`; this module
only translates between the two worlds:

- the trial's sampled params + the space's fixed values -> a validated ``TrialConfig``;
- the dataset arrives once through Ray's object store (``tune.with_parameters``), so K
  concurrent trials on a node share one copy (read-only numpy views into shared memory);
- every epoch is reported with a checkpoint, so a failed trial resumes from its last epoch;
- a failure that would repeat (NaN loss or predictions, an error in the user's model) is
  reported once, marked failed, and the trial returns instead of raising, so Ray does not
  retry it (``failures.py``);
- at the end, the best epoch's weights are evaluated on test with the diagnostics, and reported
  once more (``test_*``, ``diag_*`` keys, ``trial_done`` = 1).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tune_m3.config import make_config
from tune_m3.search.space import SearchSpace


def run_trial(
    params: dict[str, Any], *, space: SearchSpace, data: Mapping[str, Mapping[str, np.ndarray]]
) -> None:
    """Ray Tune function trainable (use through :func:`make_trainable`)."""
    import torch

    values = space.trial_values(params)
    if values.get("threads") is None:
        values["threads"] = max(1, int(space.resources.cpu))
    cfg = make_config(values, where=f"trial of space '{space.name}'")
    torch.set_num_threads(cfg.threads)

    from tune_m3.search.leftovers import SCRATCH_PREFIX, scratch_dir

    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=scratch_dir()) as tmp:
        _train_and_report(cfg, data, Path(tmp), space.metric)


def _train_and_report(cfg, data, work: Path, metric: str) -> None:
    from ray import tune

    from tune_m3.training import resolve_device, train

    resume_from = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retried trial: continue from its last reported epoch
        resume_from = checkpoint.to_directory(str(work / "resume"))

    import ray

    # where the trial ran (a string result; tracking.py turns it into the run's tag)
    node = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "device": str(resolve_device(cfg.device)),
    }

    done = {"epoch": 0}  # the last epoch reported: a failure says after how many it came

    def on_epoch(metrics: dict[str, float], ck_path: Path | None) -> None:
        done["epoch"] = int(metrics.get("epoch", done["epoch"]))
        if ck_path is None:
            tune.report({**metrics, **node})
        else:
            tune.report(
                {**metrics, **node}, checkpoint=tune.Checkpoint.from_directory(str(ck_path))
            )

    from tune_m3 import failures

    try:
        result = train(
            cfg, data, on_epoch=on_epoch, checkpoint_dir=work / "ckpt", resume_from=resume_from
        )
    except Exception as err:
        if not failures.is_deterministic(err, cfg.model):
            raise  # Ray retries it (FailureConfig): a dead worker, out of memory, a full disk
        # a retry would fail the same way: the trial ends here (Ray does not retry a trial that
        # returns) and the driver marks it failed with the reason (failures.py)
        tune.report({**failures.failed_result(err, cfg.model, metric), **done, **node})
        return
    if not result.final_reported:  # resumed from a checkpoint taken after the last epoch
        last = result.history[-1] if result.history else {}
        tune.report(
            {
                **last,
                **result.final,
                **node,
                "trial_done": 1,
                "stopped_early": int(result.stopped_early),
            }
        )


def make_trainable(space: SearchSpace, data: Mapping[str, Mapping[str, np.ndarray]]):
    """``run_trial`` with the data in the object store and the space's per-trial resources."""
    from ray import tune

    fn = tune.with_parameters(run_trial, space=space, data=data)
    return tune.with_resources(fn, {"cpu": space.resources.cpu, "gpu": space.resources.gpu})
