"""What one training run holds, and the setup that builds it from a config.

:class:`TrainState` is everything the loop reads and writes: the model, optimizer, scheduler and
shuffling generator (their states are what a checkpoint saves, :mod:`tune_m3.training.checkpoint`),
and :class:`Progress`, early stopping's bookkeeping plus the history of epoch metrics.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from tune_m3.augment.perturb import ModalityPerturbation
from tune_m3.batches import modality_lengths
from tune_m3.config import MODALITY_NAMES, TrialConfig
from tune_m3.errors import UserError
from tune_m3.models.seam import AugmentedModel, build_model, check_model_spec
from tune_m3.streams import Streams
from tune_m3.training.rms import measure_rms, rms_key

__all__ = ["Progress", "TrainState", "resolve_device", "set_noise_rms", "setup"]


def resolve_device(name: str) -> torch.device:
    """``"cuda"``, ``"cpu"`` or ``"auto"`` (the GPU when torch sees one) as a torch device."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError(
                "device 'cuda' was asked for but torch sees no GPU; use --set device=cpu"
            )
        return torch.device("cuda")
    return torch.device("cpu")


@dataclass
class Progress:
    """Where a run stands after its last finished epoch (0: none yet)."""

    epoch: int = 0
    best_val: float = math.inf  # lowest validation loss (MAE) so far
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since best_val last improved
    best_weights: dict[str, Tensor] = field(default_factory=dict)  # the best epoch's state_dict
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch

    def record(self, epoch: int, val_loss: float, model: torch.nn.Module) -> None:
        """Early stopping's bookkeeping for a finished epoch validated at ``val_loss``."""
        self.epoch = epoch
        if val_loss < self.best_val:
            self.best_val, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            self.best_weights = copy.deepcopy(model.state_dict())
        else:
            self.bad_epochs += 1

    def out_of_patience(self, patience: int) -> bool:
        return self.bad_epochs >= patience


@dataclass
class TrainState:
    """One run's objects; the loop advances them, a checkpoint saves and restores them."""

    cfg: TrialConfig
    device: torch.device
    model: AugmentedModel
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.ReduceLROnPlateau
    shuffle: torch.Generator  # the batch order (stream ``shuffle``)
    n_train: int  # training samples used per epoch
    progress: Progress
    noise_rms: dict[str, float] = field(default_factory=dict)  # train_noise_rms_<m>, if any


def _checked_model(cfg: TrialConfig, train_arr: Mapping[str, np.ndarray], device) -> AugmentedModel:
    """The configured model on ``device``, after every model-spec mistake became a UserError."""
    input_dims = {m: train_arr[m].shape[2] for m in MODALITY_NAMES}
    # the data's own step counts per modality, and one sample at its shortest real length
    steps = {m: train_arr[m].shape[1] for m in MODALITY_NAMES}
    shortest = {m: int(np.min(modality_lengths(train_arr, m))) for m in MODALITY_NAMES}
    check_model_spec(cfg, input_dims, steps, shortest)
    return build_model(cfg, input_dims).to(device)


def setup(cfg: TrialConfig, train_arr: Mapping[str, np.ndarray]) -> TrainState:
    """A fresh run: the M3 paper's recipe (Adam, ReduceLROnPlateau on the validation loss),
    seeded from the trial's :class:`~tune_m3.streams.Streams`.

    Leaves torch's global RNG at the ``dropout`` stream: everything drawn from it during
    training (dropout) follows from the seed.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    model = _checked_model(cfg, train_arr, device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt,
        mode="min",
        factor=cfg.lr_factor,
        patience=cfg.lr_patience,
        cooldown=cfg.lr_cooldown,
        min_lr=cfg.min_lr,
    )
    streams = Streams.of(cfg.seed)
    shuffle = torch.Generator().manual_seed(streams.shuffle)
    n_train = train_arr["labels"].shape[0]
    if cfg.max_train_samples:
        n_train = min(n_train, cfg.max_train_samples)
    if n_train < 2:  # a batch of 1 in train mode: BatchNorm fails (epoch_batches merges others)
        raise UserError(
            f"training on {n_train} sample: a model in train mode needs batches of >= 2; "
            "use more training samples (max_train_samples >= 2)"
        )
    progress = Progress(best_weights=copy.deepcopy(model.state_dict()))
    torch.manual_seed(streams.dropout)  # dropout and anything else on the global RNG
    return TrainState(cfg, device, model, opt, sched, shuffle, n_train, progress)


def set_noise_rms(
    state: TrainState, train_arr: Mapping[str, np.ndarray], saved: float | None
) -> None:
    """Give rms-scaled perturbation layers their RMS: ``saved`` (a resumed run keeps the one it
    measured), else measured now with the model as it is (stream ``rms_subset``)."""
    cfg, model = state.cfg, state.model
    layers = [
        layer
        for layer in model.augment.layers
        if isinstance(layer, ModalityPerturbation) and layer.sigma_scale == "rms"
    ]
    if not layers:
        return
    if saved is None:
        saved = measure_rms(
            model,
            train_arr,
            modalities=(cfg.perturb_target,),
            at="hook",
            seed=Streams.of(cfg.seed).rms_subset,
            device=state.device,
        )[cfg.perturb_target]
    for layer in layers:
        layer.set_rms(saved)
    state.noise_rms = {rms_key(cfg.perturb_target, diag=False): float(saved)}
