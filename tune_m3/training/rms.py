"""The RMS of a modality's clean representation: the unit of noise with ``sigma_scale="rms"``.

Measured with the model itself, so σ = 1 means "noise as strong as this model's signal there".
Training measures it once, before the first update, for an rms-scaled perturbation layer (the
``rms_subset`` stream of :class:`~tune_m3.streams.Streams` picks the clips); the test-time
diagnostics measure it on the training split at ``diag_seed`` for ``diag_sigma_scale="rms"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from tune_m3.augment.perturb import rms_over_valid
from tune_m3.names import MODALITIES

RMS_SAMPLES = 1024  # training clips measure_rms reads (a fixed-seed subset)
__all__ = ["RMS_SAMPLES", "measure_rms", "rms_key"]


def rms_key(modality: str, *, diag: bool) -> str:
    """Metric name of a measured RMS: ``diag_noise_rms_<m>`` (diagnostics) or
    ``train_noise_rms_<m>`` (training perturbation with ``sigma_scale="rms"``)."""
    return f"{'diag' if diag else 'train'}_noise_rms_{modality}"


@torch.no_grad()
def measure_rms(
    model,
    arrays: Mapping[str, np.ndarray],
    modalities: Sequence[str] = MODALITIES,
    at: str = "hook",
    seed: int = 0,
    n_samples: int = RMS_SAMPLES,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    all_modalities: Sequence[str] = MODALITIES,
) -> dict[str, float]:
    """RMS of each modality over valid steps and features: {modality: r_l}.

    Reads a fixed-seed subset of ``n_samples`` clips of ``arrays`` (all when fewer) in eval mode
    (no dropout, no augmentation) through the wrapped model: the per-modality tensors at its
    ``augment_at`` (``at="hook"``, where M3, perturbation and the diagnostics act) or the raw
    input features (``at="input"``). One number per modality, pooled over every valid element
    of the subset: r_l = sqrt(sum x^2 / (valid steps · d_l)).
    """
    from tune_m3.batches import batch_tensors  # local: keeps this module importable alone

    n = int(np.asarray(arrays["labels"]).shape[0])
    pick = np.sort(np.random.default_rng(seed).permutation(n)[: min(n, n_samples)])
    was_training = model.training
    model.eval()
    sums = {m: 0.0 for m in modalities}
    counts = {m: 0.0 for m in modalities}
    try:
        for lo in range(0, pick.size, batch_size):
            idx = pick[lo : lo + batch_size]
            mods, lengths, _ = batch_tensors(arrays, idx, all_modalities, device)
            if at == "hook":
                reps, lens = model.hook_inputs(mods, lengths)
            else:
                reps, lens = [mods[m] for m in all_modalities], [lengths[m] for m in all_modalities]
            for m in modalities:
                i = list(all_modalities).index(m)
                x, n_valid = reps[i], lens[i]  # (B, N, d) or pooled (B, d); (B,) or None
                if x.dim() == 2:  # pooled at the hook: one step per sample
                    x, n_valid = x.unsqueeze(1), None
                steps = x.shape[0] * x.shape[1] if n_valid is None else int(n_valid.sum())
                count = steps * x.shape[-1]
                sums[m] += rms_over_valid(x, n_valid) ** 2 * count
                counts[m] += count
    finally:
        model.train(was_training)
    return {m: float(np.sqrt(sums[m] / max(counts[m], 1.0))) for m in modalities}
