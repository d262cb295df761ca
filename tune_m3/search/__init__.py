"""``python -m tune_m3.search --space NAME``: the main job.

Reads a search space (``search_spaces/NAME.yaml`` or a path), checks everything that can be
checked before Ray starts (the space, the metric, the storage, the GPUs, the dataset, the name),
starts or joins Ray, runs Ray Tune with Optuna (seeded TPE) or a grid, ASHA or FIFO, logs every
trial as a nested MLflow child run under one parent run, writes all trials to ``trials.parquet``,
and ends by printing the best configuration, where everything is, and how to look at it.

How it ends (exit code): 0 finished; 2 refused (a user error: nothing written, or every run
marked FAILED); 3 it ran, but every trial failed (each run says why); 130 / 143 interrupted by
SIGINT / SIGTERM (running trials and the parent run marked KILLED, the ``--resume`` command
printed, see ``interrupts.py``); 1 a bug in tune_m3.

``--dry-run`` runs the checks, prints the resolved space, the trial count and resources, and
never imports Ray. ``--resume`` continues an interrupted search: finished trials stay
finished, unfinished ones resume from their checkpoints, Optuna's history is restored, the same
MLflow parent run is continued, and only then are ``best.*`` logged and the parent FINISHED. A
``--resume`` of a finished search says so and changes nothing.

Public face: :func:`main` (the CLI) and :func:`run_search` (the same from Python, given a
:class:`SearchOptions`). The package, by job:

- ``cli.py`` (argparse -> ``SearchOptions``), ``options.py`` (the typed options);
- ``state.py`` (:class:`Search`, the one object every stage takes), ``driver.py`` (the stages
  in order), ``plan.py`` (checks and ``--dry-run``), ``parent.py`` (the MLflow parent run),
  ``stages.py`` (Ray Tune: search and confirm stages, the trials table, the summary),
  ``endings.py`` (interrupted or failed);
- ``space.py`` (space files), ``paths.py`` (where a search writes, who owns it),
  ``ray_setup.py``, ``optuna_searcher.py``, ``optuna_store.py`` (the engines' glue),
  ``trainable.py`` (the Ray Tune trainable), ``callback.py`` (trial runs, names, statuses),
  ``results.py`` (trials table rows, the winner), ``confirm.py`` (the confirm stage),
  ``report.py`` (what the search prints and logs at its end), ``interrupts.py`` (Ctrl-C).

Importing this package is cheap (no Ray, no torch): the names above load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tune_m3.search.cli import main
    from tune_m3.search.driver import run_search
    from tune_m3.search.options import SearchOptions
    from tune_m3.search.state import Search

__all__ = ["Search", "SearchOptions", "main", "run_search"]

_WHERE = {
    "main": "tune_m3.search.cli",
    "run_search": "tune_m3.search.driver",
    "SearchOptions": "tune_m3.search.options",
    "Search": "tune_m3.search.state",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'tune_m3.search' has no attribute {name!r}")
