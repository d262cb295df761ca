"""ModalityMasking: M3 (MultiModal Masking) and its ablation variants as one layer.

References: Georgiou, Paraskevopoulos, Potamianos, "M3: MultiModal Masking applied to sentiment
analysis", Interspeech 2021, sec. 2.2 (eq. 4-5) and sec. 4.1 (Table 1 variants); the authors' code
github.com/efthymisgeo/multimodal-masking, ``modules/mmdrop.py``.

Symbols of the paper and their names here:

    pM                      p_mask        probability that a mask unit is masked at all
    pL = (πT, πA, πV)       modal_probs   which modality is masked, given that one is (sum to 1)
    µM, µΠ, µM3 (eq. 4)     drawn inside forward(); never stored

The layer takes M modality representations m_l of shape (B, N, d_l) (batch, time steps, features;
d_l may differ per modality, M may be any number >= 1) and returns M tensors of the same shapes.
It is parameter-free and is the identity in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from tune_m3.augment.base import AugmentLayer, Lengths, check_mods

Scheme = Literal["none", "m3", "soft_m3", "random_mask"]
Granularity = Literal["timestep", "sample", "batch"]
SoftMode = Literal["paper", "authors"]

SCHEMES: tuple[str, ...] = ("none", "m3", "soft_m3", "random_mask")
GRANULARITIES: tuple[str, ...] = ("timestep", "sample", "batch")
SOFT_MODES: tuple[str, ...] = ("paper", "authors")


def _checked_modal_probs(
    modal_probs: Sequence[float] | None, n_modalities: int | None
) -> tuple[float, ...] | None:
    """``modal_probs`` as a checked tuple; uniform over ``n_modalities``; or None (M unknown)."""
    if n_modalities is not None and int(n_modalities) < 1:
        raise ValueError(f"n_modalities must be >= 1; got {n_modalities}")
    if modal_probs is None:
        return None if n_modalities is None else (1.0 / int(n_modalities),) * int(n_modalities)
    probs = tuple(float(p) for p in modal_probs)
    if len(probs) == 0:
        raise ValueError("modal_probs must not be empty")
    if any(p < 0 or p != p for p in probs):
        raise ValueError(f"modal_probs must be non-negative; got {probs}")
    if abs(sum(probs) - 1.0) > 1e-6:
        raise ValueError(f"modal_probs must sum to 1 (within 1e-6); got sum {sum(probs)}")
    if n_modalities is not None and len(probs) != int(n_modalities):
        raise ValueError(f"modal_probs has {len(probs)} entries but n_modalities={n_modalities}")
    return probs


class ModalityMasking(AugmentLayer):
    """Structured masking of whole modalities (M3) and its Table-1 variants, in one layer.

    Laws, for M modalities, a mask *unit* u (see ``granularity``) and modality l:

    - ``"m3"`` (paper eq. 4-5). At each unit, with probability ``p_mask`` (pM) one modality is
      masked, and which one is drawn from Cat(``modal_probs``) = Cat(πT, πA, πV); its whole feature
      vector is set to zero. Hence P(m_l zeroed at an element) = p_mask · π_l, and at most one
      modality is zeroed per unit.
    - ``"soft_m3"``. The unit and the chosen modality are drawn exactly as in ``"m3"``, but only a
      Bernoulli(``p_feature``) subset of that modality's features is zeroed (a fresh subset per
      masked unit). P(element of m_l zeroed) = p_mask · π_l · p_feature.
      With ``soft_mode="authors"`` it is instead what the authors' ``SoftMultimodalMasking``
      does: ONE modality is drawn per batch from Cat(π), with no p_mask gate, and each of its
      elements (every sample, step and feature) is zeroed independently with probability
      ``p_mask`` (their single ``p``); ``p_feature`` and ``granularity`` are ignored.
      P(element of m_l zeroed) = π_l · p_mask, and exactly one modality is touched per batch.
    - ``"random_mask"``. Dropout-like: every feature element of every modality is zeroed
      independently with probability ``p_mask``; ``modal_probs`` and ``granularity`` are ignored.
    - ``"none"``. The identity (the paper's "Baseline" row).

    ``granularity`` chooses the mask unit of ``"m3"``/``"soft_m3"``:

    - ``"timestep"`` (default): one unit per (sample b, time step i), the paper's text ("applied at
      every sample of the batch and at every time step i").
    - ``"sample"``: one unit per sample b; the same modality is masked at all its time steps.
    - ``"batch"``: what the authors' code does (``HardMultimodalMasking`` with
      ``m3_sequential=True``): the mask/no-mask decision is drawn ONCE per batch, then, if the batch
      is masked, a modality per (sample, time step). The marginal P(zeroed) = p_mask · π_l is the
      same as ``"timestep"``, but masking comes in all-or-nothing batches, so its variance across
      batches is much larger. Use it to reproduce the authors' runs, not the paper's equations.

    Unaligned inputs (N_l differs per modality): the timestep units form a (B, max N_l) grid,
    and modality l, front-padded, uses its last N_l columns (sequences aligned at their end). Each
    modality's time axis is thus masked with P(zeroed) = p_mask · π_l per step, and modalities
    of equal N_l still never lose the same step together.

    ``rescale=True`` divides kept elements by 1 − P(zeroed) of their modality (1 − p_mask·π_l for
    m3, 1 − p_mask·π_l·p_feature for soft_m3, 1 − p_mask for random_mask), so each element's
    expectation is preserved, as in inverted dropout. The paper does not rescale (default False).
    Note the authors' "rescaling trick" (``masking=False``) is different: it multiplies every
    modality by 1/(1 − p/M) regardless of modal_probs.

    Args:
        scheme: ``"none"``, ``"m3"``, ``"soft_m3"`` or ``"random_mask"``.
        p_mask: pM in [0, 1].
        modal_probs: (π_1, ..., π_M), non-negative, summing to 1. None = uniform 1/M, with M taken
            from ``n_modalities`` or else from the first forward call.
        granularity: ``"timestep"``, ``"sample"`` or ``"batch"``.
        p_feature: soft_m3 only: the fraction of the chosen modality's features zeroed, in [0, 1].
        rescale: inverse-probability rescaling of the kept elements (see above).
        seed: seed of the layer's own ``torch.Generator``. None draws one from torch's global RNG
            at construction, so ``torch.manual_seed`` still makes runs reproducible.
        n_modalities: M, when ``modal_probs`` is None and you want it fixed up front.
        soft_mode: soft_m3 only: ``"paper"`` (default; the law above) or ``"authors"``.

    Example::

        m3 = ModalityMasking("m3", p_mask=0.2, modal_probs=(0.6, 0.2, 0.2), seed=0)
        m_t, m_a, m_v = m3([m_t, m_a, m_v])  # each (B, N, d_l), unchanged under m3.eval()

    Notes:
        - Randomness comes only from the layer's generator (created lazily on the inputs' device);
          ``generator_state()``/``set_generator_state()`` let a checkpoint resume the same masks.
        - Masks multiply; inputs are never modified in place, dtype and device are kept.
        - The mask units include padded time steps; they are zero already, so this is harmless,
          but the observed masking rate on valid steps is still p_mask · π_l.
    """

    def __init__(
        self,
        scheme: Scheme = "m3",
        p_mask: float = 0.2,
        modal_probs: Sequence[float] | None = None,
        granularity: Granularity = "timestep",
        p_feature: float = 0.5,
        rescale: bool = False,
        seed: int | None = None,
        n_modalities: int | None = None,
        soft_mode: SoftMode = "paper",
    ):
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}; got {scheme!r}")
        if soft_mode not in SOFT_MODES:
            raise ValueError(f"soft_mode must be one of {SOFT_MODES}; got {soft_mode!r}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}; got {granularity!r}")
        if not 0.0 <= float(p_mask) <= 1.0:
            raise ValueError(f"p_mask must be in [0, 1]; got {p_mask}")
        if not 0.0 <= float(p_feature) <= 1.0:
            raise ValueError(f"p_feature must be in [0, 1]; got {p_feature}")
        probs = _checked_modal_probs(modal_probs, n_modalities)
        super().__init__(seed)  # after the checks: an unseeded layer draws its seed only if valid
        self.modal_probs: tuple[float, ...] | None = probs  # None: uniform, M fixed at 1st forward
        self.scheme = scheme
        self.p_mask = float(p_mask)
        self.granularity = granularity
        self.p_feature = float(p_feature)
        self.rescale = bool(rescale)
        self.soft_mode = soft_mode

    def zero_prob(self, k: int) -> float:
        """P(an element of modality k is zeroed) in train mode, under this layer's law."""
        if self.scheme == "none":
            return 0.0
        if self.scheme == "random_mask":
            return self.p_mask
        assert self.modal_probs is not None, "modal_probs unknown before the first forward"
        q = self.p_mask * self.modal_probs[k]
        if self.scheme == "soft_m3" and self.soft_mode == "paper":
            return q * self.p_feature
        return q  # m3, and soft_m3 "authors": π_k · p_mask

    def _probs_for(self, n: int) -> tuple[float, ...]:
        if self.modal_probs is None:
            self.modal_probs = (1.0 / n,) * n
        if len(self.modal_probs) != n:
            raise ValueError(
                f"modal_probs has {len(self.modal_probs)} entries but forward got {n} modalities"
            )
        return self.modal_probs

    def check(self, mods: Sequence[Tensor]) -> None:
        """The base checks, and M fixed (or checked against ``modal_probs``), in both modes."""
        check_mods(mods)
        self._probs_for(len(mods))

    def augment(self, mods: Sequence[Tensor], lengths: Lengths = None) -> list[Tensor]:
        """Mask a list of M tensors (B, N, d_l); ``lengths`` is accepted for a common signature."""
        B, _ = check_mods(mods)
        drawn = self.draw(B, [m.shape[1] for m in mods], mods[0].device)
        return [self.apply_one(drawn, k, m, None) for k, m in enumerate(mods)]

    def draw(self, batch: int, steps: Sequence[int], device: torch.device | str) -> Any:
        """The units' draws of one batch: (masked, which) for m3 / soft_m3 (paper), the batch's
        modality for soft_m3 (authors), None otherwise (random_mask draws per element).

        The timestep grid is (B, max ``steps``); a modality with N_k steps uses its last N_k
        columns, a pooled one (N_k = 1) the last column: each sample's last valid step.
        """
        probs = self._probs_for(len(steps))
        if self.scheme in ("none", "random_mask") or self.p_mask == 0.0:
            return None
        device = torch.device(device)
        gen = self.generator(device)
        p = torch.tensor(probs, dtype=torch.float, device=device)
        if self.scheme == "soft_m3" and self.soft_mode == "authors":
            return int(torch.multinomial(p, 1, generator=gen).item())  # the batch's modality
        # eq. 4: µM ~ Be(pM) per unit, µΠ ~ Cat(π) per unit; a modality is zeroed where both say so
        B, N = int(batch), max(int(n) for n in steps)
        unit = {"timestep": (B, N), "sample": (B, 1), "batch": (1, 1)}[self.granularity]
        choice = (B, N) if self.granularity == "batch" else unit
        masked = torch.rand(unit, generator=gen, device=device) < self.p_mask  # (B|1, N|1)
        which = torch.multinomial(p, choice[0] * choice[1], replacement=True, generator=gen)
        return masked, which.view(choice)  # (B|1, N|1), (B, N|1)

    def apply_one(self, drawn: Any, k: int, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Modality ``k`` of the batch (B, N_k, d_k) masked under ``drawn`` (:meth:`draw`)."""
        if self.scheme == "none" or self.p_mask == 0.0:
            return x
        gen = self.generator(x.device)
        if self.scheme == "random_mask" or isinstance(drawn, int):  # per element (of drawn's k)
            if isinstance(drawn, int) and drawn != k:
                return x
            keep = torch.rand(x.shape, generator=gen, device=x.device) >= self.p_mask
            return x * self._keep_factor(keep, k, x.dtype)  # (B, N_k, d_k)
        masked, which = drawn
        zeroed = (masked & (which == k)).unsqueeze(-1)  # (B, N|1, 1)
        if self.scheme == "soft_m3":
            # a fresh Bernoulli(p_feature) subset of the features at every masked unit
            feats = torch.rand((*which.shape, x.shape[-1]), generator=gen, device=x.device)
            zeroed = zeroed & (feats < self.p_feature)  # (B, N|1, d_k)
        n = x.shape[1]
        if zeroed.shape[1] > n:  # unaligned (or pooled): this modality's last N_k units
            zeroed = zeroed[:, zeroed.shape[1] - n :]
        elif 1 < zeroed.shape[1] < n:
            raise ValueError(
                f"timestep masking: modality {k} has {n} steps at the hook, more than the "
                f"{zeroed.shape[1]} mask units of the batch (its inputs' steps); use "
                "granularity: sample, or a hook whose output keeps the input's steps"
            )
        return x * self._keep_factor(~zeroed, k, x.dtype)  # eq. 5: µ_l · m_l

    def _keep_factor(self, keep: Tensor, k: int, dtype: torch.dtype) -> Tensor:
        factor = keep.to(dtype)
        if self.rescale:
            q = self.zero_prob(k)
            if q < 1.0:  # q == 1: nothing is kept, nothing to rescale
                factor = factor * (1.0 / (1.0 - q))
        return factor

    def extra_repr(self) -> str:
        return (
            f"scheme={self.scheme!r}, p_mask={self.p_mask}, modal_probs={self.modal_probs}, "
            f"granularity={self.granularity!r}, p_feature={self.p_feature}, "
            f"rescale={self.rescale}, seed={self.seed}, soft_mode={self.soft_mode!r}"
        )
