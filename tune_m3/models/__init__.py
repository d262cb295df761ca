"""Models. ``M3Baseline`` is the M3 paper's baseline (Bi-LSTM + attention, symmetric cross-attention)."""

from tune_m3.models.m3_baseline import M3Baseline, ModelConfig

__all__ = ["M3Baseline", "ModelConfig"]
