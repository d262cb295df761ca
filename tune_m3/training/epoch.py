"""One training epoch: the batch order, then forward, backward and update per batch."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from tune_m3.batches import batch_tensors
from tune_m3.config import MODALITY_NAMES
from tune_m3.failures import TrialFailed
from tune_m3.training.state import TrainState

__all__ = ["TrainingDiverged", "epoch_batches", "train_epoch", "train_step"]


class TrainingDiverged(TrialFailed):
    """The loss became NaN or infinite; the trial is failed with this message (not retried)."""


def epoch_batches(
    n: int, batch_size: int, gen: torch.Generator, lengths: np.ndarray, bucket: bool
) -> list[np.ndarray]:
    """One epoch's batches of row indices (each sorted, for cache-friendly gathers).

    Plain (the paper's recipe): a random permutation cut into batches. ``bucket=True``: the
    permutation is cut into windows of 50 batches, each window is ordered by sequence length
    and cut into batches, and the batches are shuffled. Batches then hold sequences of similar
    length, so the front padding cut by ``batch_tensors`` is most of what is left over: less
    work per epoch, same samples per epoch (see docs/performance.md for the measured effect).

    A last batch of ONE sample is merged into the one before it (that batch then has
    ``batch_size + 1`` samples): a model in train mode never sees a batch of 1, where BatchNorm
    fails and a per-batch statistic is undefined; every sample is still used every epoch.
    """
    perm = torch.randperm(n, generator=gen).numpy()
    if bucket:
        window = batch_size * 50
        keys = lengths[perm]
        # stable sort by (window, length): one vectorised argsort, no loop over samples
        order = np.lexsort((keys, np.arange(n) // window))
        perm = perm[order]
    cuts = list(range(0, n, batch_size))
    if len(cuts) > 1 and n - cuts[-1] == 1:  # a last batch of 1: merged into the one before
        cuts.pop()
    bounds = [*cuts[1:], n]
    batches = [np.sort(perm[lo:hi]) for lo, hi in zip(cuts, bounds, strict=True)]
    if bucket:
        shuffle_order = torch.randperm(len(batches), generator=gen).numpy()
        batches = [batches[i] for i in shuffle_order]
    return batches


def train_step(
    state: TrainState,
    mods: Mapping[str, torch.Tensor],
    lengths: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    epoch: int,
) -> torch.Tensor:
    """One update on one batch: forward through the seam (augmentation at its hooks), the L1
    loss (plus the model's weighted ``aux_losses`` when configured), backward, the optional
    gradient clip, the optimizer step. Returns the loss (a 0-d tensor, still on the device).

    ``mods`` {l: (B, N_l, d_l)}, ``lengths`` {l: (B,)}, ``y`` (B,). Raises
    :class:`TrainingDiverged` at a non-finite loss, before the update. The whole of what
    tune_m3 does per batch: ``bench/bench_zoo_step.py`` times exactly this against a plain loop.
    """
    cfg, model, opt = state.cfg, state.model, state.opt
    pred = model(mods, lengths)  # (B,)
    loss = nn.functional.l1_loss(pred, y)
    if model.aux_loss is not None:  # the model's own losses, weighted (aux_losses)
        loss = loss + model.aux_loss
    if not torch.isfinite(loss):
        raise TrainingDiverged(
            f"loss became {loss.item()} at epoch {epoch} (lr {opt.param_groups[0]['lr']:g}); "
            "lower lr or set grad_clip"
        )
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return loss


def train_epoch(state: TrainState, train_arr: Mapping[str, np.ndarray], epoch: int) -> float:
    """One pass over the first ``state.n_train`` training samples (:func:`train_step` per
    batch); the mean loss per sample (L1, plus the model's weighted ``aux_losses`` when
    configured).

    Raises :class:`TrainingDiverged` at the first non-finite loss, before the update.
    """
    cfg = state.cfg
    state.model.train()
    total, count = 0.0, 0
    for idx in epoch_batches(
        state.n_train, cfg.batch_size, state.shuffle, train_arr["lengths"], cfg.bucket_batches
    ):
        mods, lengths, y = batch_tensors(train_arr, idx, MODALITY_NAMES, state.device)
        loss = train_step(state, mods, lengths, y, epoch)
        total += loss.item() * len(idx)
        count += len(idx)
    return total / max(count, 1)
