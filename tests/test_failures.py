"""Which trial failures are retried (``failures.py``), where the Optuna study goes
(``optuna_store.py``), and the one-path-component rule of names (``path_names.py``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tune_m3 import failures
from tune_m3.errors import UserError
from tune_m3.failures import NonFinitePredictions, is_deterministic
from tune_m3.metrics import compute_metrics
from tune_m3.path_names import check_component, is_component
from tune_m3.search import optuna_store
from tune_m3.search.paths import SearchPaths, read_state
from tune_m3.training import TrainingDiverged


def _raised_in_user_model() -> ValueError:
    """A ValueError raised by a frame of tests/failing_models.py (on sys.path under pytest)."""
    from failing_models import RaisesInEval

    try:
        RaisesInEval({"text": 2}).fail(None)
    except ValueError as err:
        return err
    raise AssertionError("did not raise")


def test_failures_that_repeat_are_not_retried_and_the_rest_are():
    user = "failing_models:RaisesInEval"
    try:
        compute_metrics([float("nan"), 1.0], [0.0, 1.0])
    except NonFinitePredictions as err:
        nan = err
    assert is_deterministic(nan, "m3_baseline")
    assert is_deterministic(TrainingDiverged("loss became nan"), "m3_baseline")
    assert is_deterministic(UserError("bad kwarg"), "m3_baseline")
    raised = _raised_in_user_model()
    assert is_deterministic(raised, user)
    assert "RaisesInEval" in failures.reason(raised, user) and "failing_models.py:" in (
        failures.reason(raised, user)
    )
    # not the user's model's frame (ours: a bug) or a resource error: retried by Ray
    assert not is_deterministic(ValueError("a bug of ours"), "m3_baseline")
    assert not is_deterministic(_raised_in_user_model(), "m3_baseline")
    assert not is_deterministic(MemoryError(), user)
    assert not is_deterministic(OSError(28, "No space left on device"), user)
    result = failures.failed_result(TrainingDiverged("loss nan"), "m3_baseline", "val_mae")
    assert result[failures.FAILED_KEY] == 1 and result["diverged"] == 1
    assert result["error_message"] == "loss nan" and result["val_mae"] != result["val_mae"]


@pytest.mark.parametrize(
    "name,ok",
    [
        ("m3-2026.01_a", True),
        ("café", True),
        ("../../escape", False),
        ("/abs/path", False),
        ("a/b", False),
        ("..", False),
        (".", False),
        (".hidden", False),
        ("a b", False),
        ("", False),
        ("a\x00b", False),
        ("n" * 200, True),
        ("n" * 201, False),
    ],
)
def test_a_name_is_one_path_component(name, ok):
    assert is_component(name) is ok
    if not ok:
        with pytest.raises(UserError, match="--name"):
            check_component(name, "--name")


def test_the_optuna_study_follows_a_local_storage(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_M3_RESULTS", str(tmp_path / "results"))
    results_db = f"sqlite:///{tmp_path / 'results' / 'optuna.db'}"
    assert optuna_store.url(None, None) == results_db
    assert optuna_store.url(None, "s3://bucket/x") == results_db
    assert optuna_store.url(None, str(tmp_path / "D")) == f"sqlite:///{tmp_path / 'D'}/optuna.db"
    assert optuna_store.url("postgresql://h/db", str(tmp_path / "D")) == "postgresql://h/db"
    # recorded when a search starts; --resume reads it back, whatever --storage says then
    paths = SearchPaths("s", tmp_path / "D")
    paths.exp_dir.mkdir(parents=True)
    new = SimpleNamespace(resumed=False, paths=paths, state={})
    chosen = optuna_store.settle(None, str(tmp_path / "D"), new)
    assert (
        read_state(paths)[optuna_store.STATE_KEY]
        == chosen
        == f"sqlite:///{paths.storage}/optuna.db"
    )
    resumed = SimpleNamespace(resumed=True, paths=paths, state=read_state(paths))
    assert optuna_store.settle(None, None, resumed) == chosen
    # a search started before the place was recorded had its study in the results dir
    old = SimpleNamespace(resumed=True, paths=paths, state={})
    assert optuna_store.settle(None, str(tmp_path / "D"), old) == results_db
    assert not Path(tmp_path / "results").exists()
