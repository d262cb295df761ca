"""Scheduling the masking probability over epochs (the M3 paper names it as future work).

For epoch e (1-based), warm-up length w = ``p_mask_warmup_epochs`` and target pM = ``p_mask``:

    constant:  pM_e = pM
    linear:    pM_e = pM · min(1, (e − 1) / w)
    cosine:    pM_e = pM · (1 − cos(π · min(1, (e − 1) / w))) / 2

So a ramp trains the first epoch without masking and reaches pM at epoch w + 1; with w = 0 every
schedule is constant. The value depends on the epoch alone, so a run resumed from a checkpoint
continues the ramp where it was. Training logs it each epoch as ``train_p_mask``.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "linear", "cosine")


def p_mask_at(p_mask: float, schedule: str, warmup: int, epoch: int) -> float:
    """pM for ``epoch`` (1-based) under ``schedule`` (see module doc)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"p_mask_schedule must be one of {SCHEDULES}; got {schedule!r}")
    if schedule == "constant" or warmup <= 0:
        return p_mask
    t = min(1.0, (epoch - 1) / warmup)
    if schedule == "linear":
        return p_mask * t
    return p_mask * (1.0 - math.cos(math.pi * t)) / 2.0


def set_p_mask(layers, value: float) -> None:
    """Set pM of every masking layer among ``layers`` (the wrapper's augmentation pipeline)."""
    from tune_m3.augment.masking import ModalityMasking

    for layer in layers:
        if isinstance(layer, ModalityMasking):
            layer.p_mask = float(value)
