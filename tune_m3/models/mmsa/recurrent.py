"""MMSA's recurrent models that its runner aligns first: EF_LSTM, MFN, Graph_MFN, MFM.

MMSA builds these (``need_model_aligned``) inside ``AMIO``, which runs its ``AlignSubNet``
(``avg_pool``) first: sequences of different step counts are average-pooled to the text's
steps, same-length ones pass untouched. The adapters do the same, with MMSA's own AlignSubNet,
aligned to each batch's text steps (tune_m3 cuts a batch to its longest clip):

- MFN (``need_normalized``): audio and vision averaged over their valid steps, (B, 1, d_l),
  which the AlignSubNet repeats over the text's steps, as in MMSA; so aligned or unaligned
  features both work.
- EF_LSTM, Graph_MFN, MFM (``need_data_aligned: true``: MMSA feeds them word-aligned
  features): unaligned features (step counts differ) are refused with one error line at the
  model check; ``model.need_data_aligned=false`` aligns them with the AlignSubNet instead.

Hooks: ``input`` for all four. MFN's and Graph_MFN's unimodal LSTMCells run once per step (no
per-forward representation of a modality), EF_LSTM fuses the inputs before its LSTM, and MFM's
unimodal encoders feed only its decoders and MMD loss: its prediction comes from the MFN
encoder over the inputs, so a hook at those encoders would not reach the prediction.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tune_m3.errors import UserError
from tune_m3.models.mmsa.base import MMSAModel, dataset_of, import_mmsa, valid_mean

__all__ = ["EF_LSTM", "MFM", "MFN", "Graph_MFN"]


class MMSAAligned(MMSAModel):
    """An MMSA model run as MMSA's AMIO runs it: AlignSubNet (avg_pool), then the model."""

    def __init__(self, input_dims: dict[str, int], dataset: str | None = None, **overrides: Any):
        super().__init__(input_dims, dataset, **overrides)
        from MMSA.models.subNets import AlignSubNet

        dims = SimpleNamespace(feature_dims=self.config["feature_dims"], seq_lens=[1, 1, 1])
        self.align = AlignSubNet(dims, "avg_pool")  # no parameters; dst_len set per batch

    def forward(self, mods: dict[str, Tensor], lengths: dict[str, Tensor]) -> Any:
        text = mods["text"]  # (B, N_T, d_T), front-padded
        if self.config.get("need_normalized"):  # MMSA's loader averages audio and vision
            audio, vision = (valid_mean(mods[m], lengths[m]) for m in ("audio", "vision"))
        else:
            audio, vision = mods["audio"], mods["vision"]
            if self.config["need_data_aligned"]:
                self._refuse_unaligned(text, audio, vision)
        self.align.dst_len = text.shape[1]  # AMIO aligns to the text's steps
        return self.run(*self.align(text, audio, vision))  # (B, N_T, d_l) each

    def run(self, text: Tensor, audio: Tensor, vision: Tensor) -> Any:
        return self.model(text, audio, vision)

    def _refuse_unaligned(self, *xs: Tensor) -> None:
        steps = [x.shape[1] for x in xs]
        if len(set(steps)) > 1:
            name = type(self).__name__
            raise UserError(
                f"model 'mmsa:{name}': MMSA configures {name} for word-aligned features "
                f"(need_data_aligned: true), but the step counts differ (text {steps[0]}, audio "
                f"{steps[1]}, vision {steps[2]}: unaligned features); use aligned features, or "
                "--set model.need_data_aligned=false to average-pool audio and vision to the "
                "text's steps with MMSA's AlignSubNet, as MMSA's AMIO does"
            )


class EF_LSTM(MMSAAligned):  # noqa: N801 (MMSA's name)
    """MMSA's EF_LSTM: the inputs concatenated per step, a BatchNorm over the steps, an LSTM.

    Its ``BatchNorm1d`` has one channel per step, so it takes exactly ``seq_lens`` steps (MMSA
    sets that from its data: 50 for its MOSI/MOSEI pickles, the default here). A batch is
    front-padded with zero steps to that length (tune_m3 cuts batches to their longest clip);
    data with more steps is refused at the model check, naming ``model.seq_lens``.
    """

    mmsa_model, mmsa_key = "EF_LSTM", "ef_lstm"

    def prepare(self, args: Any) -> None:
        steps = args.seq_lens  # MMSA's config: [N_T, N_A, N_V]; AMIO passes the text's
        args.seq_lens = int(steps[0] if isinstance(steps, list | tuple) else steps)

    def run(self, text: Tensor, audio: Tensor, vision: Tensor) -> Any:
        T, n = self.config["seq_lens"], text.shape[1]
        if n > T:
            raise UserError(
                f"model 'mmsa:EF_LSTM': its BatchNorm1d is built for {T} steps (MMSA's seq_lens, "
                f"which MMSA takes from its data), but the data has {n}; --set model.seq_lens={n}"
            )
        return self.model(*(F.pad(x, (0, 0, T - n, 0)) for x in (text, audio, vision)))


class MFN(MMSAAligned):
    """MMSA's MFN (Zadeh et al., AAAI 2018): unimodal LSTMCells, a delta-memory attention
    network over each step's cell states and a multi-view gated memory."""

    mmsa_model, mmsa_key = "MFN", "mfn"


class Graph_MFN(MMSAAligned):  # noqa: N801 (MMSA's name)
    """MMSA's Graph-MFN (Zadeh et al., ACL 2018): MFN with a Dynamic Fusion Graph.

    MMSA keeps the graph's node networks in a plain dict, so they are no parameters of its
    model: MMSA's optimizer never trains them (they keep their random initialisation) and
    ``.to(device)`` does not move them. The adapter registers them (``graph_nodes``: moved to
    the device, checkpointed) and freezes them, as they are in MMSA.
    """

    mmsa_model, mmsa_key = "Graph_MFN", "graph_mfn"

    def __init__(self, input_dims: dict[str, int], dataset: str | None = None, **overrides: Any):
        super().__init__(input_dims, dataset, **overrides)
        nodes = self.model.graph_mfn.networks.values()
        self.graph_nodes = nn.ModuleList(nodes).requires_grad_(False)

    def prepare(self, args: Any) -> None:
        args.device = torch.device("cpu")  # where it builds its graph; .to() moves it later


class MFM(MMSAAligned):
    """MMSA's MFM (Tsai et al., ICLR 2019): an MFN encoder for the prediction, unimodal
    encoders and decoders that reconstruct each modality, an MMD prior on the factors.

    MMSA's model returns ``(pred, gen_loss, mmd_loss, missing_loss)``; the adapter returns
    ``{"M", "gen_loss", "mmd_loss"}`` (``missing_loss`` is a constant 0) and declares
    ``aux_losses = {gen_loss: 1, mmd_loss: lda_mmd}``, MMSA's trainer's sum: L1 + gen_loss
    (already weighted by ``lda_xl/xa/xv``) + lda_mmd · mmd_loss, with ``lda_mmd`` from MMSA's
    config (100 for MOSI, 10 for MOSEI). Its reconstruction targets are the inputs as the model
    receives them, so under M3 a masked step is reconstructed as zeros.
    """

    mmsa_model, mmsa_key = "MFM", "mfm"

    def __init__(self, input_dims: dict[str, int], dataset: str | None = None, **overrides: Any):
        super().__init__(input_dims, dataset, **overrides)
        self.aux_losses = self.default_aux_losses(input_dims, dataset, **overrides)

    @classmethod
    def default_aux_losses(
        cls, input_dims: dict[str, int], dataset: str | None = None, **overrides: Any
    ) -> dict[str, float]:
        """{gen_loss: 1, mmd_loss: lda_mmd} for these dims and overrides (no model built)."""
        _, config = import_mmsa()
        args = config.get_config_regression(cls.mmsa_key, dataset or dataset_of(input_dims))
        return {"gen_loss": 1.0, "mmd_loss": float(overrides.get("lda_mmd", args["lda_mmd"]))}

    def run(self, text: Tensor, audio: Tensor, vision: Tensor) -> dict[str, Tensor]:
        self.model.args.device = text.device  # MFM makes its LSTM states and MMD samples there
        pred, gen_loss, mmd_loss, _ = self.model(text, audio, vision)
        return {"M": pred, "gen_loss": gen_loss, "mmd_loss": mmd_loss}
