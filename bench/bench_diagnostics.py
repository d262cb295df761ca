"""Cost of the full diagnostics (3 modalities x 2 kinds x 4 fractions) versus the naive way.

    python bench/bench_diagnostics.py [--n 1000] [--threads 1] [--repeats 3]

Both compute the same 24 damaged test sets on the baseline model at MOSEI dims (L = 50):
- tune_m3's ``run_diagnostics``: one clean encode + fuse pass, then only the damaged subsets
  (nested: the 30 % subset serves every fraction) go through ``fuse`` again;
- naive: for each of the 24 cells, damage the chosen samples and run the whole test set again.
Prints the median wall time of each, in units of one clean test pass, and checks that the two
give the same metrics.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from tune_m3.batches import batch_tensors
from tune_m3.config import TrialConfig
from tune_m3.metrics import compute_metrics
from tune_m3.models import build_model
from tune_m3.names import MODALITIES, diag_key
from tune_m3.training import predict
from tune_m3.training.diagnostics import KINDS, perturbed_order, run_diagnostics

MODS = MODALITIES
FRACTIONS = (0.05, 0.10, 0.15, 0.30)


def make_test(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    L = 50
    lengths = rng.integers(6, L + 1, size=n).astype(np.int32)
    valid = (np.arange(L)[None, :] >= (L - lengths[:, None]))[..., None]
    out = {
        m: (rng.standard_normal((n, L, d), dtype=np.float32) * valid)
        for m, d in zip(MODS, (300, 74, 35), strict=True)
    }
    return {**out, "labels": rng.uniform(-3, 3, n).astype(np.float32), "lengths": lengths}


@torch.no_grad()
def naive(model, test: dict, seed: int = 1234, sigma: float = 1.0, batch: int = 256) -> dict:
    """24 full passes of every sample, with the chosen ones damaged at the hook."""
    n = len(test["labels"])
    order = perturbed_order(n, seed)
    out = {}
    for li, m in enumerate(MODS):
        for kind in KINDS:
            for f in FRACTIONS:
                chosen = np.zeros(n, bool)
                chosen[order[: round(f * n)]] = True
                preds = np.empty(n)
                for lo in range(0, n, batch):
                    idx = np.arange(lo, min(n, lo + batch))
                    mods, lengths, _ = batch_tensors(test, idx, MODS, "cpu")
                    sel = torch.from_numpy(chosen[idx])[:, None, None]  # (B, 1, 1)

                    def damage(seq, lens, li=li, kind=kind, sel=sel):
                        out = list(seq)
                        if kind == "missing":
                            out[li] = seq[li] * ~sel
                        else:
                            out[li] = seq[li] + sigma * torch.randn_like(seq[li]) * sel
                        return out

                    with model.intervene(damage):  # damage at the model's augment_at
                        preds[idx] = model(mods, lengths).double().numpy()
                out[(m, kind, f)] = compute_metrics(preds, test["labels"])
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model(TrialConfig(), (300, 74, 35)).eval()
    test = make_test(args.n)
    t_clean, t_ours, t_naive = [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        predict(model, test, torch.device("cpu"))
        t_clean.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours, _ = run_diagnostics(model, test, MODS, FRACTIONS)
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = naive(model, test)
        t_naive.append(time.perf_counter() - t0)
    c, o, nv = (statistics.median(x) for x in (t_clean, t_ours, t_naive))
    same = all(
        abs(ours[diag_key(m, "missing", f, "mae")] - ref[(m, "missing", f)]["mae"]) < 1e-5
        for m in MODS
        for f in FRACTIONS
    )
    print(f"n={args.n} threads={args.threads} repeats={args.repeats} (medians)")
    print("| method | seconds | clean test passes |\n|---|---|---|")
    print(f"| one clean test pass | {c:.2f} | 1.00 |")
    print(f"| tune_m3 run_diagnostics (24 cells) | {o:.2f} | {o / c:.2f} |")
    print(f"| naive: 24 full passes | {nv:.2f} | {nv / c:.2f} |")
    print(f"missing-modality metrics identical between the two: {same}")


if __name__ == "__main__":
    main()
