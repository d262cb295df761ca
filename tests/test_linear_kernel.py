"""The CPU Linear kernel: $TUNE_M3_CPU_LINEAR, and the choice timed once per machine and cached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tune_m3 import linear_kernel
from tune_m3.config import TrialConfig
from tune_m3.errors import UserError
from tune_m3.models import kernel_timing, layers
from tune_m3.models.seam import check_model_spec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """No kernel chosen in this process, an empty cache, and a spy in place of the timing."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TUNE_M3_CPU_LINEAR", raising=False)
    monkeypatch.setattr(layers, "_ONEDNN", [None])
    timed = []

    def spy():
        timed.append(1)
        return {"choice": "onednn", "ms": {}}

    monkeypatch.setattr(kernel_timing, "measure_entry", spy)
    return timed


def test_setting_defaults_to_auto_and_keeps_the_old_spellings(monkeypatch):
    monkeypatch.delenv("TUNE_M3_CPU_LINEAR", raising=False)
    assert linear_kernel.kernel_setting() == "auto"
    for raw, want in [("", "auto"), (" Auto ", "auto"), ("ONEDNN", "onednn"), ("blas", "blas")]:
        monkeypatch.setenv("TUNE_M3_CPU_LINEAR", raw)
        assert linear_kernel.kernel_setting() == want


@pytest.mark.parametrize("bad", ["onednnn", "mkl", "fast"])
def test_a_bad_value_is_one_error_line(monkeypatch, bad):
    monkeypatch.setenv("TUNE_M3_CPU_LINEAR", bad)
    with pytest.raises(UserError) as err:
        linear_kernel.kernel_setting()
    assert "\n" not in str(err.value)
    assert f"$TUNE_M3_CPU_LINEAR='{bad}'" in str(err.value) and "'blas'" in str(err.value)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch without oneDNN")
def test_the_choice_is_timed_once_per_machine_then_read_from_the_cache(fresh, tmp_path):
    assert layers.onednn_linear_enabled() is True
    assert layers.onednn_linear_enabled() is True  # second call: the cache, no timing
    assert fresh == [1]
    entries = json.loads((tmp_path / "cache" / "tune_m3" / "cpu_linear.json").read_text())
    (key,) = entries
    assert entries[key]["choice"] == "onednn"
    assert torch.__version__ in key and f"threads {torch.get_num_threads()}" in key
    assert key == linear_kernel.machine_key(torch.__version__, torch.get_num_threads())
    assert list((tmp_path / "cache" / "tune_m3").glob(".cpu_linear.*")) == []  # no temp left


def test_an_instruction_set_cap_is_another_machine_key(monkeypatch):
    for var in linear_kernel.ISA_CAPS:
        monkeypatch.delenv(var, raising=False)
    plain = linear_kernel.machine_key("2.13.0", 1)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    capped = linear_kernel.machine_key("2.13.0", 1)
    assert capped != plain and capped.endswith("| ONEDNN_MAX_CPU_ISA=AVX2")


def test_another_thread_count_is_another_machine_key():
    one, two = (linear_kernel.machine_key("2.13.0", n) for n in (1, 2))
    assert one != two and one.split(" | ")[:3] == two.split(" | ")[:3]


@pytest.mark.parametrize("forced, want", [("blas", False), ("onednn", True), ("OneDNN", True)])
def test_a_forced_choice_times_nothing(fresh, monkeypatch, forced, want):
    monkeypatch.setenv("TUNE_M3_CPU_LINEAR", forced)
    want = want and torch.backends.mkldnn.is_available()
    assert layers.onednn_linear_enabled() is want
    assert fresh == []


def test_linear_chooses_on_its_first_cpu_float32_3d_call_only(fresh, monkeypatch):
    calls = []
    monkeypatch.setattr(layers, "pointwise_conv_linear", lambda *a: calls.append(1) or 1 / 0)
    lin = layers.Linear(6, 2)
    lin(torch.randn(4, 6))  # 2-D: F.linear, nothing chosen
    lin.double()(torch.randn(2, 3, 6, dtype=torch.float64))  # not float32: nothing chosen
    assert fresh == [] and layers._ONEDNN == [None]
    lin.float()
    with pytest.raises(ZeroDivisionError):
        lin(torch.randn(2, 3, 6))
    assert layers._ONEDNN[0] is torch.backends.mkldnn.is_available()
    assert fresh == ([1] if torch.backends.mkldnn.is_available() else [])


def test_the_model_check_times_no_kernel(fresh):
    """A dry run checks models on F.linear and leaves the choice to the first trial."""
    check_model_spec(TrialConfig(model="m3_baseline"))
    check_model_spec(TrialConfig(model="mult"))
    assert fresh == [] and layers._ONEDNN == [None]


def test_a_corrupt_cache_is_timed_again_and_rewritten(tmp_path):
    path = tmp_path / "cpu_linear.json"
    timed = []

    def measure():
        timed.append(1)
        return {"choice": "blas"}

    for garbage in ["{not json", "[1, 2]", json.dumps({"k": {"choice": "mkl"}})]:
        path.write_text(garbage)
        assert linear_kernel.cached_choice("k", measure, path) == "blas"
        assert json.loads(path.read_text()) == {"k": {"choice": "blas"}}
    assert timed == [1, 1, 1]
    assert linear_kernel.cached_choice("k", measure, path) == "blas" and timed == [1, 1, 1]


def test_an_unusable_cache_still_chooses(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "tune_m3" / "cpu_linear.json"  # its folder cannot be made
    timed = []

    def measure():
        timed.append(1)
        return {"choice": "onednn"}

    assert linear_kernel.cached_choice("k", measure, path) == "onednn"
    assert timed == [1]
    err = capsys.readouterr().err
    assert "not usable" in err and err.count("\n") == 1


def test_processes_starting_at_once_time_once(tmp_path):
    """Four processes with an empty cache: one times (0.3 s here), the others read its choice."""
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from tune_m3.linear_kernel import cached_choice
        log = Path(sys.argv[1]) / "timed.log"
        def measure():
            with open(log, "a") as f:
                f.write("timed\\n")
            time.sleep(0.3)
            return {"choice": "blas"}
        print(cached_choice("k", measure, Path(sys.argv[1]) / "cpu_linear.json"))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4
    assert outs == ["blas"] * 4
    assert (tmp_path / "timed.log").read_text() == "timed\n"


def test_real_timing_is_short_and_decides():
    """The real measurement on this CPU, on one thread as a trial with one CPU runs it: its CPU
    time stays short (wall time on a shared machine can be many times longer), and a budget
    spent before one whole timed round (on a busy machine) means PyTorch's own path."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        entry = kernel_timing.measure_entry()
    finally:
        torch.set_num_threads(threads)
    assert 0 <= entry["rounds"] <= kernel_timing.REPS and entry["cpu_s"] < 2
    if entry["rounds"]:
        assert entry["choice"] in ("onednn", "blas") and set(entry["ms"]) == {"blas", "onednn"}
    else:
        assert (entry["choice"], entry["ms"]) == ("blas", {})
    totals, rounds = kernel_timing.time_kernels(rows=(2, 5), reps=2, budget_s=60)
    assert rounds == 2  # all rounds, well inside the budget
    for per_model in totals.values():
        assert set(per_model) == set(kernel_timing.SHAPES) and min(per_model.values()) > 0
    totals, rounds = kernel_timing.time_kernels(rows=(2, 5), reps=50, budget_s=1e-9)
    assert totals is None and rounds == 0  # out of time before one whole timed round


def test_out_of_time_is_pytorchs_own_path(monkeypatch):
    monkeypatch.setattr(kernel_timing, "BUDGET_S", 1e-9)
    entry = kernel_timing.measure_entry()
    assert (entry["choice"], entry["rounds"], entry["ms"]) == ("blas", 0, {})
    assert entry["timing_s"] < 5  # stopped after the first shape


def test_decide_wants_onednn_faster_for_every_model():
    fast = {"blas": {"a": 1.0, "b": 1.0}, "onednn": {"a": 0.5, "b": 0.9}}
    assert kernel_timing.decide(fast) == "onednn"
    mixed = {"blas": {"a": 1.0, "b": 1.0}, "onednn": {"a": 0.5, "b": 1.01}}
    assert kernel_timing.decide(mixed) == "blas"
    close = {"blas": {"a": 1.0}, "onednn": {"a": 0.99}}  # inside the margin: PyTorch's own
    assert kernel_timing.decide(close) == "blas"


def test_no_choice_inside_a_flop_counter_or_with_onednn_off(fresh):
    """There the call takes F.linear and the choice waits for an undisturbed call."""
    from torch.utils.flop_counter import FlopCounterMode

    lin = layers.Linear(6, 2)
    x = torch.randn(2, 3, 6)
    with FlopCounterMode(display=False) as fc:
        lin(x)
    assert fc.get_total_flops() == 2 * 2 * 3 * 6 * 2  # the call alone, no timing counted
    with torch.backends.mkldnn.flags(enabled=False):
        lin(x)
    assert fresh == [] and layers._ONEDNN == [None]
    lin(x)
    assert layers._ONEDNN[0] is torch.backends.mkldnn.is_available()
