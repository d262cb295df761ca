"""The checks a real model needs: the data's step counts, any exception named, no batch of 1."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from tune_m3.config import make_config
from tune_m3.errors import UserError
from tune_m3.models.seam import check_model_spec
from tune_m3.names import MODALITIES, length_key
from tune_m3.training import train

pytestmark = pytest.mark.usefixtures("one_thread")

DIMS = {"text": 6, "audio": 4, "vision": 3}


class ConvK5(nn.Module):
    """A temporal Conv1d of kernel 5, no padding, per modality (MMSA MulT's projection):
    needs >= 5 steps in every modality."""

    def __init__(self, input_dims, width: int = 4):
        super().__init__()
        self.conv = nn.ModuleDict({m: nn.Conv1d(d, width, 5) for m, d in input_dims.items()})
        self.head = nn.Linear(3 * width, 1)

    def forward(self, mods, lengths):
        h = [self.conv[m](mods[m].transpose(1, 2)).mean(-1) for m in MODALITIES]  # (B, width)
        return self.head(torch.cat(h, -1))


class WithBatchNorm(nn.Module):
    """TFN-like: BatchNorm on the pooled text; a batch of 1 in train mode raises."""

    def __init__(self, input_dims):
        super().__init__()
        self.norm = nn.BatchNorm1d(input_dims["text"])
        self.head = nn.Linear(input_dims["text"], 1)

    def forward(self, mods, lengths):
        return self.head(self.norm(mods["text"].mean(1)))


class KeyErrorInit(nn.Module):
    def __init__(self, input_dims):
        super().__init__()
        self.lin = nn.Linear(input_dims["txt"], 1)


class KeyErrorForward(ConvK5):
    def forward(self, mods, lengths):
        return mods["video"].sum((1, 2))


def split(n: int, steps=(10, 100, 100), shortest=(8, 60, 60), seed=0) -> dict:
    """Unaligned front-padded arrays: valid lengths in [shortest, L] per modality."""
    rng = np.random.default_rng(seed)
    out = {"labels": rng.standard_normal(n).astype(np.float32)}
    for m, L, lo in zip(MODALITIES, steps, shortest, strict=True):
        lens = rng.integers(lo, L + 1, size=n)
        x = rng.standard_normal((n, L, DIMS[m])).astype(np.float32)
        x[~(np.arange(L)[None, :] >= (L - lens[:, None]))] = 0
        out[m], out[length_key(m)] = x, lens
    out["lengths"] = out[length_key("text")]
    return out


def quick(model: str, **kw):
    return make_config({"model": model, "seed": 0, "max_epochs": 1, "threads": 1, **kw})


def test_the_check_uses_the_datas_step_counts():
    """10 text steps against 100 audio/vision steps: a kernel-5 model trains (the check used to
    build 1-2 text steps and refuse it, or pass at 6 and then die in the trial)."""
    data = {s: split(12, seed=i) for i, s in enumerate(("train", "valid", "test"))}
    res = train(quick(f"{__name__}:ConvK5", scheme="m3", p_mask=0.3, diag_fractions=(0.3,)), data)
    assert np.isfinite(res.final["test_mae"])
    with pytest.raises(UserError, match=r"ConvK5.forward on a check batch \(text \(4, 3, 6\)"):
        check_model_spec(quick(f"{__name__}:ConvK5"), DIMS, {"text": 3, "audio": 9, "vision": 9})


def test_a_batch_of_one_never_reaches_a_model_in_train_mode():
    """33 samples, batch 32: the last sample joins the first batch (BatchNorm would raise)."""
    data = {
        s: split(n, seed=i) for i, (s, n) in enumerate((("train", 33), ("valid", 8), ("test", 8)))
    }
    res = train(quick(f"{__name__}:WithBatchNorm", batch_size=32, diagnostics=False), data)
    assert np.isfinite(res.history[-1]["train_loss"])
    with pytest.raises(UserError, match="training on 1 sample"):
        train(quick(f"{__name__}:WithBatchNorm", max_train_samples=1), data)


def test_any_exception_of_a_users_constructor_or_forward_is_one_user_error():
    with pytest.raises(UserError) as err:
        check_model_spec(quick(f"{__name__}:KeyErrorInit"), DIMS)
    assert "KeyErrorInit(input_dims=" in str(err.value) and "raised KeyError: 'txt'" in str(
        err.value
    )
    with pytest.raises(UserError) as err:
        check_model_spec(quick(f"{__name__}:KeyErrorForward"), DIMS)
    assert "KeyErrorForward.forward on a check batch" in str(err.value)
    assert "raised KeyError: 'video'" in str(err.value)


class DictOut(nn.Module):
    """MMSA-style: returns {"M": prediction, "ortho": a loss the model computes itself}."""

    def __init__(self, input_dims):
        super().__init__()
        self.head = nn.Linear(input_dims["text"], 1)

    def forward(self, mods, lengths):
        pred = self.head(mods["text"].mean(1))  # (B, 1)
        return {"M": pred, "ortho": self.head.weight.square().sum(), "feats": mods["text"]}


class TupleOut(DictOut):
    def forward(self, mods, lengths):
        return (mods["text"], super().forward(mods, lengths)["M"])


def test_dict_and_tuple_outputs_with_output_key():
    for model, key in (("DictOut", "M"), ("TupleOut", "1")):
        conf = quick(f"{__name__}:{model}", output_key=key)
        check_model_spec(conf, DIMS)
        assert conf.params()["output_key"] == key
    for model, key, said in (
        ("DictOut", None, "returned a dict with keys ['M', 'feats', 'ortho']; set output_key"),
        ("DictOut", "pred", "output_key 'pred' is not in its output"),
        ("TupleOut", "2", "output_key '2' is not in its output (a tuple of 2 items)"),
        ("ConvK5", "M", "output_key 'M' but the model returned a Tensor"),
    ):
        with pytest.raises(UserError, match=re.escape(said)):
            check_model_spec(quick(f"{__name__}:{model}", output_key=key), DIMS)


def test_aux_losses_are_added_to_the_training_loss_and_logged():
    """train_loss = L1 + w * ortho: with w = 1000 the weights shrink to (almost) nothing."""
    data = {s: split(16, seed=i) for i, s in enumerate(("train", "valid", "test"))}
    base = {"output_key": "M", "max_epochs": 2, "diagnostics": False, "lr": 0.05, "batch_size": 2}
    plain = train(quick(f"{__name__}:DictOut", **base), data)
    conf = quick(f"{__name__}:DictOut", **base, aux_losses={"ortho": 1000.0})
    heavy = train(conf, data)
    assert conf.params()["aux_losses"] == "ortho=1000"
    assert heavy.history[0]["train_loss"] > plain.history[0]["train_loss"] + 1.0
    w = heavy.model.net.head.weight.square().sum().item()
    assert w < 0.1 * plain.model.net.head.weight.square().sum().item()
    with pytest.raises(UserError, match="aux_losses 'orth': its output .* has it absent"):
        check_model_spec(quick(f"{__name__}:DictOut", output_key="M", aux_losses={"orth": 1}))
