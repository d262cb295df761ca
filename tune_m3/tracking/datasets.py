"""A search's dataset as an MLflow dataset input: what fills the runs page's Dataset column.

MLflow's runs table shows a run's dataset inputs as ``name (digest)`` with the input's
``mlflow.data.context`` tag beside it, and filters runs by name and digest (``datasetsFilter``,
``dataset.name IN (...) AND dataset.digest IN (...)``). Each trial run (and the parent) logs one
input, the dataset the search trains, validates and tests on:

- ``name``: the dataset's name in the store (``tiny``, ``mosei``);
- ``digest``: its fingerprint (source file's sha256 or the generator's parameter hash, 16 hex
  characters; ``unknown`` for a store that has none);
- ``source_type`` ``tune_m3``, ``source``: the store's record of where the data came from (JSON);
- ``profile``: split sizes and modalities (JSON);
- tags: ``mlflow.data.context`` ``train/val/test`` (``train/val/test SYNTHETIC`` for generated
  data, so the column itself says SYNTHETIC) and ``tune_m3.synthetic`` ``SYNTHETIC``/``real``.

Records are plain JSON (the write-behind queue saves them for ``resync``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from tune_m3.names import TAG_SYNTHETIC

CONTEXT_TAG = "mlflow.data.context"  # MLflow's own: shown beside the dataset in the runs table
SYNTHETIC_TAG = TAG_SYNTHETIC  # the same key as the runs' tag
SOURCE_TYPE = "tune_m3"


def dataset_record(meta: Any) -> dict[str, Any]:
    """The dataset input of a search on ``meta`` (a ``tune_m3.data.DatasetMeta``), as JSON values."""
    synthetic = bool(meta.synthetic)
    profile = {"sizes": dict(meta.sizes), "modalities": list(meta.modalities)}
    return {
        "name": meta.name,
        "digest": meta.fingerprint or "unknown",
        "source_type": SOURCE_TYPE,
        "source": json.dumps(meta.source, sort_keys=True, default=str)[:4000],
        "schema": None,
        "profile": json.dumps(profile, sort_keys=True),
        "tags": {
            CONTEXT_TAG: "train/val/test SYNTHETIC" if synthetic else "train/val/test",
            SYNTHETIC_TAG: "SYNTHETIC" if synthetic else "real",
        },
    }


def dataset_inputs(records: list[dict[str, Any]]) -> list:
    """MLflow ``DatasetInput`` entities (for ``MlflowClient.log_inputs``) from records of
    :func:`dataset_record` (missing fields are None; ``tags`` a dict of input tags)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    out = []
    for d in records:
        fields = {
            k: d.get(k) for k in ("name", "digest", "source_type", "source", "schema", "profile")
        }
        tags = [InputTag(k, str(v)) for k, v in (d.get("tags") or {}).items()]
        out.append(DatasetInput(Dataset(**fields), tags=tags))
    return out


def log_dataset_inputs(c: Any, run_id: str, records: list[dict[str, Any]], tries: int = 3) -> None:
    """``c.log_inputs`` of ``records`` on ``run_id``, tried again (after 0.5 s) when it lost a race.

    MLflow's SQL store looks a dataset up by (experiment, name, digest), then inserts it: two
    searches starting at the same moment in one experiment can both insert, and the second fails
    on the datasets table's unique key (PostgreSQL: ``duplicate key value violates unique
    constraint "dataset_pk"``; seen with 2 searches at once on a fresh PostgreSQL-backed
    ``mlflow server``, ``bench/bench_concurrent_searches.py``). The failed call wrote nothing
    (its transaction rolled back); the next finds the dataset and only links it. Any other error
    is raised at once.
    """
    from mlflow.exceptions import MlflowException

    for i in range(tries):
        try:
            c.log_inputs(run_id, datasets=dataset_inputs(records))
            return
        except MlflowException as err:
            msg = str(err).lower()
            if i + 1 == tries or not ("unique" in msg or "duplicate" in msg):
                raise
            time.sleep(0.5)
