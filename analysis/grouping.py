"""Grouping helpers shared by the tables and the plots: which runs, which configuration, which row.

A :func:`analysis.load.load_runs` frame has one row per trial. Tables and plots group trials into
*configurations* (the params that differ between trials, the seed aside), name *training
regimes* the way the papers do, and order rows the papers' way. Everything here is public so that
:mod:`analysis.paper_tables` and :mod:`analysis.plots` share it without reaching into each other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.labels import (  # KINDS, METRIC_LABELS: also public here, as before
    KINDS,
    METRIC_LABELS,
    REGIME_SCHEME,
    SCHEME_ORDER,
    scheme_label,
    scheme_rank,
)
from analysis.load import DEFAULT_MODEL, RUN_COLUMNS
from tune_m3.names import STAGE_CONFIRM, STAGE_SEARCH, parse_diag_key

__all__ = [
    "DEFAULT_MODEL",
    "KINDS",
    "METRIC_LABELS",
    "NotApplicable",
    "aggregate",
    "completed",
    "config_columns",
    "determined_by",
    "diag_fractions",
    "drop_dependent",
    "fmt_num",
    "fmt_value",
    "group_label",
    "models",
    "nunique",
    "regime_label",
    "regime_sort_key",
    "run_scores",
    "sort_key",
    "stage",
    "training_label",
]

# params that never define a configuration (bookkeeping, or the repeat axis itself)
NOT_CONFIG = {"seed", "threads", "device", "checkpoint_every", "diag_seed"}
DERIVED = ("pi_audio", "pi_vision")  # follow from pi_text (tune_m3.search.space)
PROBABILITIES = ("pi_text", "pi_audio", "pi_vision", "p_mask", "p_missing", "p_noise")


class NotApplicable(Exception):
    """The runs lack what this table or plot needs; the message says what."""


# ----------------------------------------------------------------------------- which runs


def completed(df: pd.DataFrame, metric: str = "test_mae") -> pd.DataFrame:
    """Trials that reached the end (they have the final ``test_*`` metrics)."""
    if metric not in df:
        return df.iloc[0:0]
    return df[df[metric].notna()]


def stage(df: pd.DataFrame, which: str = STAGE_SEARCH) -> pd.DataFrame:
    """The runs of one stage (``search`` or ``confirm``); a frame without the column is search."""
    if "stage" not in df:
        return df if which == STAGE_SEARCH else df.iloc[0:0]
    st = df["stage"].fillna(STAGE_SEARCH).replace("", STAGE_SEARCH)
    return df[st == which] if which in (STAGE_SEARCH, STAGE_CONFIRM) else df.iloc[0:0]


def models(df: pd.DataFrame) -> list[str]:
    """The models of these runs in first-seen order (runs without a ``model`` param: default)."""
    if "model" not in df:
        return [DEFAULT_MODEL]
    return list(dict.fromkeys(df["model"].fillna(DEFAULT_MODEL).astype(str)))


def run_scores(
    df: pd.DataFrame, metric: str, mode: str, history: pd.DataFrame | None = None
) -> tuple[pd.Series, str]:
    """Each run's score on ``metric`` and how it was taken.

    The best value over epochs when ``history`` (from :func:`analysis.load.load_history`) has the
    metric (what the search ranks by), else the last reported value. Returns ``(scores, how)``;
    ``scores`` is indexed like ``df`` (NaN where a run has no value).
    """
    if history is not None and not history.empty and (history["metric"] == metric).any():
        h = history[history["metric"] == metric].groupby("run_id")["value"]
        best = h.min() if mode == "min" else h.max()
        score = df["run_id"].map(best).astype(float)
        if score.notna().any():
            return score, "best over epochs"
    if metric not in df:
        raise NotApplicable(f"the trials have no metric '{metric}'")
    return df[metric].astype(float), "last reported"


# ----------------------------------------------------------------------------- configurations


def nunique(s: pd.Series) -> int:
    return s.astype(str).nunique(dropna=False)


_RUN_LIKE = frozenset(RUN_COLUMNS)
_METRIC_RE = re.compile(r"^(test_|val_|train_|diag_|best_|last_)|^(epoch|epoch_seconds)$")


def is_metric(col: str) -> bool:
    return bool(_METRIC_RE.match(col)) or col in {"stopped_early", "training_iteration"}


def config_columns(df: pd.DataFrame, params: Iterable[str] | None = None) -> list[str]:
    """Params that differ between runs, without the seed: what defines a configuration.

    ``pi_audio``/``pi_vision`` are left out when ``pi_text`` determines them (the papers'
    grid), so a configuration is named by what was searched.
    """
    cands = [
        c
        for c in (params if params is not None else df.columns)
        if c in df and c not in NOT_CONFIG and c not in _RUN_LIKE and not is_metric(c)
    ]
    cols = [c for c in cands if nunique(df[c]) > 1]
    if "pi_text" in cols:
        cols = [c for c in cols if c not in DERIVED or not determined_by(df, c, ["pi_text"])]
    return cols


def determined_by(df: pd.DataFrame, col: str, by: list[str]) -> bool:
    """True when every group of ``by`` has one value of ``col``."""
    keyed = df[list(by)].assign(_v=df[col].astype(str))
    return bool((keyed.groupby(list(by), dropna=False)["_v"].nunique() <= 1).all())


def drop_dependent(df: pd.DataFrame, primary: str, cols: list[str]) -> list[str]:
    """``cols`` without those that ``primary`` determines (a variant fixes its p_mask)."""
    return [c for c in cols if c == primary or not determined_by(df, c, [primary])]


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


# ----------------------------------------------------------------------------- formatting


def fmt_num(v: float, dec: int = 2, sign: bool = False) -> str:
    """``v`` with ``dec`` decimals; a value that rounds to zero prints ``0.00``, never ``-0.00``.

    ``sign=True`` puts ``+`` before positive values (differences), still ``0.00`` for zero.
    """
    s = f"{v:+.{dec}f}" if sign else f"{v:.{dec}f}"
    if float(s) == 0:
        return f"{0:.{dec}f}"
    return s


def fmt_value(v: Any, key: str = "", sig: int = 4) -> str:
    """A param or plain cell: probabilities of the papers' grids with 2 decimals, else ``sig``
    significant digits."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        if key in PROBABILITIES and abs(v * 100 - round(v * 100)) < 1e-6:
            return fmt_num(v, 2)  # grid values as the papers print them: 0.33, 0.10
        s = f"{v:.{sig}g}"
        return "0" if float(s) == 0 else s
    return str(v)


def group_label(row: pd.Series | dict, keys: Sequence[str]) -> str:
    """``p_mask=0.1, pi_text=0.33`` (a scheme or variant shows as its name)."""
    parts = []
    for k in keys:
        v = row[k]
        if k in ("variant", "scheme", "regime", "model"):
            parts.append(scheme_label(v) if k == "scheme" else str(v))
        else:
            parts.append(f"{k}={fmt_value(v, k, sig=3)}")
    return ", ".join(parts) or "all runs"


# ----------------------------------------------------------------------------- training regimes


def training_label(p_missing: float, p_noise: float) -> str:
    """The robustness paper's row name: 'none', or '<missing %>+<noise %>' such as '15+15'."""
    pm, pn = _num(p_missing), _num(p_noise)
    if pm == 0 and pn == 0:
        return "none"
    return f"{pm * 100:g}+{pn * 100:g}"


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(f) else f


def regime_label(row: pd.Series | dict) -> str:
    """What a run's training was, in words (Robustness Table 1 rows).

    ``baseline`` (scheme none, no perturbation); ``M3 (pM=0.2, πT=0.33)``, ``soft M3 (...)``,
    ``random mask (...)`` for a masking scheme; ``perturbation 15+15 %`` (p_missing + p_noise
    of each batch, in %) for the robustness paper's training; both joined with `` + ``.
    """
    get = row.get  # a dict and a Series both have it
    parts = []
    scheme = str(get("scheme", "none") or "none")
    if scheme in REGIME_SCHEME:
        pm, pt = _num(get("p_mask", 0.0)), _num(get("pi_text", float("nan")))
        knobs = f"pM={pm:.3g}" + (f", πT={pt:.3g}" if get("pi_text") is not None else "")
        parts.append(f"{REGIME_SCHEME[scheme]} ({knobs})")
    elif scheme not in ("none", "baseline"):
        parts.append(scheme)
    train = training_label(get("p_missing", 0.0), get("p_noise", 0.0))
    if train != "none":
        parts.append(f"perturbation {train} %")
    return " + ".join(parts) or "baseline"


def regime_sort_key(row: pd.Series | dict) -> tuple:
    """baseline, masking schemes (paper order, by pM, πT), perturbation by amount, both."""
    get = row.get  # a dict and a Series both have it
    scheme = str(get("scheme", "none") or "none")
    s = scheme_rank(scheme)
    pert = _num(get("p_missing", 0.0)) + _num(get("p_noise", 0.0))
    masked = scheme not in ("none", "baseline")
    group = (1 if masked else 0) if pert == 0 else (3 if masked else 2)
    return (group, s, _num(get("p_mask", 0.0)), _num(get("pi_text", 0.0)), pert)


def train_sort(label: str) -> tuple:
    if label == "none":
        return (0, 0.0)
    try:
        a, b = label.split("+")
        return (1, float(a) + float(b))
    except ValueError:
        return (2, 0.0)


def sort_key(row: pd.Series | dict, keys: Sequence[str]) -> tuple:
    """Schemes in the papers' order, perturbations none < 5+5 < 10+10, numbers by value."""
    out = []
    for k in keys:
        v = row[k]
        if k == "scheme" or (k == "variant" and str(v) in SCHEME_ORDER + ["baseline"]):
            s = "none" if str(v) == "baseline" else str(v)
            out.append((0, scheme_rank(s), ""))
        elif k == "variant":
            t = train_sort(str(v))
            out.append((1, t[0] * 1000 + t[1], str(v)))
        elif isinstance(v, int | float | np.number) and not isinstance(v, bool):
            out.append((2, float(v) if v == v else math.inf, ""))  # NaN last
        else:
            out.append((3, 0, str(v)))
    return tuple(out)


def natural_order(table: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Rows in the papers' order: schemes Baseline..M3, perturbations none < 5+5 < ..., numbers."""
    if not keys:
        return table.reset_index(drop=True)
    order = sorted(range(len(table)), key=lambda i: sort_key(table.iloc[i], keys))
    return table.iloc[order].reset_index(drop=True)


# ----------------------------------------------------------------------------- diagnostics


def diag_fractions(df: pd.DataFrame, modality: str = "text", metric: str = "corr") -> list[str]:
    """Test fractions (as percent strings: '5', '30') with drops of ``metric`` for ``modality``."""
    pcts = set()
    for c in df.columns:
        d = parse_diag_key(c)
        if (
            d is not None
            and d.split == "test"
            and d.drop
            and not d.is_auc
            and d.modality == modality
            and d.metric == metric
            and df[c].notna().any()
        ):
            pcts.add(d.pct)
    return sorted(pcts, key=float)


def dataset_family(name: str) -> str | None:
    n = name.lower()
    if "mosei" in n:
        return "mosei"
    if "mosi" in n:
        return "mosi"
    return None
