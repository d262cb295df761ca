"""Mini-batches from the store's arrays: gather rows, trim shared front padding, move to device.

Works on aligned and unaligned splits alike. A split holds one (N, L_l, d_l) array per modality
(L_l may differ per modality), ``labels`` (N,), ``lengths`` (N,) (text's valid steps; every
modality's on aligned data) and, when the data layer provides them, one (N,) column of valid
steps per modality under ``names.length_key(m)``. A modality without its own column uses
``lengths``; that is right for aligned data, where every modality shares the text's steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from tune_m3.names import length_key


def modality_lengths(arrays: Mapping[str, np.ndarray], modality: str) -> np.ndarray:
    """(N,) valid steps of ``modality``: its own column, else the shared ``lengths``."""
    key = length_key(modality)
    return arrays[key] if key in arrays else arrays["lengths"]


def batch_tensors(
    arrays: Mapping[str, np.ndarray],
    idx: np.ndarray,
    modalities: Sequence[str],
    device: torch.device | str,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """Rows ``idx`` of a split: ({l: (B, L'_l, d_l)}, {l: lengths (B,)}, labels (B,)).

    Sequences are front-padded, so for each modality the first ``L_l - max(lengths_l[idx])``
    steps are padding for the whole batch; they are cut off before the copy (L'_l = the batch's
    longest sequence of that modality). This only drops work on all-zero steps; the model's
    masking handles the per-sample padding that remains.
    """
    mods, lens = {}, {}
    for m in modalities:
        lengths = np.asarray(modality_lengths(arrays, m)[idx])  # (B,)
        L = arrays[m].shape[1]
        keep = max(1, min(L, int(lengths.max())))
        # numpy advanced + basic indexing copies only the kept steps of the chosen rows
        mods[m] = torch.from_numpy(arrays[m][idx, L - keep :]).to(device, non_blocking=True)
        lens[m] = torch.from_numpy(np.minimum(lengths, keep).astype(np.int64)).to(device)
    labels = torch.from_numpy(np.asarray(arrays["labels"][idx], dtype=np.float32)).to(device)
    return mods, lens, labels
