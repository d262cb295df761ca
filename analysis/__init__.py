"""MLflow runs of tune_m3 searches -> the papers' tables, plots and one report.

The few things to script against::

    from analysis import load_runs, load_history, write_report
    df, info = load_runs("m3_grid_mosei")          # one row per trial
    write_report("m3_grid_mosei")                   # tables + plots + report.md/html

Tables are in :mod:`analysis.tables`, plots in :mod:`analysis.plots`, robustness across models
and MultiBench's numbers in :mod:`analysis.cross_model`; ``python -m
analysis.report --experiment NAME`` is the command line. See docs/analysis.md.
"""

from __future__ import annotations

from typing import Any

from analysis.grouping import NotApplicable
from analysis.load import RunsInfo, load_history, load_runs

__all__ = ["NotApplicable", "RunsInfo", "build_report", "load_history", "load_runs", "write_report"]


def __getattr__(name: str) -> Any:
    # the report module (matplotlib, optuna) is imported on first use only, which also keeps
    # `python -m analysis.report` from finding it half-imported through this package
    if name in ("build_report", "write_report"):
        from analysis import report

        return getattr(report, name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
