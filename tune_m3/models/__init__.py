"""Models and the seam that attaches augmentation to them (docs/models.md).

- ``M3Baseline``: the M3 paper's baseline (Bi-LSTM + attention, symmetric cross-attention).
- ``MulT``: a MulT-style cross-modal transformer (built-in name ``mult``).
- ``build_model`` / ``AugmentedModel`` / ``check_model_spec``: any model, built-in or the user's,
  from a config, wrapped with M3 / perturbation at its ``augment_at``.
"""

from tune_m3.models.m3_baseline import M3Baseline, ModelConfig
from tune_m3.models.mult import MulT
from tune_m3.models.seam import AugmentedModel, build_model, check_model_spec

__all__ = [
    "AugmentedModel",
    "M3Baseline",
    "ModelConfig",
    "MulT",
    "build_model",
    "check_model_spec",
]
