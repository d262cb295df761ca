"""The command line of ``python -m tune_m3.search`` (and the ``tune-m3-search`` script).

The only module of the package that sees argparse: it parses, turns the result into a typed
:class:`~tune_m3.search.options.SearchOptions` and hands that to
:func:`~tune_m3.search.driver.run_search`.
"""

from __future__ import annotations

import argparse
import sys

from tune_m3.config import add_overrides_argument
from tune_m3.errors import cli_main
from tune_m3.search.options import SearchOptions
from tune_m3.search.space import available_spaces


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tune_m3.search",
        description="Search M3 / modality-perturbation hyperparameters with Ray Tune + Optuna + ASHA, "
        "tracked in MLflow.",
        epilog="named spaces: " + ", ".join(available_spaces()),
    )
    _what(p)
    _where(p)
    _how(p)
    return p


def _what(p: argparse.ArgumentParser) -> None:
    """What is searched: the space, the data, and what overrides the space."""
    p.add_argument(
        "--space", required=True, help="a named space (see below) or a path to a .yaml file"
    )
    p.add_argument(
        "--dataset", help="train on this store dataset instead of the space's, e.g. synth_mosei"
    )
    p.add_argument(
        "--data-dir", help="dataset store (default: $TUNE_M3_DATA_DIR or ~/.cache/tune_m3/data)"
    )
    p.add_argument("--num-samples", type=int, help="number of Optuna trials (overrides the space)")
    p.add_argument(
        "--max-concurrent", type=int, help="trials running at once (overrides the space)"
    )
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (also torch threads)")
    p.add_argument(
        "--gpus-per-trial", type=float, help="GPUs per trial; fractional packs trials, e.g. 0.25"
    )
    p.add_argument(
        "--seed", type=int, help="searcher seed (Optuna TPE); training seeds are in the space"
    )
    add_overrides_argument(
        p, "fix a TrialConfig field for every trial, e.g. --set max_epochs=5 (repeatable)"
    )


def _where(p: argparse.ArgumentParser) -> None:
    """Where it runs and writes: Ray, its storage, MLflow, Optuna."""
    p.add_argument(
        "--address",
        help="Ray cluster to join: 'auto', 'HOST:PORT' or 'ray://HOST:10001' "
        "(default: start a local Ray on this machine)",
    )
    p.add_argument(
        "--storage",
        help="Ray results/checkpoints: a local path or a URI Ray supports (s3://, gs://, "
        "an NFS path shared by all nodes); default ./tune_m3_results/ray",
    )
    p.add_argument(
        "--tracking-uri",
        "--mlflow-uri",
        dest="tracking_uri",
        help="MLflow tracking URI (default: SQLite in ./tune_m3_results/mlflow.db); "
        "--mlflow-uri is an alias",
    )
    p.add_argument(
        "--optuna-storage",
        metavar="URL",
        help="Optuna RDB storage for the study (one study per search name); default "
        "sqlite:///DIR/optuna.db for a local --storage DIR, else sqlite:///<results dir>/optuna.db "
        "(--dry-run prints it). Read it with optuna.load_study or optuna-dashboard",
    )
    p.add_argument(
        "--ui-port",
        type=int,
        default=5000,
        help="port you run `mlflow ui` on, for the printed links (default 5000)",
    )
    p.add_argument("--experiment", help="MLflow experiment name (default: the space's name)")
    p.add_argument(
        "--name", help="name of this search (Ray experiment dir); default SPACE-YYYYmmdd-HHMMSS"
    )


def _how(p: argparse.ArgumentParser) -> None:
    """How this invocation behaves: new, resumed, confirm only, dry run, verbose."""
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the latest interrupted search of this space (or the one named by --name)",
    )
    p.add_argument(
        "--confirm-only",
        action="store_true",
        help="run the space's confirm stage on a finished search (--name, or the latest one); "
        "nothing is re-searched",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved space and trial count; train nothing",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also show Ray's status tables and the trials' own output",
    )


@cli_main
def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the search; the exit code."""
    from tune_m3.search.driver import run_search

    argv = list(sys.argv[1:] if argv is None else argv)
    options = SearchOptions.from_namespace(build_parser().parse_args(argv), argv)
    return run_search(options)
