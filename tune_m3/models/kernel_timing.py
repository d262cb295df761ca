"""Time the two CPU Linear kernels on the built-in models' shapes and pick one (``auto``).

The 1 x 1 channels-last convolution (oneDNN) beats ``F.linear`` (the BLAS) where the BLAS runs a
narrower vector path than the CPU has (measured 1.6-2x on an AVX-512 EPYC) and loses where it
does not (the baseline's whole step 8 % slower, ``mult``'s 11 %, on an AVX2-only EPYC); the CPU
flags alone do not say which, so both are timed here, once per machine (``linear_kernel``).

What is timed: forward + backward of every distinct Linear shape of one training forward of
each built-in model (``bench/bench_step.py --linear-kernels`` lists them) at B x L = 32 x 50
rows (fewer rows shift the ratio against oneDNN on narrow layers), the two kernels alternated,
the fastest of ``REPS`` rounds after a warm-up round (the least disturbed by other load), fewer
once ``BUDGET_S`` is spent (checked after each shape). When the budget runs out before one whole
timed round (on two busy cores, two threads took 43 s for a round), the choice is ``F.linear``.
Per model, the Linear time of one forward + backward is the sum over its shapes of calls x
fastest time. oneDNN is chosen only when it is at least ``MARGIN`` faster for every model, so a
close or mixed call goes to ``F.linear``, PyTorch's own path. On one thread of a 2-core EPYC
at load 11-13, a warm-up and one round cost 0.4-0.6 s of CPU and 1.2-1.6 s of wall time (not
measured idle); times that noisy are why the cache entry keeps them (deleting it times again). It draws from its own generator (no global RNG state touched).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

ROWS = (32, 50)  # (B, L) of the timed inputs: the default batch at MOSEI's aligned length
REPS = 3
BUDGET_S = 0.8  # wall seconds: stop timing once spent (a busy machine)
MARGIN = 0.03
# model -> [(d_in, d_out, calls per forward)]: the 3-D Linear calls at MOSEI dims, default widths
SHAPES: dict[str, list[tuple[int, int, int]]] = {
    "m3_baseline": [(100, 300, 8), (200, 300, 3)],
    "mult": [
        (30, 30, 60),
        (30, 60, 30),
        (30, 120, 30),
        (60, 60, 30),
        (60, 120, 15),
        (60, 240, 15),
        (120, 30, 30),
        (240, 60, 15),
    ],
}


def _one(kernel, x, w, g) -> float:
    """Seconds for one forward + backward of ``kernel(x, w)``."""
    t0 = time.perf_counter()
    y = kernel(x, w, None)
    torch.autograd.grad(y, [x, w], g)
    return time.perf_counter() - t0


def _inputs(rows) -> list[tuple[str, int, tuple[Tensor, Tensor, Tensor]]]:
    """(model, calls, (x, w, g)) per distinct shape, from a generator of their own."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for model, shapes in SHAPES.items():
        for d_in, d_out, calls in shapes:
            x = torch.randn(*rows, d_in, generator=gen).requires_grad_()  # (B, L, d_in)
            w = torch.randn(d_out, d_in, generator=gen).requires_grad_()  # (d_out, d_in)
            g = torch.randn(*rows, d_out, generator=gen)  # (B, L, d_out)
            out.append((model, calls, (x, w, g)))
    return out


def _round(kernels: dict, inputs: list, best: list[dict], timed: bool, deadline: float) -> bool:
    """Time every shape with every kernel once (into ``best`` if ``timed``); False if the
    deadline passed before the last shape."""
    for i, ((_, _, args), fastest) in enumerate(zip(inputs, best, strict=True)):
        for name, kernel in kernels.items():
            t = _one(kernel, *args)
            if timed:
                fastest[name] = min(fastest[name], t)
        if time.perf_counter() > deadline and i < len(inputs) - 1:
            return False
    return True


def time_kernels(
    rows=ROWS, reps: int = REPS, budget_s: float = BUDGET_S
) -> tuple[dict[str, dict[str, float]] | None, int]:
    """({kernel: {model: seconds of its Linear calls in one forward + backward}}, rounds timed).

    A round times every shape with both kernels; round 0 warms up. Stops after ``reps`` timed
    rounds, or as soon as ``budget_s`` is spent (checked after each shape); None in place of
    the times when that came before one whole timed round.
    """
    from tune_m3.models.layers import pointwise_conv_linear

    kernels = {"blas": F.linear, "onednn": pointwise_conv_linear}
    inputs = _inputs(rows)
    best = [dict.fromkeys(kernels, math.inf) for _ in inputs]  # fastest time per shape
    deadline = time.perf_counter() + budget_s
    rounds = 0
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast("cpu", enabled=False):
        for r in range(reps + 1):
            if not _round(kernels, inputs, best, r > 0, deadline):
                break
            rounds = r
            if time.perf_counter() > deadline:
                break
    if rounds == 0:
        return None, 0
    totals = {k: dict.fromkeys(SHAPES, 0.0) for k in kernels}
    for (model, calls, _), fastest in zip(inputs, best, strict=True):
        for name, t in fastest.items():
            totals[name][model] += calls * t
    return totals, rounds


def decide(totals: dict[str, dict[str, float]], margin: float = MARGIN) -> str:
    """'onednn' if it is ``margin`` faster than the BLAS for every model, else 'blas'."""
    wins = all(totals["onednn"][m] * (1 + margin) <= totals["blas"][m] for m in totals["blas"])
    return "onednn" if wins else "blas"


def measure_entry() -> dict[str, Any]:
    """Time both kernels now; the cache entry (choice, per-model ms, rounds, when, its cost)."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    totals, rounds = time_kernels(budget_s=BUDGET_S)
    return {
        "choice": decide(totals) if totals else "blas",  # out of time: PyTorch's own path
        "rounds": rounds,
        "ms": {k: {m: round(1e3 * s, 3) for m, s in v.items()} for k, v in (totals or {}).items()},
        "timing_s": round(time.perf_counter() - t0, 3),  # wall: longer on a busy machine
        "cpu_s": round(time.process_time() - cpu0, 3),  # this process's CPU time
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
    }
