"""Mini-batches from the store's arrays: gather rows, trim shared front padding, move to device."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch


def batch_tensors(
    arrays: Mapping[str, np.ndarray],
    idx: np.ndarray,
    modalities: Sequence[str],
    device: torch.device | str,
) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor]:
    """Rows ``idx`` of a split as tensors: ([x_l (B, L', d_l)], lengths (B,) or None, labels (B,)).

    Sequences are front-padded, so the first ``L - max(lengths[idx])`` steps are padding for the
    whole batch; they are cut off before the copy (L' = the batch's longest sequence). This only
    drops work on all-zero steps; the model's masking handles the per-sample padding that remains.
    ``lengths`` is None when every sample in the batch fills L'.
    """
    lengths = arrays["lengths"][idx]  # (B,)
    L = arrays[modalities[0]].shape[1]
    keep = int(lengths.max())
    start = L - keep
    # numpy advanced + basic indexing copies only the kept steps of the chosen rows
    mods = [
        torch.from_numpy(arrays[m][idx, start:]).to(device, non_blocking=True) for m in modalities
    ]
    labels = torch.from_numpy(np.asarray(arrays["labels"][idx], dtype=np.float32)).to(device)
    lens = (
        None
        if int(lengths.min()) == keep
        else torch.from_numpy(lengths.astype(np.int64)).to(device)
    )
    return mods, lens, labels
