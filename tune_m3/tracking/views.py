"""Links into the MLflow UI (3.17) that open a search as a researcher wants to see it.

What the UI lets a link carry (read from its JS bundle, ``mlflow/server/js/build``):

- The runs page reads ``searchFilter``, ``orderByKey``, ``orderByAsc``, ``startTime``,
  ``lifecycleFilter``, ``modelVersionFilter`` and ``datasetsFilter`` from the URL, but not the
  visible columns: those (``selectedColumns``, default Source, Models, Dataset) are browser-side
  state, kept in the browser's localStorage per experiment.
- A *saved view* carries both. It is an experiment tag ``mlflow.sharedViewState.<id>`` whose value
  is ``{"name", "createdAt", "updatedAt", "state"}``, ``state`` being the JSON of the filters and
  the UI state (``selectedColumns``, ``columnOrder``, ``compareRunCharts``, ...; the UI drops
  ``runsExpanded``, ``runsPinned``, ``runsHidden`` from it). The link
  ``#/experiments/<id>/runs?viewStateShareKey=<id>`` applies it (the UI's own "Share" button
  makes the same kind of link), and the view is listed under the experiment's saved views.
  The UI ignores the view when the link also has one of the URL filters above.
- The compare page ``#/compare-runs?runs=[...]&experiments=[...]`` takes only run and
  experiment ids. Its parallel-coordinates plot starts with the first three parameters (sorted
  by name) whose values differ between the runs and the first metric all runs share (in the
  order the server lists them: ``best_epoch`` before ``val_mae``); nothing in the link chooses
  them, so a person picks the metric in its "Metrics" box.

:func:`search_view` builds the view of one search (its trials, sorted by the metric, with the
Dataset, the metric(s), the searched parameters and the trial status as columns);
:func:`save_view` writes it; :func:`view_url` and :func:`compare_url` make the links.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

from tune_m3.names import TAG_PARENT, TAG_STAGE, TAG_STATUS
from tune_m3.tracking.store import UI_PORT, is_http

VIEW_TAG = "mlflow.sharedViewState."  # + view id: the UI's saved / shared runs-page views


def column(group: str, key: str) -> str:
    """A runs-table column id as the UI writes it: ``metrics.`val_mae```."""
    return f"{group}.`{key}`"


def search_view(
    parent_run_id: str, metrics: list[str], ascending: bool, searched: list[str], stage: str
) -> dict[str, Any]:
    """Runs-page state: the search's ``stage`` trials sorted by ``metrics[0]``, columns shown."""
    return {
        "searchFilter": f"tags.`{TAG_PARENT}` = '{parent_run_id}' and tags.`{TAG_STAGE}` = '{stage}'",
        "orderByKey": column("metrics", metrics[0]),
        "orderByAsc": ascending,
        "selectedColumns": [
            column("attributes", "Dataset"),
            *(column("metrics", m) for m in metrics),
            *(column("params", k) for k in searched),
            column("tags", TAG_STATUS),
        ],
    }


def save_view(client: Any, experiment_id: str, view_id: str, name: str, state: dict) -> None:
    """Write (or replace) the saved view ``view_id`` of the experiment."""
    now = int(time.time() * 1000)
    value = {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    client.set_experiment_tag(experiment_id, VIEW_TAG + view_id, json.dumps(value))


def ui_base(uri: str, port: int = UI_PORT) -> str:
    """The UI's address: the tracking server itself, or ``mlflow ui`` on ``port`` locally."""
    return uri.rstrip("/") if is_http(uri) else f"http://127.0.0.1:{port}"


def view_url(uri: str, experiment_id: str, view_id: str, port: int = UI_PORT) -> str:
    return f"{ui_base(uri, port)}/#/experiments/{experiment_id}/runs?viewStateShareKey={view_id}"


def compare_url(uri: str, experiment_id: str, run_ids: list[str], port: int = UI_PORT) -> str:
    """MLflow's compare page of ``run_ids`` (parallel coordinates, scatter, contour plots)."""
    query = urllib.parse.urlencode(
        {"runs": json.dumps(list(run_ids)), "experiments": json.dumps([experiment_id])},
        quote_via=urllib.parse.quote,
    )
    return f"{ui_base(uri, port)}/#/compare-runs?{query}"
