"""A model's output: the prediction, and the auxiliary losses the model computes itself.

A model returns its predictions as a tensor ((B,) or (B, 1)), or a dict / tuple holding them
with other things (MMSA's models return ``{"M": pred, ...}``). ``output_key`` names the
prediction in such an output (a dict key, or a tuple index written as a number: ``"0"``).
``aux_losses: {key: weight}`` names scalar losses in a dict output (MISA's, MFM's, ...) that
training adds, weighted, to the L1 loss: loss = L1(pred, y) + Σ_k w_k · out[k]. In eval mode
(validation, test, diagnostics) only the prediction is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

__all__ = ["split_output"]


def _keys(out: Any) -> str:
    if isinstance(out, Mapping):
        return f"a dict with keys {sorted(map(str, out))}"
    return f"a {type(out).__name__} of {len(out)} items"


def _item(out: Any, key: str) -> Any:
    if isinstance(out, Mapping):
        return out.get(key)
    if key.lstrip("-").isdigit() and -len(out) <= int(key) < len(out):
        return out[int(key)]
    return None


def _prediction(out: Any, output_key: str | None, model: str) -> Any:
    if output_key is None:
        if isinstance(out, Mapping | list | tuple):
            raise ValueError(
                f"model '{model}' returned {_keys(out)}; set output_key to the prediction's "
                "key (or index), e.g. --set output_key=M"
            )
        return out
    if not isinstance(out, Mapping | list | tuple):
        raise ValueError(
            f"model '{model}': output_key '{output_key}' but the model returned a "
            f"{type(out).__name__}; drop output_key (a tensor output is the prediction)"
        )
    pred = _item(out, output_key)
    if pred is None:
        raise ValueError(
            f"model '{model}': output_key '{output_key}' is not in its output ({_keys(out)}); "
            "set output_key to the key (or index) of the prediction"
        )
    return pred


def _aux(out: Any, aux_losses: Mapping[str, float], model: str) -> Tensor | None:
    if not aux_losses:
        return None
    total = None
    for key, weight in aux_losses.items():
        loss = _item(out, key) if isinstance(out, Mapping) else None
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            got = "absent" if loss is None else f"a {type(loss).__name__}"
            if isinstance(loss, Tensor):
                got = f"a tensor of shape {tuple(loss.shape)}"
            raise ValueError(
                f"model '{model}': aux_losses '{key}': its output "
                f"({_keys(out) if isinstance(out, Mapping) else type(out).__name__}) has it "
                f"{got}; an auxiliary loss is a scalar tensor in a dict output, returned in "
                "training mode"
            )
        term = float(weight) * loss.reshape(())
        total = term if total is None else total + term
    return total


def split_output(
    out: Any,
    output_key: str | None,
    aux_losses: Mapping[str, float],
    model: str,
    training: bool,
) -> tuple[Any, Tensor | None]:
    """(prediction, Σ w_k · aux_k or None): aux losses only in training. ValueError names the
    missing key and the fix."""
    pred = _prediction(out, output_key, model)
    return pred, _aux(out, aux_losses, model) if training else None
