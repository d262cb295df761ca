"""The papers' tables (and the search's own) from a :func:`analysis.load.load_runs` frame.

Every table builder returns a ``pandas.DataFrame`` of numbers (one row per table row; what a CSV
holds) whose ``attrs`` say how to show it: title, notes, key columns and metric columns. Render
it with :mod:`analysis.render`. A builder whose input lacks what it needs raises
:class:`~analysis.grouping.NotApplicable` with the reason.

Tables (``test_*`` metrics of completed trials; aggregation over seeds is the mean and the
sample standard deviation, ddof = 1, with ``n`` the number of runs):

=========================  ================================================================
:func:`m3_table1`          M3 paper Table 1: rows Baseline / Random Mask / Soft M3 / M3;
                           columns Acc2, F1, Acc7, Corr, MAE; published values beside
:func:`m3_table3`          M3 paper Table 3: rows (πT, pM) grid cells; same columns (grids)
:func:`robustness_table1`  robustness paper Table 1, one model: training regime (baseline,
                           M3 (pM, πT), perturbation a+b %) x {clean, missing, noise}; Corr
                           and F1 (drops at 30 % of the test set); published MulT rows beside
:func:`robustness_table`   robustness paper Tables 3-7 layout, one model: training regime x
                           diagnostic x test fraction; Corr and F1 drops
:func:`summary_table`      every configuration of a grid, mean ± std over seeds
:func:`best_trials`        the top-k trials of an Optuna/ASHA search by its metric
:func:`confirmed_ranking`  the confirm stage: top trials re-trained over seeds, ranked
=========================  ================================================================

Published numbers come from ``analysis/reference/*.csv`` (transcribed from the papers; each
file's header says from where). They are shown as their own column; a difference column
(ours − published) is added only when the comparison means something: real (not synthetic)
data of the paper's dataset. On synthetic data the title says so and the published column is
labelled "shape only". Where a convention differs from the paper's, the table's notes say so
(:mod:`analysis.footnotes`).

Units: acc2/acc7/f1 in %, corr in [-1, 1], mae in label units; drops are clean − perturbed for
higher-is-better metrics, perturbed − clean for mae, so positive = worse (as in the papers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.footnotes import ACC_CONVENTION, F1_SWAPPED, SYNTHETIC_TITLE, UNITS
from analysis.grouping import (
    NotApplicable,
    aggregate,
    completed,
    config_columns,
    dataset_family,
    determined_by,
    diag_fractions,
    drop_dependent,
    models,
    natural_order,
    nunique,
    regime_label,
    regime_sort_key,
    run_scores,
    sort_key,
    stage,
    training_label,
)
from analysis.labels import DECIMALS, DIAG_LABELS, KINDS, METRIC_LABELS, scheme_label, scheme_rank
from analysis.load import DEFAULT_MODEL
from tune_m3.metrics import HEADLINE
from tune_m3.names import SCHEDULER_STOPPED, STAGE_CONFIRM, STAGE_SEARCH, TAG_STAGE, diag_key

__all__ = [
    "best_trials",
    "confirmed_ranking",
    "m3_table1",
    "m3_table3",
    "reference",
    "robustness_table",
    "robustness_table1",
    "seed_std_separation",
    "summary_table",
]

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"


# ----------------------------------------------------------------------------- helpers


def reference(name: str) -> pd.DataFrame:
    """A published-values file of ``analysis/reference/`` (``m3_table1``, ``m3_table3``,
    ``robustness_table1``, ``robustness_tables3to7``)."""
    return pd.read_csv(REFERENCE_DIR / f"{name}.csv", comment="#", keep_default_na=False)


def _comparison(df: pd.DataFrame, paper_dataset: str | None) -> tuple[bool, str]:
    """(comparable, dataset label) of these runs versus a paper's ``paper_dataset`` numbers."""
    synthetic = bool(df["synthetic"].any()) if "synthetic" in df else True
    names = sorted({str(x) for x in df.get("dataset_tag", pd.Series(dtype=str)).dropna()})
    fams = {dataset_family(n) for n in names}
    same = paper_dataset is None or fams == {paper_dataset}
    return (not synthetic and same), ", ".join(names)


def _metric_specs(metrics: Sequence[str], drop: bool = False) -> list[tuple[str, str, int]]:
    out = []
    for m in metrics:
        lab = METRIC_LABELS.get(m, m)
        out.append((m, lab + (" drop" if drop else ""), DECIMALS.get(m, 3)))
    return out


def _attach_published(
    table: pd.DataFrame,
    pub: pd.DataFrame | None,
    metrics: Sequence[str],
    comparable: bool,
) -> None:
    """Add ``<m>_pub`` (and ``<m>_pub_std``, ``<m>_diff``) columns; ``pub`` is row-aligned."""
    if pub is None:
        return
    for m in metrics:
        if m not in pub:
            continue
        table[f"{m}_pub"] = pd.to_numeric(pub[m], errors="coerce").to_numpy()
        if f"{m}_std" in pub:
            table[f"{m}_pub_std"] = pd.to_numeric(pub[f"{m}_std"], errors="coerce").to_numpy()
        if comparable:
            table[f"{m}_diff"] = table[f"{m}_mean"] - table[f"{m}_pub"]


def _finish(
    table: pd.DataFrame,
    *,
    title: str,
    keys: list[tuple[str, str]],
    metrics: list[tuple[str, str, int]],
    notes: list[str],
    published: str | None,
    comparable: bool,
    synthetic: bool,
    name: str,
) -> pd.DataFrame:
    table.attrs = {
        "name": name,
        "title": title,
        "kind": "mean_std",
        "keys": keys,
        "metrics": metrics,
        "notes": notes,
        "published": published,
        "comparable": comparable,
        "synthetic": synthetic,
    }
    return table


def _title(base: str, synthetic: bool, dataset_label: str, paper_dataset: str) -> str:
    if synthetic:
        return f"{base} [{SYNTHETIC_TITLE.format(dataset=paper_dataset)}]"
    return f"{base} — {dataset_label}"


def _seed_note(table: pd.DataFrame) -> str:
    ns = sorted(set(table["n"].astype(int)))
    span = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    return f"mean ± sample std (ddof = 1) over n = {span} runs (seeds) per row"


# ----------------------------------------------------------------------------- M3 tables


def m3_table1(df: pd.DataFrame, metrics: Sequence[str] = HEADLINE) -> pd.DataFrame:
    """M3 paper Table 1: one row per masking scheme (Baseline, Random Mask, Soft M3, M3).

    Applicable when the completed trials differ in ``scheme``. Rows are the ``variant`` of a
    grid space if it has one (``masking_schemes_mosei``), else the scheme plus any other
    setting that differs within a scheme. Published: ``reference/m3_table1.csv`` (CMU-MOSEI,
    mean ± std over 5 runs), matched by scheme.
    """
    done = completed(df)
    if done.empty:
        raise NotApplicable("no completed trials with test metrics")
    if "scheme" not in done or nunique(done["scheme"]) < 2:
        raise NotApplicable("the trials do not compare masking schemes (one scheme only)")
    cols = config_columns(done)
    primary = "variant" if "variant" in cols else "scheme"
    keys = drop_dependent(done, primary, cols)
    keys = [primary, *[k for k in keys if k != primary]]
    table = aggregate(done, keys, [f"test_{m}" for m in metrics])
    table = _rename_test(table, metrics)
    scheme_of = done.groupby(keys, dropna=False, sort=False)["scheme"].first().to_numpy()
    # a search over scheme itself (primary "scheme") has the column already: one, put first
    table = table.drop(columns="scheme", errors="ignore")
    table.insert(0, "scheme", scheme_of)
    table.insert(0, "label", [scheme_label(s) for s in table["scheme"]])
    if primary == "variant":  # a variant named other than its scheme shows both
        table["label"] = [
            lab if str(v) in (str(s), "baseline") else f"{lab} ({v})"
            for lab, v, s in zip(table["label"], table["variant"], table["scheme"], strict=True)
        ]
    table["_o"] = [scheme_rank(s) for s in table["scheme"]]
    table = table.sort_values(["_o", *keys[1:]], kind="stable").drop(columns="_o")
    table = table.reset_index(drop=True)
    ref = reference("m3_table1").set_index("scheme")
    pub = ref.reindex(table["scheme"].astype(str)).reset_index()
    comparable, dlabel = _comparison(done, "mosei")
    synthetic = bool(done["synthetic"].any())
    _attach_published(table, pub, metrics, comparable)
    extra = [(k, k) for k in keys[1:] if k != "scheme"]
    notes = [_seed_note(table), ACC_CONVENTION, UNITS]
    if not comparable and not synthetic:
        notes.append(
            f"published numbers are CMU-MOSEI; these runs are on {dlabel}: no difference shown"
        )
    return _finish(
        table,
        name="m3_table1",
        title=_title("M3 Table 1: masking schemes", synthetic, dlabel, "CMU-MOSEI"),
        keys=[("label", "method"), *extra],
        metrics=_metric_specs(metrics),
        notes=notes,
        published="M3 paper (CMU-MOSEI, 5 runs)",
        comparable=comparable,
        synthetic=synthetic,
    )


def _rename_test(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    ren = {}
    for m in metrics:
        for suf in ("mean", "std", "n"):
            ren[f"test_{m}_{suf}"] = f"{m}_{suf}"
    return table.rename(columns=ren)


def m3_table3(df: pd.DataFrame, metrics: Sequence[str] = HEADLINE) -> pd.DataFrame:
    """M3 paper Table 3: one row per (πT, pM) cell of the M3 grid, mean ± std over seeds.

    Uses the completed trials with ``scheme == "m3"`` (all trials if there is no scheme
    column). Applicable when they span at least two (pi_text, p_mask) cells. Published:
    ``reference/m3_table3.csv`` (means over 5 runs; the paper gives no stds), matched on
    πT and pM rounded to 2 decimals.
    """
    done = completed(df)
    if "scheme" in done and nunique(done["scheme"]) > 1:
        done = done[done["scheme"] == "m3"]
    if done.empty:
        raise NotApplicable("no completed M3 trials with test metrics")
    if "p_mask" not in done or "pi_text" not in done:
        raise NotApplicable("the trials have no p_mask / pi_text params")
    if len(done.groupby(["pi_text", "p_mask"])) < 2:
        raise NotApplicable("the M3 trials do not span a (pi_text, p_mask) grid (one cell)")
    others = [c for c in config_columns(done) if c not in ("pi_text", "p_mask", "variant")]
    others = [c for c in others if not determined_by(done, c, ["pi_text", "p_mask"])]
    keys = ["pi_text", "p_mask", *others]
    table = aggregate(done, keys, [f"test_{m}" for m in metrics])
    table = _rename_test(table, metrics).sort_values(keys, kind="stable").reset_index(drop=True)
    ref = reference("m3_table3")
    ref["_k"] = [f"{a:.2f}/{b:.2f}" for a, b in zip(ref["pi_text"], ref["p_mask"], strict=True)]
    want = [f"{a:.2f}/{b:.2f}" for a, b in zip(table["pi_text"], table["p_mask"], strict=True)]
    pub = ref.set_index("_k").reindex(want).reset_index(drop=True)
    comparable, dlabel = _comparison(done, "mosei")
    synthetic = bool(done["synthetic"].any())
    _attach_published(table, pub, metrics, comparable)
    notes = [
        _seed_note(table),
        "πA = πV = (1 − πT)/2 in the paper's grid; published values exist for πT ∈ {0.33, 0.6} "
        "× pM ∈ {0.1, 0.2, 0.25, 0.4} only (– elsewhere)",
        ACC_CONVENTION,
        UNITS,
    ]
    return _finish(
        table,
        name="m3_table3",
        title=_title("M3 Table 3: M3 hyperparameters (πT × pM)", synthetic, dlabel, "CMU-MOSEI"),
        keys=[("pi_text", "πT"), ("p_mask", "pM"), *[(k, k) for k in others]],
        metrics=_metric_specs(metrics),
        notes=notes,
        published="M3 paper (CMU-MOSEI, mean of 5 runs)",
        comparable=comparable,
        synthetic=synthetic,
    )


def summary_table(df: pd.DataFrame, metrics: Sequence[str] = HEADLINE) -> pd.DataFrame:
    """Every configuration (params that differ, seed aside), test metrics mean ± std over seeds."""
    done = completed(df)
    if done.empty:
        raise NotApplicable("no completed trials with test metrics")
    keys = config_columns(done)
    if "variant" in keys:
        keys = drop_dependent(done, "variant", keys)
        keys = ["variant", *[k for k in keys if k != "variant"]]
    table = aggregate(done, keys, [f"test_{m}" for m in metrics])
    table = _rename_test(table, metrics)
    table = natural_order(table, keys)
    synthetic = bool(done["synthetic"].any())
    dlabel = ", ".join(sorted({str(x) for x in done["dataset_tag"]}))
    return _finish(
        table,
        name="summary",
        title="All configurations, test metrics over seeds — "
        + dlabel
        + (" [SYNTHETIC data]" if synthetic else ""),
        keys=[(k, k) for k in keys] or [],
        metrics=_metric_specs(metrics),
        notes=[_seed_note(table)],
        published=None,
        comparable=False,
        synthetic=synthetic,
    )


# ----------------------------------------------------------------------------- robustness


def _robust_groups(done: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Add ``regime`` (what the training was), ``training`` (the robustness paper's row name,
    '' for a masking regime, which the paper has no row for) and return the group keys."""
    done = done.copy()
    recs = done.to_dict("records")
    done["regime"] = [regime_label(r) for r in recs]
    done["training"] = [
        training_label(r.get("p_missing"), r.get("p_noise"))
        if str(r.get("scheme", "none") or "none") in ("none", "baseline")
        else ""
        for r in recs
    ]
    cfg = config_columns(done)
    if "variant" in cfg:
        cfg = drop_dependent(done, "variant", cfg)
    extra = [c for c in cfg if c != "model" and not determined_by(done, c, ["regime"])]
    keys = ["regime", *extra]
    if nunique(done["dataset_tag"]) > 1:
        keys = ["dataset_tag", *keys]
    return done, keys


def _robust_long(done: pd.DataFrame, modality: str, fractions: list[str]) -> pd.DataFrame:
    """One row per (run, diagnostic, fraction): clean metrics, or their drops, as corr / f1."""
    rows = []
    for diag in ("clean", *KINDS):
        for p in ["0"] if diag == "clean" else fractions:
            part = done.copy()
            part["diagnostic"] = diag
            part["fraction_pct"] = float(p)
            for met in ("corr", "f1"):
                col = (
                    f"test_{met}"
                    if diag == "clean"
                    else diag_key(modality, diag, p, met, drop=True)
                )
                part[met] = part.get(col, np.nan)
            rows.append(part)
    return pd.concat(rows, ignore_index=True)


_DIAG_ORDER = {"clean": 0, "missing": 1, "noisy": 2}


def _robust_order(
    table: pd.DataFrame, done: pd.DataFrame, keys: list[str], table1: bool
) -> pd.DataFrame:
    """Table 1: per diagnostic, the regimes; Tables 3-7: per regime, clean then the fractions."""
    regime_key = {
        lab: regime_sort_key(r) for lab, r in done.groupby("regime", sort=False).first().iterrows()
    }
    rest = [k for k in keys if k not in ("regime", "dataset_tag")]

    def row_key(i: int) -> tuple:
        r = table.iloc[i]
        cfg = (regime_key[r["regime"]], sort_key(r, rest))
        diag = (r["fraction_pct"], _DIAG_ORDER[r["diagnostic"]])
        ds = (str(r["dataset_tag"]),) if "dataset_tag" in keys else ()
        return (*ds, _DIAG_ORDER[r["diagnostic"]], *cfg) if table1 else (*ds, *cfg, diag)

    return table.iloc[sorted(range(len(table)), key=row_key)].reset_index(drop=True)


def _robust_published(
    table: pd.DataFrame, done: pd.DataFrame, reference_model: str
) -> tuple[pd.DataFrame, list[str]]:
    """``reference_model``'s published rows aligned with ``table`` (NaN where none applies) and
    the dataset families of the rows."""
    ref = reference("robustness_tables3to7")
    ref = ref[ref["model"] == reference_model]
    datasets = (
        table["dataset_tag"]
        if "dataset_tag" in table
        else [done["dataset_tag"].iloc[0]] * len(table)
    )
    fams = [dataset_family(str(d)) or "mosei" for d in datasets]
    ref_idx = ref.set_index(["dataset", "training", "diagnostic", "fraction_pct"])
    want = list(
        zip(
            fams,
            table["training"],
            table["diagnostic"],
            table["fraction_pct"].astype(int),
            strict=True,
        )
    )
    return ref_idx.reindex(want).reset_index(drop=True), fams


def _robust_notes(table: pd.DataFrame, done: pd.DataFrame, modality: str) -> list[str]:
    targets = done["perturb_target"].dropna().unique() if "perturb_target" in done else []
    target = str(targets[0]) if len(targets) == 1 else "the target modality (perturb_target)"
    return [
        _seed_note(table),
        "clean rows: the metric on the clean test set; missing/noise rows: its drop versus clean "
        f"when {modality} is zeroed (missing) or noised (noise) on that % of the test samples; "
        "positive = worse, negative = a gain",
        "training regime: baseline = no masking, no perturbation; M3 / soft M3 / random mask "
        f"(pM, πT) = masked during training; perturbation a+b % = {target} missing on a % and "
        "noisy on b % of each batch (the robustness paper's robust training); the paper has "
        "rows for baseline ('-') and perturbation only",
        F1_SWAPPED,
        ACC_CONVENTION,
    ]


def _one_model(df: pd.DataFrame, model: str | None) -> tuple[pd.DataFrame, str]:
    """The completed runs of ``model`` (default: the only model of the runs)."""
    done = completed(df)
    if done.empty:
        raise NotApplicable("no completed trials with test metrics")
    found = models(done)
    if model is None:
        if len(found) > 1:
            raise NotApplicable(
                f"runs of {len(found)} models ({', '.join(found)}): one table per model, "
                "pass model="
            )
        model = found[0]
    if "model" in done:
        done = done[done["model"].fillna(DEFAULT_MODEL).astype(str) == model]
    if done.empty:
        raise NotApplicable(f"no completed trials of model {model}")
    return done, model


@dataclass(frozen=True)
class _Layout:
    """One of the robustness paper's table layouts."""

    name: str  # the table's name (its files' stem)
    title: str  # with ``{modality}`` to fill in
    table1: bool  # Table 1 (one fraction, rows by diagnostic) or Tables 3-7 (regime blocks)


_TABLE1 = _Layout(
    "robustness_table1",
    "Robustness Table 1: training regime vs {modality} missing/noise at 30 % of the test set",
    table1=True,
)
_TABLES3TO7 = _Layout(
    "robustness_tables3to7",
    "Robustness Tables 3-7 layout: training regime × {modality} diagnostic × test fraction",
    table1=False,
)


def _robust_table(
    df: pd.DataFrame,
    layout: _Layout,
    modality: str,
    reference_model: str,
    model: str | None,
    fractions: Sequence[str] | None = None,
) -> pd.DataFrame:
    """``layout`` of ``model``'s runs; ``fractions`` (Tables 3-7 only): which test fractions."""
    done, model = _one_model(df, model)
    avail = diag_fractions(done, modality, "corr")
    if not avail:
        raise NotApplicable(f"no diagnostics of the {modality} modality in these runs")
    if layout.table1:
        fractions = ["30"] if "30" in avail else [avail[-1]]
    else:
        fractions = [f for f in (fractions or avail) if f in avail]
    done, keys = _robust_groups(done)
    long = _robust_long(done, modality, fractions)
    table = aggregate(long, [*keys, "diagnostic", "fraction_pct"], ["corr", "f1"])
    table = _robust_order(table, done, keys, layout.table1)
    # the paper's row name ('none', '15+15'; '' for a masking regime): CSV readers match on it
    table["training"] = table["regime"].map(done.groupby("regime", sort=False)["training"].first())
    table["diagnostic_label"] = [
        DIAG_LABELS[d] + ("" if d == "clean" else f" {float(p):g}%")
        for d, p in zip(table["diagnostic"], table["fraction_pct"], strict=True)
    ]
    pub, fams = _robust_published(table, done, reference_model)
    synthetic = bool(done["synthetic"].any())
    comparable, dlabel = _comparison(done, None)
    comparable = comparable and all(dataset_family(d) for d in done["dataset_tag"].astype(str))
    _attach_published(table, pub, ["corr", "f1"], comparable)
    paper_ds = "/".join("CMU-MOSEI" if f == "mosei" else "CMU-MOSI" for f in sorted(set(fams)))
    same = model.lower() == reference_model.lower()
    published = (
        f"{reference_model} (robustness paper, {paper_ds}, mean of 3 runs)"
        + ("" if same else f", a different model from ours ({model})")
        + ("; Δ = ours − published" if comparable else "")
    )
    heads = {"regime": "training regime", "dataset_tag": "dataset"}
    title = layout.title.format(modality=modality)
    return _finish(
        table,
        name=layout.name,
        title=_title(f"{title}, model {model}", synthetic, dlabel, paper_ds),
        keys=[*((k, heads.get(k, k)) for k in keys), ("diagnostic_label", "diagnostic")],
        metrics=[("corr", "Corr (drop)", 3), ("f1", "F1 (drop)", 2)],
        notes=_robust_notes(table, done, modality),
        published=published,
        comparable=comparable,
        synthetic=synthetic,
    )


def robustness_table1(
    df: pd.DataFrame,
    modality: str = "text",
    reference_model: str = "MulT",
    model: str | None = None,
) -> pd.DataFrame:
    """Robustness paper Table 1: training regime × {clean, missing, noise} at 30 %, one model.

    Rows: for each diagnostic (clean, then missing and noise of ``modality`` on 30 % of the test
    set, or the largest fraction the runs have), one row per training regime (``baseline``,
    ``M3 (pM=…, πT=…)``, ``perturbation 15+15 %`` …; :func:`analysis.grouping.regime_label`).
    Cells: Corr and F1 (clean) or their drops, mean ± std over seeds. ``model``: which model's
    runs (required when the runs have several; :func:`analysis.grouping.models`). Published:
    ``reference_model``'s rows of ``reference/robustness_tables3to7.csv`` for the same dataset
    (MOSEI or MOSI by the dataset's name), for the baseline and perturbation regimes.
    """
    return _robust_table(df, _TABLE1, modality, reference_model, model)


def robustness_table(
    df: pd.DataFrame,
    modality: str = "text",
    fractions: Sequence[str] | None = None,
    reference_model: str = "MulT",
    model: str | None = None,
) -> pd.DataFrame:
    """Robustness paper Tables 3-7 layout (one table per model): regime × diagnostic × fraction.

    One block per training regime: the clean row, then missing and noise at each test fraction
    the runs have (5, 10, 15, 30 %; ``fractions`` picks some, as percent strings), cells the
    Corr and F1 drops, mean ± std over seeds. Published: ``reference_model``'s table (MulT: the
    paper's Table 7).
    """
    return _robust_table(df, _TABLES3TO7, modality, reference_model, model, fractions)


# ----------------------------------------------------------------------------- searches


def best_trials(
    df: pd.DataFrame,
    metric: str = "val_mae",
    mode: str = "min",
    k: int = 10,
    history: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The top ``k`` trials of a search by ``metric`` (the search's metric and mode).

    A trial's score is :func:`analysis.grouping.run_scores`: the best value of ``metric`` over
    its epochs when ``history`` has it (how the search picks its best trial), else its last
    reported value. Columns: rank, trial, status, epochs trained, the score, the params that
    differ between trials, and the headline test metrics (completed trials).
    """
    if df.empty:
        raise NotApplicable("no trials")
    score, how = run_scores(df, metric, mode, history)
    t = df.assign(_score=score).dropna(subset=["_score"])
    if t.empty:
        raise NotApplicable(f"no trial reported '{metric}'")
    t = t.sort_values("_score", ascending=mode == "min", kind="stable").head(k)
    cols = {
        "rank": range(1, len(t) + 1),
        "trial": t["trial_id"].where(t["trial_id"] != "", t["run_name"]).to_numpy(),
        "status": t["trial_status"].to_numpy(),
        "epochs": (t["epoch"] if "epoch" in t else pd.Series(np.nan, index=t.index)).to_numpy(),
        f"{metric} ({how})": t["_score"].to_numpy(),
    }
    out = pd.DataFrame(cols)
    for p in config_columns(df):
        out[p] = t[p].to_numpy()
    for m in ("test_mae", "test_corr", "test_acc2", "test_f1"):
        if m in t:
            out[m] = t[m].to_numpy()
    synthetic = bool(df["synthetic"].any())
    n_stopped = int((df["trial_status"] == SCHEDULER_STOPPED).sum())
    out.attrs = {
        "name": "best_trials",
        "title": f"Best {len(out)} of {len(df)} trials by {metric} ({mode})"
        + (" [SYNTHETIC data]" if synthetic else ""),
        "kind": "plain",
        "notes": [
            f"score: {metric}, {how}; {n_stopped} trials were stopped early by the scheduler "
            "(ASHA) and have no test metrics",
        ],
        "synthetic": synthetic,
    }
    return out


def seed_std_separation(mean1: float, std1: float, mean2: float, std2: float) -> float:
    """How many seed-stds separate two configurations: |mean1 − mean2| / sqrt((s1² + s2²) / 2)
    (the pooled sample std of equally many seeds); NaN when a std is missing or both are 0."""
    pooled = math.sqrt((std1**2 + std2**2) / 2)
    if not np.isfinite(pooled) or pooled == 0:
        return math.nan
    return abs(mean1 - mean2) / pooled


def confirmed_ranking(
    df: pd.DataFrame,
    metric: str = "val_mae",
    mode: str = "min",
    history: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The confirm stage's ranking: each confirmed search trial, re-trained over seeds.

    Confirm runs are child runs tagged ``stage = confirm`` with ``confirm_of`` = the run id of
    the search trial they re-train (:mod:`tune_m3.names` ``TAG_STAGE``, ``TAG_CONFIRM_OF``).
    One row per confirmed trial: its searched params (those that differ between the search's
    trials), mean ± std (n) over the confirm seeds of the search ``metric`` (each run's score as
    in :func:`best_trials`) and of ``test_mae``, ranked by the metric's mean. ``attrs
    ["separation"]`` is :func:`seed_std_separation` of first and second.
    """
    conf = stage(df, STAGE_CONFIRM)
    if conf.empty:
        raise NotApplicable(f"no confirm-stage runs ({TAG_STAGE} = {STAGE_CONFIRM})")
    search = stage(df, STAGE_SEARCH)
    score, how = run_scores(conf, metric, mode, history)
    conf = conf.assign(**{metric: score})
    metrics = list(dict.fromkeys([metric, "test_mae"]))
    table = aggregate(conf, ["confirm_of"], metrics)
    table = table.sort_values(f"{metric}_mean", ascending=mode == "min", kind="stable")
    table = table.reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    params = config_columns(search if len(search) > 1 else conf)
    by_id = search.set_index("run_id") if not search.empty else pd.DataFrame()
    first = conf.groupby("confirm_of", sort=False).first()
    trial, values = [], {p: [] for p in params}
    for rid in table["confirm_of"]:
        src = by_id.loc[rid] if rid in by_id.index else first.loc[rid]
        tid = src.get("trial_id", "") if rid in by_id.index else ""
        trial.append(tid or str(rid)[:8])
        for p in params:
            values[p].append(src.get(p, np.nan))
    table.insert(1, "trial", trial)
    for i, p in enumerate(params):
        table.insert(2 + i, p, values[p])
    return _ranking_attrs(table, df, metric, mode, how, params)


def _ranking_attrs(
    table: pd.DataFrame, df: pd.DataFrame, metric: str, mode: str, how: str, params: list[str]
) -> pd.DataFrame:
    sep = math.nan
    if len(table) >= 2:
        a, b = table.iloc[0], table.iloc[1]
        sep = seed_std_separation(
            a[f"{metric}_mean"], a[f"{metric}_std"], b[f"{metric}_mean"], b[f"{metric}_std"]
        )
    synthetic = bool(df["synthetic"].any())
    notes = [
        _seed_note(table).replace("per row", "per confirmed trial"),
        f"{metric}: each run's {how} value; ranked by the mean ({mode})",
    ]
    if len(table) >= 2:
        notes.append(
            "first and second are "
            + ("– (a std is missing)" if math.isnan(sep) else f"{sep:.1f}")
            + " seed-stds apart (|mean₁ − mean₂| / √((s₁² + s₂²)/2))"
        )
    out = _finish(
        table,
        name="confirmed_ranking",
        title="Confirmed ranking: the search's top trials re-trained over seeds"
        + (" [SYNTHETIC data]" if synthetic else ""),
        keys=[("rank", "rank"), ("trial", "search trial"), *((p, p) for p in params)],
        metrics=[(m, m, 4) for m in dict.fromkeys([metric, "test_mae"])],
        notes=notes,
        published=None,
        comparable=False,
        synthetic=synthetic,
    )
    out.attrs["separation"] = sep
    return out
