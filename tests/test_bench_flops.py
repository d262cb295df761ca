"""The FLOP count quoted in docs/performance.md (bench/bench_step.py) against torch's own counter."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tune_m3.config import TrialConfig
from tune_m3.models import build_model

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


def test_linear_kernels_times_the_calls_one_forward_makes(capsys):
    """--linear-kernels: every layers.linear call of one baseline forward, at its real shape."""
    from tune_m3.models import layers

    real = layers.linear
    _bench_step().linear_kernels("m3_baseline", B=2, L=5, reps=1)
    assert layers.linear is real  # the recorder is taken out again
    out = capsys.readouterr().out
    # the stacked Q/K/V products: 3 self-attentions (200 -> 3 x 100), 4 symmetric
    # cross-attentions x 2 sides (100 -> 3 x 100); the head on the pooled (B, 200)
    assert "| (2, 5, 200) -> 300 | 3 |" in out
    assert "| (2, 5, 100) -> 300 | 8 |" in out
    assert "| (2, 200) -> 1 | 1 |" in out
    assert "all calls, forward + backward: F.linear" in out


def test_kernel_note_chooses_the_kernel_before_any_counted_step(monkeypatch):
    """run_steps chooses first, so no kernel timing runs inside FlopCounterMode or a timed block."""
    from tune_m3.models import layers

    monkeypatch.setattr(layers, "_ONEDNN", [None])
    monkeypatch.setenv("TUNE_M3_CPU_LINEAR", "blas")
    note = _bench_step().kernel_note()
    assert note == "CPU Linear kernel: F.linear (BLAS) ($TUNE_M3_CPU_LINEAR=blas)"
    assert layers._ONEDNN == [False]


def test_kernels_alternates_both_and_restores_the_choice(capsys, monkeypatch):
    """--kernels: whole steps on each kernel, alternated; the process's own choice is kept."""
    from tune_m3.models import layers

    monkeypatch.setattr(layers, "_ONEDNN", [None])
    monkeypatch.setenv("TUNE_M3_CPU_LINEAR", "blas")
    seen = []
    real = layers.pointwise_conv_linear
    monkeypatch.setattr(layers, "pointwise_conv_linear", lambda *a: seen.append(1) or real(*a))
    _bench_step().compare_kernels("m3_baseline", B=2, L=5, rounds=1, steps=1)
    out = capsys.readouterr().out
    assert "F.linear" in out and "oneDNN / F.linear ratio" in out
    assert out.rstrip().endswith("the default takes F.linear")
    assert seen and layers._ONEDNN == [False]  # the oneDNN side ran; blas restored after
