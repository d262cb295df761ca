"""Checkpoints: what a run saves and how a resumed run restores it, side by side.

A checkpoint is a directory holding ``state.pt``: one flat dict of tensors, numbers, strings and
plain containers (so :func:`load_checkpoint` can read it through torch's restricted unpickler),
with the keys of :meth:`Checkpoint.to_dict`. It holds the model, optimizer and scheduler, the
progress of early stopping and the history, the measured noise RMS, and every random stream a
resumed run must continue (:class:`RandomState`): a resumed run then continues exactly as an
uninterrupted one would (same seed, same numbers on CPU).
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tune_m3.errors import UserError
from tune_m3.training.state import Progress, TrainState

__all__ = ["CHECKPOINT_FILE", "Checkpoint", "RandomState", "load_checkpoint"]

CHECKPOINT_FILE = "state.pt"


@dataclass
class RandomState:
    """Every random stream a resumed run continues: the batch order, torch's global RNG (dropout:
    the CPU's, and the GPU's when training there) and the augmentation layers' generators."""

    shuffle: torch.Tensor
    torch_cpu: torch.Tensor
    torch_cuda: torch.Tensor | None
    augment: list[Any]  # one generator state per augmentation layer

    @classmethod
    def capture(cls, state: TrainState) -> RandomState:
        device = state.device
        return cls(
            shuffle=state.shuffle.get_state(),
            torch_cpu=torch.get_rng_state(),
            torch_cuda=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            augment=state.model.generator_state(),
        )

    def restore(self, state: TrainState) -> None:
        state.shuffle.set_state(self.shuffle)
        torch.set_rng_state(self.torch_cpu)
        if state.device.type == "cuda" and self.torch_cuda is not None:
            torch.cuda.set_rng_state(self.torch_cuda, state.device)
        state.model.set_generator_state(self.augment)


@dataclass
class Checkpoint:
    """One saved run: :meth:`of` takes it from a :class:`TrainState`, :meth:`restore` puts it back."""

    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: RandomState
    progress: Progress
    config: dict[str, Any]  # the TrialConfig, for reading; a resumed run takes its own
    perturb_rms: float | None  # the measured RMS of an rms-scaled perturbation, if any

    @classmethod
    def of(cls, state: TrainState) -> Checkpoint:
        return cls(
            model=state.model.state_dict(),
            optimizer=state.opt.state_dict(),
            scheduler=state.sched.state_dict(),
            rng=RandomState.capture(state),
            progress=state.progress,
            config=state.cfg.model_dump(),
            perturb_rms=next(iter(state.noise_rms.values()), None),
        )

    def restore(self, state: TrainState) -> None:
        """Continue this checkpoint in ``state``: weights, optimizer, scheduler, random streams,
        progress (the noise RMS is restored before, by ``set_noise_rms``)."""
        state.model.load_state_dict(self.model)
        state.opt.load_state_dict(self.optimizer)
        state.sched.load_state_dict(self.scheduler)
        self.rng.restore(state)
        state.progress = self.progress

    # ------------------------------------------------------------------------- the file's layout

    def to_dict(self) -> dict[str, Any]:
        p, r = self.progress, self.rng
        return {
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "shuffle_rng": r.shuffle,
            "torch_rng": r.torch_cpu,
            "cuda_rng": r.torch_cuda,
            "augment_rng": r.augment,
            "epoch": p.epoch,
            "best_val_loss": p.best_val,
            "best_epoch": p.best_epoch,
            "bad_epochs": p.bad_epochs,
            "best_model": p.best_weights,
            "history": p.history,
            "config": self.config,
            "perturb_rms": self.perturb_rms,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Checkpoint:
        return cls(
            model=d["model"],
            optimizer=d["optimizer"],
            scheduler=d["scheduler"],
            rng=RandomState(d["shuffle_rng"], d["torch_rng"], d.get("cuda_rng"), d["augment_rng"]),
            progress=Progress(
                epoch=d["epoch"],
                best_val=d["best_val_loss"],
                best_epoch=d["best_epoch"],
                bad_epochs=d["bad_epochs"],
                best_weights=d["best_model"],
                history=d["history"],
            ),
            config=d.get("config", {}),
            perturb_rms=d.get("perturb_rms"),
        )

    def save(self, path: str | Path) -> Path:
        """Write ``path/state.pt`` atomically: a kill mid-save leaves the old checkpoint."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / (CHECKPOINT_FILE + ".tmp")
        torch.save(self.to_dict(), tmp)
        tmp.replace(path / CHECKPOINT_FILE)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        """:func:`load_checkpoint`, typed."""
        return cls.from_dict(load_checkpoint(path))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by ``train`` (a directory holding ``state.pt``, or the file), as
    the flat dict of :meth:`Checkpoint.to_dict`.

    ``weights_only=True`` loads through torch's restricted unpickler (tensors, numbers, strings,
    plain containers): a checkpoint tampered with on shared storage cannot run code when a trial
    resumes from it. Everything a checkpoint saves is of those types.
    """
    path = Path(path)
    file = path / CHECKPOINT_FILE if path.is_dir() else path
    if not file.is_file():
        raise UserError(
            f"{file}: no checkpoint there; give a directory written by --checkpoint-dir "
            f"(it holds {CHECKPOINT_FILE})"
        )
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles: the error says it
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as err:
        raise UserError(
            f"{file}: not a readable tune_m3 checkpoint ({type(err).__name__}): truncated, not "
            "written by tune_m3, or holding objects other than tensors and plain data"
        ) from None
