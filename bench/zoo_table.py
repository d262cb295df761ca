"""The zoo table of docs/models.md: each mmsa:<Model>'s hooks, parameters and M3 law.

For every adapted MMSA model: its default ``augment_at``, its parameter count at MMSA's own
MOSI and MOSEI feature sizes (768-d text features, as in MMSA's processed pickles), and the
masking law measured at its per-modality hooks: hard M3, sample units, pM = 0.3,
pi = (0.6, 0.2, 0.2), over ``--samples`` samples of a random batch (dropout off), printed as
P(text, audio, vision zeroed) and the count of samples with two modalities zeroed.

    python bench/zoo_table.py [--samples 20000]
"""

from __future__ import annotations

import argparse

import torch

from tune_m3.config import make_config
from tune_m3.models.law import zeroed_per_sample
from tune_m3.models.mmsa import ADAPTERS, parameter_count
from tune_m3.models.seam import build_model, fake_batch
from tune_m3.names import MODALITIES

DIMS = {
    "mosi": {"text": 768, "audio": 5, "vision": 20},
    "mosei": {"text": 768, "audio": 74, "vision": 35},
}
P_MASK, PROBS = 0.3, (0.6, 0.2, 0.2)


@torch.no_grad()
def law(spec: str, samples: int) -> tuple[list[float], int]:
    """(P(l zeroed) per modality, samples with two zeroed) at the model's hooks."""
    cfg = make_config(
        {
            "model": spec,
            "scheme": "m3",
            "p_mask": P_MASK,
            "granularity": "sample",
            "pi_text": PROBS[0],
            "pi_audio": PROBS[1],
            "pi_vision": PROBS[2],
            "model.dropouts": [0.0] * 4,
        }
    )
    dims = {"text": 16, "audio": 5, "vision": 20}
    model = build_model(cfg, dims)
    mods, lengths = fake_batch(dims, {m: 8 for m in MODALITIES}, B=samples)
    zero = zeroed_per_sample(model, mods, lengths)  # (B, 3)
    return zero.double().mean(0).tolist(), int((zero.sum(1) > 1).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"pM = {P_MASK}, pi = {PROBS}: expected P = {[round(P_MASK * p, 3) for p in PROBS]}")
    for name, cls in ADAPTERS.items():
        spec = f"mmsa:{name}"
        params = {ds: parameter_count(spec, d) for ds, d in DIMS.items()}
        if cls.augment_at == "input":  # no unimodal subnets: the input hook's law
            print(f"{spec} | input | MOSI {params['mosi']:,} | MOSEI {params['mosei']:,} | -")
            continue
        rates, two = law(spec, args.samples)
        print(
            f"{spec} | {cls.augment_at} | MOSI {params['mosi']:,} | MOSEI {params['mosei']:,} | "
            f"P zeroed {rates[0]:.3f}/{rates[1]:.3f}/{rates[2]:.3f} | two zeroed: {two}"
        )


if __name__ == "__main__":
    main()
