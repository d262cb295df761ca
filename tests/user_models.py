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
