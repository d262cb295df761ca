"""What validation diagnostics cost per epoch (multi-objective searches with diag_val_* objectives).

    python bench/bench_val_diagnostics.py [--scale 0.05] [--threads 1] [--repeats 3]

On the SYNTHETIC MOSEI-shaped set, with the paper's baseline at full size and M3 training,
alternates one-epoch ``train()`` runs without and with ``val_diagnostics`` (the objective of
``search_spaces/robust_pareto_mosei.yaml``, and a wider set: both kinds of damage for every
modality at 30 %), and reports the median epoch time of each and the extra cost. The epoch
time includes the clean validation pass every epoch has anyway (an epoch with diagnostics
takes it from the diagnostics' own clean pass). Then, on the last trained model, it times the
parts alone: a clean validation pass and each variant's validation diagnostics.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from tune_m3.config import TrialConfig
from tune_m3.data import ensure_synthetic, load_dataset
from tune_m3.names import DIAG_KINDS, MODALITIES, diag_key
from tune_m3.training import predict, train, validation_diagnostics

VARIANTS = {
    "none": (),
    "1 key (text missing 30 %, MAE drop)": ("diag_val_text_missing_30_mae_drop",),
    "6 keys (3 modalities x missing/noisy, 30 %)": tuple(
        diag_key(m, k, 0.3, "mae", split="val", drop=True) for m in MODALITIES for k in DIAG_KINDS
    ),
}


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
    print(f"{name} (SYNTHETIC): {ds.meta.sizes}")
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for label, keys in VARIANTS.items():
            cfg = TrialConfig(
                dataset=name,
                scheme="m3",
                p_mask=0.2,
                max_epochs=1,
                threads=args.threads,
                diagnostics=False,
                val_diagnostics=keys,
            )
            res = train(cfg, data, final_eval=False)
            seconds[label].append(res.history[0]["epoch_seconds"])
    base = statistics.median(seconds["none"])
    print(f"| validation diagnostics | epoch seconds (median of {args.repeats}) | extra |")
    print("|---|---|---|")
    for label, s in seconds.items():
        med = statistics.median(s)
        print(f"| {label} | {med:.2f} | {100 * (med / base - 1):+.1f} % |")
    direct(res.model, name, data["valid"], repeats=7)


def direct(model, name: str, valid, repeats: int) -> None:
    """The parts alone, alternated on one trained model: a clean validation pass (``predict``)
    and each variant's validation diagnostics (which include a clean pass of their own, used as
    the epoch's validation pass). Median seconds of ``repeats``."""
    cpu = torch.device("cpu")
    timed = {"clean validation pass (predict)": lambda: predict(model, valid, cpu)}
    for label, keys in VARIANTS.items():
        if keys:
            cfg = TrialConfig(dataset=name, diagnostics=False, val_diagnostics=keys)
            timed[f"validation diagnostics, {label}"] = functools.partial(
                validation_diagnostics, model, cfg, valid, cpu
            )
    seconds: dict[str, list[float]] = {k: [] for k in timed}
    for _ in range(repeats):
        for label, f in timed.items():
            t0 = time.perf_counter()
            f()
            seconds[label].append(time.perf_counter() - t0)
    print(f"\n| alone, on the trained model | seconds (median of {repeats}) |")
    print("|---|---|")
    for label, s in seconds.items():
        print(f"| {label} | {statistics.median(s):.3f} |")


if __name__ == "__main__":
    main()
