"""The M3 paper's baseline: per-modality Bi-LSTM + self-attention, symmetric cross-modal attention.

Reference: Georgiou, Paraskevopoulos, Potamianos, "M3: MultiModal Masking applied to sentiment
analysis", Interspeech 2021, sec. 2.1 and Fig. 1. Top to bottom:

    x_T, x_A, x_V            (B, N, D_l)   word-aligned features, FRONT-padded with zeros
    DNN-I, per modality l:   Bi-LSTM -> (B, N, 2h) -> scaled dot-product self-attention -> m_l (B, N, d)
    (M3 acts here: the input of ``fusion``, this model's default ``augment_at``)
    DNN-II (``fusion``):     four symmetric cross-attentions  m_TA, m_TV, m_AV, m_TAV  (B, N, d)
                             m~ = m_T | m_A | m_V | m_TAV | m_AV | m_TV | m_TA        (B, N, 7d)
                             Bi-LSTM -> last state of both directions (B, 2h) -> dropout -> linear
    output                   (B,) one sentiment score per sample

Design choices where the paper leaves room (with the paper's sizes h = hidden = 100, d = proj = 100):

- d = proj. "All projection sizes for the attention modules are set to 100": the self-attention
  projects the 2h = 200 Bi-LSTM features to queries, keys and values of size proj, so m_l has
  d = proj = 100 features, and every cross-attention works in that width (its residual "+ m_k"
  needs V_l to have d features). All attention projections are bias-free, as in the authors' code.
- Cross-attention modules own their projections (6 matrices each: W^Q, W^K, W^V for both sides).
  m_TAV is symmetric like the others: text with the audio-visual m_AV.
- Dropout (0.2) acts on the encoders' Bi-LSTM outputs, between stacked LSTM layers, and on the
  final summary before the linear layer; attention weights are not dropped by default. The
  authors' code also drops every attention matrix (after the softmax) at the model's dropout
  rate: ``attn_dropout=0.2`` gives that.
- Initialisation is PyTorch's default; the authors' code re-initialises every attention
  projection (W^Q, W^K, W^V, self- and cross-attention) with Xavier-uniform: ``init="xavier"``.
- With MOSEI dims (300, 74, 35) this gives 1,633,801 parameters, the same count as the authors'
  implementation (which instead sums the two LSTM directions to d = 100, makes m_TAV one-sided and
  pools the last Bi-LSTM with attention; the differences cancel exactly).

Padding: sequences are front-padded (valid steps are the last lengths[b] of N). Padded steps get
no attention weight (key-padding mask) and their outputs are zeroed. The Bi-LSTMs are exact under
padding without packing: each direction is run over a re-indexed copy of the batch in which the
valid steps come first (a per-sample roll for the forward direction, a time flip for the backward
one), so no direction ever reads a padded step before a valid one. The summary takes the forward
state at t = N - 1 and the backward state at t = N - lengths[b] (the first valid step): both have
read exactly the valid steps. A padded batch therefore gives the same predictions as the unpadded
sequences, up to float rounding.

Kernels: Linear layers, dropout and attention dropout come from :mod:`tune_m3.models.layers`
(same parameters and function as ``nn.Linear`` / ``nn.Dropout`` / SDPA, faster on CPU); each
attention side computes its Q, K, V with one product of the stacked weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tune_m3.models.layers import Dropout, Linear, attend, project
from tune_m3.names import MODALITIES as MODALITY_NAMES
from tune_m3.padding import valid_mask


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of :class:`M3Baseline`. Defaults are the paper's (sec. 3).

    Args:
        input_dims: feature sizes (D_T, D_A, D_V), in (text, audio, vision) order; exactly 3.
            CMU-MOSEI: (300, 74, 35); CMU-MOSI (MulT features): (300, 5, 20).
        hidden: Bi-LSTM hidden size per direction (h).
        proj: attention projection size; also the width d of m_l and of the cross-modal features.
        dropout: drop rate, in [0, 1).
        num_layers: stacked layers of every Bi-LSTM.
    """

    input_dims: tuple[int, ...]
    hidden: int = 100
    proj: int = 100
    dropout: float = 0.2
    num_layers: int = 1

    def __post_init__(self) -> None:
        dims = tuple(self.input_dims)
        if len(dims) != 3:
            raise ValueError(
                f"input_dims must have exactly 3 entries (text, audio, vision); got {dims}"
            )
        if any(int(d) != d or int(d) < 1 for d in dims):
            raise ValueError(f"input_dims must be positive integers; got {dims}")
        object.__setattr__(self, "input_dims", tuple(int(d) for d in dims))
        for name in ("hidden", "proj", "num_layers"):
            value = getattr(self, name)
            if int(value) != value or int(value) < 1:
                raise ValueError(f"{name} must be a positive integer; got {value}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")

    @property
    def d(self) -> int:
        """Width of each modality representation m_l (= proj)."""
        return self.proj


# -------------------------------------------------------------------------------------------------
# padding helpers (front padding: the valid steps of sample b are t >= N - lengths[b])


def _valid(lengths: Tensor | None, n: int) -> Tensor | None:
    """(B, N, 1) float-able mask of valid steps, or None when every step is valid."""
    if lengths is None:
        return None
    return valid_mask(lengths, n).unsqueeze(-1)  # (B, N, 1)


def _take(x: Tensor, index: Tensor) -> Tensor:
    """x[b, index[b, t], :] for x (B, N, D) and index (B, N)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


# -------------------------------------------------------------------------------------------------
# building blocks


class BiLSTM(nn.Module):
    """A bidirectional LSTM that is exact on front-padded batches, without packing.

    Same parameters as ``nn.LSTM(input_size, hidden, num_layers, bidirectional=True)``; with
    ``lengths=None`` it computes the same function. With ``lengths`` each direction reads only
    valid steps before producing its valid outputs (see the module docstring); outputs at padded
    steps are zero.
    """

    def __init__(self, input_size: int, hidden: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        sizes = [input_size] + [2 * hidden] * (num_layers - 1)
        self.hidden = hidden
        self.fwd = nn.ModuleList(nn.LSTM(s, hidden, batch_first=True) for s in sizes)
        self.bwd = nn.ModuleList(nn.LSTM(s, hidden, batch_first=True) for s in sizes)
        self.drop = Dropout(dropout)  # between stacked layers, like nn.LSTM(dropout=...)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        B, N, _ = x.shape  # (B, N, D)
        valid = _valid(lengths, N)
        if lengths is not None:
            t = torch.arange(N, device=x.device)
            pad = (N - lengths).unsqueeze(1)  # (B, 1) padded steps in front
            to_left = (t + pad) % N  # (B, N) roll each sample so its valid steps come first
            from_left = (t - pad) % N  # (B, N) and back
        for i, (lstm_f, lstm_b) in enumerate(zip(self.fwd, self.bwd, strict=True)):
            if i > 0:
                x = self.drop(x)
            if lengths is None:
                h_f, _ = lstm_f(x)  # (B, N, h)
            else:
                h_f, _ = lstm_f(_take(x, to_left))
                h_f = _take(h_f, from_left)
            # flipping a front-padded sequence puts its valid steps first, in reverse order
            h_b, _ = lstm_b(x.flip(1))
            h_b = h_b.flip(1)  # (B, N, h)
            x = torch.cat([h_f, h_b], dim=-1)  # (B, N, 2h)
            if valid is not None:
                x = x * valid
        return x


def _attend(q: Tensor, k: Tensor, v: Tensor, valid: Tensor | None, p_drop: float = 0.0) -> Tensor:
    """softmax(Q K^T / sqrt(d_k)) V with padded keys excluded; q, k (B, N, d_k), v (B, N, d_v).

    ``p_drop`` > 0 drops attention weights after the softmax (training only; from torch's
    global RNG, see :mod:`tune_m3.models.layers`).
    """
    mask = None if valid is None else valid.transpose(1, 2)  # (B, 1, N): True = key takes part
    return attend(q, k, v, mask, p_drop)  # (B, N, d_v)


class SelfAttention(nn.Module):
    """Scaled dot-product self-attention: m = softmax(Q K^T / sqrt(proj)) V, (B, N, proj)."""

    def __init__(self, d_in: int, proj: int, attn_dropout: float = 0.0):
        super().__init__()
        self.q = Linear(d_in, proj, bias=False)
        self.k = Linear(d_in, proj, bias=False)
        self.v = Linear(d_in, proj, bias=False)
        self.attn_dropout = attn_dropout

    def forward(self, x: Tensor, valid: Tensor | None) -> Tensor:
        p = self.attn_dropout if self.training else 0.0
        q, k, v = project(x, self.q, self.k, self.v)  # each (B, N, proj)
        out = _attend(q, k, v, valid, p)  # (B, N, proj)
        return out if valid is None else out * valid


class SymmetricCrossAttention(nn.Module):
    """Symmetric cross-modal attention (paper eq. 1-2), for modalities k != l of width d:

        a_kl = softmax(Q_k K_l^T / sqrt(d)) V_l + m_k      Q_k = m_k W^Q_k, K_l = m_l W^K_l, ...
        m_kl = a_kl + a_lk                                  (B, N, d)

    Queries come from one modality, keys and values from the other, and the residual is the
    query side's own representation.
    """

    def __init__(self, d: int, attn_dropout: float = 0.0):
        super().__init__()
        self.q_k, self.k_k, self.v_k = (Linear(d, d, bias=False) for _ in range(3))
        self.q_l, self.k_l, self.v_l = (Linear(d, d, bias=False) for _ in range(3))
        self.attn_dropout = attn_dropout

    def forward(self, m_k: Tensor, m_l: Tensor, valid: Tensor | None) -> Tensor:
        p = self.attn_dropout if self.training else 0.0
        q_k, k_k, v_k = project(m_k, self.q_k, self.k_k, self.v_k)  # each (B, N, d)
        q_l, k_l, v_l = project(m_l, self.q_l, self.k_l, self.v_l)
        a_kl = _attend(q_k, k_l, v_l, valid, p) + m_k  # (B, N, d)
        a_lk = _attend(q_l, k_k, v_k, valid, p) + m_l  # (B, N, d)
        m_kl = a_kl + a_lk
        return m_kl if valid is None else m_kl * valid


class Encoder(nn.Module):
    """DNN-I for one modality: Bi-LSTM, dropout, self-attention. (B, N, D_l) -> (B, N, d)."""

    def __init__(self, d_in: int, cfg: ModelConfig, attn_dropout: float = 0.0):
        super().__init__()
        self.rnn = BiLSTM(d_in, cfg.hidden, cfg.num_layers, cfg.dropout)
        self.drop = Dropout(cfg.dropout)
        self.attn = SelfAttention(2 * cfg.hidden, cfg.proj, attn_dropout)

    def forward(self, x: Tensor, lengths: Tensor | None, valid: Tensor | None) -> Tensor:
        h = self.drop(self.rnn(x, lengths))  # (B, N, 2h)
        return self.attn(h, valid)  # (B, N, d)


# -------------------------------------------------------------------------------------------------
# the model


class Fusion(nn.Module):
    """DNN-II: [m_T, m_A, m_V] (B, N, d) -> predictions (B,). The baseline's default ``augment_at``.

    Four symmetric cross-attentions, concatenation to (B, N, 7d), a Bi-LSTM and a linear head.
    ``lengths`` (B,) or None; lengths all equal to N are treated as None (same numbers, no mask).
    """

    def __init__(self, cfg: ModelConfig, attn_dropout: float = 0.0):
        super().__init__()
        d = cfg.d
        self.hidden = cfg.hidden
        self.cross_ta = SymmetricCrossAttention(d, attn_dropout)
        self.cross_tv = SymmetricCrossAttention(d, attn_dropout)
        self.cross_av = SymmetricCrossAttention(d, attn_dropout)
        self.cross_tav = SymmetricCrossAttention(d, attn_dropout)
        self.fusion_rnn = BiLSTM(7 * d, cfg.hidden, cfg.num_layers, cfg.dropout)
        self.drop = Dropout(cfg.dropout)
        self.head = Linear(2 * cfg.hidden, 1)

    def forward(self, reps: Sequence[Tensor], lengths: Tensor | None = None) -> Tensor:
        m_t, m_a, m_v = reps  # each (B, N, d)
        B, N, _ = m_t.shape
        lengths = _check_lengths(lengths, B, N, m_t.device)
        valid = _valid(lengths, N)
        m_ta = self.cross_ta(m_t, m_a, valid)
        m_tv = self.cross_tv(m_t, m_v, valid)
        m_av = self.cross_av(m_a, m_v, valid)
        m_tav = self.cross_tav(m_t, m_av, valid)
        fused = torch.cat([m_t, m_a, m_v, m_tav, m_av, m_tv, m_ta], dim=-1)  # (B, N, 7d)
        if valid is not None:
            fused = fused * valid  # whatever augmentation left on padded steps is dropped
        h = self.fusion_rnn(fused, lengths)  # (B, N, 2h)
        H = self.hidden
        # padding is in front: the forward direction has read every valid step at t = N - 1,
        # the backward direction at the first valid step t = N - lengths[b]
        h_fwd = h[:, -1, :H]  # (B, h)
        first = (
            torch.zeros(B, dtype=torch.long, device=h.device) if lengths is None else N - lengths
        )
        h_bwd = h[torch.arange(B, device=h.device), first, H:]  # (B, h)
        m_o = self.drop(torch.cat([h_fwd, h_bwd], dim=-1))  # (B, 2h)
        return self.head(m_o).squeeze(-1)  # (B,)


def _check_lengths(lengths: Tensor | Sequence[int] | None, B: int, N: int, device) -> Tensor | None:
    """lengths as a long tensor on ``device``, or None when absent or all equal to N."""
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths, device=device).long()
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},); got {tuple(lengths.shape)}")
    lo, hi = torch.stack(torch.aminmax(lengths)).tolist()  # one device sync
    if lo < 1 or hi > N:
        raise ValueError(f"lengths must be in [1, {N}] (N = sequence length); got [{lo}, {hi}]")
    return None if lo == N else lengths


def _as_list(mods: Mapping[str, Tensor] | Sequence[Tensor], what: str) -> list[Tensor]:
    """Per-modality tensors in (text, audio, vision) order, from a dict or a sequence."""
    if isinstance(mods, Mapping):
        missing = [m for m in MODALITY_NAMES if m not in mods]
        if missing:
            raise ValueError(f"{what} has no {missing[0]!r} entry; keys: {sorted(mods)}")
        return [mods[m] for m in MODALITY_NAMES]
    if len(mods) != 3:
        raise ValueError(f"{what} must be 3 tensors (text, audio, vision); got {len(mods)}")
    return list(mods)


class M3Baseline(nn.Module):
    """The M3 paper's baseline. ``M3Baseline(input_dims, **kwargs)``; ``forward(mods, lengths)`` -> (B,).

    ``forward = fusion(encode(mods))``: ``encode`` is DNN-I and returns [m_T, m_A, m_V], each
    (B, N, d); ``fusion`` (a submodule, :class:`Fusion`) is DNN-II. The paper puts M3 between the
    two, which is why ``fusion`` is this model's default ``augment_at`` (see docs/models.md): the
    augmentation is attached from outside by :mod:`tune_m3.models.seam`, not built in.

    Args:
        input_dims: ``{"text": D_T, "audio": D_A, "vision": D_V}`` (or a (D_T, D_A, D_V) tuple).
        hidden, proj, dropout, num_layers: see :class:`ModelConfig` (paper defaults).
        attn_dropout: dropout rate on every attention matrix (self and cross), in [0, 1);
            0 (default) = none. The authors' code uses the model dropout, 0.2.
        init: ``"default"`` (PyTorch's) or ``"xavier"``: Xavier-uniform for every attention
            projection weight, the authors' choice; LSTMs and the head keep PyTorch's init.

    Example::

        model = M3Baseline({"text": 300, "audio": 74, "vision": 35})
        y = model({"text": x_t, "audio": x_a, "vision": x_v}, lengths)  # (B,)

    Notes:
        Word-aligned features are the paper's setting. Unaligned features (N_l differs per
        modality) are encoded per modality and put on the text's steps before DNN-II (see
        :meth:`encode`). ``lengths`` is a (B,) tensor, a dict of them per modality (all equal
        on aligned data; the text entry is used) or None; each in [1, N_l]. Checking the range
        costs one device synchronisation per call (per modality on unaligned inputs).
    """

    augment_at = "fusion"  # the seam's default hook: DNN-II's input [m_T, m_A, m_V]

    def __init__(
        self,
        input_dims: Mapping[str, int] | Sequence[int] | ModelConfig,
        hidden: int = 100,
        proj: int = 100,
        dropout: float = 0.2,
        num_layers: int = 1,
        attn_dropout: float = 0.0,
        init: str = "default",
    ):
        super().__init__()
        if not 0.0 <= float(attn_dropout) < 1.0:
            raise ValueError(f"attn_dropout must be in [0, 1); got {attn_dropout}")
        if init not in ("default", "xavier"):
            raise ValueError(f"init must be 'default' or 'xavier'; got {init!r}")
        self.attn_dropout, self.init = float(attn_dropout), init
        if isinstance(input_dims, ModelConfig):
            cfg = input_dims
        else:
            dims = input_dims
            if isinstance(dims, Mapping):
                dims = _as_list(dims, "input_dims")
            cfg = ModelConfig(tuple(dims), hidden, proj, dropout, num_layers)
        self.config = cfg
        p_att = self.attn_dropout
        self.encoders = nn.ModuleList(Encoder(d_in, cfg, p_att) for d_in in cfg.input_dims)
        self.fusion = Fusion(cfg, p_att)
        if init == "xavier":
            # after every module exists, so the default init consumed the same RNG as before
            for module in self.modules():
                if isinstance(module, (SelfAttention, SymmetricCrossAttention)):
                    for lin in module.children():
                        nn.init.xavier_uniform_(lin.weight)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _inputs(self, mods, lengths) -> tuple[list[Tensor], list[Tensor | None]]:
        """Checked inputs and per-modality lengths (None where every step is valid).

        Aligned inputs (one N for all modalities) share the text's lengths, as before the seam.
        """
        mods = _as_list(mods, "mods")
        B = mods[0].shape[0]
        for name, m, width in zip(MODALITY_NAMES, mods, self.config.input_dims, strict=True):
            if m.dim() != 3 or m.shape[0] != B or m.shape[-1] != width:
                raise ValueError(
                    f"mods: {name} must have shape ({B}, N, {width}); got {tuple(m.shape)}"
                )
        if not isinstance(lengths, Mapping):
            lengths = dict.fromkeys(MODALITY_NAMES, lengths)
        if len({m.shape[1] for m in mods}) == 1:  # aligned
            text = _check_lengths(lengths[MODALITY_NAMES[0]], B, mods[0].shape[1], mods[0].device)
            return mods, [text] * len(mods)
        return mods, [
            _check_lengths(lengths[name], B, m.shape[1], m.device)
            for name, m in zip(MODALITY_NAMES, mods, strict=True)
        ]

    def encode(self, mods, lengths=None) -> list[Tensor]:
        """DNN-I: raw features (B, N_l, D_l) -> [m_T, m_A, m_V], each (B, N_T, d), zero on padding.

        Unaligned inputs: each modality is encoded on its own steps, then audio and vision are
        put on the text's steps by :func:`align_to` (the mean of the steps in each text step's
        share of the clip), so DNN-II sees word-aligned representations.
        """
        return self._encode(*self._inputs(mods, lengths))

    def _encode(self, mods: list[Tensor], lens: list[Tensor | None]) -> list[Tensor]:
        reps = [
            enc(x, n, _valid(n, x.shape[1]))
            for enc, x, n in zip(self.encoders, mods, lens, strict=True)
        ]  # (B, N_l, d)
        N = mods[0].shape[1]
        return [
            r if r.shape[1] == N else align_to(r, n, N, lens[0])
            for r, n in zip(reps, lens, strict=True)
        ]

    def forward(self, mods, lengths=None) -> Tensor:
        """mods (B, N_l, D_l) per modality, lengths (B,), a dict of them or None -> (B,)."""
        mods, lens = self._inputs(mods, lengths)
        reps = self._encode(mods, lens)  # [m_T, m_A, m_V], each (B, N_T, d)
        return self.fusion(reps, lens[0])  # (B,); M3 acts on reps at fusion's input


def align_to(x: Tensor, src_len: Tensor | None, n_out: int, out_len: Tensor | None) -> Tensor:
    """Resample front-padded x (B, N_s, d) onto n_out front-padded steps, per sample.

    Sample b's src_len[b] valid steps are spread evenly over its out_len[b] valid output steps:
    output step t (0-based among the valid ones) is the mean of the source steps j with
    floor(j · out_len / src_len) = t, or, when it gets none (a source shorter than the output),
    source step floor(t · src_len / out_len). Padded output steps are zero. None lengths mean
    every step is valid. The law depends only on valid steps, so padding changes nothing.
    """
    B, Ns, d = x.shape
    dev = x.device
    src = torch.full((B,), Ns, device=dev) if src_len is None else src_len
    out = torch.full((B,), n_out, device=dev) if out_len is None else out_len
    j = torch.arange(Ns, device=dev) - (Ns - src).unsqueeze(1)  # (B, Ns) index among valid steps
    t = (j.clamp(min=0) * out.unsqueeze(1)) // src.unsqueeze(1)  # (B, Ns) target valid step
    slot = torch.where(j >= 0, n_out - out.unsqueeze(1) + t, n_out)  # padded -> a spare slot
    sums = x.new_zeros(B, n_out + 1, d).scatter_add_(1, slot.unsqueeze(-1).expand(-1, -1, d), x)
    counts = x.new_zeros(B, n_out + 1).scatter_add_(1, slot, torch.ones_like(x[..., 0]))
    mean = sums[:, :n_out] / counts[:, :n_out].clamp(min=1).unsqueeze(-1)  # (B, n_out, d)
    # output steps no source step fell into: the nearest source step before them
    k = torch.arange(n_out, device=dev) - (n_out - out).unsqueeze(1)  # (B, n_out)
    pick = Ns - src.unsqueeze(1) + (k.clamp(min=0) * src.unsqueeze(1)) // out.unsqueeze(1)
    nearest = x.gather(1, pick.clamp(max=Ns - 1).unsqueeze(-1).expand(-1, -1, d))
    valid = (k >= 0).unsqueeze(-1)  # (B, n_out, 1)
    empty = (counts[:, :n_out] == 0).unsqueeze(-1)
    return torch.where(empty, nearest, mean) * valid
