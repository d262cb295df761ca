"""Issue-3 experiment: does M3 / perturbation training shrink the missing- and noisy-text drops?

On the SYNTHETIC MOSEI-shaped benchmark (never a MOSEI result), trains the baseline, M3
(pi_text = 0.6, p_mask = 0.25) and modality perturbation (15 % missing + 15 % noise) with
several seeds, runs the diagnostics, and prints a Markdown table of mean ± std over seeds:

    python bench/exp_robustness.py --scale 0.05 --seeds 0,1,2 --epochs 12 --jobs 2 [--threads 1]
    python bench/exp_robustness.py --only baseline --set bucket_batches=true ...   # any TrialConfig field

It builds the synthetic dataset if it is missing (in $TUNE_M3_DATA_DIR or the default store).
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import time

import numpy as np

from tune_m3.config import TrialConfig, add_overrides_argument, parse_overrides
from tune_m3.data import ensure_synthetic, load_dataset
from tune_m3.train import train

SCHEMES = {
    "baseline": {},
    "M3 (πT=0.6, pM=0.25)": {
        "scheme": "m3",
        "p_mask": 0.25,
        "pi_text": 0.6,
        "pi_audio": 0.2,
        "pi_vision": 0.2,
    },
    "M3 sample-level (πT=0.6, pM=0.25)": {
        "scheme": "m3",
        "p_mask": 0.25,
        "pi_text": 0.6,
        "pi_audio": 0.2,
        "pi_vision": 0.2,
        "granularity": "sample",
    },
    "perturbation (15%+15%)": {"p_missing": 0.15, "p_noise": 0.15},
}
COLUMNS = [
    ("test_mae", "clean MAE"),
    ("test_corr", "clean Corr"),
    ("diag_test_text_missing_30_corr_drop", "text missing 30% ↓Corr"),
    ("diag_test_text_noisy_30_corr_drop", "text noisy 30% ↓Corr"),
    ("diag_test_audio_missing_30_corr_drop", "audio missing 30% ↓Corr"),
    ("diag_test_vision_missing_30_corr_drop", "vision missing 30% ↓Corr"),
    ("diag_test_text_missing_30_f1_drop", "text missing 30% ↓F1"),
    ("diag_test_text_noisy_30_f1_drop", "text noisy 30% ↓F1"),
]


def print_table(results: dict[str, list[dict]], what: str) -> None:
    print(
        f"\nSYNTHETIC MOSEI-shaped benchmark ({what}); mean ± std over seeds; "
        "↓ = drop versus clean at 30 % of the test set (positive = worse)\n"
    )
    print("| training | " + " | ".join(c for _, c in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for label, runs in results.items():
        cells = []
        for key, _ in COLUMNS:
            v = np.array([r[key] for r in runs])
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


def _run_one(
    task: tuple[str, int], name: str, epochs: int, threads: int, extra: dict | None = None
) -> dict:
    label, seed = task
    ds = load_dataset(name)
    data = {s: sp.arrays() for s, sp in ds.splits.items()}
    values = dict(SCHEMES[label], **(extra or {}))
    cfg = TrialConfig(dataset=name, seed=seed, max_epochs=epochs, threads=threads, **values)
    t0 = time.perf_counter()
    res = train(cfg, data)
    print(
        f"seed {seed} {label}: best epoch {res.best_epoch}, test_mae {res.final['test_mae']:.3f}, "
        f"text-missing-30 corr drop {res.final['diag_test_text_missing_30_corr_drop']:.3f} "
        f"({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    return res.final


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=0.05)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    p.add_argument("--json", help="also write all results here")
    p.add_argument("--only", help="comma-separated substrings: run only the matching schemes")
    add_overrides_argument(
        p, "a TrialConfig field for every run, e.g. --set bucket_batches=true (repeatable)"
    )
    p.add_argument(
        "--from-json",
        help="comma-separated result files: print their combined table, train nothing",
    )
    args = p.parse_args()
    name = f"synth_mosei_x{args.scale:g}"
    if args.from_json:
        results: dict[str, list[dict]] = {}
        for path in args.from_json.split(","):
            with open(path) as fh:
                for label, runs in json.load(fh).items():
                    results.setdefault(label, []).extend(runs)
        results = {k: results[k] for k in SCHEMES if results.get(k)}
        print_table(
            results, f"{name}, {len(next(iter(results.values())))} seeds, max {args.epochs} epochs"
        )
        return
    ensure_synthetic(name, "mosei", args.scale)
    ds = load_dataset(name)
    seeds = [int(s) for s in args.seeds.split(",")]
    chosen = [k for k in SCHEMES if not args.only or any(o in k for o in args.only.split(","))]
    tasks = [(label, seed) for seed in seeds for label in chosen]
    results = {k: [] for k in chosen}
    extra = parse_overrides(args.overrides)
    run = functools.partial(
        _run_one, name=name, epochs=args.epochs, threads=args.threads, extra=extra
    )
    if args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            outs = pool.map(run, tasks, chunksize=1)
    else:
        outs = [run(t) for t in tasks]
    for (label, _), final in zip(tasks, outs, strict=True):
        results[label].append(final)
    what = f"{name}: {ds.meta.sizes}, {len(seeds)} seeds, max {args.epochs} epochs"
    print_table(results, what + (f", {extra}" if extra else ""))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh)


if __name__ == "__main__":
    main()
