"""Training one configuration: the loop, its checkpoints, its evaluation and diagnostics.

The public face (``from tune_m3.training import train``):

- :func:`train` / :class:`TrainResult` / :class:`TrainingDiverged`: the loop (``loop.py``), usable
  with or without Ray; ``python -m tune_m3.train`` is its command line (``cli.py``).
- :func:`predict`, :func:`validation_diagnostics`, :func:`evaluate_final`: evaluation
  (``evaluate.py``); the robustness checks themselves are in ``diagnostics.py``
  (:func:`~tune_m3.training.diagnostics.run_diagnostics`), the RMS that scales noise in ``rms.py``.
- :class:`Checkpoint` / :func:`load_checkpoint`: what a run saves and restores (``checkpoint.py``).

Inside: ``state.py`` (the run's objects and their setup), ``epoch.py`` (one epoch's batches and
updates). Every random stream a run draws from is named in :class:`tune_m3.streams.Streams`.
"""

from tune_m3.training.checkpoint import CHECKPOINT_FILE, Checkpoint, load_checkpoint
from tune_m3.training.epoch import TrainingDiverged, epoch_batches
from tune_m3.training.evaluate import EVAL_BATCH, evaluate_final, predict, validation_diagnostics
from tune_m3.training.loop import TrainResult, train
from tune_m3.training.state import resolve_device

__all__ = [
    "CHECKPOINT_FILE",
    "EVAL_BATCH",
    "Checkpoint",
    "TrainResult",
    "TrainingDiverged",
    "epoch_batches",
    "evaluate_final",
    "load_checkpoint",
    "predict",
    "resolve_device",
    "train",
    "validation_diagnostics",
]
