"""The confirm stage: is the search's winner a real winner or one seed's lucky minimum?

A search ranks configurations by ONE training run each; on small validation sets the spread
between seeds is as large as the spread between configurations (``docs/performance.md``). A
space may therefore say ``confirm: {top_k: 3, seeds: [1, 2, 3]}``: after the search, the top-k
configurations by the search metric (for a multi-objective search, at most top_k of the Pareto
set) are re-trained once per seed, to ``max_epochs`` with the usual early stopping and no ASHA,
through the same trainable, as child runs of the same parent run (tags ``tune_m3.stage`` =
``confirm`` and ``tune_m3.confirm_of`` = the search trial's run id).

The law of the ranking: each confirm run is summarised by its best-epoch value of the search
metric (as search trials are); a configuration's score is the mean over its confirm seeds; the
winner is the best mean. The separation of first and second is

    gap = |mean_1 - mean_2| / sqrt((std_1² + std_2²) / 2)     (sample stds over the seeds)

in seed-stds: below 1 the ranking of the two is within seed noise.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from tune_m3.names import FAILED, KILLED, STAGE_CONFIRM, STAGE_SEARCH, fmt
from tune_m3.search.space import POINT, SearchSpace

CONFIRM_OF = "_confirm_of"  # keys inside a confirm trial's point (never TrialConfig fields)
CONFIRM_TRIAL = "_confirm_trial"


def candidates(df: pd.DataFrame, space: SearchSpace) -> pd.DataFrame:
    """The search rows to confirm: the top_k by the search metric (failed/killed left out)."""
    k = space.confirm.top_k if space.confirm else 0
    ok = df[(df["stage"] == STAGE_SEARCH) & ~df["status"].isin([FAILED, KILLED])]
    ok = ok[ok[space.metric].notna()]
    if space.objectives:  # the Pareto set, best first by the first objective
        from tune_m3.pareto import pareto_rows

        ok = pareto_rows(ok, [(o.metric, o.mode) for o in space.objectives])
    return ok.sort_values(space.metric, ascending=space.mode == "min").head(k)


def points(cands: pd.DataFrame, space: SearchSpace) -> list[dict[str, Any]]:
    """One Ray config point per (candidate, confirm seed): its searched values and the seed."""
    keys = [k for k in space.search] + (["variant"] if space.variants else [])
    out = []
    for _, row in cands.iterrows():
        base = {k: _plain(row[f"param_{k}"]) for k in keys if f"param_{k}" in row}
        for seed in space.confirm.seeds:
            out.append(
                {**base, "seed": seed, CONFIRM_OF: row["run_id"], CONFIRM_TRIAL: row["trial_id"]}
            )
    return out


def param_space(pts: list[dict[str, Any]]) -> dict[str, Any]:
    from ray import tune

    return {POINT: tune.grid_search(pts)}


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def ranking(df: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """Per confirmed configuration: mean, std and n of the metric and test_mae; best first."""
    conf = df[df["stage"] == STAGE_CONFIRM]
    rows = []
    for of, g in conf.groupby("confirm_of", sort=False):
        ok = g[~g["status"].isin([FAILED, KILLED])]
        row = {"confirm_of": of, "trial_id": g["confirm_trial"].iloc[0], "n": len(ok)}
        for col in [metric, "test_mae"]:
            vals = pd.to_numeric(ok[col], errors="coerce").dropna() if col in ok else pd.Series()
            row[f"{col}_mean"] = vals.mean() if len(vals) else math.nan
            row[f"{col}_std"] = vals.std(ddof=1) if len(vals) > 1 else math.nan
        params = {
            c: g[c].iloc[0] for c in g.columns if c.startswith("param_") and c != "param_seed"
        }
        rows.append({**row, **params})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out = out.sort_values(f"{metric}_mean", ascending=mode == "min", na_position="last")
    return out.reset_index(drop=True)


def separation(rank: pd.DataFrame, metric: str) -> float:
    """First vs second, in seed-stds (see module doc); NaN with fewer than two or no spread."""
    if len(rank) < 2:
        return math.nan
    a, b = rank.iloc[0], rank.iloc[1]
    pooled = math.sqrt((a[f"{metric}_std"] ** 2 + b[f"{metric}_std"] ** 2) / 2)
    if not pooled or math.isnan(pooled):
        return math.nan
    return abs(a[f"{metric}_mean"] - b[f"{metric}_mean"]) / pooled


def format_ranking(rank: pd.DataFrame, metric: str, searched: list[str]) -> str:
    lines = [f"confirmed ranking (mean ± std over seeds, best-epoch {metric}):"]
    for i, r in rank.iterrows():
        shown = ", ".join(f"{k}={fmt(r[f'param_{k}'])}" for k in searched if f"param_{k}" in r)
        lines.append(
            f"  {i + 1}. {metric} {r[f'{metric}_mean']:.4f} ± {r[f'{metric}_std']:.4f}  "
            f"test_mae {r['test_mae_mean']:.4f} ± {r['test_mae_std']:.4f}  (n={int(r['n'])})  "
            f"{shown}"
        )
    gap = separation(rank, metric)
    if not math.isnan(gap):
        lines.append(f"  first and second are {gap:.2f} seed-stds apart")
    return "\n".join(lines)
