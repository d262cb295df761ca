"""User models that fail the same way every time they run (tests of ``tune_m3/failures.py``).

Both train normally and fail in evaluation (eval mode), after the first training epoch. Each
instance appends one line (its pid) to ``starts_file`` at its first evaluation, so a test can
count how often a trial was started (a retry builds a new model).
"""

import os

import torch
from torch import nn


class NaNInEval(nn.Module):
    """Mean-pool each modality, concatenate, regress: (B,); predicts NaN in eval mode if ``nan``."""

    augment_at = "input"

    def __init__(self, input_dims: dict[str, int], nan: bool = True, starts_file: str = ""):
        super().__init__()
        self.order = list(input_dims)
        self.out = nn.Linear(sum(input_dims.values()), 1)
        self.nan, self.starts_file, self.evaluated = nan, starts_file, False

    def forward(self, mods: dict[str, torch.Tensor], lengths: dict[str, torch.Tensor]):
        pooled = torch.cat([mods[m].mean(1) for m in self.order], dim=-1)  # (B, sum d_m)
        y = self.out(pooled).squeeze(-1)  # (B,)
        if self.training or not self.nan:
            return y
        if self.starts_file and not self.evaluated:
            with open(self.starts_file, "a") as fh:
                fh.write(f"{os.getpid()}\n")
        self.evaluated = True
        return self.fail(y)

    def fail(self, y: torch.Tensor) -> torch.Tensor:
        return torch.full_like(y, float("nan"))


class RaisesInEval(NaNInEval):
    """The same, but its evaluation raises (a bug in the user's model)."""

    def fail(self, y: torch.Tensor) -> torch.Tensor:
        raise ValueError("this model cannot evaluate")
