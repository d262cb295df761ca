"""Test-time robustness checks (Hazarika et al., NAACL 2022, sec. 3) on a trained model.

For each modality l, each kind of damage and each test fraction f (default 5, 10, 15, 30 %):
a fixed-seed subset of f·N test samples has modality l changed where the training augmentation
acts (the model's ``augment_at``: the baseline's fusion input, i.e. the encoder output; or the
input features), the rest is left clean:

- ``missing``: multiplied by 0;
- ``noisy``: white Gaussian noise N(0, sigma^2) added on the valid (non-padded) steps.

Metrics are computed on the whole test set (perturbed + clean samples) and compared with clean.

Metric names (one pattern, used from here to MLflow to the tables)::

    diag_test_<modality>_<kind>_<pct>_<metric>        e.g. diag_test_text_missing_30_corr
    diag_test_<modality>_<kind>_<pct>_<metric>_drop   degradation versus clean: clean - perturbed
                                                      for higher-is-better metrics, perturbed -
                                                      clean for mae; positive = worse
    diag_test_<modality>_<kind>_auc_<metric>          relative robustness (MultiBench): area under
                                                      metric-versus-fraction from 0 (clean) to the
                                                      largest fraction, divided by that fraction

Cost: the subsets are nested (one permutation; the first f·N indices), and a sample's perturbed
prediction does not depend on which other samples are perturbed. So one clean pass plus, per
(modality, kind), one pass of the largest subset gives every cell: about 1 + 6·0.3 = 2.8 clean
passes for the default grid instead of 24 (see bench/). When the hooked submodule's output is
the model's output (the baseline's ``fusion``), the damaged passes start at the hook from the
clean pass's captured inputs: the encoders run once per sample. Otherwise the damaged subset
runs through the whole model with the damage applied at the hook.

Pairing: the subset and the noise depend only on ``seed`` (and the eval batch size for the
noise), not on the model, so two models are compared on the same damaged samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from tune_m3.metrics import HEADLINE, LOWER_IS_BETTER, compute_metrics
from tune_m3.names import DIAG_KINDS, MODALITIES, diag_auc_key, diag_key, pct
from tune_m3.padding import valid_mask

KINDS = DIAG_KINDS  # re-exported: the kinds of damage, defined in names.py
DEFAULT_FRACTIONS: tuple[float, ...] = (0.05, 0.10, 0.15, 0.30)
__all__ = ["KINDS", "DEFAULT_FRACTIONS", "diag_key", "pct", "drop", "run_diagnostics"]


def drop(metric: str, clean: float, perturbed: float) -> float:
    """Degradation, positive = worse."""
    return perturbed - clean if metric in LOWER_IS_BETTER else clean - perturbed


def perturbed_order(n: int, seed: int) -> np.ndarray:
    """The fixed permutation whose first f·N entries are the perturbed samples at fraction f."""
    return np.random.default_rng(seed).permutation(n)


def _damage(li: int, kind: str, sigma: float, noise_seed: int):
    """The damage of modality ``li`` at the hook: zeroed, or N(0, sigma²) on its valid steps."""

    def apply(seq: list[torch.Tensor], lens: list[torch.Tensor | None]) -> list[torch.Tensor]:
        out = list(seq)
        x = seq[li]  # (b', N, d)
        if kind == "missing":
            out[li] = torch.zeros_like(x)
            return out
        g = torch.Generator(device=x.device).manual_seed(noise_seed)
        noise = torch.randn(x.shape, generator=g, device=x.device)
        if lens[li] is not None:  # front padding stays zero
            noise = noise * valid_mask(lens[li], x.shape[1])[..., None]
        out[li] = x + sigma * noise.to(x.dtype)
        return out

    return apply


@torch.no_grad()
def run_diagnostics(
    model,
    test: Mapping[str, np.ndarray],
    modalities: Sequence[str] = MODALITIES,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    sigma: float = 1.0,
    seed: int = 1234,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    metrics: Sequence[str] = HEADLINE,
    all_modalities: Sequence[str] = MODALITIES,
) -> tuple[dict[str, float], np.ndarray]:
    """Run the checks; returns (flat metrics dict incl. ``test_*`` clean metrics, clean preds (N,)).

    ``model`` is the wrapped model (:class:`tune_m3.models.seam.AugmentedModel`); the damage
    acts at its ``augment_at``. ``test`` holds the arrays of the test split: one (N, L, d) array per modality, ``labels`` (N,)
    and ``lengths`` (N,). ``modalities`` are the ones damaged; ``all_modalities`` is the model's
    input order.
    """
    from tune_m3.batches import batch_tensors  # local: keeps this module importable alone

    model.eval()
    labels = np.asarray(test["labels"], dtype=np.float64)
    n = labels.shape[0]
    fractions = sorted(fractions)
    k_max = int(round(max(fractions) * n))
    order = perturbed_order(n, seed)
    chosen = np.zeros(n, dtype=bool)
    chosen[order[:k_max]] = True
    clean = np.empty(n, dtype=np.float64)
    damaged = {(m, k): np.empty(n, dtype=np.float64) for m in modalities for k in KINDS}

    for b, lo in enumerate(range(0, n, batch_size)):
        idx = np.arange(lo, min(n, lo + batch_size))
        mods, lengths, _ = batch_tensors(test, idx, all_modalities, device)
        with model.capture() as cap:
            clean[idx] = model(mods, lengths).double().cpu().numpy()
        sel = np.flatnonzero(chosen[idx])  # positions in the batch that get damaged
        if sel.size == 0:
            continue
        sel_t = torch.as_tensor(sel, device=device)
        for mi, m in enumerate(modalities):
            li = list(all_modalities).index(m)
            for kind in KINDS:
                damage = _damage(li, kind, sigma, seed * 1_000_003 + b * 101 + mi)
                if cap.terminal:  # start from the hook's captured inputs
                    out = model.rerun_from_hook(cap, sel_t, damage)
                else:
                    sub_mods = {k: v.index_select(0, sel_t) for k, v in mods.items()}
                    sub_len = {k: v.index_select(0, sel_t) for k, v in lengths.items()}
                    with model.intervene(damage):
                        out = model(sub_mods, sub_len)
                damaged[(m, kind)][idx[sel]] = out.double().cpu().numpy()

    clean_metrics = compute_metrics(clean, labels)
    result: dict[str, float] = {f"test_{k}": v for k, v in clean_metrics.items()}
    for (m, kind), dmg in damaged.items():
        curve = {0.0: clean_metrics}
        for f in fractions:
            preds = clean.copy()
            pick = order[: int(round(f * n))]
            preds[pick] = dmg[pick]
            mets = compute_metrics(preds, labels)
            curve[f] = mets
            for met in metrics:
                result[diag_key(m, kind, f, met)] = mets[met]
                result[diag_key(m, kind, f, met, drop=True)] = drop(
                    met, clean_metrics[met], mets[met]
                )
        xs = np.array(sorted(curve))
        for met in metrics:
            ys = np.array([curve[x][met] for x in xs])
            result[diag_auc_key(m, kind, met)] = float(np.trapezoid(ys, xs) / xs[-1])
    return result, clean
