"""ModalityPerturbation: the robust training of Hazarika et al., NAACL 2022 ("modality perturbation").

Reference: Hazarika, Li, Cheng, Zhao, Zimmermann, Poria, "Analyzing Modality Robustness in
Multimodal Sentiment Analysis", NAACL 2022, sec. 3 ("robust training").

For every training batch a proportion of the samples gets its target modality (the dominant one,
text in the paper) replaced: some by "missing" (multiplied by 0) and a disjoint set by "noisy".
The paper's "total 30 %" is 15 % missing + 15 % noise, i.e. ``p_missing=0.15, p_noise=0.15``.

What "noisy" means differs between the paper and its code (github.com/declare-lab/MSA-Robustness),
so both are here (``noise_kind``), and the additive one has two units (``sigma_scale``):

    noise_kind      sigma_scale   a noisy sample's target modality x (N, d) becomes
    additive        absolute      x + σ·ε,       ε ~ N(0, 1) i.i.d. per valid element (default;
                                                 the paper's text, "x + N(0, 1)")
    additive        rms           x + σ·r·ε,     r = RMS of that modality on clean training data
    multiplicative  absolute      z·x,           z ~ N(0, σ²) ONE scalar per sample (the code of
                                                 all five models: ``utterance[i] * noise[i]``)

Multiplicative noise is scale-free (scaling the features scales the output alike) and keeps
padding at zero; additive noise at an absolute σ is not: with representations whose RMS is
about 0.05, σ = 1 is ~20x the signal, so "noisy" is close to "replaced by noise".
``sigma_scale="rms"`` makes σ a signal-to-noise knob instead (σ = 1: noise as strong as the
signal). Combining ``multiplicative`` with ``rms`` is refused: it would change nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from tune_m3.augment.base import AugmentLayer, Lengths, check_mods
from tune_m3.padding import valid_mask

NoiseKind = Literal["additive", "multiplicative"]
SigmaScale = Literal["absolute", "rms"]
CountRule = Literal["round", "floor"]
NOISE_KINDS: tuple[str, ...] = ("additive", "multiplicative")
SIGMA_SCALES: tuple[str, ...] = ("absolute", "rms")
COUNT_RULES: tuple[str, ...] = ("round", "floor")


def _round_half_up(x: float) -> int:
    # Python's round() rounds half to even (round(0.5) == 0); a count of samples should not.
    # The small epsilon absorbs float error such as 0.15 * 10 = 1.4999999999999998.
    return int(math.floor(x + 0.5 + 1e-9))


def _floor(x: float) -> int:
    # the reference's int(p * B); the epsilon keeps 0.29 * 100 = 28.999999999999996 at 29
    return int(math.floor(x + 1e-9))


def check_noise(noise_kind: str, sigma_scale: str, where: str = "") -> None:
    """Refuse an unknown noise kind / scale, and ``multiplicative`` with ``rms``
    (``auto`` is resolved first: :func:`resolve_sigma_scale`)."""
    pre = f"{where}noise_kind" if where else "noise_kind"
    if noise_kind not in NOISE_KINDS:
        raise ValueError(f"{pre} must be one of {NOISE_KINDS}; got {noise_kind!r}")
    scale = f"{where}sigma_scale" if where else "sigma_scale"
    if sigma_scale not in SIGMA_SCALES:
        raise ValueError(f"{scale} must be one of {SIGMA_SCALES}; got {sigma_scale!r}")
    if noise_kind == "multiplicative" and sigma_scale == "rms":
        raise ValueError(
            f"{scale}='rms' applies to additive noise only; multiplicative noise (one z ~ "
            f"N(0, sigma^2) per sample) is already scale-free: use {scale}='absolute'"
        )


def resolve_sigma_scale(sigma_scale: str, noise_kind: str, at_input: bool) -> str:
    """``"absolute"`` or ``"rms"`` for a configured scale that may be ``"auto"`` (the default).

    ``auto``: absolute σ where noise hits the raw input features (``augment_at: input``: the
    robustness paper's x + N(0, 1) on features, unchanged), σ in units of the clean RMS at any
    representation hook (a submodule, per-modality subnets), where an absolute σ = 1 means
    whatever the representation's scale makes it (docs/fidelity.md). Multiplicative noise is
    scale-free: always absolute.
    """
    if sigma_scale != "auto":
        return sigma_scale
    if noise_kind == "multiplicative" or at_input:
        return "absolute"
    return "rms"


def rms_over_valid(x: Tensor, lengths: Tensor | None = None) -> float:
    """sqrt(mean of x²) over the valid (non-padded) steps and all features of x (B, N, d).

    ``lengths`` (B,) counts the valid steps of front-padded sequences; None = all N are valid.
    """
    B, N, d = x.shape
    x = x.double()
    if lengths is None:
        return float(x.square().mean().sqrt())
    valid = valid_mask(torch.as_tensor(lengths, device=x.device), N)  # (B, N)
    total = (x.square().sum(-1) * valid).sum()
    return float((total / (valid.sum() * d)).sqrt())


def _checked_rms(rms: float) -> float:
    if not (math.isfinite(float(rms)) and float(rms) >= 0.0):
        raise ValueError(f"rms must be a finite number >= 0; got {rms}")
    return float(rms)


class ModalityPerturbation(AugmentLayer):
    """Per batch, make an exact number of samples' target modality missing or noisy (train only).

    Law, for a batch of B samples (train mode; identity in eval mode):

    - k_missing = round(p_missing · B) and k_noise = round(p_noise · B) (``count="round"``:
      rounding half up; ``count="floor"``: truncated, as the reference code's ``int(p · B)``);
      k_noise is capped at B − k_missing.
    - One random permutation of the batch is drawn; its first k_missing samples are "missing": the
      target modality is multiplied by 0 at all time steps. The next k_noise samples are "noisy"
      (see the module docstring for the three kinds of noise). The two sets are disjoint; other
      modalities and other samples pass through unchanged.
    - Additive noise: if ``lengths`` (B,) is given (or a list of them, one per modality), noise
      is added only on the valid steps of the front-padded sequences (the last lengths[b]
      steps), so padding stays zero; without it, all N steps are noised. Multiplicative noise
      keeps zeros at zero by itself.

    The paper's convention is a *total* proportion split in half: "30 %" means
    ``p_missing=0.15, p_noise=0.15``.

    Args:
        p_missing: fraction of each batch whose target modality is zeroed, in [0, 1].
        p_noise: fraction of each batch whose target modality gets noise, in [0, 1];
            p_missing + p_noise <= 1.
        sigma: standard deviation of the noise (>= 0); the paper uses 1. In units of the
            modality's RMS when ``sigma_scale="rms"``; of z when ``noise_kind="multiplicative"``.
        noise_kind: ``"additive"`` (default) or ``"multiplicative"``.
        sigma_scale: ``"absolute"`` (default) or ``"rms"``; with ``"rms"`` the layer needs the
            RMS r of the clean target modality: pass ``rms`` or call :meth:`set_rms` before the
            first training batch (``tune_m3.training`` measures it on the training data).
        rms: r, see ``sigma_scale``.
        count: ``"round"`` (default, half up) or ``"floor"`` (the reference code).
        target: index of the perturbed modality in the list passed to forward (0 = text by this
            project's (text, audio, vision) convention).
        seed: seed of the layer's own ``torch.Generator``; None draws one from torch's global RNG.

    Example::

        robust = ModalityPerturbation(p_missing=0.15, p_noise=0.15, target=0, seed=0)
        m_t, m_a, m_v = robust([m_t, m_a, m_v], lengths)

    Notes:
        The counts are exact per batch, not Bernoulli per sample: a batch of 32 with 0.15 + 0.15
        always has 5 missing and 5 noisy samples (4 + 4 with ``count="floor"``, as in the
        reference code). Small batches round: with B = 4 and p_missing = 0.05 no sample is ever
        perturbed.
    """

    def __init__(
        self,
        p_missing: float = 0.0,
        p_noise: float = 0.0,
        sigma: float = 1.0,
        target: int = 0,
        seed: int | None = None,
        noise_kind: NoiseKind = "additive",
        sigma_scale: SigmaScale = "absolute",
        rms: float | None = None,
        count: CountRule = "round",
    ):
        if not 0.0 <= float(p_missing) <= 1.0:
            raise ValueError(f"p_missing must be in [0, 1]; got {p_missing}")
        if not 0.0 <= float(p_noise) <= 1.0:
            raise ValueError(f"p_noise must be in [0, 1]; got {p_noise}")
        if float(p_missing) + float(p_noise) > 1.0 + 1e-9:
            raise ValueError(
                f"p_missing + p_noise must be <= 1; got {p_missing} + {p_noise} = "
                f"{float(p_missing) + float(p_noise)}"
            )
        if not float(sigma) >= 0.0:
            raise ValueError(f"sigma must be >= 0; got {sigma}")
        if int(target) != target or int(target) < 0:
            raise ValueError(f"target must be a non-negative modality index; got {target}")
        check_noise(noise_kind, sigma_scale)
        if count not in COUNT_RULES:
            raise ValueError(f"count must be one of {COUNT_RULES}; got {count!r}")
        checked_rms = None if rms is None else _checked_rms(rms)
        super().__init__(seed)  # after the checks: an unseeded layer draws its seed only if valid
        self.noise_kind = noise_kind
        self.sigma_scale = sigma_scale
        self.count = count
        self.rms: float | None = checked_rms
        self.p_missing = float(p_missing)
        self.p_noise = float(p_noise)
        self.sigma = float(sigma)
        self.target = int(target)
        # (missing_idx, noisy_idx) of the last perturbing forward call, for inspection
        self.last_indices: tuple[Tensor, Tensor] | None = None

    def set_rms(self, rms: float) -> None:
        """Set r, the RMS of the clean target modality that ``sigma_scale="rms"`` scales by."""
        self.rms = _checked_rms(rms)

    def noise_std(self) -> float:
        """The standard deviation of additive noise (σ, or σ·r with ``sigma_scale="rms"``)."""
        if self.sigma_scale == "absolute":
            return self.sigma
        if self.rms is None:
            raise RuntimeError(
                "sigma_scale='rms' but the layer does not know the modality's RMS yet: pass rms= "
                "or call set_rms() before training (tune_m3.training measures it on the training data)"
            )
        return self.sigma * self.rms

    def counts(self, batch_size: int) -> tuple[int, int]:
        """(k_missing, k_noise) for a batch of ``batch_size`` samples."""
        rule = _round_half_up if self.count == "round" else _floor
        k_missing = min(rule(self.p_missing * batch_size), batch_size)
        k_noise = min(rule(self.p_noise * batch_size), batch_size - k_missing)
        return k_missing, k_noise

    def sample_indices(
        self, batch_size: int, device: torch.device | str = "cpu"
    ) -> tuple[Tensor, Tensor]:
        """Draw (missing_idx, noisy_idx), disjoint index tensors, advancing the generator.

        ``forward`` makes this draw (and records it in ``last_indices``), then draws the noise.
        """
        device = torch.device(device)
        k_missing, k_noise = self.counts(batch_size)
        perm = torch.randperm(batch_size, generator=self.generator(device), device=device)  # (B,)
        return perm[:k_missing], perm[k_missing : k_missing + k_noise]

    def check(self, mods: Sequence[Tensor]) -> None:
        """The base checks, and a ``target`` within the modalities given (both modes)."""
        check_mods(mods)
        if self.target >= len(mods):
            raise ValueError(f"target={self.target} but forward got only {len(mods)} modalities")

    def augment(self, mods: Sequence[Tensor], lengths: Lengths = None) -> list[Tensor]:
        """Perturb the target modality of a list of M tensors (B, N, d_l)."""
        if isinstance(lengths, list | tuple):  # one (B,) tensor (or None) per modality
            lengths = lengths[self.target]
        x = mods[self.target]  # (B, N, d)
        drawn = self.draw(x.shape[0], [m.shape[1] for m in mods], x.device)
        result = list(mods)
        result[self.target] = self.apply_one(drawn, self.target, x, lengths)
        return result

    def draw(self, batch: int, steps: Sequence[int], device: torch.device | str) -> Any:
        """(missing_idx, noisy_idx) of one batch (also ``last_indices``), or None when the
        batch is left as it is (no sample to perturb, or silent noise)."""
        k_missing, k_noise = self.counts(int(batch))
        silent_noise = k_noise == 0 or (self.sigma == 0.0 and self.noise_kind == "additive")
        if k_missing == 0 and silent_noise:
            return None
        self.last_indices = self.sample_indices(int(batch), device)  # (k_missing,), (k_noise,)
        return self.last_indices

    def apply_one(self, drawn: Any, k: int, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Modality ``k`` (B, N, d) under ``drawn`` (:meth:`draw`): changed only if the target."""
        if drawn is None or k != self.target:
            return x
        missing, noisy = drawn
        B, N = x.shape[0], x.shape[1]
        k_noise = int(noisy.numel())
        keep = torch.ones(B, dtype=x.dtype, device=x.device)
        keep[missing] = 0.0
        out = x * keep.view(B, 1, 1)  # missing: m · 0 at every step

        if self.noise_kind == "multiplicative" and k_noise > 0:
            gen = self.generator(x.device)
            z = torch.randn((k_noise,), generator=gen, device=x.device, dtype=x.dtype)  # (k,)
            scale = torch.ones(B, dtype=x.dtype, device=x.device)
            scale[noisy] = z * self.sigma
            out = out * scale.view(B, 1, 1)  # noisy: z · m, z ~ N(0, σ²), one z per sample
        elif k_noise > 0 and self.sigma > 0.0:
            std = self.noise_std()
            gen = self.generator(x.device)
            noise = torch.randn(
                (k_noise, N, x.shape[-1]), generator=gen, device=x.device, dtype=x.dtype
            )  # (k_noise, N, d)
            noise = noise * std
            if lengths is not None:
                lengths = torch.as_tensor(lengths, device=x.device)
                noise = noise * valid_mask(lengths[noisy], N).unsqueeze(-1).to(x.dtype)
            out = out.index_add(0, noisy, noise)  # noisy: m + ε, ε ~ N(0, std²)
        return out

    def extra_repr(self) -> str:
        return (
            f"p_missing={self.p_missing}, p_noise={self.p_noise}, sigma={self.sigma}, "
            f"target={self.target}, seed={self.seed}, noise_kind={self.noise_kind!r}, "
            f"sigma_scale={self.sigma_scale!r}, rms={self.rms}, count={self.count!r}"
        )
