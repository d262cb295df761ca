"""Drop-in ``Linear``, ``Dropout`` and attention for the built-in models, faster on CPU.

Each computes the same function as its PyTorch counterpart, with the same parameters (same names
and shapes, so checkpoints and ``state_dict`` keys do not change); only the kernels differ.

- :class:`Linear` on a CPU float32 input ``(B, N, d_in)`` runs as a 1 x 1 convolution over a
  channels-last view of it (no copy: a contiguous ``(B, N, d)`` tensor *is* a channels-last
  ``(B, d, N, 1)`` image), which PyTorch hands to oneDNN. ``nn.Linear`` goes to the BLAS (MKL
  in the PyTorch wheels). The two differ when the BLAS runs a narrower vector path than the CPU
  has: on the AMD EPYC (AVX-512) development machine, on the baseline's Q/K/V products (one
  thread, forward + backward), MKL's sgemm reaches 105-111 GFLOP/s and oneDNN's 1 x 1
  convolution 212-222; on ``mult``'s narrower layers the gain is 1.0-2.1x
  (``bench/bench_step.py --linear-kernels [--model mult]``). Sums are ordered differently, so outputs
  agree to float32 rounding (a few 1e-5 relative), not bit for bit.
  Which of the two is faster depends on the CPU (oneDNN lost 8-11 % of a whole step on an
  AVX2-only EPYC), so by default (``TUNE_M3_CPU_LINEAR=auto``) each machine times both once
  and caches the choice (:mod:`tune_m3.linear_kernel`, :mod:`tune_m3.models.kernel_timing`);
  ``TUNE_M3_CPU_LINEAR=onednn`` or ``blas`` forces one. The choice is made at the first CPU
  float32 3-D call of a process, with the thread count it runs on; GPU and other inputs
  always take ``F.linear`` and never time anything.
- :class:`Dropout` draws its mask as ``rand < 1 - p`` instead of ``bernoulli_``: the same law
  (each element kept with probability 1 - p and scaled by 1 / (1 - p), from torch's global
  RNG), 2x cheaper on CPU at mult's width of 30, less at wider tensors (1.0-1.5x at the
  baseline's (32, 50, 200); ``bench/bench_dropout.py``). A seed draws a
  different mask than ``nn.Dropout`` would, so seeded runs differ from those made before it.
- :func:`attend`: masked scaled dot-product attention. With attention dropout on CPU it is
  written out (two ``bmm``, softmax, :func:`dropout`), which is what PyTorch's SDPA does on CPU
  in that case, with the cheaper mask; otherwise it is ``F.scaled_dot_product_attention``.

Off the CPU (and for inputs other than float32) every one of them is PyTorch's own function.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tune_m3.linear_kernel import cached_choice, kernel_setting, machine_key


def onednn_linear_enabled() -> bool:
    """Whether :class:`Linear` takes the oneDNN path on CPU in this process.

    ``$TUNE_M3_CPU_LINEAR`` forces it (``onednn``, ``blas``); ``auto`` (the default) reads this
    machine's cached choice, timing both kernels first if there is none (a fraction of a second,
    once per machine, torch version and thread count). False where torch has no oneDNN.
    """
    setting = kernel_setting()
    if not torch.backends.mkldnn.is_available():
        return False
    if setting != "auto":
        return setting == "onednn"
    from tune_m3.models.kernel_timing import measure_entry

    key = machine_key(torch.__version__, torch.get_num_threads())
    return cached_choice(key, measure_entry) == "onednn"


_ONEDNN: list[bool | None] = [None]  # chosen on first use, once per process; tests may set it


def choose_kernel() -> bool:
    """This process's choice (True: oneDNN), made now if not yet (:func:`onednn_linear_enabled`).

    Not made inside a context that would distort the timing (oneDNN switched off, a compiler
    tracing, a dispatch mode such as ``FlopCounterMode`` watching): there this call takes
    ``F.linear`` and the choice waits. Call it before such a step to have the choice made.
    """
    if _ONEDNN[0] is None:
        if not _undisturbed():
            return False
        _ONEDNN[0] = onednn_linear_enabled()
    return _ONEDNN[0]


def _undisturbed() -> bool:
    """Whether a kernel timing now measures the kernels as training runs them."""
    from torch.utils._python_dispatch import is_in_torch_dispatch_mode

    return (
        torch.backends.mkldnn.enabled
        and not torch.compiler.is_compiling()
        and not is_in_torch_dispatch_mode()
    )


@contextlib.contextmanager
def without_kernel_choice() -> Iterator[None]:
    """Run the block on ``F.linear`` if no kernel is chosen yet, and choose none.

    For the model check (shapes, not speed): a dry run never times kernels.
    """
    if _ONEDNN[0] is not None:
        yield
        return
    _ONEDNN[0] = False
    try:
        yield
    finally:
        _ONEDNN[0] = None


def pointwise_conv_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear(x, weight, bias)`` for a contiguous x (B, N, d_in), as a 1 x 1 channels-last conv.

    weight (d_out, d_in); returns (B, N, d_out), contiguous.
    """
    image = x.unsqueeze(2).permute(0, 3, 1, 2)  # (B, d_in, N, 1), channels-last, no copy
    y = F.conv2d(image, weight[:, :, None, None], bias)  # (B, d_out, N, 1), channels-last
    return y.permute(0, 2, 3, 1).squeeze(2)  # (B, N, d_out)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear``; on CPU float32 3-D contiguous inputs, by :func:`pointwise_conv_linear`."""
    if (
        x.dim() == 3
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.is_contiguous()
        and choose_kernel()  # chosen here, at the first call that could take it
    ):
        return pointwise_conv_linear(x, weight, bias)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` computed by :func:`linear`."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


def project(x: Tensor, *linears: nn.Linear) -> tuple[Tensor, ...]:
    """``tuple(lin(x) for lin in linears)`` as one matrix multiply with the weights stacked.

    x (..., d_in); each linear maps d_in -> d_j (bias-free); returns views (..., d_j) of one
    (..., sum d_j) product. One wide product runs faster than several narrow ones; the
    parameters stay separate (gradients flow back through the concatenation).
    """
    if any(lin.bias is not None for lin in linears):
        raise ValueError("project() takes bias-free linears")
    y = linear(x, torch.cat([lin.weight for lin in linears]))  # (..., sum d_j)
    return y.split([lin.out_features for lin in linears], dim=-1)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout: x · 1[U < 1 - p] / (1 - p), U ~ Uniform[0, 1) per element.

    The ``rand`` mask on CPU float32 (where ``bernoulli_`` is the slow part); ``F.dropout``
    elsewhere (GPU kernels fuse it; in half precision the threshold 1 - p would round).
    """
    if not training or p == 0.0:
        return x
    if p >= 1.0 or x.device.type != "cpu" or x.dtype != torch.float32:
        return F.dropout(x, p, True)
    keep = 1.0 - p
    return x * ((torch.rand_like(x) < keep) * (1.0 / keep))


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the mask drawn by :func:`dropout`; never in place (``inplace`` is
    ignored)."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


def attend(
    q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None, p_drop: float = 0.0
) -> Tensor:
    """softmax(Q K^T / sqrt(d_k)) V over the keys where ``key_valid``.

    q (..., N, d_k), k (..., M, d_k), v (..., M, d_v) with the same leading dims (batch, heads);
    ``key_valid`` bool, broadcastable to (..., N, M), or None; every query needs one valid key.
    ``p_drop`` > 0 drops attention weights after the softmax (callers pass 0 outside
    training). Returns (..., N, d_v). Dropout on CPU float32 is written out (the cheaper
    mask); elsewhere SDPA takes ``dropout_p`` (fused on GPU).
    """
    if p_drop == 0.0 or q.device.type != "cpu" or q.dtype != torch.float32:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_valid, dropout_p=p_drop)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.size(-1)))  # (..., N, M)
    if key_valid is not None:
        scores = scores.masked_fill(~key_valid, float("-inf"))
    weights = dropout(torch.softmax(scores, dim=-1), p_drop, True)  # (..., N, M)
    return torch.matmul(weights, v)  # (..., N, d_v)
