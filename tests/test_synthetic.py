"""The synthetic benchmark: shapes, determinism, labels, padding, and its signal structure."""

from __future__ import annotations

import numpy as np
import pytest

from tune_m3.data import build_synthetic, load_dataset
from tune_m3.data.synthetic import SynthConfig, generate
from tune_m3.errors import UserError


@pytest.mark.parametrize("like,dims", [("mosei", (300, 74, 35)), ("mosi", (300, 5, 20))])
def test_shapes_and_metadata(store, like, dims):
    meta = build_synthetic(like, scale=0.02, seed=3)
    assert meta.synthetic and meta.like == like and meta.name == f"synth_{like}_x0.02"
    assert tuple(meta.dims.values()) == dims and meta.seq_len == 50
    ds = load_dataset(meta.name)
    tr = ds.splits["train"]
    assert tr.features["text"].shape == (meta.sizes["train"], 50, 300)


def test_deterministic_per_seed_and_different_across_seeds():
    a = generate(SynthConfig(scale=0.01, seed=1))
    b = generate(SynthConfig(scale=0.01, seed=1))
    c = generate(SynthConfig(scale=0.01, seed=2))
    np.testing.assert_array_equal(a["test"].features["audio"], b["test"].features["audio"])
    np.testing.assert_array_equal(a["train"].labels, b["train"].labels)
    assert not np.array_equal(a["train"].labels, c["train"].labels)


def test_labels_padding_and_nonfinite():
    cfg = SynthConfig(scale=0.2, seed=0, nonfinite_rate=1e-5)
    sp = generate(cfg)["train"]
    y = sp.labels
    assert y.min() >= -3 and y.max() <= 3
    np.testing.assert_allclose(y * 3, np.round(y * 3), atol=1e-5)  # on the 1/3 grid
    assert 0.8 < y.std() < 1.6 and 0 < y.mean() < 0.4  # MOSEI-like spread, slight positive skew
    L = cfg.seq_len
    for b in range(20):
        pad = L - sp.lengths[b]
        assert not sp.features["text"][b, :pad].any()  # front padding is exactly zero
        assert np.abs(sp.features["text"][b, pad:]).sum(axis=-1).min() > 0
    assert sum(sp.nonfinite_replaced.values()) > 0
    assert all(np.isfinite(x).all() for x in sp.features.values())


def _mean_feature(sp, m):
    """Per-sample mean over valid steps, projected back on the latent axes (least squares)."""
    x = sp.features[m].sum(axis=1) / sp.lengths[:, None]
    return x


def test_text_dominant_and_audio_vision_complementary():
    """Linear probes on time-averaged features: text explains most, A/V add what text lacks."""
    sp = generate(SynthConfig(scale=0.3, seed=0))["train"]
    y = sp.labels

    def r2(*mods):
        X = np.concatenate([_mean_feature(sp, m) for m in mods] + [np.ones((len(y), 1))], axis=1)
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        res = y - X @ coef
        return 1 - res.var() / y.var()

    t, a, v, tav = r2("text"), r2("audio"), r2("vision"), r2("text", "audio", "vision")
    assert t > 0.5 and t > a + 0.1 and t > v + 0.1  # text is the strongest modality (linear probe)
    assert a > 0.1 and v > 0.05  # audio and vision do carry signal
    assert tav > t + 0.08  # ... that text does not have (complementary)


def test_bad_knobs_are_user_errors(store):
    with pytest.raises(UserError, match="scale"):
        build_synthetic("mosei", scale=0)
    with pytest.raises(UserError, match="like"):
        build_synthetic("iemocap")


@pytest.mark.parametrize("knob", ["text_strength", "redundancy", "step_noise"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_knobs_are_refused(store, knob, value):
    with pytest.raises(UserError, match=f"{knob} must be a finite number"):
        build_synthetic("mosi", scale=0.01, **{knob: value})
    assert not store.exists() or not any(store.iterdir())
