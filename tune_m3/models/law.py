"""Measure the masking law where it acts: which modalities a training forward zeroed.

For the docs' zoo table (``bench/zoo_table.py``) and the tests: a unit counts as zeroed when
the training-mode representation at the hook is all zeros and the clean (eval-mode) one is not.
Turn dropout inside the hooked subnets off first, or dropout noise enters the comparison.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tune_m3.models.hooks import mapping_of
from tune_m3.names import MODALITIES

__all__ = ["zeroed_per_sample"]


@torch.no_grad()
def zeroed_per_sample(model, mods, lengths) -> Tensor:
    """(B, 3) bool: modality l of sample b zeroed at its per-modality hook in one training
    forward of the wrapped ``model`` (pooled (B, d) representations)."""
    names = mapping_of(model.augment_at)
    seen: dict[str, Tensor] = {}
    handles = [
        model.net.get_submodule(names[m].split("[")[0]).register_forward_hook(
            lambda mod, a, out, m=m: seen.__setitem__(m, out)
        )
        for m in MODALITIES
    ]
    try:
        model.eval()
        model(mods, lengths)
        clean = dict(seen)
        model.train()
        model(mods, lengths)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(
        [(seen[m].abs().sum(-1) == 0) & (clean[m].abs().sum(-1) > 0) for m in MODALITIES], 1
    )
