"""Paper-shaped tables from a :func:`analysis.load.load_runs` frame.

Every table builder returns a ``pandas.DataFrame`` of numbers (one row per table row; what a CSV
holds) whose ``attrs`` say how to show it: title, notes, key columns and metric columns. Render
it with :func:`to_markdown`, :func:`to_latex`, :func:`to_html` or :func:`to_csv`. A builder whose
input lacks what it needs raises :class:`NotApplicable` with the reason.

Tables (``test_*`` metrics of completed trials; aggregation over seeds is the mean and the
sample standard deviation, ddof = 1, with ``n`` the number of runs):

=======================  ==================================================================
:func:`m3_table1`        M3 paper Table 1: rows Baseline / Random Mask / Soft M3 / M3;
                         columns Acc2, F1, Acc7, Corr, MAE; published values beside
:func:`m3_table3`        M3 paper Table 3: rows (πT, pM) grid cells; same columns
:func:`robustness_table1`  robustness paper Table 1: training perturbation (none = no robust
                         training) x {clean, missing, noise}; Corr and F1 (drops at 30 % of
                         the test set); published MulT rows beside
:func:`robustness_table`  robustness paper Tables 3-7 layout: training perturbation x
                         diagnostic x test fraction; Corr and F1 drops
:func:`summary_table`    every configuration of a grid, mean ± std over seeds
:func:`best_trials`      the top-k trials of an Optuna/ASHA search by its metric
=======================  ==================================================================

Published numbers come from ``analysis/reference/*.csv`` (transcribed from the papers; each
file's header says from where). They are shown as their own column; a difference column
(ours − published) is added only when the comparison means something: real (not synthetic)
data of the paper's dataset. On synthetic data the title says so and the published column is
labelled "shape only".

Units: acc2/acc7/f1 in %, corr in [-1, 1], mae in label units; drops are clean − perturbed for
higher-is-better metrics, perturbed − clean for mae, so positive = worse (as in the papers).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.load import RUN_COLUMNS
from tune_m3.metrics import HEADLINE

__all__ = [
    "NotApplicable",
    "aggregate",
    "best_trials",
    "completed",
    "config_columns",
    "m3_table1",
    "m3_table3",
    "reference",
    "robustness_table",
    "robustness_table1",
    "summary_table",
    "to_csv",
    "to_html",
    "to_latex",
    "to_markdown",
]

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"

METRIC_LABELS = {
    "acc2": "Acc2",
    "f1": "F1",
    "acc7": "Acc7",
    "acc5": "Acc5",
    "corr": "Corr",
    "mae": "MAE",
    "acc2_has0": "Acc2 (has-0)",
    "f1_has0": "F1 (has-0)",
}
DECIMALS = {"acc2": 2, "f1": 2, "acc7": 2, "acc5": 2, "acc2_has0": 2, "f1_has0": 2}  # else 3
SCHEME_LABELS = {
    "none": "Baseline",
    "baseline": "Baseline",
    "random_mask": "Random Mask",
    "soft_m3": "Soft M3",
    "m3": "M3",
}
SCHEME_ORDER = ["none", "random_mask", "soft_m3", "m3"]
DIAG_LABELS = {"clean": "clean", "missing": "missing", "noisy": "noise"}  # the paper's words
# tune_m3.diagnostics.KINDS, spelled out so that tables and plots import without torch
# (tests/test_analysis.py checks that the two agree)
KINDS: tuple[str, ...] = ("missing", "noisy")
SYNTHETIC_TITLE = (
    "SYNTHETIC data — published {dataset} numbers shown for shape only, "
    "not a like-for-like comparison"
)
# params that never define a configuration (bookkeeping, or the repeat axis itself)
NOT_CONFIG = {"seed", "threads", "device", "checkpoint_every", "diag_seed"}
DERIVED = ("pi_audio", "pi_vision")  # follow from pi_text (tune_m3.spaces)


class NotApplicable(Exception):
    """The runs lack what this table or plot needs; the message says what."""


# ----------------------------------------------------------------------------- helpers


def reference(name: str) -> pd.DataFrame:
    """A published-values file of ``analysis/reference/`` (``m3_table1``, ``m3_table3``,
    ``robustness_table1``, ``robustness_tables3to7``)."""
    return pd.read_csv(REFERENCE_DIR / f"{name}.csv", comment="#", keep_default_na=False)


def completed(df: pd.DataFrame, metric: str = "test_mae") -> pd.DataFrame:
    """Trials that reached the end (they have the final ``test_*`` metrics)."""
    if metric not in df:
        return df.iloc[0:0]
    return df[df[metric].notna()]


def _nunique(s: pd.Series) -> int:
    return s.astype(str).nunique(dropna=False)


def config_columns(df: pd.DataFrame, params: Iterable[str] | None = None) -> list[str]:
    """Params that differ between runs, without the seed: what defines a configuration.

    ``pi_audio``/``pi_vision`` are left out when ``pi_text`` determines them (the papers'
    grid), so a configuration is named by what was searched.
    """
    cands = [
        c
        for c in (params if params is not None else df.columns)
        if c in df and c not in NOT_CONFIG and c not in _RUN_LIKE and not _is_metric(c)
    ]
    cols = [c for c in cands if _nunique(df[c]) > 1]
    if "pi_text" in cols:
        cols = [c for c in cols if c not in DERIVED or not _determined_by(df, c, ["pi_text"])]
    return cols


_RUN_LIKE = frozenset(RUN_COLUMNS)
_METRIC_RE = re.compile(r"^(test_|val_|train_|diag_|best_|last_)|^(epoch|epoch_seconds)$")


def _is_metric(col: str) -> bool:
    return bool(_METRIC_RE.match(col)) or col in {"stopped_early", "training_iteration"}


def _determined_by(df: pd.DataFrame, col: str, by: list[str]) -> bool:
    keyed = df[list(by)].assign(_v=df[col].astype(str))
    return bool((keyed.groupby(list(by), dropna=False)["_v"].nunique() <= 1).all())


def _drop_dependent(df: pd.DataFrame, primary: str, cols: list[str]) -> list[str]:
    """``cols`` without those that ``primary`` determines (a variant fixes its p_mask)."""
    return [c for c in cols if c == primary or not _determined_by(df, c, [primary])]


def aggregate(df: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean, sample std (ddof = 1) and count of each metric per group, in first-seen order.

    Returns one row per group with the ``by`` columns, ``n`` (runs in the group) and per metric
    ``<m>_mean``, ``<m>_std`` (NaN when fewer than 2 values) and ``<m>_n`` (runs that have it).
    """
    by = list(by)
    data = df.assign(**{m: np.nan for m in metrics if m not in df})
    keys = by or [data.assign(_all=0)["_all"]]
    g = data.groupby(keys, dropna=False, sort=False)
    out = g.size().rename("n").to_frame()
    for m in metrics:
        out[f"{m}_mean"] = g[m].mean()
        out[f"{m}_std"] = g[m].std(ddof=1)
        out[f"{m}_n"] = g[m].count()
    return out.reset_index(drop=not by)


PROBABILITIES = ("pi_text", "pi_audio", "pi_vision", "p_mask", "p_missing", "p_noise")


def _fmt_value(v: Any, key: str = "") -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        if key in PROBABILITIES and abs(v * 100 - round(v * 100)) < 1e-6:
            return f"{v:.2f}"  # grid values as the papers print them: 0.33, 0.10
        return f"{v:.4g}"
    return str(v)


def group_label(row: pd.Series | dict, keys: Sequence[str]) -> str:
    """``p_mask=0.1, pi_text=0.33`` (a scheme or variant shows as its name)."""
    parts = []
    for k in keys:
        v = row[k]
        if k in ("variant", "scheme"):
            parts.append(SCHEME_LABELS.get(str(v), str(v)) if k == "scheme" else str(v))
        else:
            parts.append(f"{k}={_fmt_value(v, k)}")
    return ", ".join(parts) or "all runs"


def _dataset_family(name: str) -> str | None:
    n = name.lower()
    if "mosei" in n:
        return "mosei"
    if "mosi" in n:
        return "mosi"
    return None


def _comparison(df: pd.DataFrame, paper_dataset: str | None) -> tuple[bool, str]:
    """(comparable, dataset label) of these runs versus a paper's ``paper_dataset`` numbers."""
    synthetic = bool(df["synthetic"].any()) if "synthetic" in df else True
    names = sorted({str(x) for x in df.get("dataset_tag", pd.Series(dtype=str)).dropna()})
    fams = {_dataset_family(n) for n in names}
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
    if "scheme" not in done or _nunique(done["scheme"]) < 2:
        raise NotApplicable("the trials do not compare masking schemes (one scheme only)")
    cols = config_columns(done)
    primary = "variant" if "variant" in cols else "scheme"
    keys = _drop_dependent(done, primary, cols)
    keys = [primary, *[k for k in keys if k != primary]]
    table = aggregate(done, keys, [f"test_{m}" for m in metrics])
    table = _rename_test(table, metrics)
    scheme_of = done.groupby(keys, dropna=False, sort=False)["scheme"].first().to_numpy()
    table.insert(0, "scheme", scheme_of)
    table.insert(0, "label", [SCHEME_LABELS.get(str(s), str(s)) for s in table["scheme"]])
    if primary == "variant":  # a variant named other than its scheme shows both
        table["label"] = [
            lab if str(v) in (str(s), "baseline") else f"{lab} ({v})"
            for lab, v, s in zip(table["label"], table["variant"], table["scheme"], strict=True)
        ]
    order = {s: i for i, s in enumerate(SCHEME_ORDER)}
    table["_o"] = [order.get(str(s), 99) for s in table["scheme"]]
    table = table.sort_values(["_o", *keys[1:]], kind="stable").drop(columns="_o")
    table = table.reset_index(drop=True)
    ref = reference("m3_table1").set_index("scheme")
    pub = ref.reindex(table["scheme"].astype(str)).reset_index()
    comparable, dlabel = _comparison(done, "mosei")
    synthetic = bool(done["synthetic"].any())
    _attach_published(table, pub, metrics, comparable)
    extra = [(k, k) for k in keys[1:] if k != "scheme"]
    notes = [_seed_note(table), "Acc2/F1: non-zero convention (the M3 paper's); Acc/F1 in %"]
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


def _natural_order(table: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Rows in the papers' order: schemes Baseline..M3, perturbations none < 5+5 < ..., numbers."""
    if not keys:
        return table.reset_index(drop=True)
    order = sorted(range(len(table)), key=lambda i: _sort_key(table.iloc[i], keys))
    return table.iloc[order].reset_index(drop=True)


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
    if "scheme" in done and _nunique(done["scheme"]) > 1:
        done = done[done["scheme"] == "m3"]
    if done.empty:
        raise NotApplicable("no completed M3 trials with test metrics")
    if "p_mask" not in done or "pi_text" not in done:
        raise NotApplicable("the trials have no p_mask / pi_text params")
    if len(done.groupby(["pi_text", "p_mask"])) < 2:
        raise NotApplicable("the M3 trials do not span a (pi_text, p_mask) grid (one cell)")
    others = [c for c in config_columns(done) if c not in ("pi_text", "p_mask", "variant")]
    others = [c for c in others if not _determined_by(done, c, ["pi_text", "p_mask"])]
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
        keys = _drop_dependent(done, "variant", keys)
        keys = ["variant", *[k for k in keys if k != "variant"]]
    table = aggregate(done, keys, [f"test_{m}" for m in metrics])
    table = _rename_test(table, metrics)
    table = _natural_order(table, keys)
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


_DIAG_RE = re.compile(
    r"^diag_test_(?P<mod>[a-z]+)_(?P<kind>missing|noisy)_(?P<pct>[\d.]+)_(?P<met>[a-z0-9]+)_drop$"
)


def diag_fractions(df: pd.DataFrame, modality: str = "text", metric: str = "corr") -> list[str]:
    """Test fractions (as percent strings: '5', '30') with drops of ``metric`` for ``modality``."""
    pcts = set()
    for c in df.columns:
        m = _DIAG_RE.match(c)
        if m and m["mod"] == modality and m["met"] == metric and df[c].notna().any():
            pcts.add(m["pct"])
    return sorted(pcts, key=float)


def training_label(p_missing: float, p_noise: float) -> str:
    """The robustness paper's row name: 'none', or '<missing %>+<noise %>' such as '15+15'."""
    pm, pn = float(p_missing or 0), float(p_noise or 0)
    if pm == 0 and pn == 0:
        return "none"
    return f"{pm * 100:g}+{pn * 100:g}"


def _robust_groups(done: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Add ``training`` (perturbation label) and return the group keys (dataset, config)."""
    done = done.copy()
    pm = done.get("p_missing", 0.0)
    pn = done.get("p_noise", 0.0)
    done["training"] = [
        training_label(a, b)
        for a, b in zip(
            pd.Series(pm, index=done.index), pd.Series(pn, index=done.index), strict=True
        )
    ]
    keys = ["training"]
    cfg = config_columns(done)
    if "variant" in cfg:
        cfg = _drop_dependent(done, "variant", cfg)
    extra = [
        c
        for c in cfg
        if c not in ("p_missing", "p_noise") and not _determined_by(done, c, ["training"])
    ]
    if _nunique(done["dataset_tag"]) > 1:
        keys = ["dataset_tag", *keys]
    return done, [*keys, *extra]


def _train_sort(label: str) -> tuple:
    if label == "none":
        return (0, 0.0)
    try:
        a, b = label.split("+")
        return (1, float(a) + float(b))
    except ValueError:
        return (2, 0.0)


def _sort_key(row: pd.Series | dict, keys: Sequence[str]) -> tuple:
    """Schemes in the papers' order, perturbations none < 5+5 < 10+10, numbers by value."""
    out = []
    for k in keys:
        v = row[k]
        if k == "scheme" or (k == "variant" and str(v) in SCHEME_ORDER + ["baseline"]):
            s = "none" if str(v) == "baseline" else str(v)
            out.append((0, SCHEME_ORDER.index(s) if s in SCHEME_ORDER else 99, ""))
        elif k == "variant":
            t = _train_sort(str(v))
            out.append((1, t[0] * 1000 + t[1], str(v)))
        elif isinstance(v, int | float | np.number) and not isinstance(v, bool):
            out.append((2, float(v) if v == v else math.inf, ""))  # NaN last
        else:
            out.append((3, 0, str(v)))
    return tuple(out)


def _robust_table(
    df: pd.DataFrame,
    modality: str,
    fractions: list[str] | None,
    reference_model: str,
    name: str,
    title: str,
    table1: bool,
) -> pd.DataFrame:
    done = completed(df)
    if done.empty:
        raise NotApplicable("no completed trials with test metrics")
    avail = diag_fractions(done, modality, "corr")
    if not avail:
        raise NotApplicable(f"no diagnostics of the {modality} modality in these runs")
    if table1:
        fractions = ["30"] if "30" in avail else [avail[-1]]
    else:
        fractions = [f for f in (fractions or avail) if f in avail]
    done, keys = _robust_groups(done)
    rows = []
    for diag in ("clean", "missing", "noisy"):
        for pct in ["0"] if diag == "clean" else fractions:
            part = done.copy()
            part["diagnostic"] = diag
            part["fraction_pct"] = float(pct)
            for met in ("corr", "f1"):
                col = (
                    f"test_{met}"
                    if diag == "clean"
                    else f"diag_test_{modality}_{diag}_{pct}_{met}_drop"
                )
                part[met] = part.get(col, np.nan)
            rows.append(part)
    long = pd.concat(rows, ignore_index=True)
    gkeys = [*keys, "diagnostic", "fraction_pct"]
    table = aggregate(long, gkeys, ["corr", "f1"])
    # order: per training, clean first, then (fraction, missing before noise) as in the papers
    dorder = {"clean": 0, "missing": 1, "noisy": 2}
    rest = [k for k in keys if k not in ("training", "dataset_tag")]

    def row_key(i: int) -> tuple:
        r = table.iloc[i]
        cfg = (_train_sort(r["training"]), _sort_key(r, rest))
        diag = (r["fraction_pct"], dorder[r["diagnostic"]])
        ds = (str(r["dataset_tag"]),) if "dataset_tag" in keys else ()
        return (*ds, dorder[r["diagnostic"]], *cfg) if table1 else (*ds, *cfg, diag)

    table = table.iloc[sorted(range(len(table)), key=row_key)].reset_index(drop=True)
    table["diagnostic_label"] = [
        DIAG_LABELS[d] + ("" if d == "clean" else f" {float(p):g}%")
        for d, p in zip(table["diagnostic"], table["fraction_pct"], strict=True)
    ]
    # published: the reference model's rows, same dataset family, training, diagnostic, fraction
    ref = reference("robustness_tables3to7")
    ref = ref[ref["model"] == reference_model]
    fams = [
        _dataset_family(str(d)) or "mosei"
        for d in (
            table["dataset_tag"]
            if "dataset_tag" in table
            else [done["dataset_tag"].iloc[0]] * len(table)
        )
    ]
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
    pub = ref_idx.reindex(want).reset_index(drop=True)
    synthetic = bool(done["synthetic"].any())
    comparable, dlabel = _comparison(done, None)
    comparable = comparable and all(_dataset_family(d) for d in done["dataset_tag"].astype(str))
    _attach_published(table, pub, ["corr", "f1"], comparable)
    targets = done["perturb_target"].dropna().unique() if "perturb_target" in done else []
    target = str(targets[0]) if len(targets) == 1 else "the target modality (perturb_target)"
    notes = [
        _seed_note(table),
        "clean rows: the metric on the clean test set; missing/noise rows: its drop versus clean "
        f"when {modality} is zeroed (missing) or gets N(0, σ²) noise (noise) on that % of the "
        "test samples; positive = worse, negative = a gain",
        f"training: {target} perturbed during training, '<missing %>+<noise %>' of each "
        "batch; none = no robust training",
    ]
    fam = sorted(set(fams))
    paper_ds = "/".join("CMU-MOSEI" if f == "mosei" else "CMU-MOSI" for f in fam)
    published = (
        f"{reference_model} (robustness paper, {paper_ds}, mean of 3 runs), a different model "
        "from ours (the M3 paper's baseline)" + ("; Δ = ours − published" if comparable else "")
    )
    keys_disp = [
        (
            k,
            "training (missing+noise %)"
            if k == "training"
            else ("dataset" if k == "dataset_tag" else k),
        )
        for k in keys
    ]
    return _finish(
        table,
        name=name,
        title=_title(title, synthetic, dlabel, paper_ds),
        keys=[*keys_disp, ("diagnostic_label", "diagnostic")],
        metrics=[("corr", "Corr (drop)", 3), ("f1", "F1 (drop)", 2)],
        notes=notes,
        published=published,
        comparable=comparable,
        synthetic=synthetic,
    )


def robustness_table1(
    df: pd.DataFrame, modality: str = "text", reference_model: str = "MulT"
) -> pd.DataFrame:
    """Robustness paper Table 1: training perturbation × {clean, missing, noise} at 30 %.

    Rows: for each diagnostic (clean, then missing and noise of ``modality`` on 30 % of the test
    set, or the largest fraction the runs have), one row per training perturbation ('none' =
    no robust training, '15+15' = the paper's robust training). Cells: Corr and F1 (clean) or
    their drops, mean ± std over seeds. Published: ``reference_model``'s rows of
    ``reference/robustness_tables3to7.csv`` for the same dataset (MOSEI or MOSI by the dataset's
    name) and training.
    """
    return _robust_table(
        df,
        modality,
        None,
        reference_model,
        "robustness_table1",
        f"Robustness Table 1: robust training vs {modality} missing/noise at 30 % of the test set",
        table1=True,
    )


def robustness_table(
    df: pd.DataFrame,
    modality: str = "text",
    fractions: Sequence[str] | None = None,
    reference_model: str = "MulT",
) -> pd.DataFrame:
    """Robustness paper Tables 3-7 layout: training × diagnostic × test fraction.

    One block per training perturbation: the clean row, then missing and noise at each test
    fraction the runs have (5, 10, 15, 30 %; ``fractions`` picks some, as percent strings),
    cells the Corr and F1 drops, mean ± std over seeds. Published: ``reference_model``'s table
    (MulT: the paper's Table 7).
    """
    return _robust_table(
        df,
        modality,
        list(fractions) if fractions else None,
        reference_model,
        "robustness_tables3to7",
        f"Robustness Tables 3-7 layout: training perturbation × {modality} diagnostic × test fraction",
        table1=False,
    )


# ----------------------------------------------------------------------------- searches


def best_trials(
    df: pd.DataFrame,
    metric: str = "val_mae",
    mode: str = "min",
    k: int = 10,
    history: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The top ``k`` trials of a search by ``metric`` (the search's metric and mode).

    A trial's score is the best value of ``metric`` over its epochs when ``history`` (from
    :func:`analysis.load.load_history`) has it, which is how the search picks its best trial;
    otherwise its last reported value. Columns: rank, trial, status, epochs trained, the score,
    the params that differ between trials, and the headline test metrics (completed trials).
    """
    if df.empty:
        raise NotApplicable("no trials")
    score = pd.Series(np.nan, index=df.index)
    how = "last"
    if history is not None and not history.empty and (history["metric"] == metric).any():
        h = history[history["metric"] == metric].groupby("run_id")["value"]
        best = h.min() if mode == "min" else h.max()
        score = df["run_id"].map(best)
        how = "best over epochs"
    if score.isna().all():
        if metric not in df:
            raise NotApplicable(f"the trials have no metric '{metric}'")
        score = df[metric]
        how = "last reported"
    t = df.assign(_score=score).dropna(subset=["_score"])
    if t.empty:
        raise NotApplicable(f"no trial reported '{metric}'")
    t = t.sort_values("_score", ascending=mode == "min", kind="stable").head(k)
    params = config_columns(df)
    cols = {
        "rank": range(1, len(t) + 1),
        "trial": t["trial_id"].where(t["trial_id"] != "", t["run_name"]).to_numpy(),
        "status": t["trial_status"].to_numpy(),
        "epochs": (t["epoch"] if "epoch" in t else pd.Series(np.nan, index=t.index)).to_numpy(),
        f"{metric} ({how})": t["_score"].to_numpy(),
    }
    out = pd.DataFrame(cols)
    for p in params:
        out[p] = t[p].to_numpy()
    for m in ("test_mae", "test_corr", "test_acc2", "test_f1"):
        if m in t:
            out[m] = t[m].to_numpy()
    synthetic = bool(df["synthetic"].any())
    n_stopped = int((df["trial_status"] == "stopped_by_scheduler").sum())
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


# ----------------------------------------------------------------------------- rendering


def _cell(mean: float, std: float, n: int | None, group_n: int, dec: int) -> str:
    if mean is None or np.isnan(mean):
        return "–"
    s = f"{mean:.{dec}f}"
    if std is not None and not np.isnan(std):
        s += f" ± {std:.{dec}f}"
    if n is not None and group_n is not None and n < group_n:
        s += f" (n={n})"
    return s


def display_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The table as strings, with the column headers a reader sees (all renderers use this)."""
    a = table.attrs
    if a.get("kind") == "plain":
        out = pd.DataFrame(index=table.index)
        for c in table.columns:
            out[c] = [_fmt_value(v, c) for v in table[c]]
        return out
    out = pd.DataFrame(index=table.index)
    for col, head in a["keys"]:
        out[head] = [_fmt_value(v, col) for v in table[col]]
    out["n"] = table["n"].astype(int).astype(str)
    pub_lab = "paper" if a.get("comparable") else "paper, shape only"
    for m, head, dec in a["metrics"]:
        out[head] = [
            _cell(mu, sd, int(k), int(g), dec)
            for mu, sd, k, g in zip(
                table[f"{m}_mean"], table[f"{m}_std"], table[f"{m}_n"], table["n"], strict=True
            )
        ]
        if f"{m}_pub" in table:
            std = table[f"{m}_pub_std"] if f"{m}_pub_std" in table else [np.nan] * len(table)
            out[f"{head} ({pub_lab})"] = [
                _cell(mu, sd, None, None, dec)
                for mu, sd in zip(table[f"{m}_pub"], std, strict=True)
            ]
        if f"{m}_diff" in table:
            out[f"{head} Δ"] = ["–" if np.isnan(d) else f"{d:+.{dec}f}" for d in table[f"{m}_diff"]]
    return out


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|")


def to_markdown(table: pd.DataFrame, heading: str = "###") -> str:
    """Title, a GitHub-flavoured Markdown table, and the notes."""
    d = display_frame(table)
    a = table.attrs
    lines = [f"{heading} {a.get('title', '')}".rstrip(), ""]
    lines.append("| " + " | ".join(_md_escape(c) for c in d.columns) + " |")
    lines.append("|" + "|".join("---" for _ in d.columns) + "|")
    for _, row in d.iterrows():
        lines.append("| " + " | ".join(_md_escape(v) for v in row) + " |")
    lines.append("")
    for n in a.get("notes", []):
        lines.append(f"- {n}")
    if a.get("published"):
        lines.append(f"- published values: {a['published']}")
    return "\n".join(lines).rstrip() + "\n"


_TEX = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "&": r"\&",
    "%": r"\%",
    "_": r"\_",
    "#": r"\#",
    "$": r"\$",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "–": "--",
    "—": "---",
    "×": r"$\times$",
    "−": "-",
    "σ": r"$\sigma$",
    "²": r"$^2$",
    "≥": r"$\geq$",
    "∈": r"$\in$",
}
_TEX_RE = re.compile(r"π([TAVM])|π|" + "|".join(re.escape(k) for k in _TEX))


def _tex(s: object) -> str:
    """Plain text -> LaTeX, in one pass (so escapes never get escaped again)."""

    def sub(m: re.Match) -> str:
        if m.group(0).startswith("π"):
            return f"$\\pi_{m.group(1)}$" if m.group(1) else r"$\pi$"
        return _TEX[m.group(0)]

    return _TEX_RE.sub(sub, str(s))


def to_latex(table: pd.DataFrame) -> str:
    """A ``table`` environment with a ``tabular`` (booktabs rules) and the title as caption."""
    d = display_frame(table)
    a = table.attrs
    ncol = len(d.columns)
    lines = [
        "% generated by python -m analysis.report; needs \\usepackage{booktabs}",
        "\\begin{table}[ht]",
        "\\centering",
        "\\small",
        f"\\caption{{{_tex(a.get('title', ''))}}}",
        "\\begin{tabular}{" + "l" * ncol + "}",
        "\\toprule",
        " & ".join(_tex(c) for c in d.columns) + " \\\\",
        "\\midrule",
    ]
    for _, row in d.iterrows():
        lines.append(" & ".join(_tex(v) for v in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    notes = list(a.get("notes", []))
    if a.get("published"):
        notes.append(f"published values: {a['published']}")
    if notes:
        lines.append("\\par\\footnotesize " + "; ".join(_tex(n) for n in notes))
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def to_html(table: pd.DataFrame) -> str:
    """An HTML ``<table>`` with the title as caption and the notes below (no styling)."""
    d = display_frame(table)
    a = table.attrs
    cls = ' class="synthetic"' if a.get("synthetic") else ""
    out = [f"<table{cls}>", f"<caption>{html.escape(a.get('title', ''))}</caption>", "<thead><tr>"]
    out += [f"<th>{html.escape(str(c))}</th>" for c in d.columns]
    out.append("</tr></thead><tbody>")
    for _, row in d.iterrows():
        out.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>")
    out.append("</tbody></table>")
    notes = list(a.get("notes", []))
    if a.get("published"):
        notes.append(f"published values: {a['published']}")
    if notes:
        out.append(
            '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
        )
    return "\n".join(out) + "\n"


def to_csv(table: pd.DataFrame, path: str | Path | None = None) -> str:
    """The numbers (means, stds, counts, published, differences) as CSV; written if ``path``."""
    text = table.to_csv(index=False, float_format="%.6g")
    if path is not None:
        Path(path).write_text(text)
    return text
