"""Dropout on CPU: ``F.dropout`` (a ``bernoulli_`` mask) against ``tune_m3.models.layers.dropout``
(a ``rand < 1 - p`` mask), on the tensor shapes the built-in models drop out.

    python bench/bench_dropout.py [--threads 1] [--reps 600]

The two calls alternate, ``--reps`` times each per shape; the first sixth is warm-up; the
median is quoted. Single calls of about a millisecond: allocation and page faults make them
noisy, so run it twice and quote both.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from tune_m3.models.layers import dropout

SHAPES = [(32, 50, 30), (32, 50, 120), (32, 50, 200)]  # mult's widths; the baseline's 2 x hidden


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=600)
    p.add_argument("--p", type=float, default=0.2, help="drop probability")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"| shape | F.dropout ms | layers.dropout ms | ratio |  (p {args.p}, {args.threads} thread)"
    )
    print("|---|---|---|---|")
    for shape in SHAPES:
        x = torch.randn(*shape)
        fns = {
            "F.dropout": lambda t: F.dropout(t, args.p, True),
            "layers.dropout": lambda t: dropout(t, args.p, True),
        }
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.reps):
            for k, f in fns.items():
                t0 = time.perf_counter()
                f(x)
                times[k].append(time.perf_counter() - t0)
        med = {k: 1e3 * statistics.median(v[args.reps // 6 :]) for k, v in times.items()}
        print(
            f"| {shape} | {med['F.dropout']:.3f} | {med['layers.dropout']:.3f} | "
            f"{med['F.dropout'] / med['layers.dropout']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
