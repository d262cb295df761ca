"""Robustness across models: model × training regime, the clean metric and its drops, MultiBench's
relative and effective robustness, and a plot of the drops.

The question the robustness literature asks is across models (the robustness paper's Table 1:
five models × training regime; M3's Table 2: one model family with and without M3). The per-model
tables of :mod:`analysis.paper_tables` answer it one model at a time; these put the models side
by side. Inputs are :func:`analysis.load.load_runs` frames; rows group the completed trials by
model, training regime (:func:`analysis.grouping.regime_label`: ``baseline``, ``M3 (pM, πT)``,
``perturbation a+b %`` ...) and any other param that differs, the seed aside; cells are mean ±
sample std (ddof = 1) over the seeds with ``n``.

=============================  ===========================================================
:func:`robustness_models`      rows model × regime; columns the clean metric and its drop at
                               every tested diagnostic (modality missing / noisy on x % of the
                               test set); made when the runs span >= 2 models
:func:`multibench_robustness`  rows model × regime × diagnostic kind; MultiBench's relative and
                               effective robustness (:mod:`analysis.multibench`) of Corr and F1
                               over the tested fractions; every trained configuration
:func:`robustness_drops`       the drops of :func:`robustness_models` against the fraction, one
                               line per model × regime (a PNG)
=============================  ===========================================================

Drops follow ``tune_m3/diagnostics.py``: clean − perturbed for Corr and F1, positive = worse.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.grouping import (
    NotApplicable,
    aggregate,
    completed,
    config_columns,
    determined_by,
    diag_fractions,
    models,
    nunique,
    regime_label,
    regime_sort_key,
    sort_key,
)
from analysis.labels import DECIMALS, DIAG_LABELS, KINDS, METRIC_LABELS
from analysis.load import DEFAULT_MODEL
from analysis.multibench import curves, effective_robustness, relative_robustness
from analysis.plots import save_figure, skippable, synthetic_suffix
from tune_m3.names import diag_key

__all__ = [
    "CURVE_FRACTIONS",
    "required_models",
    "model_regimes",
    "multibench_robustness",
    "robustness_drops",
    "robustness_models",
]

BASELINE = "baseline"  # the regime_label of no masking and no perturbation: ER's reference
_HEADS = {"model": "model", "regime": "training regime", "dataset_tag": "dataset"}
# tested at this many fractions or more: a missing-rate curve, where one model is enough
CURVE_FRACTIONS = 5
_SEEDS = "mean ± sample std (ddof = 1) over the seeds of each row; n = runs"


def model_regimes(df: pd.DataFrame, modality: str = "text"):
    """The completed runs with diagnostics of ``modality``, their group keys and fractions.

    Returns ``(done, keys, pcts)``: ``done`` with ``model`` and ``regime`` columns (positional
    index), ``keys`` = [``dataset_tag`` when several,] ``model``, ``regime`` and the other
    params that differ within a (model, regime), ``pcts`` the tested fractions ('10', '30').
    """
    done = completed(df).reset_index(drop=True)
    pcts = diag_fractions(done, modality, "corr")
    if done.empty or not pcts:
        raise NotApplicable(f"no completed trials with diagnostics of the {modality} modality")
    model = done["model"].fillna(DEFAULT_MODEL) if "model" in done else DEFAULT_MODEL
    done = done.assign(model=model)
    done["regime"] = [regime_label(r) for r in done.to_dict("records")]
    cfg = [c for c in config_columns(done) if c not in ("model", "variant")]
    keys = ["model", "regime"]
    keys += [c for c in cfg if not determined_by(done, c, keys)]
    if nunique(done["dataset_tag"]) > 1:
        keys = ["dataset_tag", *keys]
    return done, keys, pcts


def required_models(df: pd.DataFrame, modality: str = "text") -> int:
    """The ``min_models`` the report passes: 1 for a missing-rate curve (the runs were tested at
    >= :data:`CURVE_FRACTIONS` fractions), else 2 (the table is about comparing models)."""
    pcts = diag_fractions(completed(df), modality, "corr")
    return 1 if len(pcts) >= CURVE_FRACTIONS else 2


def _ordered(table: pd.DataFrame, done: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Datasets, then models (:func:`_model_order`), regimes the papers' way, other params."""
    model_rank = {m: i for i, m in enumerate(_model_order(done))}
    first = done.groupby("regime", sort=False).first()
    regime_rank = {lab: regime_sort_key(r) for lab, r in first.iterrows()}
    rest = [k for k in keys if k not in _HEADS]

    def key(i: int) -> tuple:
        r = table.iloc[i]
        ds = (str(r["dataset_tag"]),) if "dataset_tag" in keys else ()
        kind = (KINDS.index(r["diagnostic"]),) if "diagnostic" in r else ()
        return (*ds, model_rank[r["model"]], regime_rank[r["regime"]], sort_key(r, rest), *kind)

    return table.iloc[sorted(range(len(table)), key=key)].reset_index(drop=True)


def _model_order(df: pd.DataFrame) -> list[str]:
    """The default model (the M3 paper's baseline) first, then the others by name."""
    return sorted(models(df), key=lambda m: (m != DEFAULT_MODEL, m))


def _attrs(table: pd.DataFrame, done: pd.DataFrame, **attrs) -> pd.DataFrame:
    """The render attrs of :mod:`analysis.render` (kind mean_std, nothing published)."""
    synthetic = bool(done["synthetic"].any())
    datasets = ", ".join(sorted({str(d) for d in done["dataset_tag"]}))
    title = f"{attrs.pop('title')} — {datasets}" + (" [SYNTHETIC data]" if synthetic else "")
    table.attrs = {
        "kind": "mean_std",
        "published": None,
        "comparable": False,
        "synthetic": synthetic,
        "title": title,
        **attrs,
    }
    return table


def robustness_models(
    df: pd.DataFrame, metric: str = "corr", modality: str = "text", min_models: int = 2
) -> pd.DataFrame:
    """Rows model × training regime; columns clean ``metric`` and its drop at each diagnostic.

    Columns: ``clean`` (``test_<metric>``), then ``<kind>_<pct>`` for kind missing, noisy and
    every tested fraction (the drop ``diag_test_<modality>_<kind>_<pct>_<metric>_drop``), each
    as ``_mean``, ``_std``, ``_n``. Needs runs of at least ``min_models`` models (1 for a
    single model's missing-rate curve).
    """
    done, keys, pcts = model_regimes(df, modality)
    found = models(done)
    if len(found) < min_models:
        raise NotApplicable(f"the runs have {len(found)} model(s) ({', '.join(found)})")
    cols = {"clean": f"test_{metric}"}
    cols |= {f"{k}_{p}": diag_key(modality, k, p, metric, drop=True) for k in KINDS for p in pcts}
    data = done.assign(**{c: done.get(src, np.nan) for c, src in cols.items()})
    table = _ordered(aggregate(data, keys, list(cols)), done, keys)
    lab, dec = METRIC_LABELS.get(metric, metric), DECIMALS.get(metric, 3)
    specs = [("clean", f"{lab} clean", dec)]
    specs += [(f"{k}_{p}", f"{DIAG_LABELS[k]} {p}%", dec) for k in KINDS for p in pcts]
    return _attrs(
        table,
        done,
        name=f"robustness_models_{metric}",
        title=f"Robustness by model and training regime: {lab} clean and its drop with {modality} "
        "missing / noisy on x % of the test set",
        keys=[(k, _HEADS.get(k, k)) for k in keys],
        metrics=specs,
        pcts=pcts,
        notes=[
            _SEEDS,
            f"clean: test {lab}; missing / noise x %: its drop (clean − perturbed, positive = "
            f"worse) when {modality} is zeroed / noised on x % of the test samples",
            "training regime: baseline = no masking, no perturbation; M3 (pM, πT) = masked "
            f"during training; perturbation a+b % = {modality} missing on a % and noisy on b % "
            "of each training batch",
        ],
    )


def _effective(done: pd.DataFrame, ys: np.ndarray, group: list[str]) -> np.ndarray:
    """Each run's effective robustness against the mean curve of its model's baseline runs
    (NaN for a model without baseline runs). ``ys``: (runs, K+1) -> (runs,)."""
    out = np.full(len(done), np.nan)
    is_base = (done["regime"] == BASELINE).to_numpy()
    for idx in done.groupby(group, sort=False).indices.values():
        ref = idx[is_base[idx]]
        if len(ref):
            out[idx] = effective_robustness(ys[idx], np.nanmean(ys[ref], axis=0))
    return out


def multibench_robustness(
    df: pd.DataFrame, modality: str = "text", metrics: Sequence[str] = ("corr", "f1")
) -> pd.DataFrame:
    """MultiBench's relative (RR) and effective (ER) robustness of every trained configuration.

    Per run and diagnostic kind, the curve is the clean test metric then its value with
    ``modality`` missing / noisy on each tested fraction of the test set (x in [0, 1]); RR and
    ER are :func:`analysis.multibench.relative_robustness` and
    :func:`~analysis.multibench.effective_robustness`, ER against the mean curve of the same
    model's ``baseline`` runs. Rows model × regime × kind, columns ``rr_<m>``, ``er_<m>``.
    """
    done, keys, pcts = model_regimes(df, modality)
    group = [k for k in ("dataset_tag", "model") if k in keys]
    parts = []
    for kind in KINDS:
        part = done.assign(diagnostic=kind)
        for met in metrics:
            xs, ys = curves(done, modality, kind, met, pcts)
            part[f"rr_{met}"] = relative_robustness(xs, ys)
            part[f"er_{met}"] = _effective(done, ys, group)
        parts.append(part)
    cols = [f"{w}_{m}" for m in metrics for w in ("rr", "er")]
    table = aggregate(pd.concat(parts, ignore_index=True), [*keys, "diagnostic"], cols)
    table = _ordered(table, done, keys)
    table["diagnostic_label"] = [DIAG_LABELS[k] for k in table["diagnostic"]]
    specs = [
        (f"{w}_{m}", f"{w.upper()} {METRIC_LABELS.get(m, m)}", 3)
        for m in metrics
        for w in ("rr", "er")
    ]
    return _attrs(
        table,
        done,
        name="multibench_robustness",
        title=f"MultiBench relative (RR) and effective (ER) robustness, {modality} missing / "
        f"noisy at {', '.join(pcts)} % of the test set",
        keys=[*((k, _HEADS.get(k, k)) for k in keys), ("diagnostic_label", "diagnostic")],
        metrics=specs,
        notes=[
            _SEEDS,
            "RR = Σ (x_{i+1} − x_i)(f_i + f_{i+1})/2, the trapezoid area under the metric f "
            "versus x, the fraction of test samples damaged (x = 0: clean); MultiBench's law",
            "ER = Σ_i [(f_i − f_0) − (g_i − g_0)], g = the mean curve of the same model's "
            "baseline runs (MultiBench: its late-fusion model); 0 for the baseline; – where the "
            "model has no baseline runs; no min-max normalisation across rows (MultiBench's "
            "leaderboard normalises)",
            "compare RR only between rows tested at the same fractions",
        ],
    )


@skippable("robustness_drops", "Robustness drops across models")
def robustness_drops(df: pd.DataFrame, path: str | Path, metric: str = "corr", min_models: int = 2):
    """The text drops of :func:`robustness_models` against the damaged % of the test set: one
    panel per kind (missing, noisy), one line per row (colour: regime, line style: model), mean
    ± std over seeds as error bars; 0 % is no drop."""
    modality = "text"
    t = robustness_models(df, metric, modality, min_models)
    pcts, keys = t.attrs["pcts"], [k for k, _ in t.attrs["keys"]]
    xs = np.array([0.0, *(float(p) for p in pcts)])
    regimes = list(dict.fromkeys(t["regime"]))
    styles = {m: s for m, s in zip(_model_order(t), ["-", "--", ":", "-."] * 4, strict=False)}
    dodge = 0.006 * xs[-1] * (np.arange(len(t)) - (len(t) - 1) / 2)  # overlapping lines apart
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, len(KINDS), sharey=True, squeeze=False)[0]
    for ax, kind in zip(axes, KINDS, strict=True):
        for i, (_, r) in enumerate(t.iterrows()):
            mu = np.array([0.0, *(r[f"{kind}_{p}_mean"] for p in pcts)])
            sd = np.array([0.0, *(r[f"{kind}_{p}_std"] for p in pcts)])
            label = " · ".join(str(r[k]) for k in keys) + f" (n={int(r['n'])})"
            colour = f"C{regimes.index(r['regime']) % 10}"
            ax.errorbar(
                xs + dodge[i],
                mu,
                yerr=np.nan_to_num(sd),
                color=colour,
                ls=styles[r["model"]],
                marker="o",
                ms=3,
                capsize=2,
                label=label,
            )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{modality} {DIAG_LABELS[kind]}", fontsize=10)
        ax.set_xlabel(f"% of test samples with {modality} {kind}")
        ax.grid(alpha=0.3)
    lab = METRIC_LABELS.get(metric, metric)
    axes[0].set_ylabel(f"{lab} drop (clean − perturbed; higher = worse)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2)
    fig.suptitle(f"{lab} drop, model × training regime{synthetic_suffix(df)}", fontsize=11)
    return save_figure(fig, path), (
        f"Drop of test {lab} (clean − perturbed, positive = worse) as a growing % of test samples "
        f"has {modality} zeroed (missing) or noised (noisy). Colour: training regime; line "
        "style: model; error bars: ± sample std over seeds; points shifted slightly sideways so "
        "that overlapping lines stay visible."
    )
