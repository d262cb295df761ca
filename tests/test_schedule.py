"""pM schedules (tune_m3/augment/schedule.py) and per-epoch validation diagnostics (tune_m3.training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import TINY_MODEL, tiny_arrays

from tune_m3.augment import ModalityMasking
from tune_m3.augment.schedule import p_mask_at, set_p_mask
from tune_m3.config import TrialConfig, make_config
from tune_m3.errors import UserError
from tune_m3.training import predict, train, validation_diagnostics


@pytest.mark.parametrize(
    "schedule, expect",
    [
        ("constant", [0.4, 0.4, 0.4, 0.4, 0.4]),
        ("linear", [0.0, 0.1, 0.2, 0.3, 0.4]),
        ("cosine", [0.4 * (1 - math.cos(math.pi * t)) / 2 for t in (0, 0.25, 0.5, 0.75, 1)]),
    ],
)
def test_schedule_law(schedule, expect):
    got = [p_mask_at(0.4, schedule, 4, e) for e in range(1, 6)]
    assert got == pytest.approx(expect)
    assert p_mask_at(0.4, schedule, 4, 50) == pytest.approx(0.4)  # stays at pM after warm-up
    assert p_mask_at(0.4, schedule, 0, 1) == 0.4  # no warm-up: constant


def test_set_p_mask_changes_the_layers_law():
    layer = ModalityMasking("m3", p_mask=0.3, modal_probs=(0.6, 0.2, 0.2), seed=0)
    set_p_mask([layer], 0.1)
    assert layer.zero_prob(0) == pytest.approx(0.06)


def _cfg(**kw):
    base = {**TINY_MODEL, "scheme": "m3", "p_mask": 0.4, "max_epochs": 4, "lr": 5e-3}
    return TrialConfig(**{**base, "diagnostics": False, **kw})


def test_training_logs_the_schedule_and_a_resume_continues_it(tmp_path):
    cfg = _cfg(p_mask_schedule="linear", p_mask_warmup_epochs=3)
    full = train(cfg, tiny_arrays(), checkpoint_dir=tmp_path / "ck", final_eval=False)
    logged = [h["train_p_mask"] for h in full.history]
    assert logged == pytest.approx([p_mask_at(0.4, "linear", 3, e) for e in range(1, 5)])
    # stop after 2 epochs, resume: epochs 3 and 4 continue the ramp, bit for bit
    half = _cfg(p_mask_schedule="linear", p_mask_warmup_epochs=3, max_epochs=2)
    train(half, tiny_arrays(), checkpoint_dir=tmp_path / "half", final_eval=False)
    rest = train(cfg, tiny_arrays(), resume_from=tmp_path / "half", final_eval=False)
    assert [h["train_p_mask"] for h in rest.history] == logged
    assert [h["val_mae"] for h in rest.history] == [h["val_mae"] for h in full.history]


def test_schedule_is_validated():
    with pytest.raises(UserError, match="p_mask_schedule"):
        make_config({"p_mask_schedule": "step"})
    with pytest.raises(UserError, match="p_mask_warmup_epochs"):
        make_config({"p_mask_warmup_epochs": -1})


def test_validation_diagnostics_every_epoch_match_a_direct_computation():
    keys = ("diag_val_text_missing_30_mae_drop", "diag_val_audio_noisy_30_corr")
    cfg = _cfg(max_epochs=1, val_diagnostics=keys)
    res = train(cfg, tiny_arrays(), final_eval=False)
    (h,) = res.history
    assert set(keys) <= set(h) and all(np.isfinite(h[k]) for k in keys)
    assert not [k for k in h if k.startswith("diag_test_")]
    direct, clean = validation_diagnostics(res.model, cfg, tiny_arrays()["valid"], "cpu")
    assert direct == pytest.approx({k: h[k] for k in keys})
    np.testing.assert_array_equal(clean, predict(res.model, tiny_arrays()["valid"], "cpu"))


def test_validation_diagnostics_leave_the_training_unchanged():
    """Their clean pass stands in for the epoch's validation pass: same val_* every epoch
    (epochs 1 and 3 from the diagnostics' pass, 2 and 4 from predict)."""
    keys = ("diag_val_text_missing_30_mae_drop",)
    plain = train(_cfg(), tiny_arrays(), final_eval=False).history
    with_diag = train(
        _cfg(val_diagnostics=keys, val_diag_every=2), tiny_arrays(), final_eval=False
    ).history
    assert len(with_diag) == 4
    for a, b in zip(plain, with_diag, strict=True):
        assert {k: v for k, v in a.items() if k.startswith("val_")} == {
            k: v for k, v in b.items() if k.startswith("val_")
        }


def test_val_diag_every_carries_the_last_value():
    keys = ("diag_val_text_missing_30_mae",)
    res = train(_cfg(val_diagnostics=keys, val_diag_every=2), tiny_arrays(), final_eval=False)
    vals = [h[keys[0]] for h in res.history]
    assert len(vals) == 4 and vals[1] == vals[0] and vals[3] == vals[2]


@pytest.mark.parametrize(
    "key", ["diag_test_text_missing_30_mae", "diag_val_smell_missing_30_mae", "val_mae"]
)
def test_bad_validation_diagnostics_keys_are_refused(key):
    with pytest.raises(UserError, match="val_diagnostics"):
        make_config({"val_diagnostics": [key]})
