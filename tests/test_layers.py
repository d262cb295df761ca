"""tune_m3.models.layers: the faster CPU kernels compute what PyTorch's layers compute."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tune_m3.errors import UserError
from tune_m3.models import layers
from tune_m3.models.m3_baseline import M3Baseline


@pytest.fixture
def kernel():
    """Set the oneDNN switch for one test and restore it."""
    before = layers._ONEDNN[0]
    yield lambda on: layers._ONEDNN.__setitem__(0, on)
    layers._ONEDNN[0] = before


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_f_linear_forward_and_backward(kernel, bias):
    kernel(True)
    torch.manual_seed(0)
    lin = layers.Linear(7, 5, bias=bias)
    x = torch.randn(3, 4, 7, requires_grad=True)  # (B, N, d_in)
    y = lin(x)
    ref = F.linear(x, lin.weight, lin.bias)
    assert y.shape == (3, 4, 5) and y.is_contiguous()
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, [x, lin.weight], g)
    want = torch.autograd.grad(ref, [x, lin.weight], g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_linear_keeps_nn_linear_parameters():
    lin = layers.Linear(7, 5)
    assert isinstance(lin, nn.Linear)
    assert sorted(lin.state_dict()) == ["bias", "weight"]


@pytest.fixture
def conv_calls(monkeypatch):
    """Count the calls that take the 1 x 1 convolution path."""
    calls = []
    real = layers.pointwise_conv_linear

    def spy(x, w, b):
        calls.append(tuple(x.shape))
        return real(x, w, b)

    monkeypatch.setattr(layers, "pointwise_conv_linear", spy)
    return calls


def test_linear_takes_the_conv_path_only_where_it_applies(kernel, conv_calls):
    kernel(True)
    lin = layers.Linear(6, 2)
    lin(torch.randn(3, 5, 6))
    assert conv_calls == [(3, 5, 6)]
    for x in (
        torch.randn(4, 6),  # 2-D
        torch.randn(3, 6, 5).transpose(1, 2),  # not contiguous
        torch.randn(2, 3, 6).double(),  # not float32
    ):
        torch.testing.assert_close(lin.to(x.dtype)(x), F.linear(x, lin.weight, lin.bias))
    lin.float()
    meta = layers.Linear(6, 2, device="meta")
    assert meta(torch.empty(3, 5, 6, device="meta")).shape == (3, 5, 2)  # not the CPU: F.linear
    kernel(False)  # TUNE_M3_CPU_LINEAR=blas
    lin(torch.randn(3, 5, 6))
    assert conv_calls == [(3, 5, 6)]


def test_dropout_and_attention_off_cpu_float32_are_pytorch_own(monkeypatch):
    """Half precision (and, by the same test of device and dtype, a GPU) takes F.dropout/SDPA."""
    seen = []
    monkeypatch.setattr(torch, "rand_like", lambda *a, **k: seen.append(1) or 1 / 0)
    x = torch.ones(1000, dtype=torch.bfloat16)
    y = layers.dropout(x, 0.1, True)
    assert not seen and ((y == 0) | (y == x / 0.9)).all()
    assert (layers.dropout(torch.ones(10), 1.0, True) == 0).all()  # as nn.Dropout(1.0)
    q = torch.randn(2, 3, 4, dtype=torch.bfloat16)
    assert layers.attend(q, q, q, None, p_drop=0.2).shape == (2, 3, 4) and not seen
    with pytest.raises(ZeroDivisionError):  # CPU float32: the written-out path, rand mask
        layers.dropout(torch.ones(10), 0.1, True)


def test_project_equals_separate_linears_and_trains_each_weight(kernel):
    kernel(True)
    torch.manual_seed(1)
    lins = [layers.Linear(6, d, bias=False) for d in (4, 4, 3)]
    x = torch.randn(2, 5, 6)
    outs = layers.project(x, *lins)
    for out, lin in zip(outs, lins, strict=True):
        torch.testing.assert_close(out, F.linear(x, lin.weight), rtol=1e-5, atol=1e-6)
    sum(o.square().sum() for o in outs).backward()
    assert all(lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0 for lin in lins)
    with pytest.raises(ValueError, match="bias-free"):
        layers.project(x, layers.Linear(6, 2))


def test_dropout_law_and_eval_identity():
    torch.manual_seed(2)
    x = torch.ones(200_000)
    p = 0.3
    y = layers.dropout(x, p, True)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005  # 4 sigma at n = 2e5
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    assert layers.dropout(x, p, False) is x and layers.dropout(x, 0.0, True) is x
    drop = layers.Dropout(p)
    drop.eval()
    assert torch.equal(drop(x), x)


def test_attend_without_dropout_is_sdpa_and_masked_keys_get_no_weight():
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 5, 4) for _ in range(3))
    valid = torch.tensor([[True] * 5, [False, False, True, True, True]]).unsqueeze(1)  # (B, 1, M)
    torch.testing.assert_close(
        layers.attend(q, k, v, valid), F.scaled_dot_product_attention(q, k, v, attn_mask=valid)
    )
    v_big = v.clone()
    v_big[1, :2] = 1e6  # values at masked keys must not leak in, dropout or not
    out = layers.attend(q, k, v_big, valid, p_drop=0.5)
    assert out[1].abs().max() < 1e3


def test_attend_dropout_is_unbiased():
    torch.manual_seed(4)
    q, k = torch.randn(1, 3, 4), torch.randn(1, 6, 4)
    v = torch.ones(1, 6, 2)
    mean = torch.stack([layers.attend(q, k, v, None, p_drop=0.25) for _ in range(4000)]).mean(0)
    torch.testing.assert_close(mean, torch.ones_like(mean), rtol=0.03, atol=0.03)


@pytest.mark.parametrize("lengths", [None, torch.tensor([6, 3])])
def test_baseline_is_the_same_function_on_either_kernel(kernel, lengths):
    """The oneDNN path and the BLAS path give the baseline the same outputs and gradients."""
    torch.manual_seed(5)
    model = M3Baseline({"text": 9, "audio": 4, "vision": 3}, hidden=8, proj=6).eval()
    mods = [torch.randn(2, 6, d) for d in (9, 4, 3)]
    results = []
    for on in (True, False):
        kernel(on)
        model.zero_grad()
        y = model(mods, lengths)
        y.sum().backward()
        results.append((y.detach(), [p.grad.clone() for p in model.parameters()]))
    (y1, g1), (y2, g2) = results
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_kernel_switch_rejects_a_typo(monkeypatch):
    monkeypatch.setenv("TUNE_M3_CPU_LINEAR", "onednnn")
    with pytest.raises(UserError, match="TUNE_M3_CPU_LINEAR"):
        layers.onednn_linear_enabled()
    monkeypatch.setenv("TUNE_M3_CPU_LINEAR", "blas")
    assert layers.onednn_linear_enabled() is False
