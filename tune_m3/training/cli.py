"""``python -m tune_m3.train``: train one configuration without Ray (debugging, baselines).

Prints the dataset (tagged SYNTHETIC when it is), a progress bar, the best epoch's validation
metrics, the test metrics and, with diagnostics on, a table of the robustness drops. A diverging
configuration ends with one ``error: training diverged: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from tune_m3.config import MODALITY_NAMES, add_overrides_argument, make_config, parse_overrides
from tune_m3.errors import UserError, cli_main
from tune_m3.failures import is_deterministic, reason
from tune_m3.metrics import HEADLINE
from tune_m3.names import DIAG_KINDS, diag_key, parse_diag_key
from tune_m3.training.epoch import TrainingDiverged
from tune_m3.training.loop import train

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tune_m3.train",
        description="Train one configuration without Ray (debugging, baselines).",
    )
    p.add_argument("--dataset", help="dataset in the store (default: synth_mosei)")
    p.add_argument(
        "--data-dir", help="store directory (default: $TUNE_M3_DATA_DIR or ~/.cache/tune_m3/data)"
    )
    add_overrides_argument(
        p, "any TrialConfig field, e.g. --set scheme=m3 --set p_mask=0.25 (repeatable)"
    )
    p.add_argument("--epochs", type=int, help="shorthand for --set max_epochs=N")
    p.add_argument("--checkpoint-dir", help="write checkpoints here")
    p.add_argument("--resume", help="continue from this checkpoint directory")
    return p


def _print_final(final: Mapping[str, float]) -> None:
    print("test: " + "  ".join(f"{k}={final[f'test_{k}']:.4g}" for k in HEADLINE))
    keys = [d for d in map(parse_diag_key, final) if d is not None and d.split == "test"]
    mods = sorted({d.modality for d in keys}, key=MODALITY_NAMES.index)
    if not mods:
        return
    fracs = sorted({d.pct for d in keys if not d.is_auc}, key=float)
    print("diagnostics: drop of corr / f1 versus clean (positive = worse)")
    print(f"  {'damage':<16}" + "".join(f"{f + '%':>16}" for f in fracs))
    for m in mods:
        for kind in DIAG_KINDS:
            cells = [
                f"{final[diag_key(m, kind, f, 'corr', drop=True)]:+.3f} / "
                f"{final[diag_key(m, kind, f, 'f1', drop=True)]:+.2f}"
                for f in fracs
            ]
            print(f"  {m + ' ' + kind:<16}" + "".join(f"{c:>16}" for c in cells))


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from tune_m3.linear_kernel import kernel_setting

    kernel_setting()  # $TUNE_M3_CPU_LINEAR checked before any work

    from tune_m3.data import load_dataset

    values = parse_overrides(args.overrides)
    if args.dataset:
        values["dataset"] = args.dataset
    if args.epochs is not None:  # --epochs 0 is refused below, not ignored
        values["max_epochs"] = args.epochs
    cfg = make_config(values, where="--set")
    ds = load_dataset(cfg.dataset, args.data_dir)
    tag = "SYNTHETIC " if ds.meta.synthetic else ""
    sizes = " ".join(f"{s}={n}" for s, n in ds.meta.sizes.items())
    print(f"training on {tag}dataset '{ds.name}' ({sizes})")
    data = {s: sp.arrays() for s, sp in ds.splits.items()}
    try:
        res = train(
            cfg, data, checkpoint_dir=args.checkpoint_dir, resume_from=args.resume, progress=True
        )
    except TrainingDiverged as err:  # the configuration's doing (lr, grad_clip): not a bug
        raise UserError(f"training diverged: {err}") from None
    except Exception as err:  # NaN predictions, an error in the user's model: not retried
        if not is_deterministic(err, cfg.model):  # a bug of ours keeps its traceback
            raise
        raise UserError(f"training failed: {reason(err, cfg.model)}") from None
    best = res.history[res.best_epoch - 1] if res.best_epoch else {}
    print(
        f"best epoch {res.best_epoch}: "
        + "  ".join(
            f"{k}={best.get(k, float('nan')):.4g}"
            for k in ("val_mae", "val_corr", "val_acc2", "val_f1", "val_acc7")
        )
    )
    _print_final(res.final)
    return 0
