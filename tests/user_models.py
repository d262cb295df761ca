"""A user's model, defined outside tune_m3: the worked example of docs/models.md (keep in sync)."""

import torch
from torch import nn

from tune_m3.padding import valid_mask


class Fuse(nn.Module):
    """Concatenate the pooled modalities and regress: [(B, h)] * 3 -> (B,)."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(3 * width, width), nn.ReLU())
        self.out = nn.Linear(width, 1)

    def forward(self, pooled: list[torch.Tensor]) -> torch.Tensor:
        return self.out(self.mlp(torch.cat(pooled, dim=-1))).squeeze(-1)  # (B,)


class LateFusion(nn.Module):
    """Per modality: linear + ReLU, mean over the valid steps; then Fuse. M3 acts at `fuse`."""

    augment_at = "fuse"  # default hook: the pooled per-modality vectors

    def __init__(self, input_dims: dict[str, int], hidden: int = 32, dropout: float = 0.1):
        super().__init__()
        self.enc = nn.ModuleDict({m: nn.Linear(d, hidden) for m, d in input_dims.items()})
        self.fuse = Fuse(hidden, dropout)

    def forward(self, mods: dict[str, torch.Tensor], lengths: dict[str, torch.Tensor]):
        pooled = []
        for m, enc in self.enc.items():  # a loop over modalities, not over batch or time
            x = mods[m]  # (B, N_m, d_m), front-padded
            valid = valid_mask(lengths[m], x.shape[1]).unsqueeze(-1)  # (B, N_m, 1)
            h = torch.relu(enc(x)) * valid  # (B, N_m, hidden)
            pooled.append(h.sum(1) / lengths[m].clamp(min=1).unsqueeze(-1))  # (B, hidden)
        return self.fuse(pooled)


class Subnets(nn.Module):
    """Three unimodal subnets, the fusion written inside forward() (the MMSA pattern).

    M3 at the subnets' outputs: ``augment_at: {text: text_subnet, audio: audio_subnet,
    vision: video_subnet}``. ``text_subnet`` is an LSTM: its output ``(out, (h, c))`` holds one
    tensor at the top level, ``out`` (B, N_T, hidden), which the hook takes. The vision subnet
    pools, so its representation is (B, hidden). Subnets run in the order vision, text, audio.
    """

    def __init__(self, input_dims: dict[str, int], hidden: int = 16, dropout: float = 0.1):
        super().__init__()
        self.text_subnet = nn.LSTM(input_dims["text"], hidden, batch_first=True)
        self.audio_subnet = nn.Sequential(nn.Linear(input_dims["audio"], hidden), nn.ReLU())
        self.video_subnet = nn.Sequential(nn.Linear(input_dims["vision"], hidden), nn.Tanh())
        self.post_fusion = nn.Sequential(nn.Dropout(dropout), nn.Linear(3 * hidden, 1))

    def forward(self, mods: dict[str, torch.Tensor], lengths: dict[str, torch.Tensor]):
        v = self.video_subnet(mods["vision"].mean(1))  # (B, hidden), pooled before the subnet
        t, _ = self.text_subnet(mods["text"])  # (B, N_T, hidden)
        a = self.audio_subnet(mods["audio"])  # (B, N_A, hidden)
        mean = [
            (x * valid_mask(lengths[m], x.shape[1]).unsqueeze(-1)).sum(1)
            / lengths[m].clamp(min=1).unsqueeze(-1)
            for m, x in (("text", t), ("audio", a))
        ]  # 2 x (B, hidden): mean over each sample's valid steps
        fused = torch.cat([*mean, v], dim=-1)  # the fusion: code inside forward()
        return self.post_fusion(fused).squeeze(-1)  # (B,)
