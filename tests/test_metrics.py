"""compute_metrics: hand-computed cases for both binary conventions, degenerate inputs, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tune_m3.metrics import (
    HEADLINE,
    LOWER_IS_BETTER,
    METRIC_NAMES,
    MetricWarning,
    compute_metrics,
)

# one small set, every metric worked out by hand below
LABELS = [2.0, 0.0, -1.0, 0.5, -2.6, 1.4]
PREDS = [1.6, 0.3, -0.2, -0.4, -3.5, 2.6]


def test_vocabulary():
    assert METRIC_NAMES == ("mae", "corr", "acc7", "acc5", "acc2", "f1", "acc2_has0", "f1_has0")
    assert HEADLINE == ("acc2", "f1", "acc7", "corr", "mae")
    assert set(HEADLINE) <= set(METRIC_NAMES)
    assert {"mae"} == LOWER_IS_BETTER


def test_keys_order_and_types():
    m = compute_metrics(np.array(PREDS), np.array(LABELS))
    assert tuple(m) == METRIC_NAMES
    assert all(type(v) is float for v in m.values())


def test_hand_computed_case():
    m = compute_metrics(PREDS, LABELS)
    # |errors| = 0.4, 0.3, 0.8, 0.9, 0.9, 1.2 -> 4.5 / 6
    assert m["mae"] == pytest.approx(0.75)
    # acc7: preds -> [2, 0, 0, 0, -3, 3], labels -> [2, 0, -1, 0, -3, 1] (0.5 rounds to 0)
    assert m["acc7"] == pytest.approx(100 * 4 / 6)
    # acc5: preds -> [2, 0, 0, 0, -2, 2], labels -> [2, 0, -1, 0, -2, 1]
    assert m["acc5"] == pytest.approx(100 * 4 / 6)
    # non-zero convention: drop label 0.0 (index 1)
    #   truth > 0: T F T F T     pred > 0: T F F F T      -> 4 / 5 right
    #   class T: tp 2, fp 0, fn 1 -> F1 4/5, support 3; class F: tp 2, fp 1, fn 0 -> 4/5, support 2
    assert m["acc2"] == pytest.approx(80.0)
    assert m["f1"] == pytest.approx(80.0)
    # has-zero convention: all six, truth >= 0: T T F T F T, pred >= 0: T T F F F T -> 5 / 6
    #   class T: tp 3, fp 0, fn 1 -> 6/7, support 4; class F: tp 2, fp 1, fn 0 -> 4/5, support 2
    assert m["acc2_has0"] == pytest.approx(100 * 5 / 6)
    assert m["f1_has0"] == pytest.approx(100 * (4 * 6 / 7 + 2 * 4 / 5) / 6)
    # the zero label makes the conventions differ
    assert m["acc2"] != m["acc2_has0"]


def test_pearson_correlation_by_hand():
    # centred: p = (-1, 0, 1), y = (-1, 1, 0): r = 1 / sqrt(2 * 2)
    assert compute_metrics([1, 2, 3], [1, 3, 2])["corr"] == pytest.approx(0.5)
    assert compute_metrics([1, 2, 3], [-2, -4, -6])["corr"] == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    p, y = rng.normal(size=50), rng.normal(size=50)
    assert compute_metrics(p, y)["corr"] == pytest.approx(np.corrcoef(p, y)[0, 1])


@pytest.mark.filterwarnings("ignore::tune_m3.metrics.MetricWarning")  # constant preds: corr NaN
@pytest.mark.parametrize(
    ("truth_pos", "pred_pos", "acc", "f1"),
    [
        # T: tp 2, fp 0, fn 2 -> 4/6, support 4; F: tp 1, fp 2, fn 0 -> 2/4, support 1
        ([1, 1, 1, 1, 0], [1, 1, 0, 0, 0], 60.0, 100 * (4 * 4 / 6 + 1 * 2 / 4) / 5),
        # all predicted positive; F has no true positive: F1 0 (sklearn's zero_division=0)
        ([1, 0, 0], [1, 1, 1], 100 / 3, 100 * (1 * 2 / 4 + 2 * 0) / 3),
        # all one class, all right
        ([1, 1], [1, 1], 100.0, 100.0),
    ],
)
def test_weighted_f1_against_hand_computation(truth_pos, pred_pos, acc, f1):
    labels = [1.0 if t else -1.0 for t in truth_pos]
    preds = [0.7 if q else -0.7 for q in pred_pos]
    m = compute_metrics(preds, labels)
    assert m["acc2"] == pytest.approx(acc) and m["acc2_has0"] == pytest.approx(acc)
    assert m["f1"] == pytest.approx(f1) and m["f1_has0"] == pytest.approx(f1)


def test_zero_prediction_counts_as_negative_or_non_negative_by_convention():
    # label 1 > 0; prediction exactly 0: not positive (non-zero), but non-negative (has-zero)
    m = compute_metrics([0.0, -1.0], [1.0, -1.0])
    assert m["acc2"] == 50.0 and m["acc2_has0"] == 100.0


def test_perfect_predictions():
    y = np.array([-3.0, -1.2, 0.0, 0.4, 2.2, 3.0])
    m = compute_metrics(y, y)
    assert m["mae"] == 0.0 and m["corr"] == pytest.approx(1.0)
    assert all(m[k] == 100.0 for k in ("acc7", "acc5", "acc2", "f1", "acc2_has0", "f1_has0"))


def test_clipping_for_acc7_and_acc5():
    # 5.0 clips to 3 (acc7) and to 2 (acc5); -2.7 rounds to -3 and clips to -2
    m = compute_metrics([5.0, -2.7], [3.0, -2.0])
    assert m["acc7"] == 50.0  # 3 == 3, -3 != -2
    assert m["acc5"] == 100.0  # 2 == 2, -2 == -2


def test_accepts_tensors_and_lists():
    p = torch.tensor(PREDS, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(LABELS, dtype=torch.float64)
    assert compute_metrics(p, y) == compute_metrics(PREDS, LABELS)
    assert compute_metrics(p.float(), y.float()) == pytest.approx(compute_metrics(PREDS, LABELS))


# ---------------------------------------------------------------------------------------------
# degenerate inputs warn and return NaN


def test_constant_predictions_give_nan_corr_with_one_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = compute_metrics([0.5, 0.5, 0.5], [1.0, -1.0, 2.0])
    assert np.isnan(m["corr"])
    assert [w.category for w in caught] == [MetricWarning]
    assert "predictions" in str(caught[0].message)
    assert issubclass(MetricWarning, RuntimeWarning)
    assert m["mae"] == pytest.approx((0.5 + 1.5 + 1.5) / 3)


def test_constant_labels_give_nan_corr():
    with pytest.warns(MetricWarning, match="labels are constant"):
        m = compute_metrics([0.1, 0.2, 0.3], [1.0, 1.0, 1.0])
    assert np.isnan(m["corr"]) and m["acc2"] == 100.0


def test_only_zero_labels_give_nan_acc2_and_f1():
    with pytest.warns(MetricWarning) as record:
        m = compute_metrics([0.3, -0.2, 0.0], [0.0, 0.0, 0.0])
    messages = [str(w.message) for w in record]
    assert any("acc2 and f1 are undefined" in s for s in messages)
    assert np.isnan(m["acc2"]) and np.isnan(m["f1"])
    assert m["acc2_has0"] == pytest.approx(200 / 3)  # has-zero is still defined
    assert m["acc7"] == 100.0


def test_single_sample_does_not_crash():
    with pytest.warns(MetricWarning):
        m = compute_metrics([1.0], [2.0])
    assert np.isnan(m["corr"]) and m["acc2"] == 100.0


# ---------------------------------------------------------------------------------------------
# errors


def test_empty_input_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        compute_metrics([], [])


def test_mismatched_shapes_are_an_error():
    with pytest.raises(ValueError, match="shape"):
        compute_metrics([1.0, 2.0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values_are_named(bad):
    from tune_m3.failures import NonFinitePredictions

    # the model's NaN is a trial failure that is not retried (failures.py), and a ValueError
    with pytest.raises(NonFinitePredictions, match="predictions: 1 of 2 values are NaN"):
        compute_metrics([1.0, bad], [1.0, 2.0])
    with pytest.raises(ValueError, match="labels"):
        compute_metrics([1.0, 2.0], [bad, 2.0])
