"""Test-time robustness checks (Hazarika et al., NAACL 2022, sec. 3) on a trained model.

For each modality l, each kind of damage and each test fraction f (default 5, 10, 15, 30 %):
a fixed-seed subset of f·N test samples has modality l changed where the training augmentation
acts (the model's ``augment_at``: the baseline's fusion input, i.e. the encoder output; or the
input features), the rest is left clean:

- ``missing``: multiplied by 0;
- ``noisy``: by default white Gaussian noise N(0, sigma^2) added on the valid (non-padded) steps
  (``noise_kind="additive"``, ``sigma_scale="absolute"``: the robustness paper's text). Two other
  laws, as in :class:`tune_m3.augment.ModalityPerturbation`:
  ``sigma_scale="rms"`` adds N(0, (sigma·r_l)^2), r_l = RMS of modality l's clean representation
  over the valid steps of (a fixed-seed subset of) the TRAINING split, measured with the model
  under test (:func:`tune_m3.training.rms.measure_rms`; reported as ``diag_noise_rms_<modality>``);
  ``noise_kind="multiplicative"`` multiplies each damaged sample's representation by one
  z ~ N(0, sigma^2) (what the paper's code does; scale-free).

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

Pairing: the subset and the noise draws depend only on ``seed`` (and the eval batch size for the
noise), not on the model, so two models are compared on the same damaged samples. Surprise: with
``sigma_scale="rms"`` the noise *amplitude* does depend on the model (its own r_l), so two models
see the same noise pattern at the same signal-to-noise ratio, not the same absolute noise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tune_m3.augment.perturb import check_noise
from tune_m3.metrics import HEADLINE, LOWER_IS_BETTER, compute_metrics
from tune_m3.names import DIAG_KINDS, MODALITIES, diag_auc_key, diag_key, pct
from tune_m3.padding import valid_mask
from tune_m3.training.rms import rms_key

KINDS = DIAG_KINDS  # re-exported: the kinds of damage, defined in names.py
DEFAULT_FRACTIONS: tuple[float, ...] = (0.05, 0.10, 0.15, 0.30)
__all__ = ["KINDS", "DEFAULT_FRACTIONS", "diag_key", "pct", "drop", "run_diagnostics"]


def _checked_rms(
    noise_kind: str, sigma_scale: str, rms: Mapping[str, float] | None, modalities: Sequence[str]
) -> Mapping[str, float] | None:
    """The RMS per modality that scales the noise, or None when sigma is absolute."""
    check_noise(noise_kind, sigma_scale, where="diag_")
    if sigma_scale != "rms":
        return None
    missing = [m for m in modalities if rms is None or m not in rms]
    if missing:
        raise ValueError(
            f"diag_sigma_scale='rms' needs the clean RMS of {missing}: pass "
            "rms=measure_rms(model, train_arrays, ...) (tune_m3.training.rms)"
        )
    return rms


def _noisy(x, lengths, g, sigma: float, noise_kind: str, rms: float | None):
    """The noisy copy of one modality x (b', N, d) under the configured law."""
    if noise_kind == "multiplicative":
        z = torch.randn((x.shape[0],), generator=g, device=x.device)  # (b',) one z per sample
        return x * (sigma * z).to(x.dtype).view(-1, 1, 1)
    noise = torch.randn(x.shape, generator=g, device=x.device)  # (b', N, d)
    if lengths is not None:  # front padding stays zero
        noise = noise * valid_mask(lengths, x.shape[1])[..., None]
    std = sigma if rms is None else sigma * rms
    return x + std * noise.to(x.dtype)


def drop(metric: str, clean: float, perturbed: float) -> float:
    """Degradation, positive = worse."""
    return perturbed - clean if metric in LOWER_IS_BETTER else clean - perturbed


def perturbed_order(n: int, seed: int) -> np.ndarray:
    """The fixed permutation whose first f·N entries are the perturbed samples at fraction f."""
    return np.random.default_rng(seed).permutation(n)


def _damage(
    li: int,
    kind: str,
    sigma: float,
    noise_seed: int,
    noise_kind: str = "additive",
    rms: float | None = None,
):
    """The damage of modality ``li`` at the hook: zeroed, or noise by :func:`_noisy`'s law."""

    def apply(seq: list[torch.Tensor], lens: list[torch.Tensor | None]) -> list[torch.Tensor]:
        out = list(seq)
        x = seq[li]  # (b', N, d)
        if kind == "missing":
            out[li] = torch.zeros_like(x)
            return out
        g = torch.Generator(device=x.device).manual_seed(noise_seed)
        out[li] = _noisy(x, lens[li], g, sigma, noise_kind, rms)
        return out

    return apply


@dataclass(frozen=True)
class _Plan:
    """What :func:`run_diagnostics` damages, how, and on which samples."""

    modalities: Sequence[str]  # the damaged ones
    kinds: Sequence[str]
    all_modalities: Sequence[str]  # the model's input order
    sigma: float
    seed: int
    noise_kind: str
    rms: Mapping[str, float] | None  # None: sigma is absolute
    chosen: np.ndarray  # (N,) bool: the samples damaged at the largest fraction

    def damage(self, mi: int, kind: str, batch: int):
        """The damage of the ``mi``-th damaged modality in eval batch ``batch``.

        The noise seed depends only on (seed, batch, mi): two models get the same draws.
        """
        m = self.modalities[mi]
        r = None if self.rms is None else float(self.rms[m])
        li = list(self.all_modalities).index(m)
        noise_seed = self.seed * 1_000_003 + batch * 101 + mi
        return _damage(li, kind, self.sigma, noise_seed, self.noise_kind, r)


def _damaged_batch(
    model, cap, mods, lengths, sel_t: torch.Tensor, plan: _Plan, batch: int
) -> Iterator[tuple[tuple[str, str], np.ndarray]]:
    """((modality, kind), predictions (b',)) of one batch's rows ``sel_t``, damaged at the hook."""
    for mi, m in enumerate(plan.modalities):
        for kind in plan.kinds:
            damage = plan.damage(mi, kind, batch)
            if cap.terminal:  # start from the hook's captured inputs
                out = model.rerun_from_hook(cap, sel_t, damage)
            else:
                sub_mods = {k: v.index_select(0, sel_t) for k, v in mods.items()}
                sub_len = {k: v.index_select(0, sel_t) for k, v in lengths.items()}
                with model.intervene(damage):
                    out = model(sub_mods, sub_len)
            yield (m, kind), out.double().cpu().numpy()


def _predict(
    model, test: Mapping[str, np.ndarray], plan: _Plan, batch_size: int, device
) -> tuple[np.ndarray, dict[tuple[str, str], np.ndarray]]:
    """Clean predictions (N,) and, per (modality, kind), the damaged ones (N,; set on
    ``plan.chosen`` only): one clean pass, and one damaged pass of the chosen rows per pair."""
    from tune_m3.batches import batch_tensors  # local: keeps this module importable alone

    model.eval()
    n = plan.chosen.shape[0]
    clean = np.empty(n, dtype=np.float64)
    damaged = {(m, k): np.empty(n, dtype=np.float64) for m in plan.modalities for k in plan.kinds}
    for b, lo in enumerate(range(0, n, batch_size)):
        idx = np.arange(lo, min(n, lo + batch_size))
        mods, lengths, _ = batch_tensors(test, idx, plan.all_modalities, device)
        with model.capture() as cap:
            clean[idx] = model(mods, lengths).double().cpu().numpy()
        sel = np.flatnonzero(plan.chosen[idx])  # positions in the batch that get damaged
        if sel.size == 0:
            continue
        sel_t = torch.as_tensor(sel, device=device)
        for key, out in _damaged_batch(model, cap, mods, lengths, sel_t, plan, b):
            damaged[key][idx[sel]] = out
    return clean, damaged


def _curve(
    m: str,
    kind: str,
    preds_at: dict[float, dict[str, float]],
    metrics: Sequence[str],
    split: str,
) -> dict[str, float]:
    """One (modality, kind)'s keys: each fraction's metric and drop, and the AUC per metric.

    ``preds_at`` maps fraction -> metrics, with 0.0 the clean metrics.
    """
    clean = preds_at[0.0]
    out: dict[str, float] = {}
    for f, mets in preds_at.items():
        if f == 0.0:
            continue
        for met in metrics:
            out[diag_key(m, kind, f, met, split=split)] = mets[met]
            out[diag_key(m, kind, f, met, split=split, drop=True)] = drop(
                met, clean[met], mets[met]
            )
    xs = np.array(sorted(preds_at))
    for met in metrics:
        ys = np.array([preds_at[x][met] for x in xs])
        out[diag_auc_key(m, kind, met, split=split)] = float(np.trapezoid(ys, xs) / xs[-1])
    return out


def _score(
    clean: np.ndarray,
    damaged: Mapping[tuple[str, str], np.ndarray],
    labels: np.ndarray,
    order: np.ndarray,
    fractions: Sequence[float],
    metrics: Sequence[str],
    split: str,
) -> tuple[dict[str, float], dict[str, float]]:
    """(clean metrics, every key of the grid): the first f·N of ``order`` damaged, the rest clean."""
    n = labels.shape[0]
    clean_metrics = compute_metrics(clean, labels)
    grid: dict[str, float] = {}
    for (m, kind), dmg in damaged.items():
        curve = {0.0: clean_metrics}
        for f in fractions:
            preds = clean.copy()
            pick = order[: int(round(f * n))]
            preds[pick] = dmg[pick]
            curve[f] = compute_metrics(preds, labels)
        grid.update(_curve(m, kind, curve, metrics, split))
    return clean_metrics, grid


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
    noise_kind: str = "additive",
    sigma_scale: str = "absolute",
    rms: Mapping[str, float] | None = None,
    kinds: Sequence[str] = KINDS,
    split: str = "test",
) -> tuple[dict[str, float], np.ndarray]:
    """Run the checks; returns (flat metrics dict incl. ``test_*`` clean metrics, clean preds (N,)).

    ``model`` is the wrapped model (:class:`tune_m3.models.seam.AugmentedModel`); the damage
    acts at its ``augment_at``. ``test`` holds the arrays of the test split: one (N, L, d) array
    per modality, ``labels`` (N,) and ``lengths`` (N,). ``modalities`` are the ones damaged;
    ``all_modalities`` is the model's input order. ``noise_kind`` / ``sigma_scale`` choose the
    law of ``noisy`` (module docstring); ``sigma_scale="rms"`` needs ``rms`` = {modality: r_l}
    from :func:`~tune_m3.training.rms.measure_rms` on the training split, and adds
    ``diag_noise_rms_<modality>`` to the result. ``kinds`` limits the damage to some of
    ``KINDS``; ``split="val"`` names the keys ``diag_val_*`` (validation diagnostics during
    training) and leaves the clean ``test_*`` entries out.
    """
    rms = _checked_rms(noise_kind, sigma_scale, rms, modalities)
    labels = np.asarray(test["labels"], dtype=np.float64)
    n = labels.shape[0]
    fractions = sorted(fractions)
    order = perturbed_order(n, seed)
    chosen = np.zeros(n, dtype=bool)
    chosen[order[: int(round(max(fractions) * n))]] = True
    plan = _Plan(modalities, kinds, all_modalities, sigma, seed, noise_kind, rms, chosen)
    clean, damaged = _predict(model, test, plan, batch_size, device)
    clean_metrics, grid = _score(clean, damaged, labels, order, fractions, metrics, split)
    # clean metrics as test_* (the validation split's are the trial's val_* already)
    result = {f"test_{k}": v for k, v in clean_metrics.items()} if split == "test" else {}
    if rms is not None:
        result.update({rms_key(m, diag=True): float(rms[m]) for m in modalities})
    return {**result, **grid}, clean
