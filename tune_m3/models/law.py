"""Measure the masking law where it acts: which modalities a training forward zeroed.

For the docs' zoo table and the tests: a unit counts as zeroed when the training-mode
representation at the hook is all zeros and the clean (eval-mode) one is not. At per-modality
hooks that is the subnet's output (turn dropout inside the hooked subnets off first, or dropout
noise enters the comparison); at the ``input`` hook it is what the model receives, all steps
of the modality, so use ``granularity: sample`` there (and the model's own computation is
skipped: it is not needed, and MFM's MMD is quadratic in the batch).

    python -m tune_m3.models.law mmsa:MFN mmsa:TFN [--samples 20000]

prints, per model, P(text, audio, vision zeroed) at its default hooks and the count of samples
with two zeroed: hard M3, sample units, pM = 0.3, pi = (0.6, 0.2, 0.2), on a random batch of
positive features (text 16-d, MMSA's MOSI audio and vision widths, 8 steps), dropout off.
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor, nn

from tune_m3.models.hooks import mapping_of
from tune_m3.names import MODALITIES

__all__ = ["measure", "zeroed_per_sample"]

P_MASK, PROBS = 0.3, (0.6, 0.2, 0.2)


class _Received(Exception):
    """Raised by the input probe once the model has received its (augmented) inputs."""


@torch.no_grad()
def _zeroed_at_input(model, mods, lengths) -> Tensor:
    seen: dict[str, Tensor] = {}

    def probe(module, args):  # runs after the seam's own pre-hook: sees the augmented inputs
        seen.update(args[0])
        raise _Received

    handle = model.net.register_forward_pre_hook(probe)
    try:
        model.train()
        model(mods, lengths)
    except _Received:
        pass
    finally:
        handle.remove()
    return torch.stack(
        [
            (seen[m].abs().flatten(1).sum(-1) == 0) & (mods[m].abs().flatten(1).sum(-1) > 0)
            for m in MODALITIES
        ],
        1,
    )


@torch.no_grad()
def zeroed_per_sample(model, mods, lengths) -> Tensor:
    """(B, 3) bool: modality l of sample b zeroed at the wrapped ``model``'s hooks in one
    training forward (per-modality hooks: pooled (B, d) representations; ``input``: all steps)."""
    if model.augment_at == "input":
        return _zeroed_at_input(model, mods, lengths)
    names = mapping_of(model.augment_at)
    seen: dict[str, Tensor] = {}
    handles = [
        model.net.get_submodule(names[m].split("[")[0]).register_forward_hook(
            lambda mod, a, out, m=m: seen.__setitem__(m, out)
        )
        for m in MODALITIES
    ]
    try:
        model.eval()
        model(mods, lengths)
        clean = dict(seen)
        model.train()
        model(mods, lengths)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(
        [(seen[m].abs().sum(-1) == 0) & (clean[m].abs().sum(-1) > 0) for m in MODALITIES], 1
    )


def measure(spec: str, samples: int) -> tuple[list[float], int]:
    """(P(l zeroed) per modality, samples with two zeroed) at ``spec``'s default hooks."""
    from tune_m3.config import make_config
    from tune_m3.models.seam import build_model, fake_batch

    probs = dict(zip(("pi_text", "pi_audio", "pi_vision"), PROBS, strict=True))
    cfg = make_config(
        {"model": spec, "scheme": "m3", "p_mask": P_MASK, "granularity": "sample", **probs}
    )
    dims = {"text": 16, "audio": 5, "vision": 20}
    model = build_model(cfg, dims)
    for module in model.net.modules():  # dropout off (the hooks compare with a clean pass)
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    mods, lengths = fake_batch(dims, {m: 8 for m in MODALITIES}, B=samples)
    mods = {m: x.abs() + 1 for m, x in mods.items()}  # every step valid, none all zero
    lengths = {m: torch.full_like(n, 8) for m, n in lengths.items()}
    zero = zeroed_per_sample(model, mods, lengths)  # (B, 3)
    return zero.double().mean(0).tolist(), int((zero.sum(1) > 1).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description="the M3 law at a model's default hooks")
    parser.add_argument("models", nargs="+", help="model names, e.g. mmsa:MFN")
    parser.add_argument("--samples", type=int, default=20000)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"pM = {P_MASK}, pi = {PROBS}: expected P = {[round(P_MASK * p, 3) for p in PROBS]}")
    for spec in args.models:
        rates, two = measure(spec, args.samples)
        print(
            f"{spec} | P zeroed {rates[0]:.3f}/{rates[1]:.3f}/{rates[2]:.3f} | "
            f"two zeroed: {two} of {args.samples}"
        )


if __name__ == "__main__":
    main()
