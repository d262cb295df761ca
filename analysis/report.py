"""``python -m analysis.report --experiment NAME``: every applicable table and plot, one report.

Reads the MLflow runs of an experiment (:func:`analysis.load.load_runs`), builds the tables of
:mod:`analysis.tables` and the plots of :mod:`analysis.plots` that the runs support, and writes::

    <out>/report.md            the report (GitHub-flavoured Markdown, images linked relatively)
    <out>/report.html          the same, self-contained apart from the PNGs beside it
    <out>/tables/<name>.md|.tex|.csv
    <out>/plots/<name>.png

``<out>`` defaults to ``<results dir>/reports/<experiment>/`` (results dir: ``$TUNE_M3_RESULTS``
or ``./tune_m3_results``). The directory is then logged as artifacts (under ``report/``) of the
parent run of the experiment's latest search, so the report is one click away in the MLflow UI.

What is not applicable (no diagnostics, no grid, too few trials) is listed in the report with
the reason, never an error. User errors (unknown experiment, unreachable tracking server, no
finished runs) end with one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import cross_model as X
from analysis import plots as P
from analysis import tables as T
from analysis.load import RunsInfo, load_history, load_runs
from tune_m3.errors import cli_main
from tune_m3.names import STAGE_CONFIRM, diag_key

__all__ = ["Report", "build_report", "is_grid", "main", "write_report"]

OURS = ("tables", "plots", "report.md", "report.html")  # what a report owns inside <out>


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    out: Path
    info: RunsInfo
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    plots: list[P.PlotResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    logged_to: str | None = None  # parent run id the report was logged to
    log_error: str | None = None

    @property
    def markdown(self) -> Path:
        return self.out / "report.md"

    @property
    def html(self) -> Path:
        return self.out / "report.html"


def default_out(experiment: str) -> Path:
    from tune_m3.tracking import results_dir

    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", experiment).strip("._") or "experiment"
    return results_dir() / "reports" / safe


# ------------------------------------------------------------------------------- building


def is_grid(info: RunsInfo, df: pd.DataFrame) -> bool:
    """A grid search (parent param ``algorithm = grid``). Runs logged without the param count as
    a grid when some configuration was repeated over seeds (an Optuna sample never is)."""
    if info.algorithm:
        return info.algorithm == "grid"
    cfg = T.config_columns(df)
    return bool(cfg) and bool(df.duplicated(subset=cfg).any())


def _table_jobs(df: pd.DataFrame, info: RunsInfo, history: pd.DataFrame, top_k: int):
    """(name, builder) of every table that may apply; grid tables for grids only."""
    search = T.stage(df)
    grid = is_grid(info, search)
    jobs: list[tuple[str, Callable[[], pd.DataFrame]]] = [
        ("m3_table1", lambda: T.m3_table1(search))
    ]
    if grid:
        jobs.append(("m3_table3", lambda: T.m3_table3(search)))
    ms = T.models(T.completed(search))
    for model in ms:
        sfx = "" if len(ms) == 1 else f"_{_safe(model)}"
        jobs += [
            (f"robustness_table1{sfx}", lambda m=model: T.robustness_table1(search, model=m)),
            (f"robustness_tables3to7{sfx}", lambda m=model: T.robustness_table(search, model=m)),
        ]
    jobs += _cross_model_tables(search)
    jobs.append(("summary", lambda: _summary_if_repeated(search)))
    if not grid:  # an Optuna search: its best trials
        jobs.append(
            ("best_trials", lambda: T.best_trials(search, info.metric, info.mode, top_k, history))
        )
    if not T.stage(df, STAGE_CONFIRM).empty:
        jobs.append(
            (
                "confirmed_ranking",
                lambda: T.confirmed_ranking(df, info.metric, info.mode, history),
            )
        )
    return jobs


def _cross_model_tables(search: pd.DataFrame):
    """Model × regime tables (>= 2 models, or one model's missing-rate curve) and MultiBench's
    robustness of every configuration (:mod:`analysis.cross_model`)."""
    need = X.required_models(search)
    jobs: list[tuple[str, Callable[[], pd.DataFrame]]] = [
        (f"robustness_models_{m}", lambda m=m: X.robustness_models(search, m, min_models=need))
        for m in ("corr", "f1")
    ]
    return [*jobs, ("multibench_robustness", lambda: X.multibench_robustness(search))]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("._") or "model"


def _summary_if_repeated(df: pd.DataFrame) -> pd.DataFrame:
    t = T.summary_table(df)
    if (t["n"] < 2).all():
        raise T.NotApplicable("no configuration was repeated over seeds")
    return t


def _plot_jobs(df: pd.DataFrame, info: RunsInfo, history: pd.DataFrame, plots_dir: Path):
    """Plot calls that may apply: heatmaps for grids, the param scatter for Optuna searches, the
    search's own objectives when it had several."""
    search = T.stage(df)
    curves = list(dict.fromkeys((info.metric, "train_loss")))
    jobs = []
    if is_grid(info, search):
        drop = diag_key("text", "missing", 0.3, "corr", drop=True)
        jobs += [
            lambda: P.heatmap(search, plots_dir / "heatmap_test_mae.png", "test_mae"),
            lambda: _renamed(
                P.heatmap(search, plots_dir / "heatmap_text_missing_30_corr_drop.png", drop),
                "heatmap_robustness",
            ),
        ]
    else:
        jobs.append(
            lambda: P.param_scatter(
                search, plots_dir / "param_scatter.png", info.metric, info.mode, history
            )
        )
    jobs += [
        lambda: P.robustness_curves(search, plots_dir / "robustness_curves_text.png", "text"),
        lambda: X.robustness_drops(
            search,
            plots_dir / "robustness_drops_text_corr.png",
            min_models=X.required_models(search),
        ),
        lambda: P.learning_curves(
            history[history["run_id"].isin(search["run_id"])],
            plots_dir / "learning_curves.png",
            curves,
            search,
        ),
        lambda: P.param_importance(
            search, plots_dir / "param_importance.png", info.metric, info.mode
        ),
    ]
    if len(info.objectives) >= 2:
        jobs.append(
            lambda: P.pareto_objectives(
                search, plots_dir / "pareto_objectives.png", info.objectives
            )
        )
    else:
        jobs.append(lambda: P.pareto_scatter(search, plots_dir / "pareto_mae_vs_text_missing.png"))
    return jobs


def _renamed(r: P.PlotResult, name: str) -> P.PlotResult:
    r.name = name
    return r


def build_report(
    experiment: str,
    tracking_uri: str | None = None,
    out: str | Path | None = None,
    search: str | None = None,
    include_unfinished: bool = False,
    log_to_mlflow: bool = True,
    top_k: int = 10,
) -> Report:
    """Write the report of ``experiment`` into ``out`` and (by default) log it to MLflow.

    See the module docstring for what is written. ``search`` restricts it to one search of the
    experiment (a search id or ``"latest"``). Returns a :class:`Report` that says what was
    written and skipped. A failure to log the artifacts does not fail the report: it is
    printed and recorded in ``Report.log_error``.
    """
    df, info = load_runs(experiment, tracking_uri, include_unfinished, search)
    out = Path(out).expanduser().resolve() if out else default_out(experiment)
    out.parent.mkdir(parents=True, exist_ok=True)
    # build beside the target and move in at the end: an error leaves the old report whole
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        rep = Report(out=out, info=info)
        metrics = [m for m in dict.fromkeys((info.metric, "train_loss"))]
        history = load_history(df, metrics, info.tracking_uri)
        (tmp / "tables").mkdir()
        for name, job in _table_jobs(df, info, history, top_k):
            try:
                table = job()
            except T.NotApplicable as err:
                rep.skipped.append((f"table {name}", str(err)))
                continue
            (tmp / "tables" / f"{name}.md").write_text(T.to_markdown(table))
            (tmp / "tables" / f"{name}.tex").write_text(T.to_latex(table))
            T.to_csv(table, tmp / "tables" / f"{name}.csv")
            rep.tables.append((name, table))
        for job in _plot_jobs(df, info, history, tmp / "plots"):
            r = job()
            if r:
                r.path = Path("plots") / r.path.name  # relative: the report moves
                rep.plots.append(r)
            else:
                rep.skipped.append((f"plot {r.name}", r.reason))
        (tmp / "report.md").write_text(_markdown(rep, df))
        (tmp / "report.html").write_text(_html(rep, df))
        _move_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if log_to_mlflow:
        _log(rep)
    return rep


def _move_in(tmp: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in OURS:  # replace only what a report owns; other files in <out> stay
        dst = out / name
        if dst.is_dir():
            shutil.rmtree(dst)
        elif dst.exists():
            dst.unlink()
        if (tmp / name).exists():
            shutil.move(str(tmp / name), str(dst))


def _log(rep: Report) -> None:
    from tune_m3 import tracking

    parent = rep.info.latest_search
    if parent is None:
        rep.log_error = "no parent run found for these trials"
        return
    try:
        c = tracking.client(rep.info.tracking_uri)
        for name in OURS:
            p = rep.out / name
            if p.is_dir():
                c.log_artifacts(parent.parent_id, str(p), f"report/{name}")
            elif p.exists():
                c.log_artifact(parent.parent_id, str(p), "report")
        rep.logged_to = parent.parent_id
    except Exception as err:  # noqa: BLE001 - the report on disk is still good
        rep.log_error = f"{type(err).__name__}: {str(err)[:300]}"
        print(
            f"warning: could not log the report to MLflow run {parent.parent_id} "
            f"({rep.log_error}); it is on disk in {rep.out}",
            file=sys.stderr,
        )


# ------------------------------------------------------------------------------- writing


def _header_facts(rep: Report, df: pd.DataFrame) -> list[str]:
    info = rep.info
    st = df["trial_status"].value_counts()
    counts = ", ".join(f"{n} {s.replace('_', ' ') or 'unknown'}" for s, n in st.items())
    facts = [
        f"experiment: `{info.experiment}` (id {info.experiment_id}) in `{info.tracking_uri}`",
        f"trials: {info.n_loaded} loaded ({counts}); {info.describe_left_out()}",
        f"datasets: {', '.join(info.datasets) or 'unknown'}"
        + (" (SYNTHETIC)" if info.synthetic else ""),
    ]
    for s in info.searches:
        p = s.params
        facts.append(
            f"search `{s.search_id}`: parent run `{s.parent_id}` ({s.status.lower()}), space "
            f"`{p.get('space', '?')}`, {p.get('algorithm', '?')} + {p.get('scheduler', '?')}, "
            f"metric {p.get('metric', '?')} ({p.get('mode', '?')})"
        )
    models = T.models(df)
    facts.append(f"model{'s' if len(models) > 1 else ''}: {', '.join(models)}")
    n_confirm = len(T.stage(df, STAGE_CONFIRM))
    if n_confirm:
        facts.append(f"confirm stage: {n_confirm} runs (not in the search's tables and plots)")
    facts += [f"warning: {w}" for w in info.warnings]
    facts.append(f"generated {time.strftime('%Y-%m-%d %H:%M:%S')} by `python -m analysis.report`")
    return facts


SYNTHETIC_BANNER = (
    "SYNTHETIC data: these runs did not train on CMU-MOSEI/MOSI. Published numbers appear for "
    "the shape of the tables only; no difference to them is computed."
)


def _markdown(rep: Report, df: pd.DataFrame) -> str:
    info = rep.info
    lines = [f"# tune_m3 report: {info.experiment}", ""]
    if info.synthetic:
        lines += [f"> **{SYNTHETIC_BANNER}**", ""]
    lines += [f"- {f}" for f in _header_facts(rep, df)]
    lines += ["", "## Tables", ""]
    if not rep.tables:
        lines += ["No table applies to these runs (see Skipped).", ""]
    for name, table in rep.tables:
        lines.append(T.to_markdown(table, heading="###"))
        lines.append(
            f"Files: [CSV](tables/{name}.csv) · [LaTeX](tables/{name}.tex) · "
            f"[Markdown](tables/{name}.md)"
        )
        lines.append("")
    lines += ["## Plots", ""]
    if not rep.plots:
        lines += ["No plot applies to these runs (see Skipped).", ""]
    for r in rep.plots:
        lines += [f"### {r.title}", "", f"![{r.title}]({r.path.as_posix()})", "", r.caption, ""]
    if rep.skipped:
        lines += ["## Skipped", ""]
        lines += [f"- {what}: {why}" for what, why in rep.skipped]
        lines.append("")
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1250px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
h3 { font-size: 1.05em; margin-top: 1.6em; }
.banner { background: #fff3cd; border: 2px solid #e0a800; padding: .8em 1em; font-weight: 600; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
caption { text-align: left; font-weight: 600; padding: .3em 0; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
table.synthetic caption { color: #8a5a00; }
.wrap { overflow-x: auto; }
ul.notes { font-size: .85em; color: #555; margin-top: .2em; }
img { max-width: 100%; border: 1px solid #ddd; }
.files { font-size: .85em; } code { background: #f5f5f5; padding: 0 .2em; }
"""


def _inline_md(s: str) -> str:
    """The little Markdown the header facts use (`code`), as HTML."""
    parts = s.split("`")
    return "".join(
        f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts)
    )


def _html(rep: Report, df: pd.DataFrame) -> str:
    info = rep.info
    esc = html.escape
    body = [f"<h1>tune_m3 report: {esc(info.experiment)}</h1>"]
    if info.synthetic:
        body.append(f'<p class="banner">{esc(SYNTHETIC_BANNER)}</p>')
    body.append("<ul>" + "".join(f"<li>{_inline_md(f)}</li>" for f in _header_facts(rep, df)))
    body.append("</ul>")
    body.append("<h2>Tables</h2>")
    if not rep.tables:
        body.append("<p>No table applies to these runs (see Skipped).</p>")
    for name, table in rep.tables:
        body.append(f'<div class="wrap">{T.to_html(table)}</div>')
        body.append(
            f'<p class="files">Files: <a href="tables/{name}.csv">CSV</a> · '
            f'<a href="tables/{name}.tex">LaTeX</a> · <a href="tables/{name}.md">Markdown</a></p>'
        )
    body.append("<h2>Plots</h2>")
    if not rep.plots:
        body.append("<p>No plot applies to these runs (see Skipped).</p>")
    for r in rep.plots:
        src = esc(r.path.as_posix())
        body.append(f"<h3>{esc(r.title)}</h3>")
        body.append(f'<figure><img src="{src}" alt="{esc(r.title)}">')
        body.append(f"<figcaption>{esc(r.caption)}</figcaption></figure>")
    if rep.skipped:
        body.append("<h2>Skipped</h2><ul>")
        body += [f"<li>{esc(what)}: {esc(why)}</li>" for what, why in rep.skipped]
        body.append("</ul>")
    title = f"tune_m3 report: {info.experiment}" + (" [SYNTHETIC]" if info.synthetic else "")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


# ------------------------------------------------------------------------------- entry points


def write_report(
    experiment: str,
    tracking_uri: str | None = None,
    out: str | Path | None = None,
    **kwargs,
) -> Path:
    """Build the report (see :func:`build_report`) and return its directory.

    ``report.md`` and ``report.html`` are in it. This is what ``make demo`` calls at its end.
    """
    return build_report(experiment, tracking_uri, out, **kwargs).out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m analysis.report",
        description="Tables (Markdown, LaTeX, CSV), plots and one report (report.md, "
        "report.html) from the MLflow runs of a tune_m3 search; logged to the search's "
        "parent run.",
    )
    p.add_argument("--experiment", required=True, help="MLflow experiment (the space's name)")
    p.add_argument(
        "--tracking-uri",
        "--mlflow-uri",
        dest="tracking_uri",
        help="MLflow tracking URI (default: sqlite:///$TUNE_M3_RESULTS/mlflow.db, "
        "TUNE_M3_RESULTS defaulting to ./tune_m3_results)",
    )
    p.add_argument("--out", help="report directory (default: <results dir>/reports/EXPERIMENT)")
    p.add_argument("--search", help="only this search of the experiment: a search id, or 'latest'")
    p.add_argument(
        "--include-unfinished",
        action="store_true",
        help="also use RUNNING / FAILED / KILLED trial runs",
    )
    p.add_argument(
        "--no-mlflow", action="store_true", help="do not log the report to the parent run"
    )
    p.add_argument("--top-k", type=int, default=10, help="rows of the best-trials table")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rep = build_report(
        args.experiment,
        args.tracking_uri,
        args.out,
        search=args.search,
        include_unfinished=args.include_unfinished,
        log_to_mlflow=not args.no_mlflow,
        top_k=args.top_k,
    )
    tag = " [SYNTHETIC data]" if rep.info.synthetic else ""
    print(
        f"report of '{rep.info.experiment}'{tag}: {len(rep.tables)} tables, {len(rep.plots)} "
        f"plots ({len(rep.skipped)} not applicable) from {rep.info.n_loaded} trials "
        f"({rep.info.describe_left_out()})"
    )
    print(f"wrote {rep.markdown}")
    print(f"      {rep.html}")
    if rep.logged_to:
        print(f"logged to MLflow: parent run {rep.logged_to}, artifacts under report/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
