"""Training throughput of the baseline (samples/s) at MOSEI dims, B = 32, L = 50, on CPU.

    python bench/bench_step.py [--threads 1] [--steps 30] [--scheme none|m3|soft_m3|random_mask|perturb]

Prints one line per configuration: median samples/s over repeated timed blocks, the parameter
count, and the augmentation's overhead relative to no augmentation measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from tune_m3.config import TrialConfig
from tune_m3.train import build_model

SCHEMES = {
    "none": {},
    "m3": {"scheme": "m3", "p_mask": 0.25, "pi_text": 0.6, "pi_audio": 0.2, "pi_vision": 0.2},
    "soft_m3": {"scheme": "soft_m3", "p_mask": 0.25},
    "random_mask": {"scheme": "random_mask", "p_mask": 0.2},
    "perturb": {"p_missing": 0.15, "p_noise": 0.15},
}


def samples_per_second(
    cfg: TrialConfig, dims=(300, 74, 35), B=32, L=50, steps=20, blocks=5
) -> float:
    model = build_model(cfg, dims)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(B, L, d, generator=g) for d in dims]
    lengths = torch.randint(L // 2, L + 1, (B,), generator=g)
    lengths[0] = L
    y = torch.randn(B, generator=g)
    loss_fn = nn.L1Loss()

    def step():
        loss = loss_fn(model(xs, lengths), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    rates = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(B * steps / (time.perf_counter() - t0))
    return statistics.median(rates), model.num_parameters()


def augment_seconds(cfg: TrialConfig, B=32, L=50, reps=200) -> float:
    """Median seconds of the augmentation layers alone on one batch of DNN-I outputs (3 x (B, L, d))."""
    model = build_model(cfg, (300, 74, 35))
    model.train()
    d = model.config.d
    xs = [torch.randn(B, L, d, requires_grad=True) for _ in range(3)]
    lengths = torch.randint(L // 2, L + 1, (B,))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = model.augment(xs, lengths)
        sum(o.sum() for o in out).backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--schemes", default="none,m3,soft_m3,random_mask,perturb")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    base = None
    for name in args.schemes.split(","):
        cfg = TrialConfig(**SCHEMES[name])
        rate, n_params = samples_per_second(cfg, steps=args.steps, blocks=args.blocks)
        base = base or rate
        aug = augment_seconds(cfg)
        step = 32 / rate
        print(
            f"{name:<12} threads={args.threads}  {rate:7.1f} samples/s  params={n_params:,}  "
            f"vs none: {100 * (base / rate - 1):+.1f}%  augmentation alone: {aug * 1e3:.2f} ms "
            f"= {100 * aug / step:.2f}% of a step",
            flush=True,
        )


if __name__ == "__main__":
    main()
