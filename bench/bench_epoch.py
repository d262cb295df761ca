"""Training throughput over whole epochs of the synthetic MOSEI set: plain vs length-bucketed batches.

    python bench/bench_epoch.py [--scale 0.05] [--threads 1] [--repeats 3]

Unlike bench_step.py (fixed B = 32, L = 50 tensors), this runs ``train()`` itself on real
front-padded data, so it measures what the batch pipeline saves: the padding cut per batch
(``batch_tensors``) and, with ``bucket_batches``, batches of similar lengths. The two variants
alternate, one epoch each, and the medians are compared side by side.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tune_m3.batches import batch_tensors
from tune_m3.config import TrialConfig
from tune_m3.data import ensure_synthetic, load_dataset
from tune_m3.models.m3_baseline import MODALITY_NAMES
from tune_m3.training import epoch_batches, train


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    name = f"synth_mosei_x{args.scale:g}"
    ensure_synthetic(name, "mosei", args.scale)
    ds = load_dataset(name)
    data = {s: sp.arrays() for s, sp in ds.splits.items()}
    n = ds.meta.sizes["train"]
    lengths = data["train"]["lengths"]
    print(
        f"{name}: {n} training clips, mean valid length {lengths.mean():.1f} of {ds.meta.seq_len}"
    )
    rates = {False: [], True: []}
    for _ in range(args.repeats):
        for bucket in (False, True):
            cfg = TrialConfig(
                dataset=name,
                max_epochs=1,
                threads=args.threads,
                bucket_batches=bucket,
                diagnostics=False,
            )
            res = train(cfg, data, final_eval=False)
            h = res.history[0]
            rates[bucket].append(n / h["epoch_seconds"])  # includes the validation pass
    plain, bucketed = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"| batches | samples/s (median of {args.repeats}, epoch incl. validation) |\n|---|---|")
    print(f"| random (paper recipe) | {plain:.1f} |")
    print(f"| length-bucketed | {bucketed:.1f} |")
    print(f"speed-up: {bucketed / plain:.2f}x")

    # the data path alone: an epoch's batch indices and the tensors built from them
    g = torch.Generator().manual_seed(0)
    for bucket in (False, True):
        t0 = time.perf_counter()
        for idx in epoch_batches(n, 32, g, lengths, bucket):
            batch_tensors(data["train"], idx, MODALITY_NAMES, "cpu")
        load_s = time.perf_counter() - t0
        epoch_s = n / (bucketed if bucket else plain)
        print(
            f"building one epoch's batches ({'bucketed' if bucket else 'random'}): "
            f"{load_s * 1e3:.0f} ms = {100 * load_s / epoch_s:.2f}% of the epoch"
        )


if __name__ == "__main__":
    main()
