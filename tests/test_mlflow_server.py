"""A search logging to a real ``mlflow server`` over HTTP, checked in the MLflow UI itself.

The test starts ``mlflow server`` (SQLite backend and artifacts in a temp dir, 127.0.0.1 only),
runs a tiny search with ``--mlflow-uri http://127.0.0.1:PORT``, then opens the UI in headless
Chromium (the system's, driven by Playwright; no browser is downloaded) and checks what a user
would look at: the search's parent run with its trials nested under it, a trial's ``val_mae``
chart, the printed link to the search's runs (a saved view: its trials sorted by ``val_mae``,
the Dataset, ``val_mae`` and ``p_mask`` columns shown) and the printed compare-page link (its
parallel-coordinates plot of ``p_mask`` against ``val_mae``). Screenshots land in ``tests/artifacts/`` (not committed) for a human to look
at. Skipped when Playwright or a Chromium binary is missing.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from mlflowserver import MlflowServer
from searchutil import TINY_FIXED, make_search_env, run_search, write_space

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The UI opens its assistant panel on a first visit; keep it closed for the screenshots.
NO_ASSISTANT = (
    "window.localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
    "window.localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
)
TIMEOUT_MS = 120_000  # a React app on a busy 2-core machine


def _chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture
def server(tmp_path):
    srv = MlflowServer(tmp_path / "mlflow_server")
    yield srv
    srv.stop()


def test_search_runs_show_nested_in_the_mlflow_ui(server, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium binary (set $CHROMIUM)")

    server.start()
    env = make_search_env(tmp_path / "search")
    epochs = 2
    space = write_space(
        tmp_path / "ui.yaml",
        search={"p_mask": {"uniform": [0.0, 0.3]}},
        fixed={**TINY_FIXED, "scheme": "m3", "max_epochs": epochs},
        algorithm={"type": "optuna", "seed": 0},
        scheduler={"type": "fifo"},
        num_samples=2,
    )
    out = run_search(
        env,
        *("--space", str(space), "--mlflow-uri", server.uri),
        *("--experiment", "ui_check", "--name", "ui-search"),
    )
    assert f"open {server.uri} in a browser" in out.stdout
    view_link = re.search(r"runs of this search, by val_mae: (\S+)", out.stdout).group(1)
    compare_link = re.search(r"compare its 2 completed trials .*: (\S+)", out.stdout).group(1)
    assert "View run" not in out.stdout + out.stderr  # MLflow's own per-run lines stay out
    # everything went over HTTP: no local store was created beside the results
    assert not (Path(env["TUNE_M3_RESULTS"]) / "mlflow.db").exists()

    exp_id, _, children = _check_logged(server.uri, view_link)
    base = f"{server.uri}/#/experiments/{exp_id}"

    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # fresh profile
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            ctx.add_init_script(NO_ASSISTANT)
            page = ctx.new_page()
            page.set_default_timeout(TIMEOUT_MS)

            _check_nested_and_chart(page, base, children, epochs)
            _check_search_view(page, view_link, children)
            _check_compare_page(page, compare_link, children)
        finally:
            ctx.close()


def _check_logged(uri: str, view_link: str):
    """The runs over MLflow's API: 2 trials nested under the parent, names that lead with the
    metric, the dataset as their input; the view link is the parent's saved view."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("ui_check")
    runs = c.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "ui-search"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2
    for r in children:  # the metric and the searched value lead the name: the table shows them
        assert re.fullmatch(r"0\.\d+ \| t0[12] pM=\.\d+", r.info.run_name), r.info.run_name
        (inp,) = r.inputs.dataset_inputs  # the Dataset column: the dataset, marked SYNTHETIC
        assert (inp.dataset.name, inp.dataset.digest) == ("tiny", "tiny")
        assert {t.key: t.value for t in inp.tags}["tune_m3.synthetic"] == "SYNTHETIC"
    assert (
        view_link
        == f"{uri}/#/experiments/{exp.experiment_id}/runs?viewStateShareKey={parent.info.run_id}"
    )
    return exp.experiment_id, parent, children


def _check_nested_and_chart(page, base: str, children, epochs: int) -> None:
    """The runs table: the parent run, expanded, shows its trials nested under it; a trial's
    page, model-metrics tab: the val_mae chart, one point per epoch."""
    child = children[0]
    page.goto(f"{base}/runs")
    cell = page.locator('[role=gridcell][col-id="attributes.`Run Name`"]', has_text="ui-search")
    cell.wait_for()
    for r in children:  # collapsed: children are not rows of their own yet
        assert page.get_by_text(r.info.run_name, exact=True).count() == 0
    cell.locator("button").first.click()  # the expand (+) toggle of a parent run
    for r in children:
        page.get_by_text(r.info.run_name, exact=True).wait_for()
    page.screenshot(path=str(ARTIFACTS / "mlflow_runs_nested.png"))

    page.goto(f"{base}/runs/{child.info.run_id}/model-metrics")
    page.get_by_placeholder("Search metric charts").fill("val_mae")
    page.get_by_text(f"{child.info.run_name} (val_mae)").wait_for()
    plot = page.locator(".js-plotly-plot").first
    plot.locator("path.js-line").first.wait_for()
    assert plot.locator(".point").count() == epochs
    page.screenshot(path=str(ARTIFACTS / "mlflow_val_mae_chart.png"))


def _cells(page, col_id: str) -> list[str]:
    """The texts of a runs-table column, in the order the rows are shown."""
    return page.locator(f'[role=gridcell][col-id="{col_id}"]').evaluate_all(
        "cells => cells.map(c => [Number(c.closest('[row-index]').getAttribute('row-index')),"
        " c.innerText.trim()]).sort((a, b) => a[0] - b[0]).map(x => x[1])"
    )


def _check_search_view(page, link: str, children) -> None:
    """The printed runs link: the search's trials only, sorted by val_mae (ascending: mode min),
    with the Dataset, val_mae and p_mask columns visible without touching the column picker."""
    page.goto(link)
    metric_col, param_col = "metrics.`val_mae`", "params.`p_mask`"
    page.locator(f'[role=columnheader][col-id="{metric_col}"]').wait_for()
    page.locator(f'[role=columnheader][col-id="{param_col}"]').wait_for()
    for r in children:
        page.get_by_text(r.info.run_name, exact=True).wait_for()
    datasets = _cells(page, "attributes.`Dataset`")
    assert len(datasets) == len(children), datasets  # the trials, not the parent run
    assert all("tiny" in d for d in datasets), datasets
    values = [float(v) for v in _cells(page, metric_col)]
    assert values == sorted(values), values
    final = sorted(r.data.metrics["val_mae"] for r in children)
    assert values == pytest.approx(final, abs=1e-3)
    p_masks = [float(v) for v in _cells(page, param_col)]
    by_metric = sorted(children, key=lambda r: r.data.metrics["val_mae"])
    assert p_masks == pytest.approx([float(r.data.params["p_mask"]) for r in by_metric])
    page.screenshot(path=str(ARTIFACTS / "mlflow_search_view.png"))
    page.get_by_test_id("datasets-select-dropdown").click()  # the Datasets filter offers it
    page.get_by_role("option").filter(has_text="tiny").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "mlflow_datasets_filter.png"))
    page.keyboard.press("Escape")


def _check_compare_page(page, link: str, children) -> None:
    """The printed compare link: MLflow's compare page of the completed trials, its
    parallel-coordinates plot with p_mask; the metric is picked in its Metrics box (a link
    cannot choose it: tune_m3/tracking/views.py)."""
    page.goto(link)
    for r in children:
        page.get_by_text(r.info.run_name, exact=True).first.wait_for()
    plot = page.locator(".js-plotly-plot").first
    plot.locator(".parcoords").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "mlflow_compare_default.png"))
    axes = plot.locator(".axis-title")  # SVG text: no innerText
    titles = "es => es.map(e => e.textContent.trim())"
    assert "p_mask" in axes.evaluate_all(titles)  # the searched parameter is an axis by default
    metrics = page.get_by_text("Metrics:", exact=True).locator("xpath=following-sibling::div[1]")
    metrics.locator("[class$=select-selection-item-remove]").first.click()  # drop the default
    metrics.click()
    page.keyboard.type("val_mae")
    option = page.locator("[class*=select-item-option]").filter(has_text=re.compile("^val_mae$"))
    option.first.click()
    page.keyboard.press("Escape")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot .axis-title')]"
        ".some(e => e.textContent.trim() === 'val_mae')"
    )
    assert set(axes.evaluate_all(titles)) == {"p_mask", "val_mae"}, axes.evaluate_all(titles)
    page.screenshot(path=str(ARTIFACTS / "mlflow_compare.png"))
