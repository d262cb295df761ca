"""The FLOP count quoted in docs/performance.md (bench/bench_step.py) against torch's own counter."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tune_m3.config import TrialConfig
from tune_m3.train import build_model

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_step.py"


def _bench_step():
    spec = importlib.util.spec_from_file_location("bench_step", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("n", [50, 17])
def test_step_flops_matches_flop_counter(n):
    """Hand count = matmul FLOPs of forward + backward that torch counts (native LSTM path)."""
    bench = _bench_step()
    B = 4
    model = build_model(TrialConfig(), bench.DIMS).train()
    xs = [torch.randn(B, n, d) for d in bench.DIMS]
    # oneDNN's fused LSTM is invisible to the counter; the native path runs the same matmuls
    with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as fc:
        model(xs, None).sum().backward()
    assert bench.step_flops([n], B) == pytest.approx(fc.get_total_flops(), rel=0.005)
