"""Built-in names ``mmsa:<Model>``: models of the MMSA toolkit (PyPI ``mmsa`` 2.2.1), unmodified.

The models' code is imported from the installed package (``pip install -e .[mmsa]``), never
copied. An adapter builds MMSA's model from MMSA's own ``config_regression.json`` defaults for
the dataset's shape (``mosi`` or ``mosei``: taken from the audio width, 74 = MOSEI, or
``model.dataset``), with ``feature_dims`` from the data and every other key overridable as
``model.<key>`` (``--set model.post_fusion_dim=32``), and feeds MMSA's ``forward(text, audio,
vision)`` what MMSA's data loader and runner would. The prediction is MMSA's ``M``
(``output_key``). One module per family:

- :mod:`.fusion`: TFN, LMF, LF_DNN (audio and vision time-averaged, M3 at their unimodal
  subnets: ``text=model.text_subnet,audio=model.audio_subnet,vision=model.video_subnet``) and
  MulT (feature sequences, M3 at the ``input``).
- :mod:`.recurrent`: EF_LSTM, MFN, Graph_MFN, MFM, aligned first as MMSA's ``AMIO`` does
  (EF_LSTM, Graph_MFN and MFM refuse unaligned features unless ``model.need_data_aligned``
  is false), M3 at the ``input``; MFM declares its auxiliary losses (``aux_losses``).

Refused with one line: the models that need BERT weights (downloaded at run time), the CH-SIMS
multi-task models, and MCTN (below). Nothing touches the network: MMSA's import pulls
``transformers`` but loads no weights.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from tune_m3.errors import UserError
from tune_m3.models.mmsa.base import INSTALL, import_mmsa
from tune_m3.models.mmsa.fusion import LF_DNN, LMF, TFN, MulT
from tune_m3.models.mmsa.recurrent import EF_LSTM, MFM, MFN, Graph_MFN

__all__ = ["ADAPTERS", "INSTALL", "mmsa_class", "parameter_count"]

PREFIX = "mmsa:"
ADAPTERS: dict[str, type[nn.Module]] = {
    "TFN": TFN,
    "LMF": LMF,
    "LF_DNN": LF_DNN,
    "MulT": MulT,
    "EF_LSTM": EF_LSTM,
    "MFN": MFN,
    "Graph_MFN": Graph_MFN,
    "MFM": MFM,
}
# MMSA regression models that need pretrained BERT weights (downloaded when built)
NEEDS_BERT = {
    "BERT_MAG": "its text encoder is BERT",
    "MISA": "its text encoder is BERT (use_bert: true in MMSA's config)",
    "Self_MM": "its text encoder is BERT",
    "MMIM": "its text encoder is BERT",
}
# multi-task models whose MMSA config has CH-SIMS only (they train on unimodal labels)
SINGLE_TASK = {"MLF_DNN": "LF_DNN", "MTFN": "TFN", "MLMF": "LMF"}
# MMSA models that run but cannot be trained per sample
NOT_PER_SAMPLE = {
    "MCTN": (
        "MMSA 2.2.1's MCTN runs its LSTMs along the batch axis (time-first nn.LSTMs given "
        "batch-first tensors), so a sample's prediction depends on the other samples of its "
        "batch; tune_m3's evaluation and diagnostics need one prediction per sample"
    ),
}


def _offered() -> str:
    return ", ".join(PREFIX + n for n in ADAPTERS)


def mmsa_class(spec: str) -> type[nn.Module]:
    """The adapter class of ``mmsa:<Model>``; UserError for a refused or unknown name, no MMSA."""
    name = spec[len(PREFIX) :]
    if name in NEEDS_BERT:
        raise UserError(
            f"model '{spec}': not offered: {NEEDS_BERT[name]}, whose pretrained weights would be "
            "downloaded at run time; tune_m3 runs from pre-extracted features without network "
            f"access. Use one of {_offered()}"
        )
    if name in SINGLE_TASK:
        raise UserError(
            f"model '{spec}': not offered: MMSA configures it for CH-SIMS only (it trains on "
            "unimodal labels, which CMU-MOSI/MOSEI do not have); use its single-task form, "
            f"e.g. {PREFIX}{SINGLE_TASK[name]}"
        )
    if name in NOT_PER_SAMPLE:
        raise UserError(
            f"model '{spec}': not offered: {NOT_PER_SAMPLE[name]}. Use one of {_offered()}"
        )
    if name not in ADAPTERS:
        near = difflib.get_close_matches(name, list(ADAPTERS), n=1, cutoff=0.6)
        hint = f" (did you mean '{PREFIX}{near[0]}'?)" if near else ""
        raise UserError(
            f"model '{spec}': not an MMSA model tune_m3 offers{hint}; offered: {_offered()}"
        )
    import_mmsa()  # a missing extra is one line here, at the check, not in a trial
    return ADAPTERS[name]


def parameter_count(spec: str, input_dims: dict[str, int]) -> int:
    """Trainable parameters of ``mmsa:<Model>`` at ``input_dims`` (for docs and ``-m tune_m3.models``)."""
    with torch.random.fork_rng(devices=[]):
        net = mmsa_class(spec)(input_dims)
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
