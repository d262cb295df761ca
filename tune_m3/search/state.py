"""The state of one search: :class:`Search` (what it is and where it stands) and
:class:`Session` (its MLflow side once the parent run exists).

One :class:`Search` is made by :func:`~tune_m3.search.plan.plan` from the user's
:class:`~tune_m3.search.options.SearchOptions` and passed to every stage; the stages fill in
what they create (the claimed folder, the MLflow session, the interrupt state). Nothing else is
handed around, so a stage's signature says only ``search``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tune_m3.search.interrupts import Interrupts
from tune_m3.search.options import SearchOptions
from tune_m3.search.paths import Claim, SearchPaths, write_state
from tune_m3.search.space import SearchSpace


@dataclass
class Session:
    """The MLflow side of a running search (made by :func:`~tune_m3.search.parent.open_parent`)."""

    uri: str
    mlc: Any  # mlflow.MlflowClient
    experiment: str
    exp_id: str
    parent_id: str
    search_tags: dict[str, str]
    synthetic: bool
    dataset: dict | None = None  # the dataset input of every run (tracking/datasets.py)
    logger: Any = None  # tune_m3.tracking.MlflowTrialLogger, once the trials are prepared
    trainable: Any = None  # the Ray Tune trainable, data attached
    input_dims: dict[str, int] | None = None  # the dataset's {modality: width}
    callbacks: list = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)  # trial id -> status, this session
    t0: float = field(default_factory=time.time)


@dataclass
class Search:
    """One search: the options, the resolved space, where it writes, and what it has opened."""

    options: SearchOptions
    space: SearchSpace
    storage: Path | None  # local Ray storage folder (None: a remote URI, in storage_uri)
    storage_uri: str | None
    tracking_uri: str = ""
    claim: Claim | None = None  # the search's folder, locked by this process
    session: Session | None = None
    interrupts: Interrupts = field(default_factory=Interrupts)

    @property
    def paths(self) -> SearchPaths:
        assert self.claim is not None, "the search has not claimed its folder yet"
        return self.claim.paths

    @property
    def resumed(self) -> bool:
        return self.claim is not None and self.claim.resumed

    @property
    def state(self) -> dict[str, Any]:
        """The state file as this process found it (empty for a new search)."""
        return self.claim.state if self.claim is not None else {}

    @property
    def optuna_url(self) -> str:
        from tune_m3.search import optuna_store

        return optuna_store.url(self.options.optuna_storage, self.options.storage)

    def places(self) -> dict[str, Path]:
        """Where this search writes on local disks: what -> path (for disk-space checks)."""
        from tune_m3.tracking.store import sqlite_path

        out: dict[str, Path] = {}
        if self.storage is not None:
            out["Ray storage"] = self.storage
        tracking = sqlite_path(self.tracking_uri) if self.tracking_uri else None
        if tracking is not None:
            out["MLflow store"] = tracking.parent
        if self.space.algorithm.type == "optuna":
            optuna = sqlite_path(self.optuna_url)
            if optuna is not None:
                out["Optuna study"] = optuna.parent
        return out

    def set_status(self, status: str, **more: Any) -> None:
        """Record the search's status (``names.SEARCH_*``) in its state file (local storage)."""
        if self.paths.storage is not None:
            write_state(self.paths, status=status, **more)
