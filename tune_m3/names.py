"""One vocabulary: the names tune_m3 uses from code to Ray results, MLflow and the tables.

Everything that is spelled the same way in several places lives here, once, and is imported
everywhere else: the modality names, the split names, the diagnostics metric key (its builder
and its one parser), MLflow tag keys of ours, and the statuses a trial can end with.

Papers' symbols map onto these names in ``tune_m3/config.py`` (pM = ``p_mask``, πT = ``pi_text``).

Diagnostics keys (``diag_<split>_...``; ``split`` is ``test`` after training, ``val`` for the
validation diagnostics a multi-objective search asks for)::

    diag_<split>_<modality>_<kind>_<pct>_<metric>        e.g. diag_test_text_missing_30_corr
    diag_<split>_<modality>_<kind>_<pct>_<metric>_drop   degradation versus clean, positive = worse
    diag_<split>_<modality>_<kind>_auc_<metric>          area under metric-vs-fraction (MultiBench)

``pct`` is the fraction in percent without trailing zeros (0.3 -> ``30``, 0.05 -> ``5``,
0.125 -> ``12.5``). Modality, kind and metric names contain no ``_`` except metric names such
as ``acc2_has0``, which the parser handles because it reads the fixed fields from the left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

# ------------------------------------------------------------------------------ data

MODALITIES: Final[tuple[str, ...]] = ("text", "audio", "vision")
SPLITS: Final[tuple[str, ...]] = ("train", "valid", "test")
LENGTHS: Final[str] = "lengths"  # arrays key of the (N,) valid steps (aligned data: all modalities)


def length_key(modality: str) -> str:
    """Arrays key of one modality's (N,) valid-step counts (``lengths_text``, ...).

    Unaligned features (MulT ``*_noalign.pkl``, MMSA ``unaligned_*.pkl``) have a different number
    of steps per modality; every split's arrays carry one such column per modality.
    """
    return f"{LENGTHS}_{modality}"


# ------------------------------------------------------------------------------ metrics

#: per-epoch keys a trial reports besides ``val_<metric>`` (tune_m3.training; ``val_loss`` =
#: val MAE, the L1 training loss on the validation split)
EPOCH_SCALARS: Final[tuple[str, ...]] = (
    "train_loss",
    "val_loss",
    "lr",
    "best_val_loss",
    "best_epoch",
    "epoch_seconds",
)


def epoch_metrics() -> tuple[str, ...]:
    """Every per-epoch metric a trial reports (what a search may optimise or ASHA may prune on).

    ``diag_val_*`` keys (validation diagnostics, asked for by a multi-objective search) are
    per-epoch too; :func:`is_epoch_metric` accepts them.
    """
    from tune_m3.metrics import METRIC_NAMES

    return (*EPOCH_SCALARS, *(f"val_{m}" for m in METRIC_NAMES))


def is_epoch_metric(key: str) -> bool:
    if key in epoch_metrics():
        return True
    d = parse_diag_key(key)
    return d is not None and d.split == "val"


# ------------------------------------------------------------------------------ diagnostics

DIAG_KINDS: Final[tuple[str, ...]] = ("missing", "noisy")
DIAG_SPLITS: Final[tuple[str, ...]] = ("test", "val")  # metric prefixes: test_*, val_*
DIAG_PREFIX: Final[str] = "diag_"
DROP_SUFFIX: Final[str] = "_drop"
AUC: Final[str] = "auc"


def pct(fraction: float) -> str:
    """0.3 -> '30', 0.05 -> '5', 0.125 -> '12.5' (the ``<pct>`` field of a diagnostics key)."""
    return f"{fraction * 100:g}"


def diag_key(
    modality: str,
    kind: str,
    fraction: float | str,
    metric: str,
    *,
    split: str = "test",
    drop: bool = False,
) -> str:
    """The one builder of diagnostics keys. ``fraction`` is a float, a ``pct`` string or ``auc``."""
    f = fraction if isinstance(fraction, str) else pct(fraction)
    return f"{DIAG_PREFIX}{split}_{modality}_{kind}_{f}_{metric}" + (DROP_SUFFIX if drop else "")


def diag_auc_key(modality: str, kind: str, metric: str, *, split: str = "test") -> str:
    return diag_key(modality, kind, AUC, metric, split=split)


@dataclass(frozen=True)
class DiagKey:
    """A parsed diagnostics key. ``pct`` is None for an AUC key."""

    split: str
    modality: str
    kind: str
    pct: str | None
    metric: str
    drop: bool

    @property
    def fraction(self) -> float | None:
        return None if self.pct is None else float(self.pct) / 100

    @property
    def is_auc(self) -> bool:
        return self.pct is None

    def key(self) -> str:
        return diag_key(
            self.modality,
            self.kind,
            AUC if self.pct is None else self.pct,
            self.metric,
            split=self.split,
            drop=self.drop,
        )


def parse_diag_key(key: str) -> DiagKey | None:
    """The one parser of diagnostics keys; None for any other key.

    >>> parse_diag_key("diag_test_text_missing_30_corr_drop")
    DiagKey(split='test', modality='text', kind='missing', pct='30', metric='corr', drop=True)
    """
    if not key.startswith(DIAG_PREFIX):
        return None
    parts = key[len(DIAG_PREFIX) :].split("_")
    if len(parts) < 5:
        return None
    split, modality, kind, frac = parts[:4]
    rest = parts[4:]
    if split not in DIAG_SPLITS or kind not in DIAG_KINDS:
        return None
    drop = rest[-1] == "drop" and len(rest) > 1
    metric = "_".join(rest[:-1] if drop else rest)
    if frac == AUC:
        return DiagKey(split, modality, kind, None, metric, drop)
    try:
        float(frac)
    except ValueError:
        return None
    return DiagKey(split, modality, kind, frac, metric, drop)


# ------------------------------------------------------------------------------ MLflow tags

TAG_PARENT: Final[str] = "mlflow.parentRunId"  # MLflow's own: what nests a child run in the UI
TAG_RUN_NAME: Final[str] = "mlflow.runName"
TAG_NOTE: Final[str] = "mlflow.note.content"
TAG_GIT_COMMIT: Final[str] = "mlflow.source.git.commit"
TAG_TRIAL: Final[str] = "tune_m3.trial_id"
TAG_STATUS: Final[str] = "tune_m3.status"  # one of TRIAL_STATUSES (child runs)
TAG_STATUS_LEGACY: Final[str] = "tune_m3.trial_status"  # the same, in runs logged before 2026-11-24
TAG_SEARCH: Final[str] = "tune_m3.search_id"
TAG_SPACE: Final[str] = "tune_m3.space"
TAG_DATASET: Final[str] = "tune_m3.dataset"
TAG_DATASET_FINGERPRINT: Final[str] = "tune_m3.dataset_fingerprint"
TAG_SYNTHETIC: Final[str] = "tune_m3.synthetic"
TAG_VERSIONS: Final[str] = "tune_m3.versions"
TAG_ERROR: Final[str] = "tune_m3.error"
TAG_NODE: Final[str] = "tune_m3.node_id"
TAG_DEVICE: Final[str] = "tune_m3.device"
TAG_STAGE: Final[str] = "tune_m3.stage"  # search | confirm
TAG_CONFIRM_OF: Final[str] = "tune_m3.confirm_of"  # run id of the search trial confirmed
TAG_PARETO: Final[str] = "tune_m3.pareto"  # "true" on Pareto-optimal child runs
TAG_MODEL: Final[str] = "tune_m3.model"  # the model's name or "module:Class" (also a param)

# ------------------------------------------------------------------------------ trial statuses

COMPLETED: Final[str] = "completed"  # trained to max_epochs
EARLY_STOPPED: Final[str] = "early_stopped"  # the trial's own early stopping (patience)
SCHEDULER_STOPPED: Final[str] = "stopped_by_scheduler"  # ASHA cut it at a rung
FAILED: Final[str] = "failed"
KILLED: Final[str] = "killed"  # the search was interrupted (SIGINT / SIGTERM) while it ran
LOST: Final[str] = "lost_with_driver"  # driver killed before Ray saved the trial; re-sampled

TRIAL_STATUSES: Final[tuple[str, ...]] = (
    COMPLETED,
    EARLY_STOPPED,
    SCHEDULER_STOPPED,
    FAILED,
    KILLED,
    LOST,
)
#: statuses of a trial that trained and reported final test metrics
FINISHED_STATUSES: Final[tuple[str, ...]] = (COMPLETED, EARLY_STOPPED)

# MLflow's own run statuses (``mlflow.entities.RunStatus`` names)
RUN_RUNNING: Final[str] = "RUNNING"
RUN_FINISHED: Final[str] = "FINISHED"
RUN_FAILED: Final[str] = "FAILED"
RUN_KILLED: Final[str] = "KILLED"

#: tune_m3 status -> MLflow run status
MLFLOW_STATUS: Final[dict[str, str]] = {
    COMPLETED: RUN_FINISHED,
    EARLY_STOPPED: RUN_FINISHED,
    SCHEDULER_STOPPED: RUN_FINISHED,
    FAILED: RUN_FAILED,
    KILLED: RUN_KILLED,
    LOST: RUN_KILLED,
}

# ------------------------------------------------------------------------------ search statuses

# a whole search, in its state file (``tune_m3_search.json``, see tune_m3/search/paths.py)
SEARCH_RUNNING: Final[str] = "running"
SEARCH_INTERRUPTED: Final[str] = "interrupted"
SEARCH_FINISHED: Final[str] = "finished"
SEARCH_FAILED: Final[str] = "failed"

# the search's exit code when it ran but every trial failed (1 stays a bug in tune_m3, 2 a refusal)
EXIT_ALL_FAILED: Final[int] = 3

# ------------------------------------------------------------------------------ run names

#: short labels of searched settings in run names (``t03 pM=.27 πT=.45``), the papers' symbols
SYMBOLS: Final[dict[str, str]] = {
    "p_mask": "pM",
    "pi_text": "πT",
    "pi_audio": "πA",
    "pi_vision": "πV",
    "audio_share": "πA/(πA+πV)",
    "p_feature": "pF",
    "p_missing": "p_miss",
    "p_noise": "p_noise",
}


def fmt(value: Any, digits: int = 4) -> str:
    """A setting or metric as people read it: floats to ``digits`` significant digits
    (``0.2741``), everything else as ``str``. The one number formatter of run names, the
    printed summary and the confirmed ranking."""
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------------------ stages

STAGE_SEARCH: Final[str] = "search"
STAGE_CONFIRM: Final[str] = "confirm"
