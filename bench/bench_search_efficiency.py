"""Issue [performance] item 1: the M3 Table 3 grid versus Optuna + ASHA over the same parameters.

On the SYNTHETIC MOSEI-shaped benchmark (never a MOSEI result), runs the real search CLI
(``python -m tune_m3.search``, Ray overhead included) on two space files this script writes:

- grid: scheme m3, pi_text {0.33, 0.6} x p_mask {0.1, 0.2, 0.25, 0.4}, audio_share 0.5,
  training seeds 0, 1, 2 (24 trials), FIFO: every trial trains to early stopping or max_epochs;
- optuna: the same fixed settings, pi_text uniform [0.33, 0.6], p_mask uniform [0.1, 0.4],
  training seed 0, Optuna TPE seeded with each search seed, ASHA on the epoch.

Both: the same max_epochs cap, patience 10, ``bucket_batches: true``, diagnostics off (only
training and one clean test pass are timed), 2 trials at once, 1 CPU (1 torch thread) each.
With ``--confirm-top-k K`` (default 2; 0 for none) the Optuna space also has a confirm stage,
``confirm: {top_k: K, seeds: --confirm-seeds}`` (default: the grid's seeds): the search's K best
configurations re-trained per seed, the winner the best mean (issue [search] item 5). Its table
counts search + confirm epochs against the grid's (target <= 35 %) and compares the confirmed
winner's mean test MAE with the grid's best point on the same seeds (target: within one pooled
test-MAE seed-std), and shows what ``top_k: 1`` would have cost and found.
The grid runs once, Optuna + ASHA once per search seed, each in its own results dir (Ray
storage + SQLite MLflow store) under --out. It prints a Markdown table: trained epochs, wall
time and the best validation MAE each search finds, against the target "within one seed-std of
the grid's best with at most 25 % of the grid's trained epochs":

    python bench/bench_search_efficiency.py --scale 0.05 --max-epochs 40 --num-samples 12 \\
        --seeds 0,1,2 --confirm-top-k 2 --out tune_m3_results/bench_search_efficiency

It builds the synthetic dataset first if it is missing (in --data-dir, $TUNE_M3_DATA_DIR or the
default store). A search whose result is already under --out (same settings) is not re-run, so
an interrupted benchmark continues where it stopped. Re-print the table without training:

    python bench/bench_search_efficiency.py --from-json tune_m3_results/bench_search_efficiency/search_efficiency.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tune_m3 import names
from tune_m3.names import STAGE_CONFIRM, STAGE_SEARCH

REPO = Path(__file__).resolve().parent.parent
PI_TEXT_GRID = [0.33, 0.6]
P_MASK_GRID = [0.1, 0.2, 0.25, 0.4]
METRIC = "val_mae"  # mode min; each trial's best val_mae is its best_val_loss (the val L1 = MAE)


# ------------------------------------------------------------------------------- space files


def space_files(args: argparse.Namespace, dataset: str) -> dict[str, dict[str, Any]]:
    fixed = {
        "scheme": "m3",
        "max_epochs": args.max_epochs,
        "patience": args.patience,
        "bucket_batches": True,
        "diagnostics": False,
        "threads": args.threads,
    }
    common = {
        "dataset": {"name": dataset},
        "fixed": fixed,
        "simplex": {"audio_share": 0.5},
        "metric": METRIC,
        "mode": "min",
        "max_concurrent": args.max_concurrent,
        "resources": {"cpu": 1, "gpu": 0},
    }
    grid = {
        "description": "bench_search_efficiency: M3 Table 3 grid on SYNTHETIC data (FIFO)",
        **common,
        "search": {"pi_text": {"grid": PI_TEXT_GRID}, "p_mask": {"grid": P_MASK_GRID}},
        "seeds": args.grid_seeds,
        "algorithm": {"type": "grid"},
        "scheduler": {"type": "fifo"},
    }
    optuna = {
        "description": "bench_search_efficiency: Optuna + ASHA over the grid's range, SYNTHETIC data",
        **common,
        "search": {
            "pi_text": {"uniform": [min(PI_TEXT_GRID), max(PI_TEXT_GRID)]},
            "p_mask": {"uniform": [min(P_MASK_GRID), max(P_MASK_GRID)]},
        },
        "seeds": [0],
        "algorithm": {"type": "optuna", "seed": 0},  # each search passes --seed
        "scheduler": {
            "type": "asha",
            "grace_period": args.grace_period,
            "reduction_factor": args.reduction_factor,
        },
        "num_samples": args.num_samples,
    }
    if args.confirm_top_k:
        optuna["confirm"] = {"top_k": args.confirm_top_k, "seeds": args.confirm_seeds}
    return {"se_grid": grid, "se_optuna": optuna}


# ------------------------------------------------------------------------- running a search


STOP_REASONS = {  # trials.parquet status -> why the trial stopped
    names.COMPLETED: "max_epochs",
    names.EARLY_STOPPED: "early_stopping",
    names.SCHEDULER_STOPPED: "asha",
    names.FAILED: "failed",
    names.KILLED: "killed",
}


def read_trials(parquet: Path) -> list[dict[str, Any]]:
    """Per-trial rows from the search's trials.parquet (both stages).

    The search writes one row per trial: ``epochs`` trained, the metrics of its best epoch by
    the search metric (``val_mae`` is that best value) and the final test results.
    """
    import pandas as pd

    df = pd.read_parquet(parquet)
    rows = []
    for rec in df.to_dict("records"):
        rec = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
        status = rec.get("status")
        rows.append(
            {
                "trial_id": rec.get("trial_id"),
                "stage": rec.get("stage") or STAGE_SEARCH,
                "confirm_trial": rec.get("confirm_trial"),  # confirm rows: the search trial
                "status": status,
                "stop_reason": STOP_REASONS.get(status, str(status)),
                "pi_text": rec.get("param_pi_text"),
                "p_mask": rec.get("param_p_mask"),
                "seed": rec.get("param_seed"),
                "epochs": int(rec.get("epochs") or 0),
                "best_val_mae": rec.get(METRIC),
                "best_epoch": rec.get("best_epoch_metric"),
                "test_mae": rec.get("test_mae"),
                "error": rec.get("error") or "",
            }
        )
    return rows


def run_search(
    key: str, space_path: Path, args: argparse.Namespace, dataset: str, seed: int | None
) -> dict[str, Any]:
    """One ``python -m tune_m3.search`` in its own results dir; its wall time and trials."""
    where = args.out / key
    if where.exists():  # a fresh run: Ray would otherwise find the old experiment of this name
        shutil.rmtree(where)
    where.mkdir(parents=True)
    name = key
    cmd = [
        sys.executable,
        "-m",
        "tune_m3.search",
        "--space",
        str(space_path),
        "--dataset",
        dataset,
        "--name",
        name,
        "--storage",
        str(where / "ray"),
        "--mlflow-uri",
        f"sqlite:///{where / 'mlflow.db'}",
    ]
    if args.data_dir:
        cmd += ["--data-dir", str(args.data_dir)]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    env = {**os.environ, "TUNE_M3_RESULTS": str(where), "PYTHONUNBUFFERED": "1"}
    print(f"\n=== {key}: {' '.join(cmd)}", flush=True)
    log = where / "search.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                fh.write(line)
                print(f"  [{key}] {line}", end="", flush=True)
            rc = proc.wait()
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
    wall = time.perf_counter() - t0
    text = log.read_text()
    m = re.search(r"search '.*' done in (\d+) s", text)
    parquet = where / "ray" / name / "trials.parquet"
    if not parquet.is_file():
        raise SystemExit(f"{key}: the search wrote no {parquet} (exit {rc}); see {log}")
    return {
        "kind": "grid" if seed is None else "optuna_asha",
        "search_seed": seed,
        "returncode": rc,
        "wall_s": wall,  # the whole CLI: data load, Ray start, MLflow, tuner.fit, shutdown
        "fit_s": float(m.group(1)) if m else None,  # tuner.fit alone, as the CLI prints it
        "results_dir": str(where),
        "trials_parquet": str(parquet),
        "trials": read_trials(parquet),
    }


# ------------------------------------------------------------------------------- the report


def _fmt_cfg(pi_text: float | None, p_mask: float | None) -> str:
    if pi_text is None or p_mask is None:
        return "–"
    return f"πT={pi_text:.3g}, pM={p_mask:.3g}"


def grid_stats(grid: dict[str, Any]) -> list[dict[str, Any]]:
    """Per grid point: best val_mae mean ± sample std over seeds, mean epochs trained."""
    points: dict[tuple[float, float], list[dict[str, Any]]] = {}
    for t in grid["trials"]:
        if t["best_val_mae"] is None:
            continue
        points.setdefault((round(t["pi_text"], 6), round(t["p_mask"], 6)), []).append(t)
    out = []
    for (pt, pm), ts in sorted(points.items()):
        v = np.array([t["best_val_mae"] for t in ts], dtype=float)
        test_mean, test_std = _mean_std([t["test_mae"] for t in ts])
        out.append(
            {
                "pi_text": pt,
                "p_mask": pm,
                "n_seeds": len(ts),
                "mean": float(v.mean()),
                "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                "test_mean": test_mean,
                "test_std": test_std,
                "epochs_mean": float(np.mean([t["epochs"] for t in ts])),
                "per_seed": {int(t["seed"]): t["best_val_mae"] for t in ts},
            }
        )
    return out


def _mean_std(values) -> tuple[float, float]:
    """Mean and sample std of the non-missing values (NaN, 0.0 when there are too few)."""
    v = np.array([x for x in values if x is not None], dtype=float)
    return (float(v.mean()) if len(v) else math.nan, float(v.std(ddof=1)) if len(v) > 1 else 0.0)


def confirmed(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The confirm stage of one search, per configuration (its search trial): best first.

    val_mae (each run's best epoch) and test_mae as mean ± sample std over the confirm seeds,
    and the epochs its confirm runs trained (failed runs' epochs included).
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in trials:
        if t.get("stage") == STAGE_CONFIRM:
            groups.setdefault(str(t["confirm_trial"]), []).append(t)
    out = []
    for of, ts in groups.items():
        ok = [t for t in ts if t["stop_reason"] != "failed"]
        val_mean, val_std = _mean_std([t["best_val_mae"] for t in ok])
        test_mean, test_std = _mean_std([t["test_mae"] for t in ok])
        out.append(
            {
                "confirm_of": of,
                "pi_text": ts[0]["pi_text"],
                "p_mask": ts[0]["p_mask"],
                "n": len(ok),
                "val_mean": val_mean,
                "val_std": val_std,
                "test_mean": test_mean,
                "test_std": test_std,
                "epochs": sum(t["epochs"] for t in ts),
            }
        )
    return sorted(out, key=lambda r: (math.isnan(r["val_mean"]), r["val_mean"]))


def repeats(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Confirm runs that repeat their search trial: same training seed, and the trial ended by
    its own early stopping or max_epochs (not ASHA, not failed), so the confirm run trains the
    same thing again (bit for bit on CPU). ``identical`` says whether it did."""
    search = {str(t["trial_id"]): t for t in trials if t.get("stage", STAGE_SEARCH) == STAGE_SEARCH}
    out = []
    for t in trials:
        trial = search.get(str(t.get("confirm_trial")))
        if t.get("stage") != STAGE_CONFIRM or trial is None or t["seed"] != trial["seed"]:
            continue
        if trial["stop_reason"] not in ("early_stopping", "max_epochs"):
            continue
        same = t["best_val_mae"] == trial["best_val_mae"] and t["epochs"] == trial["epochs"]
        out.append({"confirm_trial": trial["trial_id"], "epochs": t["epochs"], "identical": same})
    return out


def confirm_row(
    s: dict[str, Any],
    search: list[dict[str, Any]],
    pick: dict[str, Any] | None,
    best: dict[str, Any],
    test_std: float,
    grid_epochs: int,
):
    """Search + confirm of one Optuna search against the grid's best (see ``summarize``).

    ``search`` are its search-stage trials, ``pick`` the best of them (the search's own winner).
    """
    conf = confirmed(s["trials"])
    if not conf:
        return None
    search_epochs = sum(t["epochs"] for t in search)
    confirm_epochs = sum(c["epochs"] for c in conf)
    winner = conf[0]
    own = next((c for c in conf if pick and c["confirm_of"] == str(pick["trial_id"])), None)
    limit = best["test_mean"] + test_std

    def verdict(c, epochs):
        share = epochs / grid_epochs
        within = bool(c and c["test_mean"] <= limit)
        return {"share": share, "within": within, "met": within and share <= 0.35}

    rep = repeats(s["trials"])
    return {
        "search_epochs": search_epochs,
        "confirm_epochs": confirm_epochs,
        "ranking": conf,
        "winner": winner,
        "top_k": verdict(winner, search_epochs + confirm_epochs),
        # what top_k = 1 would have cost and found: the search's own pick, confirmed
        "top_1": {"config": own, **verdict(own, search_epochs + (own["epochs"] if own else 0))},
        # what taking each repeat's value from its search trial (not re-training) would cost;
        # the ranking is unchanged when every repeat came out identical
        "repeats": rep,
        "without_repeats": verdict(
            winner, search_epochs + confirm_epochs - sum(r["epochs"] for r in rep)
        ),
    }


def nearest_point(stats: list[dict[str, Any]], pi_text: float, p_mask: float) -> dict[str, Any]:
    """The grid point nearest to a found config (each axis scaled to the grid's range)."""
    span_t = (max(PI_TEXT_GRID) - min(PI_TEXT_GRID)) or 1.0
    span_m = (max(P_MASK_GRID) - min(P_MASK_GRID)) or 1.0
    return min(
        stats,
        key=lambda s: (
            ((s["pi_text"] - pi_text) / span_t) ** 2 + ((s["p_mask"] - p_mask) / span_m) ** 2
        ),
    )


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    searches = result["searches"]
    if "grid" not in searches:
        raise SystemExit("no grid search in these results (yet): nothing to compare against")
    grid = searches["grid"]
    stats = grid_stats(grid)
    best = min(stats, key=lambda s: s["mean"])
    grid_epochs = sum(t["epochs"] for t in grid["trials"])
    threshold = best["mean"] + best["std"]
    stds = [s["std"] for s in stats if s["n_seeds"] > 1]
    test_stds = [s["test_std"] for s in stats if s["n_seeds"] > 1]
    pooled_test = float(np.sqrt(np.mean(np.square(test_stds)))) if test_stds else 0.0
    rows = []
    for key, s in searches.items():
        if s["kind"] != "optuna_asha":
            continue
        search = [t for t in s["trials"] if t.get("stage", STAGE_SEARCH) == STAGE_SEARCH]
        ok = [t for t in search if t["best_val_mae"] is not None]
        top = min(ok, key=lambda t: t["best_val_mae"]) if ok else None
        epochs = sum(t["epochs"] for t in search)
        near = nearest_point(stats, top["pi_text"], top["p_mask"]) if top else None
        within = bool(top and top["best_val_mae"] <= threshold)
        share = epochs / grid_epochs if grid_epochs else math.nan
        rows.append(
            {
                "search": key,
                "search_seed": s["search_seed"],
                "trials": len(search),
                "asha_stopped": sum(t["stop_reason"] == "asha" for t in search),
                "failed": sum(t["stop_reason"] == "failed" for t in search),
                "epochs": epochs,
                "epochs_share_of_grid": share,
                "wall_s": s["wall_s"],
                "fit_s": s.get("fit_s"),
                "best": top,
                "within_one_std": within,
                "nearest_grid_point": near,
                "target_met": within and share <= 0.25,
                "confirm": confirm_row(s, search, top, best, pooled_test, grid_epochs),
            }
        )
    return {
        "grid_points": stats,
        "grid_best": best,
        "grid_epochs": grid_epochs,
        "grid_wall_s": grid["wall_s"],
        "grid_fit_s": grid.get("fit_s"),
        "grid_trials": len(grid["trials"]),
        "grid_failed": sum(t["stop_reason"] == "failed" for t in grid["trials"]),
        "threshold": threshold,
        "pooled_seed_std": float(np.sqrt(np.mean(np.square(stds)))) if stds else None,
        "pooled_test_seed_std": pooled_test,
        "grid_spread": max(x["mean"] for x in stats) - min(x["mean"] for x in stats),
        "limit_epochs": best["epochs_mean"],
        "optuna": rows,
    }


def print_report(result: dict[str, Any]) -> None:
    st = result["settings"]
    sm = summarize(result)
    best = sm["grid_best"]
    ge = sm["grid_epochs"]
    n_seeds = best["n_seeds"]
    print(
        f"\nSYNTHETIC MOSEI-shaped benchmark ({result['dataset']}: {result.get('dataset_sizes')}); "
        f"max {st['max_epochs']} epochs, patience {st['patience']}, bucketed batches, no "
        f"diagnostics, {st['max_concurrent']} concurrent trials x 1 CPU; metric val_mae (min): "
        "each trial's best epoch\n"
    )
    print(
        f"Grid best: {_fmt_cfg(best['pi_text'], best['p_mask'])}, val_mae {best['mean']:.4f} ± "
        f"{best['std']:.4f} (mean ± sample std over {n_seeds} seed(s)); target: an Optuna + ASHA "
        f"best val_mae <= {sm['threshold']:.4f} with <= 25 % of the grid's {ge} trained epochs "
        f"(<= {0.25 * ge:.0f})"
        + (
            f"; pooled seed-std over the grid {sm['pooled_seed_std']:.4f}"
            if sm["pooled_seed_std"]
            else ""
        )
        + "\n"
    )
    print(
        "| search | trials (ASHA-stopped) | trained epochs | % of grid epochs | wall s | "
        "best configuration | best val_mae | within grid best + 1 std | grid mean val_mae at "
        "nearest grid point | target met |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    fail = f", {sm['grid_failed']} failed" if sm["grid_failed"] else ""
    print(
        f"| grid (FIFO, {n_seeds} seeds) | {sm['grid_trials']} (0{fail}) | {ge} | 100 | "
        f"{sm['grid_wall_s']:.0f} | {_fmt_cfg(best['pi_text'], best['p_mask'])} | "
        f"{best['mean']:.4f} ± {best['std']:.4f} | – | – | – |"
    )
    for r in sm["optuna"]:
        b = r["best"] or {}
        near = r["nearest_grid_point"]
        near_s = (
            f"{near['mean']:.4f} ± {near['std']:.4f} ({_fmt_cfg(near['pi_text'], near['p_mask'])})"
            if near
            else "–"
        )
        fail = f", {r['failed']} failed" if r["failed"] else ""
        val = f"{b['best_val_mae']:.4f}" if b else "–"
        print(
            f"| Optuna + ASHA, search seed {r['search_seed']} | {r['trials']} ({r['asha_stopped']}{fail}) | "
            f"{r['epochs']} | {100 * r['epochs_share_of_grid']:.1f} | {r['wall_s']:.0f} | "
            f"{_fmt_cfg(b.get('pi_text'), b.get('p_mask'))} | {val} | "
            f"{'yes' if r['within_one_std'] else 'no'} | {near_s} | "
            f"{'yes' if r['target_met'] else 'no'} |"
        )
    print(
        f"| limit: the grid's best configuration trained once | 1 | {sm['limit_epochs']:.1f} "
        f"(mean over seeds) | {100 * sm['limit_epochs'] / ge:.1f} | – | "
        f"{_fmt_cfg(best['pi_text'], best['p_mask'])} | – | – | – | – |"
    )
    rows = sm["optuna"]
    if rows:
        met = sum(r["target_met"] for r in rows)
        share = np.mean([r["epochs_share_of_grid"] for r in rows])
        wall = np.mean([r["wall_s"] for r in rows])
        print(
            f"\nOptuna + ASHA met the target in {met} of {len(rows)} search seeds; mean "
            f"{100 * share:.1f} % of the grid's trained epochs, mean wall {wall:.0f} s "
            f"({100 * wall / sm['grid_wall_s']:.1f} % of the grid's). The best val_mae of a "
            "search is one training seed's value, the minimum over its trials (optimistic: "
            "compare the grid's mean at the nearest grid point)."
        )
    print_confirm(result, sm)
    print("\nGrid points (best val_mae per trial, mean ± sample std over seeds; epochs trained):\n")
    print("| πT | pM | val_mae | test_mae | per seed (val_mae) | epochs (mean) |")
    print("|---|---|---|---|---|---|")
    for s in sm["grid_points"]:
        per = ", ".join(f"{k}: {v:.4f}" for k, v in sorted(s["per_seed"].items()))
        mark = " **best**" if s is best else ""
        print(
            f"| {s['pi_text']:g} | {s['p_mask']:g} | {s['mean']:.4f} ± {s['std']:.4f}{mark} | "
            f"{s.get('test_mean', math.nan):.4f} ± {s.get('test_std', math.nan):.4f} | "
            f"{per} | {s['epochs_mean']:.1f} |"
        )


def print_confirm(result: dict[str, Any], sm: dict[str, Any]) -> None:
    """The confirm-stage table: search + confirm epochs and the confirmed winner's test MAE."""
    rows = [r for r in sm["optuna"] if r.get("confirm")]
    if not rows:
        return
    st, best = result["settings"], sm["grid_best"]
    ge, sd = sm["grid_epochs"], sm["pooled_test_seed_std"]
    print(
        f"\nConfirm stage: top_k {st.get('confirm_top_k')}, seeds {st.get('confirm_seeds')}. "
        f"Scale check: pooled seed-std of val_mae {sm['pooled_seed_std']:.4f} vs half the "
        f"spread of the grid points' means {sm['grid_spread'] / 2:.4f}. Grid best "
        f"{_fmt_cfg(best['pi_text'], best['p_mask'])}: test_mae {best['test_mean']:.4f} ± "
        f"{best['test_std']:.4f}; one seed-std = the pooled test_mae seed-std over the grid "
        f"points, {sd:.4f}. Target: search + confirm <= 35 % of the grid's {ge} epochs and the "
        f"confirmed winner's mean test_mae <= {best['test_mean'] + sd:.4f}.\n"
    )
    print(
        "| search seed | epochs: search + confirm (% of grid) | confirmed winner | val_mae | "
        "test_mae | target met | top_k = 1 instead: epochs % of grid, test_mae, met | "
        "repeats of a search trial: identical, epochs; % of grid without them, met |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["confirm"]
        w, k, one = c["winner"], c["top_k"], c["top_1"]
        own = one["config"]
        own_s = (
            f"{100 * one['share']:.1f} %, {own['test_mean']:.4f}, {'yes' if one['met'] else 'no'}"
            if own
            else "–"
        )
        rep, wo = c.get("repeats", []), c.get("without_repeats")
        rep_s = (
            f"{sum(x['identical'] for x in rep)} of {len(rep)}, {sum(x['epochs'] for x in rep)}; "
            f"{100 * wo['share']:.1f} %, {'yes' if wo['met'] else 'no'}"
            if wo
            else "–"
        )
        print(
            f"| {r['search_seed']} | {c['search_epochs']} + {c['confirm_epochs']} "
            f"({100 * k['share']:.1f} %) | {_fmt_cfg(w['pi_text'], w['p_mask'])} | "
            f"{w['val_mean']:.4f} ± {w['val_std']:.4f} | {w['test_mean']:.4f} ± "
            f"{w['test_std']:.4f} | {'yes' if k['met'] else 'no'} | {own_s} | {rep_s} |"
        )
    met = sum(r["confirm"]["top_k"]["met"] for r in rows)
    met1 = sum(r["confirm"]["top_1"]["met"] for r in rows)
    print(
        f"\nSearch + confirm met the target in {met} of {len(rows)} search seeds "
        f"(top_k = 1: {met1} of {len(rows)})."
    )
    for r in rows:
        print(f"\nConfirmed ranking, search seed {r['search_seed']}:")
        for i, c in enumerate(r["confirm"]["ranking"], 1):
            print(
                f"  {i}. {_fmt_cfg(c['pi_text'], c['p_mask'])}: val_mae {c['val_mean']:.4f} ± "
                f"{c['val_std']:.4f}, test_mae {c['test_mean']:.4f} ± {c['test_std']:.4f} "
                f"(n={c['n']}, {c['epochs']} epochs)"
            )


# ---------------------------------------------------------------------------------- main


def _ints(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=0.05, help="synthetic set: synth_mosei_x<scale>")
    p.add_argument("--max-epochs", type=int, default=40)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--num-samples", type=int, default=12, help="Optuna trials per search")
    p.add_argument("--grace-period", type=int, default=3, help="ASHA grace period (epochs)")
    p.add_argument("--reduction-factor", type=float, default=3, help="ASHA reduction factor")
    p.add_argument("--seeds", default="0,1,2", help="Optuna search (TPE) seeds, one search each")
    p.add_argument("--grid-seeds", default="0,1,2", help="training seeds of the grid")
    p.add_argument(
        "--confirm-top-k",
        type=int,
        default=2,
        help="confirm stage of each Optuna search: configurations re-trained (0: none)",
    )
    p.add_argument("--confirm-seeds", help="confirm stage: training seeds (default: --grid-seeds)")
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    p.add_argument("--data-dir", type=Path, help="dataset store (default $TUNE_M3_DATA_DIR)")
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "tune_m3_results" / "bench_search_efficiency",
        help="space files, one results dir per search, the JSON",
    )
    p.add_argument("--json", type=Path, help="result file (default OUT/search_efficiency.json)")
    p.add_argument(
        "--fresh", action="store_true", help="re-run searches whose results are already in --out"
    )
    p.add_argument(
        "--from-json", type=Path, help="print the table of this result file; train nothing"
    )
    args = p.parse_args()

    if args.from_json:
        print_report(json.loads(args.from_json.read_text()))
        return

    from tune_m3.data import ensure_synthetic

    args.seeds = _ints(args.seeds)
    args.grid_seeds = _ints(args.grid_seeds)
    args.confirm_seeds = _ints(args.confirm_seeds) if args.confirm_seeds else args.grid_seeds
    if args.confirm_top_k < 0:
        p.error("--confirm-top-k must be >= 0")
    args.out = args.out.expanduser().resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.json or args.out / "search_efficiency.json"
    dataset = f"synth_mosei_x{args.scale:g}"
    meta = ensure_synthetic(dataset, "mosei", args.scale, data_dir=args.data_dir)
    settings = {
        "scale": args.scale,
        "max_epochs": args.max_epochs,
        "patience": args.patience,
        "num_samples": args.num_samples,
        "grace_period": args.grace_period,
        "reduction_factor": args.reduction_factor,
        "grid_seeds": args.grid_seeds,
        "confirm_top_k": args.confirm_top_k,
        "confirm_seeds": args.confirm_seeds if args.confirm_top_k else [],
        "max_concurrent": args.max_concurrent,
        "threads": args.threads,
        "pi_text_grid": PI_TEXT_GRID,
        "p_mask_grid": P_MASK_GRID,
    }
    for key in ["grid"] + [f"optuna_seed{s}" for s in args.seeds]:  # before writing anything
        done = args.out / key / "result.json"
        if done.is_file() and not args.fresh:
            prev = json.loads(done.read_text()).get("settings")
            if prev != settings:
                raise SystemExit(
                    f"{done} was run with other settings ({prev}); use another --out or --fresh"
                )
    paths = {}
    for stem, spec in space_files(args, dataset).items():
        paths[stem] = args.out / f"{stem}.yaml"
        paths[stem].write_text(yaml.safe_dump(spec, sort_keys=False))

    result: dict[str, Any] = {
        "benchmark": "search_efficiency (issue [performance] item 1)",
        "synthetic": True,
        "dataset": dataset,
        "dataset_sizes": meta.sizes,
        "settings": settings,
        "search_seeds": args.seeds,
        "host": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "affinity": sorted(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "python": platform.python_version(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "searches": {},
    }
    plan = [("grid", paths["se_grid"], None)] + [
        (f"optuna_seed{s}", paths["se_optuna"], s) for s in args.seeds
    ]
    for key, space_path, seed in plan:
        done = args.out / key / "result.json"
        if done.is_file() and not args.fresh:
            prev = json.loads(done.read_text())
            print(f"=== {key}: reusing {done}")
            result["searches"][key] = prev["search"]
            continue
        s = run_search(key, space_path, args, dataset, seed)
        done.write_text(json.dumps({"settings": settings, "search": s}, indent=1, default=str))
        result["searches"][key] = s
        json_path.write_text(json.dumps(result, indent=1, default=str))
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    json_path.write_text(json.dumps(result, indent=1, default=str))
    print_report(result)
    print(f"\nresults: {json_path} (re-print with --from-json {json_path})")


if __name__ == "__main__":
    main()
