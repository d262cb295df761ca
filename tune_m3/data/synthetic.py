"""A synthetic benchmark shaped like CMU-MOSEI / CMU-MOSI, where the papers' effects are measurable.

Everything built here is tagged ``synthetic`` in the store's metadata and, downstream, in every
MLflow run and table. It imitates the *shapes* of the real word-aligned features (split sizes,
L = 50, dims 300/74/35 for MOSEI and 300/5/20 for MOSI at scale 1, front padding, a few
non-finite audio values, labels on the 1/3 grid of [-3, 3]); it is not MOSEI.

Generative model (per sample b; ``docs/data.md`` has the same with the knobs' effects)::

    s_b, u_b, w_b ~ N(0, 1)                 shared sentiment, audio-only cue, vision-only cue
    y_b = q(clip(bias + a_T s_b + a_A u_b + a_V w_b + sigma_y e_b, -3, 3))   q = round to 1/3

    length l_b in [min_len, L]; steps i < L - l_b are padding (all modalities zero)
    text   step i: z = [c_i word_gain s_b + step_noise n_i, nuisance (k_T - 1)]   x_T = z P_T + iso
           c_i ~ Bernoulli(text_sparsity): the few "sentiment words" of the clip
    audio  step i: z = [u_b + step_noise n_i, r^A_b + step_noise n'_i, nuisance]   x_A = z P_A + iso
    vision step i: z = [w_b + step_noise n_i, r^V_b + step_noise n'_i, nuisance]   x_V = z P_V + iso
    r^l_b = rho s_b + sqrt(1 - rho^2) eta^l_b,  eta ~ N(0, 1)   (a per-sample noisy copy of s)

``unaligned=True`` (``synth --unaligned``): audio and vision get UNALIGNED_STEPS (3x, 2x) as many
steps as text, L = 50/150/100, and a clip's valid length scales the same way (the same clip,
sampled faster). Each of their steps carries the same latents as above, so the signal is spread
over more steps; labels, text lengths and per-clip latents equal the aligned set's (same seed).

P_l are fixed random (k_l, d_l) projections, ``iso`` small isotropic noise on every feature, and
the per-step noise averages out over a sequence, so the model must integrate over time.

Why it has the papers' phenomena:
- text is dominant: a_T (``text_strength``) carries most of the label variance, so removing the
  text representation costs far more than removing audio or vision;
- text's evidence is *sparse*, as in real transcripts: only a few steps ("sentiment words",
  ``text_sparsity``) carry it. Masking random time steps of text (M3 at ``timestep``
  granularity) therefore often removes some of the evidence, not a uniform sliver of it;
- audio and vision are *complementary*: u_b and w_b are only in them, so a good model uses them;
- audio and vision are weakly *redundant* with text (``redundancy`` rho, the correlation of
  their copy r_b with s_b): they carry a noisy copy of s_b whose noise, unlike the step noise,
  does not average out over time. A model trained with text always present has no reason to read it; one trained
  with text masked (M3) or perturbed does, which is what lets that training recover part of the
  missing-text loss.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from tune_m3.data.formats import MODALITIES, SPLITS, CanonicalSplit, sanitize_features
from tune_m3.padding import valid_mask

GENERATOR_VERSION = 5

# Published split sizes and feature dims of the word-aligned features (MulT layout).
SHAPES: dict[str, dict] = {
    "mosei": {"sizes": {"train": 16326, "valid": 1871, "test": 4659}, "dims": (300, 74, 35)},
    "mosi": {"sizes": {"train": 1284, "valid": 229, "test": 686}, "dims": (300, 5, 20)},
}


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator. Defaults give MOSEI-like label spread and clear text dominance."""

    like: str = "mosei"  # "mosei" or "mosi": split sizes and dims
    scale: float = 1.0  # multiplies the split sizes (>= 16 samples per split)
    seed: int = 0
    seq_len: int = 50  # L
    min_len: int = 6  # shortest valid sequence
    text_strength: float = 1.1  # a_T: weight of the shared sentiment s in the label
    audio_strength: float = 0.26  # a_A: weight of the audio-only cue
    vision_strength: float = 0.22  # a_V: weight of the vision-only cue
    redundancy: float = 0.8  # rho in [0, 1]: correlation of audio's/vision's copy of s with s
    step_noise: float = 1.5  # per-step noise on every latent signal
    text_sparsity: float = 1.0  # fraction of text steps that carry the sentiment ("words")
    word_gain: float = 1.0  # strength of the sentiment on those steps
    label_noise: float = 0.15  # sigma_y: label noise no modality explains
    label_bias: float = 0.15  # MOSEI skews slightly positive
    feature_noise: float = 0.05  # iso: isotropic noise on every feature
    nonfinite_rate: float = 2e-6  # fraction of audio values set to -inf/NaN (like real MOSEI)
    unaligned: bool = False  # audio/vision get UNALIGNED_STEPS x as many steps as text

    def __post_init__(self) -> None:
        for f in fields(self):  # `--text-strength nan` must not write NaN labels
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{f.name} must be a finite number, got {v}")
        if self.like not in SHAPES:
            raise ValueError(f"like must be one of {sorted(SHAPES)}, got {self.like!r}")
        if not 0 < self.scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {self.scale}")
        if not 0 < self.text_sparsity <= 1:
            raise ValueError(f"text_sparsity must be in (0, 1], got {self.text_sparsity}")
        if not 0 <= self.redundancy <= 1:
            raise ValueError(f"redundancy must be in [0, 1], got {self.redundancy}")
        if not 1 <= self.min_len <= self.seq_len:
            raise ValueError("need 1 <= min_len <= seq_len")

    @property
    def default_name(self) -> str:
        base = f"synth_{self.like}" + ("_unaligned" if self.unaligned else "")
        return base if self.scale == 1 else f"{base}_x{self.scale:g}"

    def seq_lens(self) -> dict[str, int]:
        """Steps per modality: ``seq_len`` for all, or times UNALIGNED_STEPS when unaligned."""
        return {m: self.seq_len * (UNALIGNED_STEPS[m] if self.unaligned else 1) for m in MODALITIES}

    def sizes(self) -> dict[str, int]:
        return {s: max(16, round(n * self.scale)) for s, n in SHAPES[self.like]["sizes"].items()}

    def fingerprint(self) -> str:
        d = asdict(self)
        if not d["unaligned"]:  # aligned datasets keep the fingerprint they had before the option
            del d["unaligned"]
        blob = json.dumps({"v": GENERATOR_VERSION, **d}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


_LATENT = {"text": 12, "audio": 8, "vision": 8}  # k_l: latent dims per step before projection
# --unaligned: steps per text step (MOSEI scale: text 50, audio 150, vision 100). MulT's noalign
# MOSEI has 50/500/500; 3x/2x keeps tests and the demo fast while the rates still differ.
UNALIGNED_STEPS = {"text": 1, "audio": 3, "vision": 2}
_CHUNK = 2048  # samples generated at once (bounds temporary memory)


def _projections(cfg: SynthConfig, dims: tuple[int, ...]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([cfg.seed, 7919])
    out = {}
    for m, d in zip(MODALITIES, dims, strict=True):
        k = _LATENT[m]
        p = rng.standard_normal((k, d)).astype(np.float32)
        out[m] = p / np.linalg.norm(p, axis=1, keepdims=True)  # each latent direction unit-norm
    return out


def _split(cfg: SynthConfig, split: str, n: int, proj: dict[str, np.ndarray]) -> CanonicalSplit:
    """One split. Unaligned: modality m has ``UNALIGNED_STEPS[m]`` steps per text step, and a
    sample's valid length scales the same way (the same clip, sampled at a higher rate); audio
    and vision carry the same latent per step, so their time average is just less noisy."""
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split)])
    steps = cfg.seq_lens()
    # per-sample latents and label
    s, u, w, e, eta_a, eta_v = rng.standard_normal((6, n)).astype(np.float32)
    rho = cfg.redundancy
    copy_of_s = {  # r^l_b: what audio / vision know of the shared sentiment
        "audio": rho * s + np.sqrt(1 - rho**2) * eta_a,
        "vision": rho * s + np.sqrt(1 - rho**2) * eta_v,
    }
    y = cfg.label_bias + cfg.text_strength * s + cfg.audio_strength * u + cfg.vision_strength * w
    y = np.clip(y + cfg.label_noise * e, -3, 3)
    y = (np.round(y * 3) / 3).astype(np.float32)
    lengths = rng.integers(cfg.min_len, cfg.seq_len + 1, size=n).astype(np.int32)
    lens = {m: lengths * (steps[m] // cfg.seq_len) for m in MODALITIES}  # (n,) per modality

    feats = {m: np.empty((n, steps[m], p.shape[1]), np.float32) for m, p in proj.items()}
    for lo in range(0, n, _CHUNK):
        hi = min(n, lo + _CHUNK)
        b = hi - lo
        own = {"text": s[lo:hi], "audio": u[lo:hi], "vision": w[lo:hi]}
        for m, p in proj.items():
            k, d = p.shape
            L = steps[m]
            valid = valid_mask(lens[m][lo:hi], L).astype(np.float32)  # (b, L)
            z = rng.standard_normal((b, L, k), dtype=np.float32)  # nuisance + step noise
            if m == "text":
                words = rng.random((b, L), dtype=np.float32) < cfg.text_sparsity  # (b, L)
                z[..., 0] = words * (cfg.word_gain * own[m][:, None]) + cfg.step_noise * z[..., 0]
            else:
                z[..., 0] = own[m][:, None] + cfg.step_noise * z[..., 0]
                z[..., 1] = copy_of_s[m][lo:hi, None] + cfg.step_noise * z[..., 1]
            x = z @ p  # (b, L, d)
            x += cfg.feature_noise * rng.standard_normal((b, L, d), dtype=np.float32)
            x *= valid[..., None]  # front padding
            feats[m][lo:hi] = x
    # a few non-finite audio values, as in the real MOSEI audio; sanitized below like an import
    n_bad = rng.binomial(feats["audio"].size, cfg.nonfinite_rate)
    if n_bad:
        flat = feats["audio"].reshape(-1)
        idx = rng.choice(flat.size, size=n_bad, replace=False)
        flat[idx] = np.where(rng.random(n_bad) < 0.5, -np.inf, np.nan).astype(np.float32)
    replaced = {}
    for m in MODALITIES:
        feats[m], replaced[m] = sanitize_features(feats[m])
    return CanonicalSplit(
        features=feats,
        labels=y,
        ids=np.array([f"synth_{split}_{i}" for i in range(n)]),
        lengths=lengths,
        nonfinite_replaced=replaced,
        modality_lengths=lens if cfg.unaligned else {},
    )


def generate(cfg: SynthConfig, progress: bool = False) -> dict[str, CanonicalSplit]:
    """All three splits of the synthetic benchmark for ``cfg`` (deterministic per seed)."""
    dims = SHAPES[cfg.like]["dims"]
    proj = _projections(cfg, dims)
    out = {}
    for split, n in cfg.sizes().items():
        if progress:
            shape = "/".join(str(v) for v in cfg.seq_lens().values())
            print(f"  generating {split}: {n} samples x {shape} steps", flush=True)
        out[split] = _split(cfg, split, n, proj)
    return out
