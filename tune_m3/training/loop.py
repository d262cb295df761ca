"""The training loop, usable with or without Ray; ``python -m tune_m3.train`` runs one config.

The M3 paper's recipe (sec. 3): Adam (lr 5e-4), L1 loss, batch 32, halve the learning rate when
the validation loss has not improved for 2 epochs (ReduceLROnPlateau), early stopping on the
validation loss with patience 10. At the end the best epoch's weights are evaluated on test and,
unless ``diagnostics=False``, the robustness checks run (:mod:`tune_m3.training.diagnostics`).
The authors' code also passes ``cooldown=2, min_lr=2.5e-5`` to ReduceLROnPlateau:
``lr_cooldown`` / ``min_lr`` (defaults 0 and 0, PyTorch's, as before).

:func:`train` reads top to bottom in the sections of nanoGPT's loop: setup, resume, then per
epoch forward-backward-update, evaluate and checkpoint, timing and logging, termination.

Perturbation with ``sigma_scale="rms"`` needs the RMS of the clean target modality: it is
measured once, before the first update, on a fixed-seed subset of the training split with the
freshly initialised model in eval mode (:func:`tune_m3.training.rms.measure_rms`), stored in the
checkpoint (a resumed run keeps it) and reported with every epoch as
``train_noise_rms_<modality>``. Surprise: the encoder's output scale moves while it trains, so
σ = 1 means "as strong as the signal at initialisation", not at the end (on the synthetic
benchmark the text RMS grows about 2.6x in 12 epochs; docs/fidelity.md).

Ray is not needed here: the trainable only passes an ``on_epoch`` callback that reports to Ray,
and a checkpoint directory. A checkpoint (:mod:`tune_m3.training.checkpoint`) holds every random
stream (:class:`tune_m3.streams.Streams`), so a resumed run continues exactly as an uninterrupted
one would: same seed, same numbers on CPU.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from tune_m3.augment.schedule import p_mask_at, set_p_mask
from tune_m3.config import TrialConfig
from tune_m3.metrics import compute_metrics
from tune_m3.training.checkpoint import Checkpoint
from tune_m3.training.epoch import train_epoch
from tune_m3.training.evaluate import Arrays, evaluate_best, predict, validation_diagnostics
from tune_m3.training.state import TrainState, set_noise_rms, setup

__all__ = ["TrainResult", "train"]

# called after every epoch with its metrics and the checkpoint directory written for it (or None)
EpochCallback = Callable[[dict[str, float], Path | None], None]


@dataclass
class TrainResult:
    history: list[dict[str, float]]  # one dict per epoch (the metrics passed to on_epoch)
    best_epoch: int
    best_val_loss: float
    final: dict[str, float] = field(default_factory=dict)  # test_* and diag_* metrics
    stopped_early: bool = False
    model: nn.Module | None = None
    final_reported: bool = True  # final metrics went out with the last epoch's on_epoch call


def train(
    cfg: TrialConfig,
    data: Mapping[str, Arrays],
    *,
    on_epoch: EpochCallback | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    progress: bool = False,
    final_eval: bool = True,
) -> TrainResult:
    """Train ``cfg`` on ``data`` (splits ``train``, ``valid`` and, for the final eval, ``test``).

    Args:
        on_epoch: called after every epoch with that epoch's metrics and the checkpoint directory
            written for it (None when no checkpoint was written this epoch).
        checkpoint_dir: where checkpoints go (every ``cfg.checkpoint_every`` epochs, and at the
            last epoch).
        resume_from: a checkpoint directory or file to continue from.
        progress: show a progress bar (tqdm, on stdout).
        final_eval: evaluate the best weights on test (+ diagnostics) at the end.
    """
    # ---------------------------------------------------------------------------------- setup
    state = setup(cfg, data["train"])
    # --------------------------------------------------------------------------------- resume
    stopped_early = _resume(state, data["train"], resume_from)
    start_epoch = state.progress.epoch + 1
    bar = _progress_bar(cfg, start_epoch) if progress else None
    final: dict[str, float] | None = None
    val_diag: dict[str, float] = {}
    for epoch in range(start_epoch, cfg.max_epochs + 1) if not stopped_early else ():
        t0 = time.perf_counter()
        # -------------------------------------------------------------- forward-backward-update
        p_now = p_mask_at(cfg.p_mask, cfg.p_mask_schedule, cfg.p_mask_warmup_epochs, epoch)
        set_p_mask(state.model.augment.layers, p_now)
        train_loss = train_epoch(state, data["train"], epoch)
        # ---------------------------------------------------------------- evaluate and checkpoint
        redo_diag = not val_diag or (epoch - start_epoch) % cfg.val_diag_every == 0
        val, val_diag = _validate(state, data["valid"], val_diag if not redo_diag else None)
        lr_used = state.opt.param_groups[0]["lr"]
        state.sched.step(val["mae"])  # the L1 training loss on the validation set
        state.progress.record(epoch, val["mae"], state.model)
        metrics = _epoch_metrics(state, epoch, train_loss, lr_used, p_now, val, val_diag, t0)
        state.progress.history.append(metrics)  # before saving: a resumed run has this epoch
        ck_path = _checkpoint_if_due(state, checkpoint_dir)
        # ------------------------------------------------------------------- timing and logging
        _show(bar, metrics)  # epoch_seconds (to the metrics' creation) is in the metrics
        # -------------------------------------------------------------------------- termination
        out_of_patience = state.progress.out_of_patience(cfg.patience)
        if (out_of_patience or epoch == cfg.max_epochs) and final_eval and "test" in data:
            final = evaluate_best(state.model, state.progress.best_weights, cfg, data, state.device)
            metrics = _last_report(metrics, final, out_of_patience)
        if on_epoch is not None:
            on_epoch(metrics, ck_path)
        if out_of_patience:
            stopped_early = True
            break
    if bar is not None:
        bar.close()
    return _result(state, data, final, final_eval, stopped_early)


def _resume(state: TrainState, train_arr: Arrays, resume_from: str | Path | None) -> bool:
    """Continue ``resume_from`` (if given) in ``state``, after giving rms-scaled perturbation its
    RMS (the checkpoint's, else measured now). True when that run had already stopped early."""
    ck = Checkpoint.load(resume_from) if resume_from is not None else None
    set_noise_rms(state, train_arr, None if ck is None else ck.perturb_rms)
    if ck is None:
        return False
    ck.restore(state)
    return bool(state.progress.history) and state.progress.out_of_patience(state.cfg.patience)


def _validate(
    state: TrainState, valid: Arrays, carried: dict[str, float] | None
) -> tuple[dict[str, float], dict[str, float]]:
    """(val metrics, ``diag_val_*``): the diagnostics run when configured and ``carried`` is
    None, and their clean pass is then the validation pass; otherwise ``carried`` carries on."""
    cfg = state.cfg
    if cfg.val_diagnostics and carried is None:
        val_diag, val_pred = validation_diagnostics(state.model, cfg, valid, state.device)
    else:
        val_diag, val_pred = carried or {}, predict(state.model, valid, state.device)
    return compute_metrics(val_pred, valid["labels"]), val_diag


def _epoch_metrics(
    state: TrainState,
    epoch: int,
    train_loss: float,
    lr_used: float,
    p_now: float,
    val: Mapping[str, float],
    val_diag: Mapping[str, float],
    t0: float,
) -> dict[str, float]:
    """What one epoch reports (``on_epoch``, the history, MLflow), in this order."""
    p = state.progress
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "lr": lr_used,
        **({"train_p_mask": p_now} if state.cfg.scheme != "none" else {}),
        "val_loss": val["mae"],
        **{f"val_{k}": v for k, v in val.items()},
        **val_diag,
        **state.noise_rms,
        "best_val_loss": p.best_val,
        "best_epoch": p.best_epoch,
        "epoch_seconds": time.perf_counter() - t0,
    }


def _checkpoint_if_due(state: TrainState, checkpoint_dir: str | Path | None) -> Path | None:
    """Save every ``checkpoint_every`` epochs and at the last one; the directory, or None."""
    cfg, p = state.cfg, state.progress
    due = (
        p.epoch % cfg.checkpoint_every == 0
        or p.out_of_patience(cfg.patience)
        or p.epoch == cfg.max_epochs
    )
    if checkpoint_dir is None or not due:
        return None
    return Checkpoint.of(state).save(checkpoint_dir)


def _last_report(
    metrics: Mapping[str, float], final: Mapping[str, float], out_of_patience: bool
) -> dict[str, float]:
    """The last epoch's report carries the final results: a scheduler that decides at this
    epoch (an ASHA rung at max_epochs) cannot cut the trial off before them."""
    return {**metrics, **final, "trial_done": 1, "stopped_early": int(out_of_patience)}


def _progress_bar(cfg: TrialConfig, start_epoch: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=cfg.max_epochs, initial=start_epoch - 1, unit="epoch", file=sys.stdout)


def _show(bar: Any, metrics: Mapping[str, float]) -> None:
    if bar is not None:
        bar.set_postfix(
            val_mae=f"{metrics['val_loss']:.3f}",
            val_acc2=f"{metrics['val_acc2']:.1f}",
            best=metrics["best_epoch"],
        )
        bar.update(1)


def _result(
    state: TrainState,
    data: Mapping[str, Arrays],
    final: dict[str, float] | None,
    final_eval: bool,
    stopped_early: bool,
) -> TrainResult:
    """The result; the model is left with the best epoch's weights."""
    p = state.progress
    result = TrainResult(
        p.history, p.best_epoch, p.best_val, stopped_early=stopped_early, model=state.model
    )
    if final is None and final_eval and "test" in data:  # resumed after the last epoch
        final = evaluate_best(state.model, p.best_weights, state.cfg, data, state.device)
        result.final_reported = False
    state.model.load_state_dict(p.best_weights)
    result.final = final or {}
    return result
