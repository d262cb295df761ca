"""Issue [search] item 4: does ramping pM up (M3 paper's future work) change anything?

On the SYNTHETIC MOSEI-shaped benchmark (never a MOSEI result), trains M3 at one (pM, πT) with
a constant pM and with a linear (and a cosine) warm-up from 0 to pM, over several seeds, and
prints mean ± std over seeds of the clean test metrics and the missing/noisy-text drops:

    python bench/exp_schedule.py --scale 0.05 --seeds 0,1,2 --epochs 12 --warmup 4 \\
        --p-mask 0.27 --pi-text 0.45 --jobs 2 --json docs/results/schedule_synthetic_x0.05.json

The defaults are the demo's confirmed winner of 2026-11-24 (pM 0.27, πT 0.45; πA = πV).
It builds the synthetic dataset if it is missing ($TUNE_M3_DATA_DIR or the default store).
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp

import numpy as np

from tune_m3.config import TrialConfig
from tune_m3.data import ensure_synthetic, load_dataset
from tune_m3.training import train

KEYS = (
    "test_mae",
    "test_corr",
    "test_f1",
    "diag_test_text_missing_30_corr_drop",
    "diag_test_text_noisy_30_corr_drop",
)


def _one(task: tuple[str, int], name: str, args: argparse.Namespace) -> dict:
    schedule, seed = task
    data = {s: sp.arrays() for s, sp in load_dataset(name).splits.items()}
    rest = (1 - args.pi_text) / 2
    cfg = TrialConfig(
        dataset=name,
        seed=seed,
        max_epochs=args.epochs,
        threads=1,
        scheme="m3",
        p_mask=args.p_mask,
        pi_text=args.pi_text,
        pi_audio=rest,
        pi_vision=rest,
        p_mask_schedule=schedule,
        p_mask_warmup_epochs=0 if schedule == "constant" else args.warmup,
        diag_fractions=(0.3,),
    )
    res = train(cfg, data)
    out = {k: res.final[k] for k in KEYS}
    out["best_epoch"] = res.best_epoch
    print(
        f"{schedule} seed {seed}: " + ", ".join(f"{k}={v:.4f}" for k, v in out.items()), flush=True
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=0.05)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--p-mask", type=float, default=0.27)
    p.add_argument("--pi-text", type=float, default=0.45)
    p.add_argument("--schedules", default="constant,linear,cosine")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--json")
    args = p.parse_args()
    name = f"synth_mosei_x{args.scale:g}"
    ensure_synthetic(name, "mosei", args.scale)
    tasks = [(s, int(seed)) for s in args.schedules.split(",") for seed in args.seeds.split(",")]
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        results = pool.map(functools.partial(_one, name=name, args=args), tasks)
    by: dict[str, list[dict]] = {}
    for (schedule, _), r in zip(tasks, results, strict=True):
        by.setdefault(schedule, []).append(r)
    print(
        f"\nSYNTHETIC {name}: M3 pM={args.p_mask}, πT={args.pi_text}, {args.epochs} epochs, "
        f"warm-up {args.warmup} epochs; mean ± std over seeds {args.seeds}"
    )
    print("| pM schedule | " + " | ".join(KEYS) + " |")
    print("|---|" + "---|" * len(KEYS))
    for schedule, runs in by.items():
        cells = []
        for k in KEYS:
            v = np.array([r[k] for r in runs])
            cells.append(f"{v.mean():.4f} ± {v.std(ddof=1):.4f}")
        print(f"| {schedule} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "runs": by}, fh, indent=1)


if __name__ == "__main__":
    main()
