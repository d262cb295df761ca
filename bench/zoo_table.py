"""The zoo table of docs/models.md: each mmsa:<Model>'s hooks, parameters and M3 law.

For every adapted MMSA model: its default ``augment_at``, its parameter count at MMSA's own
MOSI and MOSEI feature sizes (768-d text features, as in MMSA's processed pickles), and the
masking law measured at its default hooks (``tune_m3.models.law.measure``): hard M3, sample units, pM = 0.3,
pi = (0.6, 0.2, 0.2), over ``--samples`` samples of a random batch (dropout off), printed as
P(text, audio, vision zeroed) and the count of samples with two modalities zeroed.

    python bench/zoo_table.py [--samples 20000]
"""

from __future__ import annotations

import argparse

import torch

from tune_m3.models.law import P_MASK, PROBS, measure
from tune_m3.models.mmsa import ADAPTERS, parameter_count

DIMS = {
    "mosi": {"text": 768, "audio": 5, "vision": 20},
    "mosei": {"text": 768, "audio": 74, "vision": 35},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"pM = {P_MASK}, pi = {PROBS}: expected P = {[round(P_MASK * p, 3) for p in PROBS]}")
    for name, cls in ADAPTERS.items():
        spec = f"mmsa:{name}"
        params = {ds: parameter_count(spec, d) for ds, d in DIMS.items()}
        rates, two = measure(spec, args.samples)  # at its default hooks, input ones included
        print(
            f"{spec} | {cls.augment_at} | MOSI {params['mosi']:,} | MOSEI {params['mosei']:,} | "
            f"P zeroed {rates[0]:.3f}/{rates[1]:.3f}/{rates[2]:.3f} | two zeroed: {two}"
        )


if __name__ == "__main__":
    main()
