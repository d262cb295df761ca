"""Training-time augmentation of modality representations.

- :class:`AugmentLayer`: the base class; a new augmentation implements its one abstract method
  ``augment(mods, lengths)`` and inherits the eval-mode identity and a checkpointable generator.
- :class:`ModalityMasking`: M3 (hard), soft M3, random mask (M3 paper, eq. 4-5 and Table 1).
- :class:`ModalityPerturbation`: missing/noisy target modality per batch (NAACL 2022 robust
  training).
- :class:`AugmentPipeline`: several of them in order, e.g. masking then perturbation.

Every layer takes and returns a list of (B, N_l, d_l) tensors (N_l may differ per modality on
unaligned features), ``forward(mods, lengths=None)`` with ``lengths`` one (B,) tensor or a list
of them per modality (the model seam passes the list); :class:`AugmentLayer` states the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from torch import Tensor, nn

from tune_m3.augment.base import AugmentLayer, Lengths
from tune_m3.augment.masking import ModalityMasking
from tune_m3.augment.perturb import ModalityPerturbation

__all__ = ["AugmentLayer", "AugmentPipeline", "ModalityMasking", "ModalityPerturbation"]


class AugmentPipeline(nn.Module):
    """Apply augmentation layers in order; with no layers it is the identity.

    Args:
        layers: :class:`AugmentLayer` instances (anything else is refused with a TypeError).

    Example::

        aug = AugmentPipeline([ModalityMasking("m3", p_mask=0.2, seed=0),
                               ModalityPerturbation(p_missing=0.15, p_noise=0.15, seed=1)])
        reps = aug(reps, lengths)
    """

    def __init__(self, layers: Iterable[AugmentLayer] = ()):
        super().__init__()
        layers = list(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, AugmentLayer):
                raise TypeError(
                    f"layers[{i}] is a {type(layer).__name__}; an augmentation layer must "
                    "subclass tune_m3.augment.AugmentLayer (implement augment(mods, lengths))"
                )
        self.layers = nn.ModuleList(layers)

    def __len__(self) -> int:
        return len(self.layers)

    def forward(self, mods: Sequence[Tensor], lengths: Lengths = None) -> list[Tensor]:
        out = list(mods)
        for layer in self.layers:
            out = layer(out, lengths)
        return out

    def draw(self, batch: int, steps: Sequence[int], device: Any) -> list[Any]:
        """Every layer's :meth:`~AugmentLayer.draw` for one forward (per-modality hooks)."""
        return [layer.draw(batch, steps, device) for layer in self.layers]

    def apply_one(self, drawn: Sequence[Any], k: int, x: Tensor, lengths: Tensor | None) -> Tensor:
        """Modality ``k``'s tensor through every layer in order, under ``drawn`` (:meth:`draw`)."""
        for layer, d in zip(self.layers, drawn, strict=True):
            x = layer.apply_one(d, k, x, lengths)
        return x

    def generator_state(self) -> list[Any]:
        """One entry per layer: its ``generator_state()`` (torch.save-able)."""
        return [layer.generator_state() for layer in self.layers]

    def set_generator_state(self, state: Sequence[Any]) -> None:
        """Restore states from ``generator_state()`` (same layers, same order).

        A None entry (written for a layer without a generator, by older versions) is skipped.
        """
        if len(state) != len(self.layers):
            raise ValueError(
                f"state has {len(state)} entries but the pipeline has {len(self.layers)} layers"
            )
        for layer, s in zip(self.layers, state, strict=True):
            if s is not None:
                layer.set_generator_state(s)
