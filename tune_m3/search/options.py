"""What the user asked a search for: the command line, parsed, checked and typed.

:class:`SearchOptions` is the only thing the CLI hands down; no argparse Namespace travels below
``cli.py``. ``--set`` pairs are parsed here (a bad one is a :class:`~tune_m3.errors.UserError`).
Which of these options change the space (``num_samples``, ``max_concurrent``, the resources, the
searcher's seed, the dataset) is decided in :meth:`SearchOptions.space_overrides`; the bounds they
must respect are the space's own field declarations (``space.py``), checked once when the space
is built.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from typing import Any

from tune_m3.config import parse_overrides

#: option name -> (the space key it sets, as a path into the space file; the flag the user typed)
SPACE_OPTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "num_samples": (("num_samples",), "--num-samples"),
    "max_concurrent": (("max_concurrent",), "--max-concurrent"),
    "cpus_per_trial": (("resources", "cpu"), "--cpus-per-trial"),
    "gpus_per_trial": (("resources", "gpu"), "--gpus-per-trial"),
    "seed": (("algorithm", "seed"), "--seed"),
}


@dataclass
class SearchOptions:
    """Every option of ``python -m tune_m3.search`` (see ``--help`` for each one's meaning)."""

    space: str
    dataset: str | None = None
    data_dir: str | None = None
    address: str | None = None
    num_samples: int | None = None
    max_concurrent: int | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    storage: str | None = None
    tracking_uri: str | None = None
    optuna_storage: str | None = None
    ui_port: int = 5000
    experiment: str | None = None
    name: str | None = None
    resume: bool = False
    confirm_only: bool = False
    dry_run: bool = False
    seed: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # --set key=value, parsed
    verbose: bool = False
    argv: list[str] = field(default_factory=list)  # as typed: the --resume line is built from it

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace, argv: list[str]) -> SearchOptions:
        """The parsed command line, typed (``--set`` pairs parsed; UserError on a bad one)."""
        values = {f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)}
        values["overrides"] = parse_overrides(ns.overrides or [])
        return cls(**values, argv=list(argv))

    @property
    def continues(self) -> bool:
        """``--resume`` or ``--confirm-only``: this process takes over an existing search."""
        return self.resume or self.confirm_only

    def space_overrides(self) -> dict[tuple[str, ...], tuple[Any, str]]:
        """Space key path -> (value, flag) for every option given that changes the space."""
        out = {
            path: (getattr(self, opt), flag)
            for opt, (path, flag) in SPACE_OPTIONS.items()
            if getattr(self, opt) is not None
        }
        if self.dataset:
            out[("dataset",)] = ({"name": self.dataset}, "--dataset")
        return out
