"""MulT-style built-in: cross-modal transformers (Tsai et al., ACL 2019), written for tune_m3.

Reference: Tsai, Bai, Liang, Kolter, Morency, Salakhutdinov, "Multimodal Transformer for Unaligned
Multimodal Language Sequences", ACL 2019, sec. 3 and Fig. 2. Sizes default to the configuration
of the authors' code for (unaligned) CMU-MOSEI, which the robustness paper (Hazarika et al.,
NAACL 2022) trains: width d = 30, 5 layers, 5 heads, dropouts attention 0.1 (text) / 0.0
(audio, vision), relu 0.1, residual 0.1, embedding 0.25, output 0.0. Top to bottom:

    x_T, x_A, x_V              (B, N_l, D_l)  front-padded; N_l may differ per modality
    embedding dropout on text, then per modality a temporal Conv1d (kernel_size, no bias)
    s_T, s_A, s_V              (B, N_l, d)    <- M3 / perturbation act here (augment_at
                                                 "crossmodal", this model's default)
    crossmodal (CrossModalFusion):
      each sequence: sqrt(d)·s + sinusoidal positions, embedding dropout
      for each target l, sources k != l:   CM_{k->l} = layers of cross-modal attention
                                           (queries from l, keys/values from k)  (B, N_l, d)
      h_l = self-attention layers over [CM_{k1->l} | CM_{k2->l}]                (B, N_l, 2d)
      last step of each h_l, concatenated                                       (B, 6d)
      residual MLP (6d -> 6d -> 6d) + linear head                               (B,)

Design choices where the paper leaves room:

- Pre-norm layers as in the authors' code: one LayerNorm before attention, applied to the
  queries and to the keys/values alike, one before the position-wise feed-forward (4d), and a
  LayerNorm after the last layer. The self-attention stacks have max(layers, 3) layers, as the
  authors' code does (their "3" is a floor, not a count).
- Padding: keys at padded steps get no attention weight (key-padding masks from
  ``padding.valid_mask``), and positions count from each sequence's first valid step, so a
  padded batch gives the unpadded sequences' predictions. The authors' causal mask
  (``attn_mask``) is not used: with the last step as the summary it changes only what the
  earlier, unused steps see.
- Attention is one fused ``scaled_dot_product_attention`` per layer over all heads; parameters
  per attention block are the same as ``nn.MultiheadAttention`` (4d² + 4d).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tune_m3.models.layers import Dropout, Linear, attend, dropout
from tune_m3.names import MODALITIES
from tune_m3.padding import valid_mask


def sinusoid(positions: Tensor, d: int) -> Tensor:
    """Sinusoidal embeddings (Vaswani et al.) of integer ``positions`` (B, N) -> (B, N, d)."""
    half = d // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device) / half)
    angle = positions.unsqueeze(-1).float() * freq  # (B, N, half)
    emb = torch.cat([angle.sin(), angle.cos()], dim=-1)
    return F.pad(emb, (0, d - 2 * half))  # odd d: one zero feature


class Attention(nn.Module):
    """Multi-head attention of queries x (B, Nq, d) over a context (B, Nk, d) with key padding."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        if d % heads:
            raise ValueError(f"width {d} must be divisible by heads={heads}")
        self.heads, self.dropout = heads, dropout
        self.q = Linear(d, d)
        self.kv = Linear(d, 2 * d)
        self.out = Linear(d, d)

    def forward(self, x: Tensor, ctx: Tensor, key_valid: Tensor | None) -> Tensor:
        B, Nq, d = x.shape
        Nk, h = ctx.shape[1], self.heads
        q = self.q(x).view(B, Nq, h, d // h).transpose(1, 2)  # (B, h, Nq, dh)
        k, v = self.kv(ctx).view(B, Nk, 2, h, d // h).permute(2, 0, 3, 1, 4)  # (B, h, Nk, dh)
        mask = None if key_valid is None else key_valid[:, None, None, :]  # (B, 1, 1, Nk)
        p = self.dropout if self.training else 0.0
        o = attend(q, k, v, mask, p)  # (B, h, Nq, dh)
        return self.out(o.transpose(1, 2).reshape(B, Nq, d))


class Layer(nn.Module):
    """Pre-norm transformer layer: x += Attn(LN(x), LN(ctx)); x += FFN(LN(x))."""

    def __init__(self, d: int, heads: int, attn_dropout: float, relu_dropout: float, res_dropout):
        super().__init__()
        self.ln_attn = nn.LayerNorm(d)
        self.attn = Attention(d, heads, attn_dropout)
        self.ln_ffn = nn.LayerNorm(d)
        self.fc1, self.fc2 = Linear(d, 4 * d), Linear(4 * d, d)
        self.relu_drop, self.res_drop = Dropout(relu_dropout), Dropout(res_dropout)

    def forward(self, x: Tensor, ctx: Tensor | None, key_valid: Tensor | None) -> Tensor:
        q = self.ln_attn(x)
        kv = q if ctx is None else self.ln_attn(ctx)  # self-attention when ctx is None
        x = x + self.res_drop(self.attn(q, kv, key_valid))
        return x + self.res_drop(self.fc2(self.relu_drop(F.relu(self.fc1(self.ln_ffn(x))))))


class Stack(nn.Module):
    """``layers`` Layers and a final LayerNorm; ctx None = self-attention."""

    def __init__(self, d: int, heads: int, layers: int, attn_dropout: float, relu, res):
        super().__init__()
        self.layers = nn.ModuleList(Layer(d, heads, attn_dropout, relu, res) for _ in range(layers))
        self.ln = nn.LayerNorm(d)

    def forward(self, x: Tensor, ctx: Tensor | None = None, key_valid=None) -> Tensor:
        for layer in self.layers:
            x = layer(x, ctx, key_valid)
        return self.ln(x)


class CrossModalFusion(nn.Module):
    """Everything after the projections: [s_T, s_A, s_V] (B, N_l, d), lengths -> (B,)."""

    def __init__(self, d: int, heads: int, layers: int, self_layers: int, dropouts: dict):
        super().__init__()
        self.d, self.embed_dropout = d, dropouts["embed"]
        relu, res = dropouts["relu"], dropouts["res"]
        n = len(MODALITIES)
        # cross[l][j]: target l attending to its j-th source (the others, in MODALITIES order);
        # attention dropout is the source's, as in the authors' code
        self.cross = nn.ModuleList(
            nn.ModuleList(
                Stack(d, heads, layers, dropouts["attn"][k], relu, res)
                for k in range(n)
                if k != target
            )
            for target in range(n)
        )
        self.self_attn = nn.ModuleList(
            Stack((n - 1) * d, heads, self_layers, dropouts["attn"][0], relu, res) for _ in range(n)
        )
        width = n * (n - 1) * d
        self.proj1, self.proj2 = Linear(width, width), Linear(width, width)
        self.out_drop = Dropout(dropouts["out"])
        self.head = Linear(width, 1)

    def _embed(self, s: Tensor, lengths: Tensor) -> Tensor:
        N = s.shape[1]
        pos = (torch.arange(N, device=s.device) - (N - lengths).unsqueeze(1)).clamp(min=0)  # (B, N)
        x = math.sqrt(self.d) * s + sinusoid(pos, self.d).to(s.dtype)
        return dropout(x, self.embed_dropout, self.training)

    def forward(self, seqs: Sequence[Tensor], lengths: Sequence[Tensor]) -> Tensor:
        x = [self._embed(s, n) for s, n in zip(seqs, lengths, strict=True)]  # (B, N_l, d)
        valid = [valid_mask(n, s.shape[1]) for s, n in zip(seqs, lengths, strict=True)]  # (B, N_l)
        # no mask where every step is valid: the same attention without the masking work
        # (on CPU; on a GPU the check would wait for the device)
        if seqs[0].device.type == "cpu":
            valid = [None if bool(v.all()) else v for v in valid]
        last = []
        for t, (stacks, mem) in enumerate(zip(self.cross, self.self_attn, strict=True)):
            sources = [k for k in range(len(x)) if k != t]
            h = torch.cat(
                [stack(x[t], x[k], valid[k]) for stack, k in zip(stacks, sources, strict=True)],
                dim=-1,
            )  # (B, N_t, 2d)
            h = mem(h, None, valid[t])  # (B, N_t, 2d)
            last.append(h[:, -1])  # front padding: the last step is always valid
        z = torch.cat(last, dim=-1)  # (B, 6d)
        z = z + self.proj2(self.out_drop(F.relu(self.proj1(z))))
        return self.head(z).squeeze(-1)  # (B,)


class MulT(nn.Module):
    """MulT-style model. ``MulT(input_dims, **kwargs)``; ``forward(mods, lengths)`` -> (B,).

    Args:
        input_dims: ``{"text": D_T, "audio": D_A, "vision": D_V}``.
        d: width of every modality after its projection (30).
        heads: attention heads (5); d and 2d must be divisible by it.
        layers: layers of each cross-modal stack (5).
        self_layers: layers of each self-attention stack; None = max(layers, 3).
        attn_dropout, attn_dropout_audio, attn_dropout_vision: attention dropout of the
            cross-modal stacks whose keys are text / audio / vision (0.1, 0.0, 0.0); the
            self-attention stacks use ``attn_dropout``.
        relu_dropout, res_dropout, embed_dropout, out_dropout: 0.1, 0.1, 0.25, 0.0.
        kernel_size: temporal kernel of the Conv1d projections (1; odd).

    Example::

        model = MulT({"text": 300, "audio": 74, "vision": 35})
        y = model({"text": x_t, "audio": x_a, "vision": x_v}, {"text": n_t, ...})  # (B,)

    Notes:
        Works on aligned and unaligned features (any N_l per modality); ``lengths`` values must be
        in [1, N_l] (0 is treated as 1: a sequence of one zero step).
    """

    augment_at = "crossmodal"  # the seam's default hook: the projected sequences [s_T, s_A, s_V]

    def __init__(
        self,
        input_dims: Mapping[str, int],
        d: int = 30,
        heads: int = 5,
        layers: int = 5,
        self_layers: int | None = None,
        attn_dropout: float = 0.1,
        attn_dropout_audio: float = 0.0,
        attn_dropout_vision: float = 0.0,
        relu_dropout: float = 0.1,
        res_dropout: float = 0.1,
        embed_dropout: float = 0.25,
        out_dropout: float = 0.0,
        kernel_size: int = 1,
    ):
        super().__init__()
        for name, v in (
            ("d", d),
            ("heads", heads),
            ("layers", layers),
            ("kernel_size", kernel_size),
        ):
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer; got {v}")
        if kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd (keeps the steps aligned); got {kernel_size}"
            )
        drops = (attn_dropout, attn_dropout_audio, attn_dropout_vision, relu_dropout, res_dropout)
        if not all(0.0 <= p < 1.0 for p in (*drops, embed_dropout, out_dropout)):
            raise ValueError("dropouts must be in [0, 1)")
        self.embed_dropout = embed_dropout
        self.proj = nn.ModuleList(
            nn.Conv1d(input_dims[m], d, kernel_size, padding=kernel_size // 2, bias=False)
            for m in MODALITIES
        )
        self.crossmodal = CrossModalFusion(
            d,
            heads,
            layers,
            self_layers if self_layers is not None else max(layers, 3),
            {
                "attn": (attn_dropout, attn_dropout_audio, attn_dropout_vision),
                "relu": relu_dropout,
                "res": res_dropout,
                "embed": embed_dropout,
                "out": out_dropout,
            },
        )

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, mods: Mapping[str, Tensor], lengths: Mapping[str, Tensor]) -> Tensor:
        seqs, lens = [], []
        for i, (m, conv) in enumerate(zip(MODALITIES, self.proj, strict=True)):
            x = mods[m]  # (B, N_l, D_l)
            if i == 0:  # the authors drop out the text embeddings only
                x = dropout(x, self.embed_dropout, self.training)
            seqs.append(conv(x.transpose(1, 2)).transpose(1, 2))  # (B, N_l, d)
            lens.append(lengths[m].clamp(min=1, max=x.shape[1]))
        return self.crossmodal(seqs, lens)  # (B,); M3 acts on seqs at crossmodal's input
