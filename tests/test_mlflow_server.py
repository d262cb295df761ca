"""A search logging to a real ``mlflow server`` over HTTP, checked in the MLflow UI itself.

The test starts ``mlflow server`` (SQLite backend and artifacts in a temp dir, 127.0.0.1 only),
runs a tiny search with ``--mlflow-uri http://127.0.0.1:PORT``, then opens the UI in headless
Chromium (the system's, driven by Playwright; no browser is downloaded) and checks what a user
would look at: the search's parent run with its trials nested under it, and a trial's
``val_mae`` chart. Screenshots land in ``tests/artifacts/`` (not committed) for a human to look
at. Skipped when Playwright or a Chromium binary is missing.
"""

from __future__ import annotations

import os
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
    assert f"runs of this search: {server.uri}/#/experiments/" in out.stdout
    assert "View run" not in out.stdout + out.stderr  # MLflow's own per-run lines stay out
    # everything went over HTTP: no local store was created beside the results
    assert not (Path(env["TUNE_M3_RESULTS"]) / "mlflow.db").exists()

    from mlflow.tracking import MlflowClient

    c = MlflowClient(server.uri)
    exp = c.get_experiment_by_name("ui_check")
    runs = c.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "ui-search"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2
    for r in children:  # the searched value and the metric are in the name: the table shows them
        assert r.info.run_name.startswith(("t01 pM=", "t02 pM=")), r.info.run_name
        assert " → val_mae " in r.info.run_name, r.info.run_name
    child = children[0]
    base = f"{server.uri}/#/experiments/{exp.experiment_id}"

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

            # 1. the runs table: the parent run, expanded, shows its trials nested under it
            page.goto(f"{base}/runs")
            cell = page.locator(
                '[role=gridcell][col-id="attributes.`Run Name`"]', has_text="ui-search"
            )
            cell.wait_for()
            for r in children:  # collapsed: children are not rows of their own yet
                assert page.get_by_text(r.info.run_name, exact=True).count() == 0
            cell.locator("button").first.click()  # the expand (+) toggle of a parent run
            for r in children:
                page.get_by_text(r.info.run_name, exact=True).wait_for()
            page.screenshot(path=str(ARTIFACTS / "mlflow_runs_nested.png"))

            # 2. a trial's page, model-metrics tab: the val_mae chart, one point per epoch
            page.goto(f"{base}/runs/{child.info.run_id}/model-metrics")
            page.get_by_placeholder("Search metric charts").fill("val_mae")
            page.get_by_text(f"{child.info.run_name} (val_mae)").wait_for()
            plot = page.locator(".js-plotly-plot").first
            plot.locator("path.js-line").first.wait_for()
            assert plot.locator(".point").count() == epochs
            page.screenshot(path=str(ARTIFACTS / "mlflow_val_mae_chart.png"))
        finally:
            ctx.close()
