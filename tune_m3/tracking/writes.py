"""A write-behind queue for MLflow: every write goes through, later if the server is down.

A search must not stall or die because its tracking server blinked. :class:`WriteBehind` runs
each write at once when it can; when one fails it keeps it, and everything after it, in order,
and tries again on a later write (at most every ``retry_every`` seconds, so a dead server does
not stall Ray's event loop) and at :meth:`WriteBehind.finish`. What still cannot be written then
is dumped to ``unlogged.json`` and replayed later with ``python -m tune_m3.tracking resync FILE``.

A run created while the server is down has no id yet: :meth:`WriteBehind.create_run` returns a
placeholder (``pending:<key>``) that later writes may use; the queued create binds it to the real
id once it goes through (also in ``resync``). Nothing is silently lost.

Writes are :class:`Write` records of one of a few kinds (not arbitrary client method names), so
the queue can be saved as JSON and replayed exactly.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PENDING = "pending:"  # prefix of a placeholder run id

# kind -> how it is applied to an MlflowClient (run ids already resolved)
_APPLY: dict[str, Callable[[Any, dict], Any]] = {
    "create_run": lambda c, a: c.create_run(
        a["experiment_id"], tags=a.get("tags"), run_name=a.get("run_name")
    ),
    "log_batch": lambda c, a: c.log_batch(
        a["run_id"],
        metrics=_metrics(a.get("metrics")),
        params=_params(a.get("params")),
        tags=_tags(a.get("tags")),
    ),
    "set_tag": lambda c, a: c.set_tag(a["run_id"], a["key"], a["value"]),
    "set_terminated": lambda c, a: c.set_terminated(a["run_id"], a["status"]),
    "update_run": lambda c, a: c.update_run(
        a["run_id"], status=a.get("status"), name=a.get("name")
    ),
    "log_artifact": lambda c, a: c.log_artifact(a["run_id"], a["path"]),
    "log_text": lambda c, a: c.log_text(a["run_id"], a["text"], a["artifact_file"]),
    "delete_run": lambda c, a: c.delete_run(a["run_id"]),
    "log_inputs": lambda c, a: c.log_inputs(a["run_id"], datasets=_inputs(a.get("datasets"))),
    "end_run": lambda c, a: _end_run(c, a),
}
KINDS = tuple(_APPLY)


def _metrics(items: list[dict] | None) -> list:
    from mlflow.entities import Metric

    return [Metric(m["key"], m["value"], m["timestamp"], m["step"]) for m in items or []]


def _inputs(items: list[dict] | None) -> list:
    from tune_m3.tracking.datasets import dataset_inputs

    return dataset_inputs(items or [])


def _end_run(client: Any, a: dict) -> None:
    """Close a run in two store calls: its tags in one batch, then status, end time and name in
    one update. ``MlflowClient.update_run`` + ``set_terminated`` cost two updates and an eager
    read of the whole run (its metrics, params, tags and inputs) each time, the largest share of
    a 500-trial search's driver time (docs/performance.md, "Hundreds of trials")."""
    from mlflow.entities import RunStatus
    from mlflow.utils.time import get_current_time_millis

    tags = _tags(a.get("tags"))
    if tags:
        client.log_batch(a["run_id"], tags=tags)
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if store is None or not hasattr(store, "update_run_info"):  # another client: public calls
        if a.get("name"):
            client.update_run(a["run_id"], name=a["name"])
        client.set_terminated(a["run_id"], a["status"])
        return
    status = RunStatus.from_string(a["status"])
    store.update_run_info(a["run_id"], status, get_current_time_millis(), a.get("name") or None)


def _tags(items: dict[str, str] | None) -> list:
    from mlflow.entities import RunTag

    return [RunTag(k, v) for k, v in (items or {}).items()]


def _params(items: list[dict] | None) -> list:
    from mlflow.entities import Param

    return [Param(p["key"], p["value"]) for p in items or []]


@dataclass
class Write:
    """One MLflow write. ``args`` holds plain JSON values; ``bind`` names a placeholder run id."""

    kind: str
    args: dict[str, Any]
    bind: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _APPLY:
            raise ValueError(f"unknown MLflow write {self.kind!r}; one of {KINDS}")


def metric(key: str, value: float, step: int = 0, timestamp: int | None = None) -> dict:
    ts = int(time.time() * 1000) if timestamp is None else timestamp
    return {"key": key, "value": float(value), "timestamp": ts, "step": int(step)}


def param(key: str, value: Any) -> dict:
    s = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return {"key": key, "value": s[:6000]}


@dataclass
class WriteBehind:
    """Ordered MLflow writes against ``client``, buffered while they fail. See module doc."""

    client: Any
    retry_every: float = 10.0
    pending: list[Write] = field(default_factory=list)
    bound: dict[str, str] = field(default_factory=dict)  # placeholder -> real run id
    on_bind: Callable[[str, str], None] | None = None
    _next_try: float = 0.0
    _last_warn: float = 0.0

    # ------------------------------------------------------------------ the writes

    def create_run(self, experiment_id: str, key: str, tags: dict, run_name: str) -> str:
        """Create a run now or later; returns its id or a placeholder bound once it exists."""
        placeholder = PENDING + key
        w = Write(
            "create_run",
            {"experiment_id": experiment_id, "tags": tags, "run_name": run_name},
            bind=placeholder,
        )
        out = self.submit(w)
        return out.info.run_id if out is not None else placeholder

    def log_batch(self, run_id: str, metrics=(), params=(), tags: dict | None = None) -> None:
        """Metrics, params and tags in batches of 100 (the tags ride with the first batch)."""
        metrics, params = list(metrics), list(params)
        tags = {k: str(v)[:5000] for k, v in (tags or {}).items()}
        for i in range(0, max(len(metrics), len(params), 1), 100):
            m, p = metrics[i : i + 100], params[i : i + 100]
            t = tags if i == 0 else {}
            if m or p or t:
                args = {"run_id": run_id, "metrics": m, "params": p, "tags": t}
                self.submit(Write("log_batch", args))

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.submit(Write("set_tag", {"run_id": run_id, "key": key, "value": str(value)[:5000]}))

    def set_terminated(self, run_id: str, status: str) -> None:
        self.submit(Write("set_terminated", {"run_id": run_id, "status": status}))

    def end_run(
        self, run_id: str, status: str, tags: dict[str, str], name: str | None = None
    ) -> None:
        """Set ``tags``, then the final ``status`` (an MLflow run status), end time and name."""
        tags = {k: str(v)[:5000] for k, v in tags.items()}
        self.submit(
            Write("end_run", {"run_id": run_id, "status": status, "tags": tags, "name": name})
        )

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        self.submit(Write("update_run", {"run_id": run_id, "status": status, "name": name}))

    def log_artifact(self, run_id: str, path: str | Path) -> None:
        self.submit(Write("log_artifact", {"run_id": run_id, "path": str(path)}))

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.submit(
            Write("log_text", {"run_id": run_id, "text": text, "artifact_file": artifact_file})
        )

    def delete_run(self, run_id: str) -> None:
        self.submit(Write("delete_run", {"run_id": run_id}))

    def log_inputs(self, run_id: str, datasets: list[dict]) -> None:
        """Dataset inputs of a run (plain records, see ``tracking/datasets.py``)."""
        self.submit(Write("log_inputs", {"run_id": run_id, "datasets": list(datasets)}))

    # ------------------------------------------------------------------ the queue

    def submit(self, w: Write) -> Any:
        """Apply ``w`` now (returns the client's answer) or queue it behind earlier failures."""
        self.flush()
        if self.pending:  # keep order: queue behind what is already waiting
            self.pending.append(w)
            return None
        try:
            return self._apply(w)
        except Exception as err:  # noqa: BLE001 - any transport error: buffer and go on
            self._failed(err)
            self.pending.append(w)
            return None

    def flush(self, force: bool = False) -> bool:
        """Try the queued writes in order; True when none is left."""
        if self.pending and not force and time.monotonic() < self._next_try:
            return False  # tried a moment ago: do not stall every event on a dead server
        while self.pending:
            try:
                self._apply(self.pending[0])
            except Exception as err:  # noqa: BLE001
                self._failed(err)
                return False
            self.pending.pop(0)
        return True

    def resolve(self, run_id: str) -> str:
        return self.bound.get(run_id, run_id)

    def _apply(self, w: Write) -> Any:
        args = self._unpend(w.args)
        if w.kind == "log_artifact" and self.bound:
            unpend_file(Path(args["path"]), self.bound)  # e.g. trials.parquet's run_id column
        out = _APPLY[w.kind](self.client, args)
        if w.bind:
            self.bound[w.bind] = out.info.run_id
            if self.on_bind is not None:
                self.on_bind(w.bind, out.info.run_id)
        return out

    def _unpend(self, args: dict[str, Any]) -> dict[str, Any]:
        """``args`` with every bound placeholder replaced by its run id: the run a write goes to,
        and run ids inside values (``best.run_id``, ``tune_m3.confirm_of``, tags of new runs)."""
        out = dict(args)
        if isinstance(out.get("run_id"), str):
            out["run_id"] = self.resolve(out["run_id"])
        if isinstance(out.get("value"), str):
            out["value"] = self.resolve(out["value"])
        if out.get("params"):
            out["params"] = [{**p, "value": self.resolve(p["value"])} for p in out["params"]]
        if out.get("tags"):
            out["tags"] = {
                k: self.resolve(v) if isinstance(v, str) else v for k, v in out["tags"].items()
            }
        return out

    def _failed(self, err: Exception) -> None:
        self._next_try = time.monotonic() + self.retry_every
        now = time.monotonic()
        if now - self._last_warn > 30:
            print(
                f"[tune_m3] MLflow write failed ({type(err).__name__}: {str(err)[:120]}); "
                f"buffering and retrying ({len(self.pending) + 1} pending)",
                file=sys.stderr,
                flush=True,
            )
            self._last_warn = now

    def finish(
        self, unlogged_path: Path, retries: int | None = None, wait: float = 2.0
    ) -> list[Write]:
        """Flush with retries; what still fails goes to ``unlogged_path`` and is returned.

        By default it keeps trying for :func:`retry_window` seconds (waits of 2, 4, 6, ... s, at
        most 10 s each); ``retries`` gives a fixed number of tries instead.
        """
        deadline = time.monotonic() + retry_window()
        i = 0
        while True:
            if self.flush(force=True):
                return []
            i += 1
            pause = min(wait * i, 10.0)
            if (retries is not None and i >= retries) or (
                retries is None and time.monotonic() + pause > deadline
            ):
                break
            if i == 1 and retries is None:
                print(
                    f"[tune_m3] MLflow unreachable at the end of the search: retrying for up to "
                    f"{retry_window():.0f} s (${RETRY_ENV}) before saving the writes for resync",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(pause)
        dump(self.pending, unlogged_path, self.bound)
        return list(self.pending)


RETRY_ENV = "TUNE_M3_MLFLOW_RETRY_S"
#: default final retry window: an ``mlflow server`` restart took 36-90 s on the 2-core dev machine
#: under load (docs/reliability.md); 120 s covers it
DEFAULT_RETRY_S = 120.0


def retry_window() -> float:
    """Seconds the end of a search keeps retrying MLflow (``$TUNE_M3_MLFLOW_RETRY_S``)."""
    from tune_m3.envvars import env_number

    return env_number(RETRY_ENV, DEFAULT_RETRY_S, "seconds")


def unpend_file(path: Path, bound: dict[str, str]) -> bool:
    """Replace bound placeholders in a table the search wrote (.parquet / .csv), in place;
    True if anything changed. Other files are left alone."""
    if not bound or not path.is_file() or path.suffix not in (".parquet", ".csv"):
        return False
    if path.suffix == ".csv":
        text = path.read_text()
        new = text
        for placeholder, run_id in bound.items():
            new = new.replace(placeholder, run_id)
        if new != text:
            path.write_text(new)
        return new != text
    import pandas as pd

    df = pd.read_parquet(path)
    cols = [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c])]
    new = df.copy()
    for c in cols:
        new[c] = df[c].map(lambda v: bound.get(v, v) if isinstance(v, str) else v)
    if new.equals(df):
        return False
    new.to_parquet(path, index=False)
    return True


def dump(writes: list[Write], path: Path, bound: dict[str, str] | None = None) -> None:
    """Save writes as JSON (placeholders already bound are replaced by their real ids)."""
    bound = bound or {}
    items = []
    for w in writes:
        d = asdict(w)
        rid = d["args"].get("run_id")
        if isinstance(rid, str):
            d["args"]["run_id"] = bound.get(rid, rid)
        items.append(d)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items, indent=1))


def load(path: Path) -> list[Write]:
    """Writes saved by :func:`dump`; ValueError/OSError for anything else."""
    items = json.loads(Path(path).read_text())
    if not isinstance(items, list):
        raise ValueError(f"expected a list of writes, got {type(items).__name__}")
    try:
        return [Write(**it) for it in items]
    except TypeError as err:
        raise ValueError(f"not a saved MLflow write ({err})") from None
