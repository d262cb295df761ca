"""Front padding: the one definition of which steps of a sequence are valid.

Every feature file tune_m3 reads (and the synthetic benchmark) pads sequences at the FRONT: a
sample with ``lengths[b]`` valid steps out of ``N`` has its valid steps at ``t >= N - lengths[b]``
and all-zero steps before them. Models, augmentations, diagnostics and the data layer all ask
this one function which steps are real.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def valid_mask(lengths: Any, n_steps: int) -> Any:
    """(B, N) bool mask, True on the valid (last ``lengths[b]``) steps of front-padded sequences.

    ``lengths`` is a (B,) integer numpy array or torch tensor; the mask has the same kind (and
    device, for a tensor). Lengths above ``n_steps`` mark every step valid, 0 marks none.
    """
    if isinstance(lengths, np.ndarray):
        return np.arange(n_steps)[None, :] >= (n_steps - lengths)[:, None]  # (B, N)
    import torch

    t = torch.arange(n_steps, device=lengths.device)  # (N,)
    return t.unsqueeze(0) >= (n_steps - lengths).unsqueeze(1)  # (B, N)
