"""The contract of an augmentation layer, and the seeded generator every layer draws from.

:class:`AugmentLayer` is to augmentation what Optuna's ``BasePruner`` is to pruning: an extender
implements ONE abstract method, :meth:`AugmentLayer.augment`, and inherits the rest: the input
check, the identity in eval mode, and a private ``torch.Generator`` whose state a checkpoint
carries (so a resumed trial draws the same masks as an uninterrupted one).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["AugmentLayer", "Lengths", "OwnedGenerator", "check_mods"]

# valid-step counts: one (B,) tensor for all modalities, or one (B,) tensor (or None) per modality
Lengths = Tensor | Sequence[Tensor | None] | None


def _resolve_seed(seed: int | None) -> int:
    """A concrete seed: ``seed`` itself, or one drawn from torch's global RNG.

    Drawing from the global RNG (rather than from the clock) means ``torch.manual_seed(s)`` before
    building the layers still makes every run identical.
    """
    if seed is not None:
        return int(seed)
    return int(torch.randint(0, 2**62, (1,)).item())


def _same_kind(saved: str | None, device: torch.device) -> bool:
    return saved is not None and torch.device(saved).type == device.type


class OwnedGenerator:
    """A lazily created ``torch.Generator`` with a checkpointable state.

    The generator is created on the device of the first input it serves, seeded with ``seed``.
    A restored state is loaded when the generator is next created, if the device is of the same
    kind (CPU or CUDA) as the one it was saved from; otherwise, and whenever inputs move to another
    device, the stream restarts there from ``seed``.
    """

    def __init__(self, seed: int | None):
        self.seed = _resolve_seed(seed)
        self._gen: torch.Generator | None = None
        self._device: torch.device | None = None
        self._pending: dict[str, Any] | None = None  # a restored state, loaded on first use

    def get(self, device: torch.device | str) -> torch.Generator:
        device = torch.device(device)
        if self._gen is None or self._device != device:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
            p = self._pending
            # a CPU state cannot be loaded into a CUDA generator and vice versa
            if p is not None and p["state"] is not None and _same_kind(p["device"], device):
                gen.set_state(p["state"])
            self._gen, self._device, self._pending = gen, device, None
        return self._gen

    def state(self) -> dict[str, Any]:
        if self._gen is None:
            # not created yet: the stream starts from `seed` (or from a state restored earlier)
            if self._pending is not None:
                return dict(self._pending)
            return {"seed": self.seed, "device": None, "state": None}
        return {"seed": self.seed, "device": str(self._device), "state": self._gen.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        if not {"seed", "device", "state"} <= set(state):
            raise ValueError(
                "generator state must be a dict with keys 'seed', 'device', 'state' "
                f"(as returned by generator_state()); got keys {sorted(state)}"
            )
        self.seed = int(state["seed"])
        self._gen = self._device = None
        self._pending = {
            "seed": self.seed,
            "device": state["device"],
            "state": None if state["state"] is None else state["state"].clone(),
        }


def check_mods(mods: Sequence[Tensor]) -> tuple[int, int]:
    """Check a list of (B, N_l, d_l) tensors with a common B; return (B, max N_l).

    N_l may differ per modality (unaligned features); see ModalityMasking's law for timestep units.
    """
    if isinstance(mods, Tensor) or len(mods) == 0:
        raise ValueError("mods must be a non-empty sequence of (B, N, d) tensors")
    for i, m in enumerate(mods):
        if m.dim() != 3:
            raise ValueError(f"mods[{i}] must have shape (B, N, d); got {tuple(m.shape)}")
    B = mods[0].shape[0]
    for i, m in enumerate(mods):
        if m.shape[0] != B:
            raise ValueError(
                f"all modalities must share the batch size B; mods[0] has {B}, "
                f"mods[{i}] has {m.shape[0]}"
            )
    return B, max(m.shape[1] for m in mods)


class AugmentLayer(nn.Module, ABC):
    """Base class of the training-time augmentation layers (masking, perturbation, yours).

    ``layer(mods, lengths=None)`` takes M modality tensors (B, N_l, d_l) (N_l may differ per
    modality on unaligned features) and returns M tensors of the same shapes. In train mode it
    returns :meth:`augment`'s result; in eval mode the inputs themselves (the identity: the
    test-time diagnostics damage the model elsewhere). :meth:`check` runs in both modes.

    Extenders implement :meth:`augment` and draw every random number from
    ``self.generator(device)``; the base class keeps that generator's state for checkpoints
    (:meth:`generator_state` / :meth:`set_generator_state`), so the layer resumes exactly.

    Args:
        seed: seed of the layer's own ``torch.Generator``. None draws one from torch's global RNG
            at construction, so ``torch.manual_seed`` before building still makes runs
            reproducible.

    Example::

        class DropWholeBatch(AugmentLayer):
            '''Zero modality 0 of the whole batch with probability p.'''

            def __init__(self, p: float, seed: int | None = None):
                super().__init__(seed)
                self.p = p

            def augment(self, mods, lengths=None):
                gen = self.generator(mods[0].device)
                if torch.rand((), generator=gen, device=mods[0].device) < self.p:
                    return [torch.zeros_like(mods[0]), *mods[1:]]
                return list(mods)

    Notes:
        Inputs must not be modified in place: the model's other branches may still read them.
        The generator is created lazily on the first input's device; moving to another device
        restarts the stream there from ``seed``.
    """

    def __init__(self, seed: int | None = None):
        super().__init__()
        self._rng = OwnedGenerator(seed)

    @abstractmethod
    def augment(self, mods: Sequence[Tensor], lengths: Lengths = None) -> list[Tensor]:
        """The augmented copies of ``mods`` (train mode only; ``check`` has passed)."""

    def check(self, mods: Sequence[Tensor]) -> None:
        """Refuse inputs the layer cannot take (both modes); default: :func:`check_mods`."""
        check_mods(mods)

    # ------------------------------------------------------------------------------------------
    # one draw, applied modality by modality (per-modality hooks: docs/models.md)

    def draw(self, batch: int, steps: Sequence[int], device: torch.device | str) -> Any:
        """The randomness shared by the modalities in one forward pass (train mode).

        With per-modality hooks the model's subnets are hooked one by one, in whatever order the
        model calls them; the seam calls ``draw`` once per forward (``steps``: the inputs' step
        counts per modality) and then :meth:`apply_one` at each modality's hook, so the joint law
        (e.g. "never two modalities zeroed in one unit") holds. A layer that does not implement
        the pair cannot act at per-modality hooks (only at ``input`` or a single hook).
        """
        raise NotImplementedError(
            f"{type(self).__name__} cannot act at per-modality hooks: implement draw() and "
            "apply_one(), or hook one module that receives all modalities"
        )

    def apply_one(self, drawn: Any, k: int, x: Tensor, lengths: Tensor | None) -> Tensor:
        """Modality ``k``'s augmented copy of ``x`` (B, N_k, d_k) under ``drawn`` (:meth:`draw`)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement apply_one()")

    def forward(self, mods: Sequence[Tensor], lengths: Lengths = None) -> list[Tensor]:
        self.check(mods)
        if not self.training:
            return list(mods)
        return self.augment(mods, lengths)

    # ------------------------------------------------------------------------------------------
    # randomness that a checkpoint can carry

    @property
    def seed(self) -> int:
        return self._rng.seed

    def generator(self, device: torch.device | str) -> torch.Generator:
        """The layer's generator on ``device`` (created, or moved, on first use there)."""
        return self._rng.get(device)

    def generator_state(self) -> dict[str, Any]:
        """The generator's state: ``{"seed", "device", "state"}`` (torch.save-able)."""
        return self._rng.state()

    def set_generator_state(self, state: dict[str, Any]) -> None:
        """Restore a state from ``generator_state()``; the next draws continue that stream."""
        self._rng.set_state(state)
