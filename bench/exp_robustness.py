"""Issue-3 experiment: does M3 / perturbation training shrink the missing- and noisy-text drops?

On the SYNTHETIC MOSEI-shaped benchmark (never a MOSEI result), trains the baseline, M3
(pi_text = 0.6, p_mask = 0.25) and modality perturbation (15 % missing + 15 % noise) with
several seeds, runs the diagnostics, and prints a Markdown table of mean ± std over seeds:

    python bench/exp_robustness.py --scale 0.05 --seeds 0,1,2 --epochs 12 --jobs 2 [--threads 1]
    python bench/exp_robustness.py --only baseline --set bucket_batches=true ...   # any TrialConfig field
    python bench/exp_robustness.py --diag-noise multiplicative,rms ...   # noisy rows, other laws

``--diag-noise`` re-runs the noisy-modality diagnostics of every trained model under further
laws of noise (``multiplicative``: z·m with one z ~ N(0, 1) per clip, the robustness paper's
code; ``rms``: additive N(0, (σ·r)²) with r the modality's RMS on the training split, σ = 1),
beside the configured one; their keys get the suffix ``@<law>``. The ``mult`` rows train with
multiplicative perturbation noise.

``--f1-swap`` also reports ``test_f1_swapped``: the clean test F1 as MulT's and MSA-Robustness's
evaluation computes it, ``sklearn.metrics.f1_score(preds > 0, truth > 0, average="weighted")``
on the non-zero labels (arguments swapped: classes weighted by PREDICTED support), beside ours
(MMSA's, ``test_f1``).

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
from tune_m3.training import evaluate_final, train

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
    "perturbation (15%+15%, mult noise)": {
        "p_missing": 0.15,
        "p_noise": 0.15,
        "noise_kind": "multiplicative",
    },
}
DIAG_LAWS = {  # --diag-noise name -> the diag_noise_kind and diag_sigma_scale it sets
    "additive": {"noise_kind": "additive", "sigma_scale": "absolute"},
    "multiplicative": {"noise_kind": "multiplicative", "sigma_scale": "absolute"},
    "rms": {"noise_kind": "additive", "sigma_scale": "rms"},
}
LAW_LABEL = {"additive": "+N(0,1)", "multiplicative": "×z", "rms": "+N(0,r²)"}
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


def columns(results: dict[str, list[dict]]) -> list[tuple[str, str]]:
    """COLUMNS plus, for each extra diagnostics law found, its noisy-text columns."""
    keys = set().union(*(r.keys() for runs in results.values() for r in runs))
    cols = list(COLUMNS)
    if "test_f1_swapped" in keys:
        cols += [
            ("test_f1", "clean F1 (ours = MMSA)"),
            ("test_f1_swapped", "clean F1 (MulT order)"),
        ]
        cols.append(("test_f1_swap_minus_ours", "MulT − ours"))
    for law, label in LAW_LABEL.items():
        for met, name in (("corr", "Corr"), ("f1", "F1")):
            key = f"diag_test_text_noisy_30_{met}_drop@{law}"
            if key in keys:
                cols.append((key, f"text noisy {label} 30% ↓{name}"))
    return cols


def print_table(results: dict[str, list[dict]], what: str) -> None:
    print(
        f"\nSYNTHETIC MOSEI-shaped benchmark ({what}); mean ± std over seeds; "
        "↓ = drop versus clean at 30 % of the test set (positive = worse)\n"
    )
    cols = columns(results)
    print("| training | " + " | ".join(c for _, c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for label, runs in results.items():
        cells = []
        for key, _ in cols:
            v = np.array([r.get(key, np.nan) for r in runs])
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


def _other_laws(res, cfg: TrialConfig, data: dict, laws: list[str]) -> dict[str, float]:
    """The noisy diagnostics of the trained (best) model under further laws, keys ``k@law``."""
    out: dict[str, float] = {}
    for law in laws:
        kw = DIAG_LAWS[law]
        law_cfg = cfg.model_copy(
            update={"diag_noise_kind": kw["noise_kind"], "diag_sigma_scale": kw["sigma_scale"]}
        )
        final = evaluate_final(
            res.model, law_cfg, data["test"], model_device(res.model), train_arrays=data["train"]
        )
        out.update({f"{k}@{law}": v for k, v in final.items() if "noisy" in k or "rms" in k})
    return out


def _f1_swapped(model, test: dict) -> dict[str, float]:
    """Clean test F1 with MulT's argument order, and the difference to ours (points)."""
    from sklearn.metrics import f1_score

    from tune_m3.metrics import compute_metrics
    from tune_m3.training import predict

    preds = predict(model, test, model_device(model))
    truth = np.asarray(test["labels"], dtype=np.float64)
    nz = truth != 0
    swapped = 100 * f1_score(preds[nz] > 0, truth[nz] > 0, average="weighted")
    ours = compute_metrics(preds, truth)["f1"]
    return {"test_f1_swapped": float(swapped), "test_f1_swap_minus_ours": float(swapped - ours)}


def model_device(model):
    return next(model.parameters()).device


def _run_one(
    task: tuple[str, int],
    name: str,
    epochs: int,
    threads: int,
    extra: dict | None = None,
    laws: tuple[str, ...] = (),
    f1_swap: bool = False,
) -> dict:
    label, seed = task
    ds = load_dataset(name)
    data = {s: sp.arrays() for s, sp in ds.splits.items()}
    values = dict(SCHEMES[label], **(extra or {}))
    cfg = TrialConfig(dataset=name, seed=seed, max_epochs=epochs, threads=threads, **values)
    t0 = time.perf_counter()
    res = train(cfg, data)
    res.final.update(_other_laws(res, cfg, data, list(laws)))
    if f1_swap:
        res.final.update(_f1_swapped(res.model, data["test"]))
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
    p.add_argument(
        "--diag-noise",
        default="",
        help=f"comma-separated further laws for the noisy diagnostics, from {sorted(DIAG_LAWS)}",
    )
    p.add_argument(
        "--f1-swap", action="store_true", help="also report the clean F1 in MulT's argument order"
    )
    add_overrides_argument(
        p, "a TrialConfig field for every run, e.g. --set bucket_batches=true (repeatable)"
    )
    p.add_argument(
        "--from-json",
        help="comma-separated result files: print their combined table, train nothing",
    )
    args = p.parse_args()
    laws = tuple(x for x in args.diag_noise.split(",") if x)
    if set(laws) - set(DIAG_LAWS):
        p.error(
            f"--diag-noise: unknown {sorted(set(laws) - set(DIAG_LAWS))}; use {sorted(DIAG_LAWS)}"
        )
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
        _run_one,
        name=name,
        epochs=args.epochs,
        threads=args.threads,
        extra=extra,
        laws=laws,
        f1_swap=args.f1_swap,
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
