"""MMSA's fusion models over pooled or convolved features: TFN, LMF, LF_DNN, MulT.

TFN, LMF and LF_DNN (MMSA's ``need_normalized``) get what MMSA's data loader gives them: audio
and vision averaged over their valid steps, (B, 1, d_l); text as is, (B, N_T, d_T). Each has
unimodal subnets (``text_subnet``, ``audio_subnet``, ``video_subnet``, each giving a pooled
(B, h_l) vector), so M3 / perturbation act there by default. MulT runs from the feature
sequences (``use_bert`` false); it has no such subnet, so M3 acts at its input.
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F

from tune_m3.models.mmsa.base import MMSAModel, valid_mean
from tune_m3.names import MODALITIES

__all__ = ["LF_DNN", "LMF", "TFN", "MulT"]

SUBNET_HOOKS = "text=model.text_subnet,audio=model.audio_subnet,vision=model.video_subnet"


class MMSAPooled(MMSAModel):
    """An MMSA model with ``need_normalized``: forward(text (B,N,d), audio (B,1,d), vision (B,1,d))."""

    augment_at = SUBNET_HOOKS

    def forward(self, mods: dict[str, Tensor], lengths: dict[str, Tensor]) -> dict[str, Tensor]:
        pooled = [valid_mean(mods[m], lengths[m]) for m in ("audio", "vision")]  # (B, 1, d_l)
        return self.model(mods["text"], *pooled)


class TFN(MMSAPooled):
    """MMSA's TFN (Zadeh et al., EMNLP 2017): subnets, then the tensor (outer-product) fusion."""

    mmsa_model, mmsa_key = "TFN", "tfn"


class LMF(MMSAPooled):
    """MMSA's LMF (Liu et al., ACL 2018): subnets, then low-rank multimodal fusion."""

    mmsa_model, mmsa_key = "LMF", "lmf"


class LF_DNN(MMSAPooled):  # noqa: N801 (MMSA's name)
    """MMSA's LF_DNN: the same subnets, late fusion by concatenation and an MLP."""

    mmsa_model, mmsa_key = "LF_DNN", "lf_dnn"


class MulT(MMSAModel):
    """MMSA's MULT (Tsai et al., ACL 2019) from feature sequences (``use_bert`` false): it has
    no unimodal subnet whose output is a batch-first representation (its projections are
    channel-first Conv1d outputs), so M3 acts at its input."""

    mmsa_model, mmsa_key = "MULT", "mult"
    augment_at = "input"

    def forward(self, mods: dict[str, Tensor], lengths: dict[str, Tensor]) -> dict[str, Tensor]:
        # its Conv1d projections (kernel k, no padding) need k steps: a batch of short clips
        # (batches are cut to their longest clip) gets zero steps in front, as front padding
        k = max(self.config[f"conv1d_kernel_size_{c}"] for c in "lav")
        xs = [F.pad(mods[m], (0, 0, max(0, k - mods[m].shape[1]), 0)) for m in MODALITIES]
        return self.model(*xs)  # (B, max(N_l, k), d_l) each, front-padded
