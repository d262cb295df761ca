"""Diagnostics: the checks' semantics, their cost, and the metric-name pattern."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_arrays

from tune_m3.config import TrialConfig
from tune_m3.metrics import HEADLINE
from tune_m3.models import build_model
from tune_m3.training.diagnostics import diag_key, perturbed_order, run_diagnostics


def counting(model):
    """Count the samples that go through the baseline's encoders and its fusion (augment_at)."""
    model.encoded = model.fused = 0

    def enc(module, args):
        model.encoded += args[0].shape[0]

    def fus(module, args):
        model.fused += args[0][0].shape[0]

    model.net.encoders[0].register_forward_pre_hook(enc)
    model.net.fusion.register_forward_pre_hook(fus)
    return model


def _model():
    torch.manual_seed(0)
    return build_model(TrialConfig(hidden=8, proj=8), (8, 4, 3))


def test_keys_pattern_and_zero_fraction_consistency():
    test = tiny_arrays()["test"]
    res, clean = run_diagnostics(_model(), test, fractions=(0.1, 0.3))
    assert clean.shape == (48,)
    for m in ("text", "audio", "vision"):
        for kind in ("missing", "noisy"):
            for f in ("10", "30"):
                for met in HEADLINE:
                    assert diag_key(m, kind, float(f) / 100, met) in res
                    assert f"diag_test_{m}_{kind}_{f}_{met}_drop" in res
            assert f"diag_test_{m}_{kind}_auc_corr" in res
    assert "diag_test_text_missing_30_corr" in res
    # drop is clean - perturbed (mae: perturbed - clean)
    assert np.isclose(
        res["diag_test_text_missing_30_corr_drop"],
        res["test_corr"] - res["diag_test_text_missing_30_corr"],
    )
    assert np.isclose(
        res["diag_test_text_missing_30_mae_drop"],
        res["diag_test_text_missing_30_mae"] - res["test_mae"],
    )


def test_cost_is_one_clean_pass_plus_the_damaged_subsets():
    test = tiny_arrays(n=(8, 8, 200))["test"]
    model = counting(_model())
    run_diagnostics(model, test, batch_size=64)
    n = 200
    assert model.encoded == n  # one encode pass
    # one clean fuse + 6 fuses of the 30 % subset: 2.8 passes, within the 4-pass budget
    assert model.fused == n + 6 * round(0.3 * n)
    assert (model.encoded + model.fused) / (2 * n) <= 4


def test_paired_and_nested_subsets():
    order = perturbed_order(100, seed=5)
    np.testing.assert_array_equal(order, perturbed_order(100, seed=5))
    assert set(order[:5]) <= set(order[:30])  # 5 % subset inside the 30 % subset
    test = tiny_arrays()["test"]
    a, _ = run_diagnostics(_model(), test, seed=3)
    b, _ = run_diagnostics(_model(), test, seed=3)
    assert a == b


def test_missing_matches_naive_full_pass():
    """The shortcut equals damaging the chosen samples and re-running the whole test set."""
    test = tiny_arrays()["test"]
    model = _model().eval()
    res, clean = run_diagnostics(model, test, fractions=(0.3,), modalities=("text",))
    n = len(test["labels"])
    pick = perturbed_order(n, 1234)[: round(0.3 * n)]
    with torch.no_grad():
        mods = [torch.from_numpy(test[m]) for m in ("text", "audio", "vision")]
        lengths = torch.from_numpy(test["lengths"].astype(np.int64))
        reps = model.net.encode(mods, lengths)
        reps[0] = reps[0].clone()
        reps[0][torch.from_numpy(pick)] = 0
        naive = model.net.fusion(reps, lengths).double().numpy()
    from tune_m3.metrics import compute_metrics

    expect = compute_metrics(naive, test["labels"])
    assert np.isclose(res["diag_test_text_missing_30_mae"], expect["mae"], atol=1e-5)
    assert np.isclose(res["diag_test_text_missing_30_corr"], expect["corr"], atol=1e-5)


def test_multiplicative_noise_matches_naive_full_pass():
    """noisy = z·m_T for each damaged clip, one z ~ N(0, sigma^2) per clip (the papers' code)."""
    from tune_m3.metrics import compute_metrics

    test = tiny_arrays()["test"]
    model = _model().eval()
    kw = dict(fractions=(0.3,), modalities=("text",), noise_kind="multiplicative")
    res, _ = run_diagnostics(model, test, sigma=0.5, **kw)
    n = len(test["labels"])
    pick = torch.from_numpy(np.sort(perturbed_order(n, 1234)[: round(0.3 * n)]))
    g = torch.Generator().manual_seed(1234 * 1_000_003)  # one eval batch, modality index 0
    z = 0.5 * torch.randn((len(pick),), generator=g)
    with torch.no_grad():
        mods = [torch.from_numpy(test[m]) for m in ("text", "audio", "vision")]
        lengths = torch.from_numpy(test["lengths"].astype(np.int64))
        reps = model.net.encode(mods, lengths)  # the baseline's hook input: DNN-II's input
        reps[0] = reps[0].clone()
        reps[0][pick] = reps[0][pick] * z.view(-1, 1, 1)
        naive = model.net.fusion(reps, lengths).double().numpy()
    expect = compute_metrics(naive, test["labels"])
    assert np.isclose(res["diag_test_text_noisy_30_mae"], expect["mae"], atol=1e-5)
    # z ~ N(0, 0) = 0: multiplicative noise at sigma 0 is exactly "missing"
    res0, _ = run_diagnostics(model, test, sigma=0.0, **kw)
    assert res0["diag_test_text_noisy_30_mae"] == res0["diag_test_text_missing_30_mae"]


def test_measure_rms_and_rms_scaled_diagnostics():
    from tune_m3.training.rms import measure_rms

    data = tiny_arrays()
    model = _model().eval()
    rms = measure_rms(model, data["train"], n_samples=10_000)
    with torch.no_grad():
        mods = [torch.from_numpy(data["train"][m]) for m in ("text", "audio", "vision")]
        lengths = torch.from_numpy(data["train"]["lengths"].astype(np.int64))
        reps = model.net.encode(mods, lengths)  # what arrives at the hook (augment_at: fusion)
    valid = (torch.arange(reps[0].shape[1]) >= (reps[0].shape[1] - lengths)[:, None]).double()
    for m, r in zip(("text", "audio", "vision"), reps, strict=True):
        manual = ((r.double() ** 2).sum(-1) * valid).sum() / (valid.sum() * r.shape[-1])
        assert rms[m] == pytest.approx(float(manual.sqrt()), rel=1e-6)
    assert measure_rms(model, data["train"], at="input")["text"] != pytest.approx(rms["text"])
    with pytest.raises(ValueError, match="needs the clean RMS"):
        run_diagnostics(model, data["test"], sigma_scale="rms")
    res, _ = run_diagnostics(model, data["test"], sigma_scale="rms", rms=rms)
    assert res["diag_noise_rms_text"] == rms["text"]
    # rms-scaled noise at sigma = r^-1 equals absolute noise at sigma 1 (same draws)
    scaled, _ = run_diagnostics(
        model, data["test"], sigma=1 / rms["text"], sigma_scale="rms", rms=rms
    )
    absolute, _ = run_diagnostics(model, data["test"], sigma=1.0)
    assert scaled["diag_test_text_noisy_30_mae"] == pytest.approx(
        absolute["diag_test_text_noisy_30_mae"], rel=1e-5
    )
    with pytest.raises(ValueError, match="scale-free"):
        run_diagnostics(model, data["test"], noise_kind="multiplicative", sigma_scale="rms")
