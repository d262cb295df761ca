"""The training loop: learns, reproduces bit-identically, resumes exactly, fails loudly."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY_MODEL, tiny_arrays

from tune_m3.config import TrialConfig, make_config
from tune_m3.errors import UserError
from tune_m3.training import TrainingDiverged, load_checkpoint, train


def cfg(**kw) -> TrialConfig:
    return TrialConfig(**{**TINY_MODEL, "max_epochs": 4, "lr": 5e-3, "diagnostics": False, **kw})


def test_training_improves_and_reports_every_epoch():
    data = tiny_arrays()
    seen = []
    res = train(cfg(max_epochs=6), data, on_epoch=lambda m, ck: seen.append(m))
    assert [m["epoch"] for m in seen] == list(range(1, 7))
    assert seen[-1]["train_loss"] < seen[0]["train_loss"]
    assert res.best_val_loss == min(m["val_loss"] for m in seen)
    for key in (
        "train_loss",
        "lr",
        "val_loss",
        "val_mae",
        "val_corr",
        "val_acc2",
        "val_f1",
        "val_acc7",
    ):
        assert key in seen[0]
    assert {"test_mae", "test_acc2", "test_corr"} <= set(res.final)


def test_same_seed_bit_identical_and_different_seed_differs():
    data = tiny_arrays()
    a = train(cfg(scheme="m3", p_mask=0.3, p_missing=0.1, p_noise=0.1), data)
    b = train(cfg(scheme="m3", p_mask=0.3, p_missing=0.1, p_noise=0.1), data)
    c = train(cfg(scheme="m3", p_mask=0.3, p_missing=0.1, p_noise=0.1, seed=1), data)
    assert _strip(a.history) == _strip(b.history)
    assert a.final == b.final
    assert a.history[-1]["val_loss"] != c.history[-1]["val_loss"]


def _strip(h):
    return [{k: v for k, v in x.items() if k != "epoch_seconds"} for x in h]


def test_resume_continues_exactly(tmp_path):
    data = tiny_arrays()
    conf = cfg(max_epochs=4, scheme="m3", p_mask=0.3, p_missing=0.2, p_noise=0.1)
    full = train(conf, data)
    ck = tmp_path / "ck"
    stop_after_2 = cfg(max_epochs=2, scheme="m3", p_mask=0.3, p_missing=0.2, p_noise=0.1)
    train(stop_after_2, data, checkpoint_dir=ck, final_eval=False)
    assert load_checkpoint(ck)["epoch"] == 2
    resumed = train(conf, data, resume_from=ck)
    assert _strip(resumed.history) == _strip(full.history)
    assert resumed.final == full.final


def test_early_stopping_and_checkpoint_every(tmp_path):
    data = tiny_arrays()
    calls = []
    res = train(
        cfg(max_epochs=50, patience=2, lr=0.2, checkpoint_every=3),
        data,
        checkpoint_dir=tmp_path,
        on_epoch=lambda m, ck: calls.append(ck),
    )
    assert res.stopped_early and len(res.history) < 50
    assert res.history[-1]["epoch"] - res.best_epoch == 2
    written = [i + 1 for i, ck in enumerate(calls) if ck is not None]
    assert all(e % 3 == 0 for e in written[:-1]) and written[-1] == len(calls)


def test_nan_loss_fails_with_reason():
    data = tiny_arrays()
    data["train"] = {**data["train"], "labels": np.full_like(data["train"]["labels"], np.nan)}
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1"):
        train(cfg(), data)


def test_config_validation_names_the_field():
    with pytest.raises(UserError, match=r"unknown key 'p_mak' \(did you mean 'p_mask'\?\)"):
        make_config({"p_mak": 0.2})
    with pytest.raises(UserError, match="pi_text \\+ pi_audio \\+ pi_vision must be 1"):
        make_config({"pi_text": 0.6, "pi_audio": 0.3, "pi_vision": 0.3})
    with pytest.raises(UserError, match="'p_mask'.*less than or equal to 1"):
        make_config({"p_mask": 1.5})
    with pytest.raises(UserError, match="p_missing \\+ p_noise must be <= 1"):
        make_config({"p_missing": 0.6, "p_noise": 0.6})
    with pytest.raises(UserError, match="'scheme'"):
        make_config({"scheme": "m4"})


@pytest.mark.parametrize("bucket", [False, True])
def test_epoch_batches_cover_every_sample_once(bucket):
    import torch

    from tune_m3.training import epoch_batches

    lengths = np.random.default_rng(0).integers(1, 51, size=1000)
    batches = epoch_batches(1000, 32, torch.Generator().manual_seed(0), lengths, bucket)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    assert max(len(b) for b in batches) == 32
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    if bucket:  # similar lengths together: far less padding per batch than random batches
        assert spread < 10
    else:
        assert spread > 35


def test_bucketed_training_still_learns():
    data = tiny_arrays()
    res = train(cfg(max_epochs=5, bucket_batches=True), data)
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def test_rms_noise_scale_is_measured_once_reported_and_kept_on_resume(tmp_path):
    data = tiny_arrays()
    kw = dict(p_noise=0.3, sigma=0.5, sigma_scale="rms")
    full = train(cfg(max_epochs=3, **kw), data)
    rms = [h["train_noise_rms_text"] for h in full.history]
    assert rms[0] > 0 and rms == [rms[0]] * 3  # measured once, before the first update
    ck = tmp_path / "ck"
    train(cfg(max_epochs=2, **kw), data, checkpoint_dir=ck, final_eval=False)
    assert load_checkpoint(ck)["perturb_rms"] == rms[0]
    resumed = train(cfg(max_epochs=3, **kw), data, resume_from=ck)
    assert _strip(resumed.history) == _strip(full.history)
    # not reported when the noise is in absolute units
    absolute = cfg(max_epochs=1, p_noise=0.3, sigma_scale="absolute")
    assert "train_noise_rms_text" not in train(absolute, data).history[0]


def test_default_sigma_scale_is_absolute_at_the_input_and_rms_at_a_representation_hook():
    """sigma_scale / diag_sigma_scale 'auto': the papers' absolute sigma on the raw features,
    sigma in units of the clean RMS at the baseline's fusion hook (docs/fidelity.md)."""
    data = tiny_arrays()
    at_fusion = train(cfg(max_epochs=1, p_noise=0.3, diagnostics=True), data)
    assert at_fusion.history[0]["train_noise_rms_text"] > 0
    assert at_fusion.final["diag_noise_rms_text"] > 0
    at_input = train(cfg(max_epochs=1, p_noise=0.3, augment_at="input", diagnostics=True), data)
    assert "train_noise_rms_text" not in at_input.history[0]
    assert "diag_noise_rms_text" not in at_input.final


def test_diagnostics_with_reference_noise_report_their_rms():
    data = tiny_arrays()
    res = train(cfg(max_epochs=1, diagnostics=True, diag_sigma_scale="rms"), data)
    assert {"diag_noise_rms_text", "diag_noise_rms_audio", "diag_noise_rms_vision"} <= set(
        res.final
    )
    mult = train(cfg(max_epochs=1, diagnostics=True, diag_noise_kind="multiplicative"), data)
    assert "diag_noise_rms_text" not in mult.final
    assert mult.final["test_mae"] == res.final["test_mae"]  # same model, other noise
    assert mult.final["diag_test_text_noisy_30_mae"] != res.final["diag_test_text_noisy_30_mae"]


def test_noise_options_validated_with_the_field_named():
    for pre in ("", "diag_"):
        with pytest.raises(UserError, match=f"{pre}sigma_scale 'rms' applies to additive"):
            make_config({pre + "noise_kind": "multiplicative", pre + "sigma_scale": "rms"})
    with pytest.raises(UserError, match="'perturb_count'"):
        make_config({"perturb_count": "ceil"})


def _reductions(lrs):
    return [i for i in range(1, len(lrs)) if lrs[i] < lrs[i - 1]]


def _gaps(cuts):
    return [b - a for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def test_lr_cooldown_and_min_lr_follow_reduce_lr_on_plateau():
    data = tiny_arrays()
    kw = dict(max_epochs=16, patience=50, lr=0.2, lr_patience=0)  # room for 3 cooled-down cuts
    plain = [h["lr"] for h in train(cfg(**kw), data).history]
    assert min(_gaps(_reductions(plain))) == 1
    lrs = [h["lr"] for h in train(cfg(**kw, lr_cooldown=2, min_lr=0.03), data).history]
    cuts = _reductions(lrs)
    assert len(cuts) >= 2
    # after a reduction, 2 epochs of cooldown ignore bad epochs: cuts are >= 3 epochs apart
    assert all(g >= 3 for g in _gaps(cuts))
    assert lrs[-1] == pytest.approx(0.03)  # 0.05 * 0.5 = 0.025 is clipped to min_lr
    assert min(plain) < 0.03


def test_authors_recipe_space_trains_with_every_option():
    from tune_m3.search.space import load_space

    space = load_space("m3_authors_recipe_mosei")
    m3 = [c for c in space.example_configs() if c.scheme == "m3"][0]
    kw = m3.model_kwargs
    assert (kw["attn_dropout"], kw["init"], m3.lr_cooldown, m3.min_lr) == (0.2, "xavier", 2, 2.5e-5)
    assert (m3.granularity, m3.p_mask, m3.modal_probs) == ("batch", 0.25, (0.6, 0.2, 0.2))
    values = {**m3.model_dump(), "batch_size": 16, "threads": 1, "max_epochs": 2}
    values.update(diagnostics=False, model_kwargs={**kw, "hidden": 8, "proj": 8})
    res = train(make_config(values), tiny_arrays())
    assert len(res.history) == 2 and np.isfinite(res.final["test_mae"])


def test_build_model_passes_the_recipe_options_through():
    from tune_m3.models import build_model

    c = cfg(
        scheme="soft_m3",
        p_mask=0.2,
        soft_m3_mode="authors",
        p_missing=0.15,
        p_noise=0.15,
        noise_kind="multiplicative",
        perturb_count="floor",
        attn_dropout=0.1,
        init="xavier",
    )
    model = build_model(c, (8, 4, 3))
    mask, perturb = model.augment.layers
    assert mask.soft_mode == "authors"
    assert (perturb.noise_kind, perturb.count, perturb.counts(32)) == (
        "multiplicative",
        "floor",
        (4, 4),
    )
    assert (model.net.attn_dropout, model.net.init) == (0.1, "xavier")  # legacy flat names
    default = build_model(cfg(p_noise=0.1), (8, 4, 3))
    assert (default.net.attn_dropout, default.net.init) == (0.0, "default")
    assert (default.augment.layers[0].noise_kind, default.augment.layers[0].count) == (
        "additive",
        "round",
    )


def test_streams_keep_their_historic_seeds_and_reach_the_layers():
    from tune_m3.models import build_model
    from tune_m3.streams import Streams

    s = Streams.of(3)
    # the offsets 7·seed + 1..5 of every earlier version: a seed keeps giving the same numbers
    assert (s.init, s.shuffle, s.masking, s.perturbation, s.dropout, s.rms_subset) == (
        3,
        22,
        23,
        24,
        25,
        26,
    )
    model = build_model(cfg(seed=3, scheme="m3", p_mask=0.2, p_noise=0.1), (8, 4, 3))
    assert [layer.seed for layer in model.augment.layers] == [s.masking, s.perturbation]


def test_checkpoint_file_keeps_its_layout(tmp_path):
    """Checkpoints written before the typed Checkpoint (a flat dict) still resume, and back."""
    from tune_m3.training import Checkpoint

    data = tiny_arrays()
    ck = tmp_path / "ck"
    train(cfg(max_epochs=1, scheme="m3", p_mask=0.3), data, checkpoint_dir=ck, final_eval=False)
    raw = load_checkpoint(ck)
    assert set(raw) == {
        "model", "optimizer", "scheduler", "shuffle_rng", "torch_rng", "cuda_rng", "augment_rng",
        "epoch", "best_val_loss", "best_epoch", "bad_epochs", "best_model", "history", "config",
        "perturb_rms",
    }  # fmt: skip
    again = Checkpoint.from_dict(raw).to_dict()
    assert list(again) == list(raw)
    assert again["epoch"] == 1 and again["history"] == raw["history"]


@pytest.mark.parametrize("bucket", [False, True])
def test_a_last_batch_of_one_is_merged_into_the_one_before(bucket):
    """33 samples in batches of 32: one batch of 33, never a batch of 1 in train mode."""
    import torch

    from tune_m3.training import epoch_batches

    lengths = np.arange(66) % 7 + 1
    for n, sizes in ((33, [33]), (65, [32, 33]), (66, [32, 32, 2]), (1, [1])):
        batches = epoch_batches(n, 32, torch.Generator().manual_seed(0), lengths[:n], bucket)
        assert sorted(len(b) for b in batches) == sorted(sizes)
        assert sorted(np.concatenate(batches).tolist()) == list(range(n))
