"""The training loop, usable with or without Ray; ``python -m tune_m3.train`` runs one config.

The M3 paper's recipe (sec. 3): Adam (lr 5e-4), L1 loss, batch 32, halve the learning rate when
the validation loss has not improved for 2 epochs (ReduceLROnPlateau), early stopping on the
validation loss with patience 10. At the end the best epoch's weights are evaluated on test and,
unless ``diagnostics=False``, the robustness checks run (:mod:`tune_m3.diagnostics`). The authors'
code also passes ``cooldown=2, min_lr=2.5e-5`` to ReduceLROnPlateau: ``lr_cooldown`` / ``min_lr``
(defaults 0 and 0, PyTorch's, as before).

Perturbation with ``sigma_scale="rms"`` needs the RMS of the clean target modality: it is
measured once, before the first update, on a fixed-seed subset of the training split with the
freshly initialised model in eval mode (:func:`tune_m3.diagnostics.measure_rms`), stored in the
checkpoint (a resumed run keeps it) and reported with every epoch as
``train_noise_rms_<modality>``. Surprise: the encoder's output scale moves while it trains, so
σ = 1 means "as strong as the signal at initialisation", not at the end (on the synthetic
benchmark the text RMS grows about 2.6x in 12 epochs; docs/fidelity.md).

Ray is not needed here: the trainable (``tune_m3.trainable``) only passes an ``on_epoch`` callback
that reports to Ray, and a checkpoint directory. Checkpoints hold model, optimizer, scheduler,
epoch, best weights, early-stopping state, history and every RNG state (torch's global RNG,
the shuffling generator and the augmentation layers' generators), so a resumed run continues
exactly as an uninterrupted one would: same seed, same numbers on CPU.
"""

from __future__ import annotations

import argparse
import copy
import math
import pickle
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tune_m3.augment.perturb import ModalityPerturbation
from tune_m3.augment.schedule import p_mask_at, set_p_mask
from tune_m3.batches import batch_tensors
from tune_m3.config import (
    MODALITY_NAMES,
    TrialConfig,
    add_overrides_argument,
    make_config,
    parse_overrides,
)
from tune_m3.diagnostics import measure_rms, rms_key, run_diagnostics
from tune_m3.errors import UserError, cli_main
from tune_m3.metrics import compute_metrics
from tune_m3.models.seam import AugmentedModel, build_model, check_model_spec

__all__ = ["build_model", "train", "predict", "load_checkpoint", "evaluate_final"]

# one split: modality -> (N, L_l, d_l), "labels" (N,), "lengths" (N,) [+ "lengths_<modality>"]
Arrays = Mapping[str, np.ndarray]
CHECKPOINT_FILE = "state.pt"
EVAL_BATCH = 256


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial is failed with this message."""


@dataclass
class TrainResult:
    history: list[dict[str, float]]  # one dict per epoch (the metrics passed to on_epoch)
    best_epoch: int
    best_val_loss: float
    final: dict[str, float] = field(default_factory=dict)  # test_* and diag_* metrics
    stopped_early: bool = False
    model: nn.Module | None = None
    final_reported: bool = True  # final metrics went out with the last epoch's on_epoch call


def resolve_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError(
                "device 'cuda' was asked for but torch sees no GPU; use --set device=cpu"
            )
        return torch.device("cuda")
    return torch.device("cpu")


def validation_diagnostics(
    model, cfg: TrialConfig, valid: Arrays, device
) -> tuple[dict[str, float], np.ndarray]:
    """The ``cfg.val_diagnostics`` keys (``diag_val_*``), computed on the validation split, and
    the clean validation predictions (N,) of the same pass.

    Only the modalities, kinds, fractions and metrics those keys name are computed (the
    diagnostics of ``tune_m3/diagnostics.py``, with the test-time settings ``diag_sigma``,
    ``diag_seed`` and ``diag_noise_kind``; an rms ``diag_sigma_scale`` is not used here).
    The clean predictions equal :func:`predict`'s (same batches, eval mode), so an epoch with
    validation diagnostics takes its ``val_*`` metrics from them instead of a second clean
    pass. The model is left in eval mode.
    """
    from tune_m3.names import parse_diag_key

    wanted = [parse_diag_key(k) for k in cfg.val_diagnostics]
    fractions = sorted({d.fraction for d in wanted if not d.is_auc} or set(cfg.diag_fractions))
    res, clean = run_diagnostics(
        model,
        valid,
        batch_size=EVAL_BATCH,
        modalities=sorted({d.modality for d in wanted}, key=MODALITY_NAMES.index),
        fractions=fractions,
        sigma=cfg.diag_sigma,
        seed=cfg.diag_seed,
        device=device,
        metrics=sorted({d.metric for d in wanted}),
        kinds=sorted({d.kind for d in wanted}),
        noise_kind=cfg.diag_noise_kind,
        split="val",
    )
    return {k: res[k] for k in cfg.val_diagnostics}, clean


def _rms_perturbations(model: AugmentedModel) -> list[ModalityPerturbation]:
    """The perturbation layers whose noise is scaled by a measured RMS."""
    return [
        layer
        for layer in model.augment.layers
        if isinstance(layer, ModalityPerturbation) and layer.sigma_scale == "rms"
    ]


def _set_noise_rms(
    model: AugmentedModel, cfg: TrialConfig, train_arr: Arrays, device, saved: float | None
) -> dict[str, float]:
    """Give rms-scaled perturbation layers their RMS (``saved`` on resume, else measured)."""
    layers = _rms_perturbations(model)
    if not layers:
        return {}
    if saved is None:
        saved = measure_rms(
            model,
            train_arr,
            modalities=(cfg.perturb_target,),
            at="hook",
            seed=cfg.seed * 7 + 5,
            device=device,
        )[cfg.perturb_target]
    for layer in layers:
        layer.set_rms(saved)
    return {rms_key(cfg.perturb_target, diag=False): float(saved)}


@torch.no_grad()
def predict(
    model: nn.Module, arrays: Arrays, device: torch.device, batch_size: int = EVAL_BATCH
) -> np.ndarray:
    """Predictions (N,) for a whole split, in eval mode."""
    model.eval()
    n = arrays["labels"].shape[0]
    out = np.empty(n, dtype=np.float64)
    for lo in range(0, n, batch_size):
        idx = np.arange(lo, min(n, lo + batch_size))
        mods, lengths, _ = batch_tensors(arrays, idx, MODALITY_NAMES, device)
        out[idx] = model(mods, lengths).double().cpu().numpy()
    return out


def epoch_batches(
    n: int, batch_size: int, gen: torch.Generator, lengths: np.ndarray, bucket: bool
) -> list[np.ndarray]:
    """One epoch's batches of row indices (each sorted, for cache-friendly gathers).

    Plain (the paper's recipe): a random permutation cut into batches. ``bucket=True``: the
    permutation is cut into windows of 50 batches, each window is ordered by sequence length
    and cut into batches, and the batches are shuffled. Batches then hold sequences of similar
    length, so the front padding cut by ``batch_tensors`` is most of what is left over: less
    work per epoch, same samples per epoch (see docs/performance.md for the measured effect).
    """
    perm = torch.randperm(n, generator=gen).numpy()
    if bucket:
        window = batch_size * 50
        keys = lengths[perm]
        # stable sort by (window, length): one vectorised argsort, no loop over samples
        order = np.lexsort((keys, np.arange(n) // window))
        perm = perm[order]
    batches = [np.sort(perm[lo : lo + batch_size]) for lo in range(0, n, batch_size)]
    if bucket:
        shuffle_order = torch.randperm(len(batches), generator=gen).numpy()
        batches = [batches[i] for i in shuffle_order]
    return batches


def _save(path: Path, state: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (CHECKPOINT_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path / CHECKPOINT_FILE)  # atomic: a kill mid-save leaves the old checkpoint


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`train` (a directory holding ``state.pt``, or the file).

    ``weights_only=True`` loads through torch's restricted unpickler (tensors, numbers, strings,
    plain containers): a checkpoint tampered with on shared storage cannot run code when a trial
    resumes from it. Everything :func:`train` saves is of those types.
    """
    path = Path(path)
    file = path / CHECKPOINT_FILE if path.is_dir() else path
    if not file.is_file():
        raise UserError(
            f"{file}: no checkpoint there; give a directory written by --checkpoint-dir "
            f"(it holds {CHECKPOINT_FILE})"
        )
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles: the error says it
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as err:
        raise UserError(
            f"{file}: not a readable tune_m3 checkpoint ({type(err).__name__}): truncated, not "
            "written by tune_m3, or holding objects other than tensors and plain data"
        ) from None


def _train_epoch(
    model: AugmentedModel,
    opt: torch.optim.Optimizer,
    cfg: TrialConfig,
    train_arr: Arrays,
    n_train: int,
    shuffle: torch.Generator,
    device: torch.device,
    epoch: int,
) -> float:
    """One pass over the first ``n_train`` training samples; the mean L1 loss per sample."""
    model.train()
    total, count = 0.0, 0
    for idx in epoch_batches(
        n_train, cfg.batch_size, shuffle, train_arr["lengths"], cfg.bucket_batches
    ):
        mods, lengths, y = batch_tensors(train_arr, idx, MODALITY_NAMES, device)
        pred = model(mods, lengths)  # (B,)
        loss = nn.functional.l1_loss(pred, y)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss.item()} at epoch {epoch} (lr {opt.param_groups[0]['lr']:g}); "
                "lower lr or set grad_clip"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        total += loss.item() * len(idx)
        count += len(idx)
    return total / max(count, 1)


def _rng_state(model: AugmentedModel, shuffle: torch.Generator, device) -> dict[str, Any]:
    """Every random stream a resumed trial must continue: batches, global (dropout: the CPU's,
    and the GPU's when training there), augmentation."""
    return {
        "shuffle_rng": shuffle.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "augment_rng": model.generator_state(),
    }


def _set_rng_state(ck: Mapping[str, Any], model: AugmentedModel, shuffle, device) -> None:
    """Continue the random streams :func:`_rng_state` saved."""
    shuffle.set_state(ck["shuffle_rng"])
    torch.set_rng_state(ck["torch_rng"])
    if device.type == "cuda" and ck.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(ck["cuda_rng"], device)
    model.set_generator_state(ck["augment_rng"])


def train(
    cfg: TrialConfig,
    data: Mapping[str, Arrays],
    *,
    on_epoch: Callable[[dict[str, float], Path | None], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    progress: bool = False,
    final_eval: bool = True,
) -> TrainResult:
    """Train ``cfg`` on ``data`` (splits ``train``, ``valid`` and, for the final eval, ``test``).

    Args:
        on_epoch: called after every epoch with that epoch's metrics and the checkpoint directory
            written for it (None when no checkpoint was written this epoch).
        checkpoint_dir: where checkpoints go (every ``cfg.checkpoint_every`` epochs).
        resume_from: a checkpoint directory or file to continue from.
        final_eval: evaluate the best weights on test (+ diagnostics) at the end.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    train_arr, valid_arr = data["train"], data["valid"]
    input_dims = {m: train_arr[m].shape[2] for m in MODALITY_NAMES}
    # every model-spec mistake ends here, before the first epoch, as one UserError
    steps = {m: train_arr[m].shape[1] for m in MODALITY_NAMES}
    # a tiny batch whose step counts are equal, or unequal, as the data's are
    check_model_spec(
        cfg, input_dims, {m: max(1, 8 * n // max(steps.values())) for m, n in steps.items()}
    )
    model = build_model(cfg, input_dims).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt,
        mode="min",
        factor=cfg.lr_factor,
        patience=cfg.lr_patience,
        cooldown=cfg.lr_cooldown,
        min_lr=cfg.min_lr,
    )
    shuffle = torch.Generator().manual_seed(cfg.seed * 7 + 1)

    n_train = train_arr["labels"].shape[0]
    if cfg.max_train_samples:
        n_train = min(n_train, cfg.max_train_samples)
    start_epoch, best_val, best_epoch, bad_epochs = 1, math.inf, 0, 0
    best_state = copy.deepcopy(model.state_dict())
    history: list[dict[str, float]] = []
    torch.manual_seed(cfg.seed * 7 + 4)  # dropout and anything else on the global RNG

    ck = load_checkpoint(resume_from) if resume_from is not None else None
    noise_rms = _set_noise_rms(
        model, cfg, train_arr, device, None if ck is None else ck.get("perturb_rms")
    )
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        _set_rng_state(ck, model, shuffle, device)
        start_epoch = ck["epoch"] + 1
        best_val, best_epoch, bad_epochs = ck["best_val_loss"], ck["best_epoch"], ck["bad_epochs"]
        best_state, history = ck["best_model"], ck["history"]

    final: dict[str, float] | None = None
    stopped_early = bool(history) and bad_epochs >= cfg.patience
    epochs = range(start_epoch, cfg.max_epochs + 1) if not stopped_early else range(0)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_epochs, initial=start_epoch - 1, unit="epoch", file=sys.stdout)
    val_diag: dict[str, float] = {}
    for epoch in epochs:
        t0 = time.perf_counter()
        p_now = p_mask_at(cfg.p_mask, cfg.p_mask_schedule, cfg.p_mask_warmup_epochs, epoch)
        set_p_mask(model.augment.layers, p_now)
        train_loss = _train_epoch(model, opt, cfg, train_arr, n_train, shuffle, device, epoch)
        if cfg.val_diagnostics and (
            not val_diag or (epoch - start_epoch) % cfg.val_diag_every == 0
        ):  # its clean pass is this epoch's validation pass; in between, val_diag carries on
            val_diag, val_pred = validation_diagnostics(model, cfg, valid_arr, device)
        else:
            val_pred = predict(model, valid_arr, device)
        val = compute_metrics(val_pred, valid_arr["labels"])
        val_loss = val["mae"]  # the L1 training loss on the validation set
        lr_used = opt.param_groups[0]["lr"]
        sched.step(val_loss)
        if val_loss < best_val:
            best_val, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss,
            "lr": lr_used,
            **({"train_p_mask": p_now} if cfg.scheme != "none" else {}),
            "val_loss": val_loss,
            **{f"val_{k}": v for k, v in val.items()},
            **val_diag,
            **noise_rms,
            "best_val_loss": best_val,
            "best_epoch": best_epoch,
            "epoch_seconds": time.perf_counter() - t0,
        }
        history.append(metrics)
        ck_path = None
        if checkpoint_dir is not None and (
            epoch % cfg.checkpoint_every == 0
            or bad_epochs >= cfg.patience
            or epoch == cfg.max_epochs
        ):
            ck_path = Path(checkpoint_dir)
            _save(
                ck_path,
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    **_rng_state(model, shuffle, device),
                    "epoch": epoch,
                    "best_val_loss": best_val,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "best_model": best_state,
                    "history": history,
                    "config": cfg.model_dump(),
                    "perturb_rms": next(iter(noise_rms.values()), None),
                },
            )
        if bar is not None:
            bar.set_postfix(
                val_mae=f"{val_loss:.3f}", val_acc2=f"{val['acc2']:.1f}", best=best_epoch
            )
            bar.update(1)
        is_last = bad_epochs >= cfg.patience or epoch == cfg.max_epochs
        if is_last and final_eval and "test" in data:
            # The last epoch's report carries the final results: a scheduler that decides at
            # this epoch (an ASHA rung at max_epochs) cannot cut the trial off before them.
            final = _evaluate_best(model, best_state, cfg, data, device)
            metrics = {
                **metrics,
                **final,
                "trial_done": 1,
                "stopped_early": int(bad_epochs >= cfg.patience),
            }
        if on_epoch is not None:
            on_epoch(metrics, ck_path)
        if bad_epochs >= cfg.patience:
            stopped_early = True
            break
    if bar is not None:
        bar.close()

    result = TrainResult(history, best_epoch, best_val, stopped_early=stopped_early, model=model)
    if final is None and final_eval and "test" in data:  # resumed after the last epoch
        final = _evaluate_best(model, best_state, cfg, data, device)
        result.final_reported = False
    model.load_state_dict(best_state)
    result.final = final or {}
    return result


def _evaluate_best(model, best_state, cfg, data, device) -> dict[str, float]:
    """test_* and diag_* of the best epoch's weights; the model keeps its current weights."""
    current = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    try:
        return evaluate_final(model, cfg, data["test"], device, train_arrays=data.get("train"))
    finally:
        model.load_state_dict(current)


def evaluate_final(
    model: AugmentedModel,
    cfg: TrialConfig,
    test: Arrays,
    device: torch.device,
    train_arrays: Arrays | None = None,
) -> dict[str, float]:
    """test_* metrics of ``model`` and, if configured, the diag_* robustness checks.

    ``diag_sigma_scale="rms"`` measures each damaged modality's RMS on ``train_arrays`` (the
    training split, required then) with ``model`` itself, at ``diag_seed``.
    """
    if not cfg.diagnostics:
        return {
            f"test_{k}": v
            for k, v in compute_metrics(predict(model, test, device), test["labels"]).items()
        }
    rms = None
    if cfg.diag_sigma_scale == "rms":
        if train_arrays is None:
            raise ValueError("diag_sigma_scale='rms' needs the training split to measure the RMS")
        rms = measure_rms(
            model, train_arrays, cfg.diag_modalities, seed=cfg.diag_seed, device=device
        )
    final, _ = run_diagnostics(
        model,
        test,
        modalities=cfg.diag_modalities,
        fractions=cfg.diag_fractions,
        sigma=cfg.diag_sigma,
        seed=cfg.diag_seed,
        batch_size=EVAL_BATCH,
        device=device,
        noise_kind=cfg.diag_noise_kind,
        sigma_scale=cfg.diag_sigma_scale,
        rms=rms,
    )
    return final


# ------------------------------------------------------------------------------------------ CLI


def _print_final(final: Mapping[str, float]) -> None:
    from tune_m3.diagnostics import KINDS
    from tune_m3.metrics import HEADLINE
    from tune_m3.names import diag_key, parse_diag_key

    print("test: " + "  ".join(f"{k}={final[f'test_{k}']:.4g}" for k in HEADLINE))
    keys = [d for d in map(parse_diag_key, final) if d is not None and d.split == "test"]
    mods = sorted({d.modality for d in keys}, key=MODALITY_NAMES.index)
    if not mods:
        return
    fracs = sorted({d.pct for d in keys if not d.is_auc}, key=float)
    print("diagnostics: drop of corr / f1 versus clean (positive = worse)")
    print(f"  {'damage':<16}" + "".join(f"{f + '%':>16}" for f in fracs))
    for m in mods:
        for kind in KINDS:
            cells = [
                f"{final[diag_key(m, kind, f, 'corr', drop=True)]:+.3f} / "
                f"{final[diag_key(m, kind, f, 'f1', drop=True)]:+.2f}"
                for f in fracs
            ]
            print(f"  {m + ' ' + kind:<16}" + "".join(f"{c:>16}" for c in cells))


@cli_main
def main(argv: list[str] | None = None) -> int:
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
    args = p.parse_args(argv)
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
    print(
        f"training on {tag}dataset '{ds.name}' ({' '.join(f'{s}={n}' for s, n in ds.meta.sizes.items())})"
    )
    data = {s: sp.arrays() for s, sp in ds.splits.items()}
    try:
        res = train(
            cfg, data, checkpoint_dir=args.checkpoint_dir, resume_from=args.resume, progress=True
        )
    except TrainingDiverged as err:  # the configuration's doing (lr, grad_clip): not a bug
        raise UserError(f"training diverged: {err}") from None
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


if __name__ == "__main__":
    sys.exit(main())
