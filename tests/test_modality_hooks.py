"""Per-modality hooks: M3 / perturbation at each modality's subnet, fusion inside forward()."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_arrays
from torch import nn
from user_models import Subnets

from tune_m3.config import make_config
from tune_m3.errors import UserError
from tune_m3.models.seam import build_model, check_model_spec, fake_batch
from tune_m3.names import MODALITIES
from tune_m3.training import train

pytestmark = pytest.mark.usefixtures("one_thread")

DIMS = {"text": 8, "audio": 4, "vision": 3}
HOOKS = {"text": "text_subnet", "audio": "audio_subnet", "vision": "video_subnet"}
SUBNET = dict(zip(MODALITIES, HOOKS.values(), strict=True))
PROBS, P_MASK = (0.5, 0.3, 0.2), 0.6


class SubnetsOtherOrder(Subnets):
    """The same model calling its subnets in the order text, audio, vision."""

    def forward(self, mods, lengths):
        t, _ = self.text_subnet(mods["text"])
        a = self.audio_subnet(mods["audio"])
        v = self.video_subnet(mods["vision"].mean(1))
        return self.post_fusion(torch.cat([t.mean(1), a.mean(1), v], -1)).squeeze(-1)


class CallsTwice(Subnets):
    def forward(self, mods, lengths):
        self.audio_subnet(mods["audio"])
        return super().forward(mods, lengths)


class SkipsVision(Subnets):
    def forward(self, mods, lengths):
        t, _ = self.text_subnet(mods["text"])
        a = self.audio_subnet(mods["audio"])
        return self.post_fusion(torch.cat([t.mean(1), a.mean(1), a.mean(1)], -1)).squeeze(-1)


class GRUText(Subnets):
    """Text through a GRU: its output (out, h) holds two tensors; the hook needs an index."""

    def __init__(self, input_dims, hidden: int = 16):
        super().__init__(input_dims, hidden)
        self.text_subnet = nn.GRU(input_dims["text"], hidden, batch_first=True)


def cfg(model=f"{__name__}:Subnets", at=None, **kw):
    values = {"model": model, "seed": 0, "augment_at": at or HOOKS, **kw}
    return make_config(values)


def m3_cfg(model=f"{__name__}:Subnets", **kw):
    probs = dict(zip(("pi_text", "pi_audio", "pi_vision"), PROBS, strict=True))
    return cfg(model, scheme="m3", p_mask=P_MASK, **probs, **kw)


def spy(model) -> dict[str, torch.Tensor]:
    """The representation each subnet hands on (after the seam's hook), per modality."""
    seen: dict[str, torch.Tensor] = {}
    for m, name in SUBNET.items():

        def keep(mod, args, out, m=m):
            seen[m] = out[0] if isinstance(out, tuple) else out

        model.net.get_submodule(name).register_forward_hook(keep)
    return seen


def zeroed_units(model, mods, lengths) -> dict[str, torch.Tensor]:
    """{modality: (B, N_l) bool}: units zeroed in train mode that are not zero when clean."""
    seen = spy(model)
    model.eval()
    model(mods, lengths)
    clean = {m: x.clone() for m, x in seen.items()}
    model.train()
    model(mods, lengths)
    out = {}
    for m in MODALITIES:
        x, c = seen[m], clean[m]
        if x.dim() == 2:
            x, c = x.unsqueeze(1), c.unsqueeze(1)  # pooled: one unit per sample
        out[m] = (x.abs().sum(-1) == 0) & (c.abs().sum(-1) > 0)  # (B, N_l)
    return out


def positive_batch(B: int, steps: dict[str, int], dims: dict[str, int] = DIMS):
    mods, lengths = fake_batch(dims, steps, B=B)
    for m in MODALITIES:
        mods[m] = mods[m].abs() + 1
        lengths[m][:] = steps[m]
    return mods, lengths


def test_joint_law_at_three_subnets_per_sample():
    """P(l zeroed) = pM * pi_l at each subnet's output, and never two modalities per sample."""
    model = build_model(m3_cfg(granularity="sample"), DIMS)
    mods, lengths = positive_batch(6000, {"text": 5, "audio": 7, "vision": 3})
    z = zeroed_units(model, mods, lengths)
    per_sample = torch.stack([z[m].all(1) for m in MODALITIES], 1)  # (B, 3)
    partial = [(z[m].any(1) & ~z[m].all(1)).sum().item() for m in MODALITIES]
    assert partial == [0, 0, 0]  # sample granularity: all steps or none
    assert int((per_sample.sum(1) > 1).sum()) == 0  # never two modalities of one sample
    rates = per_sample.double().mean(0).tolist()
    for rate, p in zip(rates, PROBS, strict=True):
        sd = (P_MASK * p * (1 - P_MASK * p) / 6000) ** 0.5
        assert abs(rate - P_MASK * p) < 4 * sd, (rates, PROBS)


def test_joint_law_at_three_subnets_per_timestep():
    """Timestep units: sequences use their own steps (aligned at the end), the pooled vision
    representation the last step; per unit at most one modality zeroed, P = pM * pi_l."""
    model = build_model(m3_cfg(granularity="timestep"), DIMS)
    mods, lengths = positive_batch(3000, {"text": 6, "audio": 6, "vision": 6})
    z = zeroed_units(model, mods, lengths)
    last = torch.stack([z[m][:, -1] for m in MODALITIES], 1)  # (B, 3): the shared last step
    assert int((last.sum(1) > 1).sum()) == 0
    assert int((z["text"] & z["audio"]).sum()) == 0
    for m, p in zip(MODALITIES, PROBS, strict=True):
        rate = z[m].double().mean().item()
        sd = (P_MASK * p * (1 - P_MASK * p) / z[m].numel()) ** 0.5
        assert abs(rate - P_MASK * p) < 4 * sd, (m, rate)


def test_the_draw_does_not_depend_on_the_order_the_subnets_run_in():
    a = build_model(m3_cfg(granularity="timestep"), DIMS)
    b = build_model(m3_cfg(f"{__name__}:SubnetsOtherOrder", granularity="timestep"), DIMS)
    mods, lengths = positive_batch(200, {"text": 5, "audio": 5, "vision": 3})
    za, zb = zeroed_units(a, mods, lengths), zeroed_units(b, mods, lengths)
    assert all(bool(za[m].any()) for m in MODALITIES)
    assert all(torch.equal(za[m], zb[m]) for m in MODALITIES)


def test_perturbation_and_diagnostics_act_at_the_target_subnet_only():
    model = build_model(cfg(p_missing=0.5, perturb_target="audio"), DIMS)
    mods, lengths = positive_batch(40, {"text": 5, "audio": 5, "vision": 3})
    z = zeroed_units(model, mods, lengths)
    assert z["audio"].all(1).sum().item() == 20  # an exact count of the batch
    assert not z["text"].any() and not z["vision"].any()
    seen = spy(model)
    model.eval()

    def zero_vision(seq, lens):
        return [s if k != 2 else torch.zeros_like(s) for k, s in enumerate(seq)]

    with model.intervene(zero_vision):
        model(mods, lengths)
    assert seen["vision"].abs().sum() == 0
    assert seen["text"].abs().sum() > 0 and seen["audio"].abs().sum() > 0


def test_a_user_model_with_subnets_trains_with_rms_noise_and_diagnostics():
    conf = cfg(
        scheme="m3",
        p_mask=0.3,
        p_noise=0.2,
        sigma_scale="rms",
        max_epochs=2,
        batch_size=16,
        diag_sigma_scale="rms",
    )
    res = train(conf, tiny_arrays())
    assert res.history[-1]["train_noise_rms_text"] > 0
    assert np.isfinite(res.final["diag_test_vision_missing_30_corr"])
    assert res.final["diag_noise_rms_audio"] > 0


def _error(conf) -> str:
    with pytest.raises(UserError) as err:
        check_model_spec(conf, DIMS)
    return str(err.value)


def test_mistakes_in_per_modality_hooks_are_one_clear_error():
    msg = _error(cfg(at={**HOOKS, "audio": "audio_subnt"}))
    assert "augment_at audio: 'audio_subnt'" in msg and "did you mean 'audio_subnet'" in msg
    msg = _error(cfg(f"{__name__}:CallsTwice"))
    assert "audio: 'audio_subnet' ran 2 times" in msg
    msg = _error(cfg(f"{__name__}:SkipsVision"))
    assert "vision: 'video_subnet' ran 0 times" in msg
    msg = _error(cfg(f"{__name__}:GRUText"))
    assert "2 tensors (ambiguous)" in msg and "text_subnet[0]" in msg
    check_model_spec(cfg(f"{__name__}:GRUText", at={**HOOKS, "text": "text_subnet[0]"}), DIMS)
    msg = _error(cfg(at={**HOOKS, "text": "text_subnet[1][0]"}))  # the LSTM's h: (1, B, h)
    assert "batch first" in msg
    msg = _error(cfg(at={**HOOKS, "text": "text_subnet[2]"}))
    assert "has no item [2]" in msg
    with pytest.raises(UserError, match=r"missing \['vision'\]"):
        cfg(at={"text": "text_subnet", "audio": "audio_subnet"})
    with pytest.raises(UserError, match="one submodule for two modalities"):
        check_model_spec(cfg(at={**HOOKS, "audio": "text_subnet"}), DIMS)


def test_the_mapping_is_one_canonical_setting():
    dict_form = cfg()
    string_form = cfg(at="vision=video_subnet,text=text_subnet,audio=audio_subnet")
    assert dict_form.augment_at == string_form.augment_at
    assert (
        dict_form.params()["augment_at"]
        == "text=text_subnet,audio=audio_subnet,vision=video_subnet"
    )


def test_per_modality_hooks_resume_bit_identically(tmp_path):
    """The shared draw comes from the layers' checkpointed generators: 1 + 2 epochs = 3."""
    data = tiny_arrays()
    conf = {"scheme": "m3", "p_mask": 0.3, "p_missing": 0.2, "batch_size": 16, "threads": 1}
    conf |= {"diag_fractions": (0.3,), "lr": 5e-3}
    full = train(cfg(max_epochs=3, **conf), data)
    ck = tmp_path / "ck"
    train(cfg(max_epochs=1, **conf), data, checkpoint_dir=ck, final_eval=False)
    resumed = train(cfg(max_epochs=3, **conf), data, resume_from=ck)

    def strip(history):
        return [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in history]

    assert strip(full.history) == strip(resumed.history)
    assert full.final == resumed.final
