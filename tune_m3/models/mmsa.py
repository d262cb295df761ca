"""Built-in names ``mmsa:<Model>``: models of the MMSA toolkit (PyPI ``mmsa`` 2.2.1), unmodified.

The models' code is imported from the installed package (``pip install -e .[mmsa]``), never
copied. An adapter builds MMSA's model from MMSA's own ``config_regression.json`` defaults for
the dataset's shape (``mosi`` or ``mosei``: taken from the audio width, 74 = MOSEI, or
``model.dataset``), with ``feature_dims`` from the data and every other key overridable as
``model.<key>`` (``--set model.post_fusion_dim=32``). It feeds MMSA's ``forward(text, audio,
vision)`` what MMSA's data loader would: for models with ``need_normalized`` (TFN, LMF) audio
and vision averaged over their valid steps, (B, 1, d_l); text as is, (B, N_T, d_T). The
prediction is MMSA's ``M`` (``output_key``).

Hooks (``augment_at``): TFN, LMF and LF_DNN have unimodal subnets (``text_subnet``, ``audio_subnet``,
``video_subnet``, each giving a pooled (B, h_l) vector), so M3 / perturbation act there by
default: ``text=model.text_subnet,audio=model.audio_subnet,vision=model.video_subnet``.
MulT has none (its projections are channel-first Conv1d outputs): ``input``.

Nothing touches the network: MMSA's import pulls ``transformers`` but loads no weights; the
models that need BERT weights (downloaded at run time) are refused with one line.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tune_m3.errors import UserError
from tune_m3.names import MODALITIES
from tune_m3.padding import valid_mask

__all__ = ["ADAPTERS", "mmsa_class"]

PREFIX = "mmsa:"
INSTALL = "pip install -e '.[mmsa]' (or pip install mmsa==2.2.1)"
# MMSA regression models that need pretrained BERT weights (downloaded when built)
NEEDS_BERT = {
    "BERT_MAG": "its text encoder is BERT",
    "MISA": "its text encoder is BERT (use_bert: true in MMSA's config)",
    "Self_MM": "its text encoder is BERT",
    "MMIM": "its text encoder is BERT",
}
SUBNET_HOOKS = "text=model.text_subnet,audio=model.audio_subnet,vision=model.video_subnet"


def _import_mmsa() -> Any:
    """MMSA's ``models.singleTask`` and ``config`` modules; UserError if MMSA is not installed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # MMSA imports transformers: never go online
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from MMSA import config
        from MMSA.models import singleTask
    except ImportError as err:
        raise UserError(
            f"'mmsa:' models need the MMSA package ({err}); install the extra: {INSTALL}"
        ) from None
    return singleTask, config


def _dataset_of(input_dims: dict[str, int]) -> str:
    return "mosei" if input_dims["audio"] == 74 else "mosi"


class MMSAPooled(nn.Module):
    """An MMSA model with ``need_normalized``: forward(text (B,N,d), audio (B,1,d), vision (B,1,d)).

    Subclasses name the MMSA class (``mmsa_model``) and its config key (``mmsa_key``).
    """

    mmsa_model = ""
    mmsa_key = ""
    output_key = "M"
    augment_at = SUBNET_HOOKS

    def __init__(self, input_dims: dict[str, int], dataset: str | None = None, **overrides: Any):
        super().__init__()
        single, config = _import_mmsa()
        args = config.get_config_regression(self.mmsa_key, dataset or _dataset_of(input_dims))
        unknown = sorted(set(overrides) - set(args))
        if unknown:
            raise TypeError(
                f"{self.mmsa_model} has no config key(s) {unknown}; MMSA's keys: "
                f"{', '.join(sorted(args))}"
            )
        args.update(overrides)
        args.feature_dims = [input_dims[m] for m in MODALITIES]  # MMSA: (text, audio, vision)
        args.train_mode = "regression"
        self.config = dict(args)  # what MMSA's model was built from (for inspection)
        self.model = getattr(single, self.mmsa_model)(args)

    def forward(self, mods: dict[str, Tensor], lengths: dict[str, Tensor]) -> dict[str, Tensor]:
        pooled = []
        for m in ("audio", "vision"):
            x = mods[m]  # (B, N_l, d_l), front-padded
            valid = valid_mask(lengths[m], x.shape[1]).unsqueeze(-1).to(x.dtype)  # (B, N_l, 1)
            mean = (x * valid).sum(1) / lengths[m].clamp(min=1).unsqueeze(-1).to(x.dtype)
            pooled.append(mean.unsqueeze(1))  # (B, 1, d_l): MMSA's time-averaged features
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


class MulT(MMSAPooled):
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


ADAPTERS: dict[str, type[nn.Module]] = {"TFN": TFN, "LMF": LMF, "LF_DNN": LF_DNN, "MulT": MulT}
NOT_YET = ("EF_LSTM", "MFN", "Graph_MFN", "MFM", "MCTN")
# multi-task models whose MMSA config has CH-SIMS only (they train on unimodal labels)
SINGLE_TASK = {"MLF_DNN": "LF_DNN", "MTFN": "TFN", "MLMF": "LMF"}
SIMS_ONLY = tuple(SINGLE_TASK)


def mmsa_class(spec: str) -> type[nn.Module]:
    """The adapter class of ``mmsa:<Model>``; UserError for BERT models, unknown names, no MMSA."""
    name = spec[len(PREFIX) :]
    if name in NEEDS_BERT:
        raise UserError(
            f"model '{spec}': not offered: {NEEDS_BERT[name]}, whose pretrained weights would be "
            "downloaded at run time; tune_m3 runs from pre-extracted features without network "
            f"access. Use one of {', '.join(PREFIX + n for n in ADAPTERS)}"
        )
    if name in SIMS_ONLY:
        raise UserError(
            f"model '{spec}': not offered: MMSA configures it for CH-SIMS only (it trains on "
            "unimodal labels, which CMU-MOSI/MOSEI do not have); use its single-task form, "
            f"e.g. {PREFIX}{SINGLE_TASK[name]}"
        )
    if name not in ADAPTERS:
        near = difflib.get_close_matches(name, [*ADAPTERS, *NOT_YET], n=1, cutoff=0.6)
        hint = f" (did you mean '{PREFIX}{near[0]}'?)" if near else ""
        later = f"; {name} is not adapted yet" if name in NOT_YET else ""
        raise UserError(
            f"model '{spec}': not an MMSA model tune_m3 offers{hint}{later}; offered: "
            f"{', '.join(PREFIX + n for n in ADAPTERS)}"
        )
    _import_mmsa()  # a missing extra is one line here, at the check, not in a trial
    return ADAPTERS[name]


def parameter_count(spec: str, input_dims: dict[str, int]) -> int:
    """Trainable parameters of ``mmsa:<Model>`` at ``input_dims`` (for docs and ``-m tune_m3.models``)."""
    with torch.random.fork_rng(devices=[]):
        net = mmsa_class(spec)(input_dims)
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
