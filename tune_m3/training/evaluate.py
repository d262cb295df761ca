"""Evaluation: predictions for a split, the per-epoch validation diagnostics, the final test.

The final evaluation takes the best epoch's weights (lowest validation loss), reports the
``test_*`` metrics and, unless ``cfg.diagnostics`` is off, the ``diag_test_*`` robustness checks
of :mod:`tune_m3.training.diagnostics` at the configured ``diag_*`` settings.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from tune_m3.augment.perturb import resolve_sigma_scale
from tune_m3.batches import batch_tensors
from tune_m3.config import MODALITY_NAMES, TrialConfig
from tune_m3.metrics import compute_metrics
from tune_m3.models.seam import AugmentedModel
from tune_m3.names import parse_diag_key
from tune_m3.training.diagnostics import run_diagnostics
from tune_m3.training.rms import measure_rms

__all__ = ["EVAL_BATCH", "Arrays", "evaluate_best", "evaluate_final", "predict"]

# one split: modality -> (N, L_l, d_l), "labels" (N,), "lengths" (N,) [+ "lengths_<modality>"]
Arrays = Mapping[str, np.ndarray]
EVAL_BATCH = 256


@torch.no_grad()
def predict(
    model: nn.Module, arrays: Arrays, device: torch.device, batch_size: int = EVAL_BATCH
) -> np.ndarray:
    """Predictions (N,) for a whole split, in eval mode."""
    model.eval()
    n = arrays["labels"].shape[0]
    out = np.empty(n, dtype=np.float64)
    for lo in range(0, n, batch_size):
        idx = np.arange(lo, min(n, lo + batch_size))
        mods, lengths, _ = batch_tensors(arrays, idx, MODALITY_NAMES, device)
        out[idx] = model(mods, lengths).double().cpu().numpy()
    return out


def validation_diagnostics(
    model, cfg: TrialConfig, valid: Arrays, device
) -> tuple[dict[str, float], np.ndarray]:
    """The ``cfg.val_diagnostics`` keys (``diag_val_*``), computed on the validation split, and
    the clean validation predictions (N,) of the same pass.

    Only the modalities, kinds, fractions and metrics those keys name are computed (the
    diagnostics of :mod:`tune_m3.training.diagnostics`, with the test-time settings
    ``diag_sigma``, ``diag_seed`` and ``diag_noise_kind``; an rms ``diag_sigma_scale`` is not
    used here). The clean predictions equal :func:`predict`'s (same batches, eval mode), so an
    epoch with validation diagnostics takes its ``val_*`` metrics from them instead of a second
    clean pass. The model is left in eval mode.
    """
    wanted = [parse_diag_key(k) for k in cfg.val_diagnostics]
    fractions = sorted({d.fraction for d in wanted if not d.is_auc} or set(cfg.diag_fractions))
    res, clean = run_diagnostics(
        model,
        valid,
        batch_size=EVAL_BATCH,
        modalities=sorted({d.modality for d in wanted}, key=MODALITY_NAMES.index),
        fractions=fractions,
        sigma=cfg.diag_sigma,
        seed=cfg.diag_seed,
        device=device,
        metrics=sorted({d.metric for d in wanted}),
        kinds=sorted({d.kind for d in wanted}),
        noise_kind=cfg.diag_noise_kind,
        split="val",
    )
    return {k: res[k] for k in cfg.val_diagnostics}, clean


def evaluate_final(
    model: AugmentedModel,
    cfg: TrialConfig,
    test: Arrays,
    device: torch.device,
    train_arrays: Arrays | None = None,
) -> dict[str, float]:
    """test_* metrics of ``model`` and, if configured, the diag_* robustness checks.

    ``diag_sigma_scale="rms"`` (and ``auto`` at a representation hook) measures each damaged
    modality's RMS on ``train_arrays`` (the training split, required then) with ``model``
    itself, at ``diag_seed``.
    """
    if not cfg.diagnostics:
        return {
            f"test_{k}": v
            for k, v in compute_metrics(predict(model, test, device), test["labels"]).items()
        }
    rms = None
    at_input = model.augment_at == "input"
    scale = resolve_sigma_scale(cfg.diag_sigma_scale, cfg.diag_noise_kind, at_input)
    if scale == "rms":
        if train_arrays is None:
            raise ValueError("diag_sigma_scale='rms' needs the training split to measure the RMS")
        rms = measure_rms(
            model, train_arrays, cfg.diag_modalities, seed=cfg.diag_seed, device=device
        )
    final, _ = run_diagnostics(
        model,
        test,
        modalities=cfg.diag_modalities,
        fractions=cfg.diag_fractions,
        sigma=cfg.diag_sigma,
        seed=cfg.diag_seed,
        batch_size=EVAL_BATCH,
        device=device,
        noise_kind=cfg.diag_noise_kind,
        sigma_scale=scale,
        rms=rms,
    )
    return final


def evaluate_best(
    model: AugmentedModel,
    best_state: Mapping[str, torch.Tensor],
    cfg: TrialConfig,
    data: Mapping[str, Arrays],
    device: torch.device,
) -> dict[str, float]:
    """:func:`evaluate_final` of the best epoch's weights; the model keeps its current weights."""
    current = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    try:
        return evaluate_final(model, cfg, data["test"], device, train_arrays=data.get("train"))
    finally:
        model.load_state_dict(current)
