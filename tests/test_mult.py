"""The MulT-style built-in: size, exact padding on aligned and unaligned inputs, trainability."""

from __future__ import annotations

import pytest
import torch

from tune_m3.models.mult import MulT
from tune_m3.names import MODALITIES

pytestmark = pytest.mark.usefixtures("one_thread")

MOSEI = {"text": 300, "audio": 74, "vision": 35}
SMALL = {"text": 6, "audio": 3, "vision": 4}
# d = 30, 5 layers, 5 heads (the authors' MOSEI configuration). A change here is a change of
# architecture: say so in docs/models.md.
N_PARAMS_MOSEI = 1_073_731


def small(**kw):
    torch.manual_seed(0)
    return MulT(SMALL, **{"d": 8, "heads": 2, "layers": 2, **kw})


def batch(steps, b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(b, steps[m], SMALL[m], generator=g) for m in MODALITIES}


def test_parameter_count_at_the_mosei_configuration():
    model = MulT(MOSEI)
    print(f"MulT(MOSEI): {model.num_parameters():,} parameters")
    assert model.num_parameters() == N_PARAMS_MOSEI


@pytest.mark.parametrize("steps", [(7, 7, 7), (5, 11, 3)], ids=["aligned", "unaligned"])
@pytest.mark.parametrize("kernel_size", [1, 3])
def test_front_padding_gives_the_unpadded_prediction(steps, kernel_size):
    model = small(kernel_size=kernel_size).eval()
    steps = dict(zip(MODALITIES, steps, strict=True))
    x = batch(steps)
    lengths = {m: torch.tensor([n, max(1, n - 2), 1, max(1, n // 2)]) for m, n in steps.items()}
    for m, n in steps.items():
        for i, k in enumerate(lengths[m].tolist()):
            x[m][i, : n - k] = 0.0
    batched = model(x, lengths)
    assert batched.shape == (4,)
    for i in range(4):
        single = {m: x[m][i : i + 1, steps[m] - int(lengths[m][i]) :] for m in MODALITIES}
        one = {m: lengths[m][i : i + 1] for m in MODALITIES}
        assert torch.allclose(model(single, one), batched[i : i + 1], atol=1e-5)
    garbage = {m: x[m].clone() for m in MODALITIES}
    for m, n in steps.items():
        for i, k in enumerate(lengths[m].tolist()):
            garbage[m][i, : n - k] = 50.0
    if kernel_size == 1:  # a wider kernel reads a padded neighbour of the first valid step
        assert torch.allclose(model(garbage, lengths), batched, atol=1e-5)


def test_a_few_adam_steps_reduce_the_l1_loss():
    model = small(embed_dropout=0.0, res_dropout=0.0, relu_dropout=0.0, attn_dropout=0.0)
    steps = {"text": 6, "audio": 9, "vision": 4}
    x = batch(steps, b=16, seed=1)
    lengths = {m: torch.full((16,), n) for m, n in steps.items()}
    y = torch.tanh(x["text"].mean(dim=(1, 2)) * 5) * 2
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(30):
        loss = (model(x, lengths) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"d": 9, "heads": 2}, "divisible"), ({"kernel_size": 2}, "odd"), ({"layers": 0}, "layers")],
)
def test_bad_kwargs_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MulT(SMALL, **kwargs)
