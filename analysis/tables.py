"""The tables' public face: builders, grouping helpers and renderers under one name.

The code lives in four modules; this one re-exports their public names so that
``from analysis import tables as T; T.m3_table1(df); T.to_markdown(t)`` keeps working:

- :mod:`analysis.grouping`: which runs and how they group (configurations, training regimes,
  models, stages, row order, number formatting, :class:`NotApplicable`);
- :mod:`analysis.labels`: the words, orders and decimals printed (metrics, schemes, diagnostics);
- :mod:`analysis.paper_tables`: the papers' tables and the search's own (best trials,
  confirmed ranking), with the published numbers of ``analysis/reference/``;
- :mod:`analysis.render`: Markdown, LaTeX, HTML and CSV.
"""

from __future__ import annotations

from analysis.footnotes import ACC_CONVENTION, F1_SWAPPED, SYNTHETIC_TITLE
from analysis.grouping import (
    NOT_CONFIG,
    PROBABILITIES,
    NotApplicable,
    aggregate,
    completed,
    config_columns,
    diag_fractions,
    fmt_num,
    fmt_value,
    group_label,
    models,
    regime_label,
    stage,
    training_label,
)
from analysis.labels import (
    DECIMALS,
    DIAG_LABELS,
    KINDS,
    METRIC_LABELS,
    SCHEME_LABELS,
    SCHEME_ORDER,
)
from analysis.load import DEFAULT_MODEL
from analysis.paper_tables import (
    REFERENCE_DIR,
    best_trials,
    confirmed_ranking,
    m3_table1,
    m3_table3,
    reference,
    robustness_table,
    robustness_table1,
    seed_std_separation,
    summary_table,
)
from analysis.render import display_frame, to_csv, to_html, to_latex, to_markdown

__all__ = [
    "ACC_CONVENTION",
    "DECIMALS",
    "DEFAULT_MODEL",
    "DIAG_LABELS",
    "F1_SWAPPED",
    "KINDS",
    "METRIC_LABELS",
    "NOT_CONFIG",
    "PROBABILITIES",
    "REFERENCE_DIR",
    "SCHEME_LABELS",
    "SCHEME_ORDER",
    "SYNTHETIC_TITLE",
    "NotApplicable",
    "aggregate",
    "best_trials",
    "completed",
    "config_columns",
    "confirmed_ranking",
    "diag_fractions",
    "display_frame",
    "fmt_num",
    "fmt_value",
    "group_label",
    "m3_table1",
    "m3_table3",
    "models",
    "reference",
    "regime_label",
    "robustness_table",
    "robustness_table1",
    "seed_std_separation",
    "stage",
    "summary_table",
    "to_csv",
    "to_html",
    "to_latex",
    "to_markdown",
    "training_label",
]
