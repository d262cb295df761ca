"""Plots (PNG) from a :func:`analysis.load.load_runs` frame.

Each function draws one figure into ``path`` and returns a :class:`PlotResult`. When the runs
lack what the figure needs (no diagnostics, no grid, too few trials ...), nothing is written and
the result has ``path = None`` and the ``reason``, so a report can list what it skipped.

=========================  ===============================================================
:func:`heatmap`            a test metric over the M3 grid pM × πT (mean over seeds per cell)
:func:`robustness_curves`  metric versus perturbed test fraction (0 = clean), missing and
                           noisy panels, one line per training configuration, mean ± std
                           band over seeds
:func:`learning_curves`    per-epoch validation metric of every trial, coloured by outcome
                           (completed / stopped by ASHA / failed)
:func:`param_importance`   Optuna's fANOVA importance of the searched params for the search
                           metric, on a study rebuilt from the runs
:func:`pareto_scatter`     clean error versus robustness drop of every trial, Pareto front
                           marked (both lower is better)
=========================  ===============================================================

Figures are drawn on ``matplotlib.figure.Figure`` objects (the Agg canvas), never through
``pyplot``: no global backend switch, no figures left open.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from textwrap import wrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, FuncFormatter, MaxNLocator, NullFormatter

from analysis.grouping import (
    NotApplicable,
    completed,
    config_columns,
    determined_by,
    diag_fractions,
    drop_dependent,
    fmt_num,
    group_label,
    nunique,
    run_scores,
    sort_key,
)
from analysis.labels import KINDS, METRIC_LABELS
from tune_m3.metrics import LOWER_IS_BETTER
from tune_m3.names import (
    COMPLETED,
    EARLY_STOPPED,
    FAILED,
    KILLED,
    SCHEDULER_STOPPED,
    diag_key,
    parse_diag_key,
)
from tune_m3.pareto import non_dominated

__all__ = [
    "PlotResult",
    "save_figure",
    "skippable",
    "synthetic_suffix",
    "heatmap",
    "learning_curves",
    "pareto_front",
    "param_importance",
    "pareto_scatter",
    "robustness_curves",
]

STATUS_STYLE = {  # trial outcome -> (colour, line style, legend label)
    COMPLETED: ("#1f77b4", "-", "completed"),
    EARLY_STOPPED: ("#2ca02c", "-", "early stopped (patience)"),
    SCHEDULER_STOPPED: ("#d62728", "--", "stopped by ASHA"),
    FAILED: ("#7f7f7f", ":", "failed"),
    KILLED: ("#8c564b", ":", "killed"),
}
MAX_LINES = 8
DPI = 110


@dataclass
class PlotResult:
    """One figure: ``path`` is None when it was skipped, and ``reason`` says why."""

    name: str
    title: str
    path: Path | None = None
    reason: str = ""
    caption: str = ""

    def __bool__(self) -> bool:
        return self.path is not None


def skippable(name: str, title: str):
    """Decorator: NotApplicable inside a plot function becomes a skipped PlotResult."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs) -> PlotResult:
            try:
                path, caption = fn(*args, **kwargs)
            except NotApplicable as err:
                return PlotResult(name, title, None, str(err))
            return PlotResult(name, title, Path(path), "", caption)

        return inner

    return wrap


def save_figure(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _label(metric: str) -> str:
    d = parse_diag_key(metric)
    if d is not None:
        what = f"{d.modality} {d.kind} on {d.pct}% of {d.split}"
        return f"{METRIC_LABELS.get(d.metric, d.metric)}{' drop' if d.drop else ''}, {what}"
    base = re.sub(r"^(test_|val_|train_)", "", metric)
    lab = METRIC_LABELS.get(base, base)
    prefix = metric[: len(metric) - len(base)].rstrip("_")
    return f"{prefix} {lab}".strip() if prefix else lab


def synthetic_suffix(df: pd.DataFrame) -> str:
    return " [SYNTHETIC data]" if "synthetic" in df and df["synthetic"].any() else ""


def _groups(done: pd.DataFrame) -> tuple[list[str], pd.Series]:
    """Configuration keys and a per-run label (variant first; seed never)."""
    keys = config_columns(done)
    if "variant" in keys:
        keys = drop_dependent(done, "variant", keys)
        keys = ["variant", *[k for k in keys if k != "variant"]]
    elif "scheme" in keys:
        keys = drop_dependent(done, "scheme", keys)
        keys = ["scheme", *[k for k in keys if k != "scheme"]]
    if not keys:
        return keys, pd.Series("all runs", index=done.index)
    labels = done.apply(lambda r: group_label(r, keys), axis=1)
    order = sorted(range(len(done)), key=lambda i: sort_key(done.iloc[i], keys))
    ranked = list(dict.fromkeys(labels.iloc[order]))  # lines/legends in a natural order
    return keys, pd.Series(pd.Categorical(labels, categories=ranked), index=done.index)


# --------------------------------------------------------------------------- heatmap


def _sig3(v: float, _pos: object = None) -> str:
    """A tick label with 3 significant digits (0.000312, 0.25, 1.2e+03), never "-0"."""
    if not np.isfinite(v):
        return ""
    s = f"{v:.3g}"
    return "0" if float(s) == 0 else s


SIG3 = FuncFormatter(_sig3)


def _grid_cells(done: pd.DataFrame, metric: str):
    """Mean, std and n of ``metric`` per (pi_text, p_mask) cell, as (πT rows, pM columns)."""
    g = done.groupby(["pi_text", "p_mask"])[metric]
    if g.ngroups < 2:
        raise NotApplicable("the M3 trials span one (pi_text, p_mask) cell only")
    return g.mean().unstack("p_mask"), g.std(ddof=1).unstack("p_mask"), g.count().unstack("p_mask")


def _colour_range(vals: np.ndarray, std: np.ndarray) -> tuple[float, float, str]:
    """(vmin, vmax, note): the colour range spans the cell means, and at least 4 pooled seed-stds
    around their middle, so that differences within seed noise look pale, not black and white."""
    lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
    spread = hi - lo
    pooled = float(np.sqrt(np.nanmean(std**2))) if np.isfinite(std).any() else math.nan
    if not np.isfinite(pooled):
        return (
            lo,
            hi,
            (
                f"spread of cell means {_sig3(spread)}; one seed per cell: no noise estimate, "
                "differences may be seed noise"
            ),
        )
    half = max(spread, 4 * pooled) / 2
    mid = (lo + hi) / 2
    note = (
        f"spread of cell means {_sig3(spread)} = {spread / pooled:.1f} seed-stds" if pooled else ""
    )
    return mid - half, mid + half, note


@skippable("heatmap", "Metric over the M3 grid (pM × πT)")
def heatmap(df: pd.DataFrame, path: str | Path, metric: str = "test_mae"):
    """Mean of ``metric`` over seeds in each (pi_text, p_mask) cell of the M3 trials (grids).

    Uses completed trials with ``scheme == "m3"`` when several schemes are present. Cells show
    the mean, the std and n; the colour scale is the mean (its colour bar says which way is
    better). The colour range spans at least 4 pooled seed-stds, and the title gives the spread
    of the cell means, so a spread within seed noise is not drawn as full contrast. Skipped
    unless the trials span at least two cells.
    """
    done = completed(df, metric)
    if "scheme" in done and nunique(done["scheme"]) > 1:
        done = done[done["scheme"] == "m3"]
    if done.empty or "p_mask" not in done or "pi_text" not in done:
        raise NotApplicable(f"no completed M3 trials with {metric}, p_mask and pi_text")
    mean, std, n = _grid_cells(done, metric)
    lower = re.sub(r"^test_", "", metric) in LOWER_IS_BETTER or metric.endswith("_drop")
    vals = mean.to_numpy()
    vmin, vmax, note = _colour_range(vals, std.to_numpy(dtype=float))
    # enough decimals that the colour bar's ticks and the cells tell the values apart
    dec = max(3, 1 - math.floor(math.log10(max(vmax - vmin, 1e-12))))
    fig = Figure(figsize=(max(5.5, 2.4 + 1.5 * mean.shape[1]), 1.8 + 1.1 * mean.shape[0]))
    ax = fig.subplots()
    cmap = "viridis_r" if lower else "viridis"
    im = ax.imshow(vals, cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(mean.shape[1]), [_sig3(v) for v in mean.columns])
    ax.set_yticks(range(mean.shape[0]), [_sig3(v) for v in mean.index])
    ax.set_xlabel("pM (p_mask)")
    ax.set_ylabel("πT (pi_text)")
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            if np.isnan(vals[i, j]):
                continue
            sd = std.iat[i, j]
            txt = fmt_num(vals[i, j], dec) + ("" if np.isnan(sd) else f"\n± {fmt_num(sd, dec)}")
            txt += f"\nn={int(n.iat[i, j])}"
            dark = (vals[i, j] - vmin) / (vmax - vmin + 1e-12)
            dark = dark > 0.5 if lower else dark < 0.5
            ax.text(j, i, txt, ha="center", va="center", fontsize=8, color="w" if dark else "k")
    cb = fig.colorbar(im, ax=ax, format=FormatStrFormatter(f"%.{dec}f"))
    cb.set_label(f"{'lower' if lower else 'higher'} is better")
    ax.set_title(
        f"{_label(metric)} over pM × πT{synthetic_suffix(df)}\n" + "\n".join(wrap(note, 60)),
        fontsize=9,
    )
    return save_figure(fig, path), (
        f"Mean {metric} over seeds per (πT, pM) cell of the M3 trials (± sample std, n runs); "
        f"{note}."
    )


# --------------------------------------------------------------------------- robustness


@skippable("robustness_curves", "Robustness curves")
def robustness_curves(
    df: pd.DataFrame,
    path: str | Path,
    modality: str = "text",
    metrics: Sequence[str] = ("corr", "f1"),
):
    """``metric`` versus the perturbed fraction of the test set, missing and noisy panels.

    x = 0 is the clean test metric; the other points are the diagnostics
    ``diag_test_<modality>_<kind>_<pct>_<metric>``. One line per training configuration
    (variant, scheme or the params that differ), the mean over seeds with a ± std band when
    there are several seeds. At most 8 lines: the best by clean value are kept.
    """
    done = completed(df)
    pcts = diag_fractions(done, modality, metrics[0])
    if done.empty or not pcts:
        raise NotApplicable(f"no completed trials with diagnostics of the {modality} modality")
    keys, labels = _groups(done)
    done = done.assign(_group=labels.astype(str))
    groups = list(labels.cat.categories) if hasattr(labels, "cat") else ["all runs"]
    groups, note = _best_groups(done, groups, metrics[0])
    xs = np.array([0.0, *[float(p) for p in pcts]])
    fig = Figure(figsize=(10, 3.4 * len(metrics)))
    axes = np.atleast_2d(fig.subplots(len(metrics), len(KINDS), sharex=True, squeeze=False))
    cmap = [f"C{i}" for i in range(10)]
    for r, met in enumerate(metrics):
        for c, kind in enumerate(KINDS):
            ax = axes[r, c]
            for gi, g in enumerate(groups):
                sub = done[done["_group"] == g]
                cols = [f"test_{met}", *[diag_key(modality, kind, p, met) for p in pcts]]
                if any(col not in sub for col in cols):
                    continue
                vals = sub[cols].to_numpy(dtype=float)  # (seeds, points)
                mu = np.nanmean(vals, axis=0)
                ax.plot(xs, mu, marker="o", ms=3, color=cmap[gi % 10], label=f"{g} (n={len(sub)})")
                if len(sub) > 1:
                    sd = np.nanstd(vals, axis=0, ddof=1)
                    ax.fill_between(xs, mu - sd, mu + sd, color=cmap[gi % 10], alpha=0.15)
            ax.set_title(f"{modality} {kind}", fontsize=10)
            ax.set_ylabel(METRIC_LABELS.get(met, met))
            ax.grid(alpha=0.3)
            if r == len(metrics) - 1:
                ax.set_xlabel(f"% of test samples with {modality} {kind}")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2)
    fig.suptitle(
        f"Robustness to {modality} missing / noisy at test time{note}{synthetic_suffix(df)}",
        fontsize=11,
    )
    return save_figure(fig, path), (
        f"Test {', '.join(metrics)} as a growing fraction of test samples has its {modality} "
        "representation zeroed (missing) or noised (noisy); 0 % = clean. Lines: mean over seeds; "
        "bands: ± sample std."
    )


def _best_groups(done: pd.DataFrame, groups: list[str], metric: str) -> tuple[list[str], str]:
    """At most :data:`MAX_LINES` of ``groups`` (values of ``done["_group"]``), the best by the
    mean clean ``test_<metric>``, in their order; and a title note when some were left out."""
    if len(groups) <= MAX_LINES:
        return groups, ""
    means = done.groupby("_group")[f"test_{metric}"].mean()
    best = means.sort_values(ascending=metric in LOWER_IS_BETTER).index[:MAX_LINES]
    note = f" (best {MAX_LINES} of {len(means)} configurations by clean {metric})"
    return [g for g in groups if g in set(best)], note


# --------------------------------------------------------------------------- learning curves


@skippable("learning_curves", "Learning curves")
def learning_curves(
    history: pd.DataFrame,
    path: str | Path,
    metrics: Sequence[str] = ("val_mae",),
    df: pd.DataFrame | None = None,
):
    """Per-epoch ``metrics`` of every trial (``history`` from :func:`analysis.load.load_history`),
    one panel per metric, coloured by the trial's outcome: completed, stopped by the scheduler
    (ASHA), failed."""
    if history is None or history.empty:
        raise NotApplicable("no per-epoch history")
    metrics = [m for m in metrics if (history["metric"] == m).any()]
    if not metrics:
        raise NotApplicable("the history has none of the requested metrics")
    fig = Figure(figsize=(6.5 * len(metrics), 4))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    counts: dict[str, int] = {}
    for ax, met in zip(axes, metrics, strict=True):
        h = history[history["metric"] == met]
        seen: set[str] = set()
        for _, part in h.groupby("run_id", sort=False):
            st = part["trial_status"].iloc[0] or "running"
            colour, ls, lab = STATUS_STYLE.get(st, ("#9467bd", "-.", st))
            ax.plot(
                part["step"],
                part["value"],
                color=colour,
                ls=ls,
                lw=1.2,
                alpha=0.8,
                marker="o" if len(part) == 1 else None,
                ms=3,
                label=None if lab in seen else lab,
            )
            seen.add(lab)
            if met == metrics[0]:
                counts[lab] = counts.get(lab, 0) + 1
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(_label(met))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    fig.suptitle(
        f"Learning curves: {summary}{synthetic_suffix(df) if df is not None else ''}", fontsize=11
    )
    return save_figure(fig, path), (
        f"{', '.join(metrics)} per epoch for every trial; red dashed lines are trials the "
        "scheduler (ASHA) stopped early."
    )


# --------------------------------------------------------------------------- importance


def _distribution(values: pd.Series):
    import optuna.distributions as od

    vals = values.dropna()
    if vals.map(
        lambda v: isinstance(v, bool | np.bool_)
    ).any() or not pd.api.types.is_numeric_dtype(vals):
        return od.CategoricalDistribution(sorted({str(v) for v in vals})), str
    lo, hi = float(vals.min()), float(vals.max())
    if pd.api.types.is_integer_dtype(vals):
        return od.IntDistribution(int(lo), int(hi)), int
    log = lo > 0 and hi / lo >= 100  # learning rates are searched on a log scale
    return od.FloatDistribution(lo, hi, log=log), float


@skippable("param_importance", "Parameter importance")
def param_importance(
    df: pd.DataFrame,
    path: str | Path,
    metric: str = "val_mae",
    mode: str = "min",
    min_trials: int = 4,
):
    """fANOVA importance (Optuna) of the params that differ between trials, for ``metric``.

    The study is rebuilt from the runs with ``optuna.trial.create_trial``: one COMPLETE trial
    per run that has ``metric``, its value the last one the trial reported (what the searcher
    saw; an ASHA-stopped trial's value is from the epoch it was stopped at). ``pi_audio`` and
    ``pi_vision`` are left out when ``pi_text`` determines them. Skipped with fewer than
    ``min_trials`` trials or fewer than two differing params (importance would be trivial).
    """
    import optuna

    if metric not in df:
        raise NotApplicable(f"the trials have no metric '{metric}'")
    t = df[df[metric].notna()]
    if len(t) < min_trials:
        raise NotApplicable(f"{len(t)} trials with {metric}; importance needs >= {min_trials}")
    params = [p for p in config_columns(t) if p != "variant" or not _has_variant_params(t)]
    if len(params) < 2:
        raise NotApplicable(
            f"only {len(params)} parameter(s) differ between trials "
            f"({', '.join(params) or 'none'}); importance would be trivial"
        )
    study = _rebuilt_study(t, params, metric, mode)
    try:
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
        how = "fANOVA"
    except Exception as err:  # noqa: BLE001 - e.g. every value equal: say so, draw nothing
        raise NotApplicable(f"Optuna could not compute importances ({err})") from None
    if not imp or not np.isfinite(list(imp.values())).all():
        raise NotApplicable("Optuna returned no finite importances (all values equal?)")
    names = list(imp)[::-1]
    fig = Figure(figsize=(6.5, 1.2 + 0.45 * len(names)))
    ax = fig.subplots()
    ax.barh(names, [imp[n] for n in names], color="C0")
    for i, n in enumerate(names):
        ax.text(imp[n], i, f" {imp[n]:.2f}", va="center", fontsize=8)
    ax.set_xlabel(f"importance for {metric} ({how}, sums to 1)")
    ax.set_xlim(0, max(imp.values()) * 1.2 + 1e-9)
    ax.set_title(f"Parameter importance, {len(t)} trials{synthetic_suffix(df)}", fontsize=10)
    return save_figure(fig, path), (
        f"Optuna {how} importance of each differing parameter for the last reported {metric} "
        f"of {len(t)} trials (a study rebuilt from the MLflow runs). Few trials make it noisy."
    )


def _rebuilt_study(t: pd.DataFrame, params: list[str], metric: str, mode: str):
    """An in-memory Optuna study with one COMPLETE trial per row of ``t``: its ``params``
    (unset ones left out of that trial) and ``metric`` as the value."""
    import optuna

    dists = {p: _distribution(t[p]) for p in params}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize" if mode == "min" else "maximize")
    for _, row in t.iterrows():
        ps, ds = {}, {}
        for p, (dist, conv) in dists.items():
            if pd.isna(row[p]):
                continue
            ps[p] = conv(row[p])
            ds[p] = dist
        study.add_trial(
            optuna.trial.create_trial(params=ps, distributions=ds, value=float(row[metric]))
        )
    return study


def _has_variant_params(t: pd.DataFrame) -> bool:
    """True when the params a variant sets also differ (then the variant name is redundant)."""
    others = [c for c in config_columns(t) if c != "variant"]
    return bool(others) and any(determined_by(t, c, ["variant"]) for c in others)


# --------------------------------------------------------------------------- pareto


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean mask of the points no other point beats in both x and y (both minimised)."""
    return non_dominated(np.column_stack([np.asarray(x, float), np.asarray(y, float)]), ["min"] * 2)


def _front_line(ax, xs: np.ndarray, ys: np.ndarray, front: np.ndarray, label: str, **style) -> None:
    """The Pareto front (``front``: a boolean mask over the points) as a dashed black line
    through circled points, in x order; ``style``: the markers' fill and size, the draw style."""
    order = np.argsort(xs[front])
    ax.plot(
        xs[front][order],
        ys[front][order],
        color="k",
        lw=1,
        ls="--",
        marker="o",
        label=label,
        **style,
    )


def _grid_and_legend(ax) -> None:
    """A light grid and the legend outside the axes, on the right."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))


@skippable("pareto_scatter", "Clean error versus robustness")
def pareto_scatter(
    df: pd.DataFrame,
    path: str | Path,
    x: str = "test_mae",
    y: str | None = None,
    modality: str = "text",
    kind: str = "missing",
):
    """Every completed trial as a point (clean ``x`` versus robustness drop ``y``), Pareto front
    marked. ``y`` defaults to ``diag_test_<modality>_<kind>_<pct>_mae_drop`` at 30 % (or the
    largest fraction the runs have). Both axes are lower-is-better: ``x`` must be an error
    (mae) or a drop."""
    done = completed(df, x)
    if y is None:
        pcts = diag_fractions(done, modality, "mae")
        if not pcts:
            raise NotApplicable(f"no diagnostics of the {modality} modality (mae drops)")
        pct = "30" if "30" in pcts else pcts[-1]
        y = diag_key(modality, kind, pct, "mae", drop=True)
    if y not in done:
        raise NotApplicable(f"the trials have no metric '{y}'")
    done = done[done[y].notna()]
    if len(done) < 2:
        raise NotApplicable(f"{len(done)} completed trial(s) with {x} and {y}; need >= 2")
    keys, labels = _groups(done)
    xs, ys = done[x].to_numpy(float), done[y].to_numpy(float)
    front = pareto_front(xs, ys)
    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    uniq = list(labels.cat.categories) if hasattr(labels, "cat") else []
    if 1 < len(uniq) <= 10:
        for gi, g in enumerate(uniq):
            m = (labels.astype(str) == g).to_numpy()
            ax.scatter(xs[m], ys[m], s=22, color=f"C{gi}", alpha=0.8, label=g)
    else:
        ax.scatter(xs, ys, s=22, color="C0", alpha=0.7, label=f"{len(xs)} trials")
    label = f"Pareto front ({int(front.sum())})"
    _front_line(ax, xs, ys, front, label, mfc="none", ms=10, drawstyle="steps-post")
    ax.set_xlabel(f"{_label(x)} (clean; lower is better)")
    ax.set_ylabel(f"{_label(y)}\n(lower = more robust)")
    _grid_and_legend(ax)
    ax.set_title(
        f"Clean error versus {modality} {kind} robustness{synthetic_suffix(df)}", fontsize=10
    )
    return save_figure(fig, path), (
        f"Each completed trial: clean {x} against the {y} drop; circled points are the Pareto "
        "front (no other trial is better on both)."
    )


@skippable("pareto_objectives", "The search's objectives and its Pareto front")
def pareto_objectives(df: pd.DataFrame, path: str | Path, objectives: Sequence[tuple[str, str]]):
    """Every trial of a multi-objective search on its first two ``objectives`` ((metric, mode)
    pairs, the parent run's ``objectives`` param), the Pareto front circled.

    The front is the trials tagged ``pareto = true`` by the search when any is; else the
    non-dominated set of the plotted trials computed here (:func:`non_dominated`, over all the
    objectives). A trial's value is its last reported one (what the searcher saw).
    """
    if len(objectives) < 2:
        raise NotApplicable("not a multi-objective search (fewer than 2 objectives)")
    (x, xm), (y, ym) = objectives[0], objectives[1]
    cols = [m for m, _ in objectives]
    missing = [m for m in cols if m not in df]
    if missing:
        raise NotApplicable(f"the trials have no metric {', '.join(missing)}")
    t = df.dropna(subset=cols)
    if len(t) < 2:
        raise NotApplicable(f"{len(t)} trial(s) with every objective; need >= 2")
    tagged = "pareto" in t and bool(t["pareto"].any())
    front = (
        t["pareto"].to_numpy(bool)
        if tagged
        else non_dominated(t[cols].to_numpy(float), [m for _, m in objectives])
    )
    xs, ys = t[x].to_numpy(float), t[y].to_numpy(float)
    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    ax.scatter(xs[~front], ys[~front], s=22, color="C0", alpha=0.7, label="trials")
    how = "tagged by the search" if tagged else "computed from these trials"
    _front_line(ax, xs, ys, front, f"Pareto front ({int(front.sum())}, {how})", mfc="C1", ms=8)
    ax.set_xlabel(f"{_label(x)} ({'lower' if xm == 'min' else 'higher'} is better)")
    ax.set_ylabel(f"{_label(y)}\n({'lower' if ym == 'min' else 'higher'} is better)")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(SIG3)
    _grid_and_legend(ax)
    more = f" (of {len(objectives)} objectives)" if len(objectives) > 2 else ""
    ax.set_title(
        f"The search's objectives{more}, {len(t)} trials{synthetic_suffix(df)}", fontsize=10
    )
    return save_figure(fig, path), (
        f"Each trial's last reported {x} against {y}; the Pareto front ({how}) is the set of "
        "trials no other trial beats on every objective."
    )


# --------------------------------------------------------------------------- optuna searches


def _x_values(values: pd.Series) -> tuple[np.ndarray, list[str] | None, bool]:
    """(x positions, category labels or None, log scale) of one searched param."""
    vals = values
    if vals.map(lambda v: isinstance(v, bool | np.bool_ | str)).any() or not (
        pd.api.types.is_numeric_dtype(vals)
    ):
        cats = sorted({str(v) for v in vals.dropna()})
        pos = vals.map(lambda v: cats.index(str(v)) if pd.notna(v) else np.nan)
        return pos.to_numpy(float), cats, False
    x = vals.to_numpy(float)
    lo, hi = np.nanmin(x), np.nanmax(x)
    return x, None, bool(lo > 0 and hi / lo >= 100)  # learning rates: log scale


@skippable("param_scatter", "Searched parameters versus the search metric")
def param_scatter(
    df: pd.DataFrame,
    path: str | Path,
    metric: str = "val_mae",
    mode: str = "min",
    history: pd.DataFrame | None = None,
):
    """One panel per searched param (those that differ between trials): each trial's score on
    ``metric`` (:func:`analysis.grouping.run_scores`: best over epochs when ``history`` has it)
    against the param's value, coloured by the trial's outcome, the best trial starred.

    What an Optuna search needs instead of a grid's heatmap: its samples are continuous, so a
    (pM, πT) grid would be mostly empty cells. Tick labels have 3 significant digits; a param
    spanning >= 100x (a learning rate) is drawn on a log axis.
    """
    score, how = run_scores(df, metric, mode, history)
    params = [p for p in config_columns(df[score.notna()]) if p not in ("variant", "model")]
    t = df.assign(_score=score).dropna(subset=["_score"])
    if len(t) < 2 or not params:
        raise NotApplicable(f"{len(t)} trial(s) with {metric} and {len(params)} searched params")
    best = t["_score"].idxmin() if mode == "min" else t["_score"].idxmax()
    ncol = min(3, len(params))
    nrow = math.ceil(len(params) / ncol)
    fig = Figure(figsize=(4.2 * ncol, 3.4 * nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    for ax, p in zip(axes, params, strict=False):
        _scatter_panel(ax, t, p, best)
    for ax in axes[len(params) :]:
        ax.set_visible(False)
    axes[0].set_ylabel(f"{metric} ({how})")
    axes[0].legend(fontsize=7, loc="best")
    spread = float(t["_score"].max() - t["_score"].min())
    fig.suptitle(
        f"{metric} ({mode}) of {len(t)} trials versus each searched parameter "
        f"(spread {_sig3(spread)}){synthetic_suffix(df)}",
        fontsize=10,
    )
    return save_figure(fig, path), (
        f"Each trial's {metric} ({how}) against the value of each searched parameter; the star "
        "is the best trial, colours are the trials' outcomes."
    )


def _scatter_panel(ax, t: pd.DataFrame, param: str, best) -> None:
    x, cats, log = _x_values(t[param])
    y = t["_score"].to_numpy(float)
    status = t["trial_status"].fillna("").astype(str).to_numpy()
    for st in dict.fromkeys(status):
        colour, _, lab = STATUS_STYLE.get(st, ("#9467bd", "-", st or "unknown"))
        m = status == st
        ax.scatter(x[m], y[m], s=24, color=colour, alpha=0.8, label=lab)
    i = t.index.get_loc(best)
    ax.scatter(
        [x[i]], [y[i]], marker="*", s=160, color="gold", edgecolor="k", zorder=3, label="best"
    )
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    if cats is not None:
        ax.set_xticks(range(len(cats)), cats)
    else:
        ax.xaxis.set_major_formatter(SIG3)
        ax.xaxis.set_major_locator(MaxNLocator(5) if not log else ax.xaxis.get_major_locator())
    ax.yaxis.set_major_formatter(SIG3)
    ax.set_xlabel(param)
    ax.grid(alpha=0.3)
