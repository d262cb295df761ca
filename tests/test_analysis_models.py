"""Robustness across models (analysis/cross_model.py) and MultiBench's numbers
(analysis/multibench.py).

Fast: hand-computed curves and hand-made frames (tests/test_analysis.py's ``fake_runs``). Slow:
ONE tiny real grid that searches both the training regime (``scheme``) and the ``model``, two
seeds, through the CLI into a temporary store, then the report on it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from test_analysis import fake_runs

from analysis import cross_model as X
from analysis import tables as T
from analysis.load import load_runs
from analysis.multibench import effective_robustness, relative_robustness
from analysis.report import build_report
from tune_m3.names import diag_auc_key, diag_key

# ----------------------------------------------------------------------------- MultiBench

F = [0.8, 0.7, 0.5, 0.4]  # a fixed curve: the metric at 0 (clean), 10, 20, 30 % damaged
G = [0.9, 0.85, 0.7, 0.6]  # the reference curve at the same levels


def test_relative_robustness_is_the_trapezoid_area_by_hand():
    # MultiBench's 0.1 grid: 0.1 * ((.8+.7)/2 + (.7+.5)/2 + (.5+.4)/2) = .075 + .06 + .045
    assert relative_robustness([0, 0.1, 0.2, 0.3], F) == pytest.approx(0.18)
    # uneven levels use the actual spacing: .05*.75 + .05*.6 + .2*.45
    assert relative_robustness([0, 0.05, 0.1, 0.3], F) == pytest.approx(0.1575)
    two = relative_robustness([0, 0.1, 0.2, 0.3], np.array([F, G]))  # (runs, levels) -> (runs,)
    assert two == pytest.approx([0.18, 0.1 * (0.875 + 0.775 + 0.65)])
    assert math.isnan(relative_robustness([0, 0.1], [0.5, np.nan]))
    with pytest.raises(ValueError):
        relative_robustness([0, 0.3, 0.1], [1, 2, 3])


def test_effective_robustness_against_the_shifted_reference_by_hand():
    # G shifted to F's clean value: .8 .75 .6 .5; F minus that: 0 -.05 -.1 -.1
    assert effective_robustness(F, G) == pytest.approx(-0.25)
    assert effective_robustness(G, G) == pytest.approx(0.0)
    parallel = np.array(G) - 0.3  # lower clean value, same losses: no effective robustness
    assert effective_robustness(parallel, G) == pytest.approx(0.0)
    assert effective_robustness(np.array([F, G]), G) == pytest.approx([-0.25, 0.0])
    with pytest.raises(ValueError, match="levels"):
        effective_robustness(F, G[:3])


# ----------------------------------------------------------------------------- hand-made frames


def _two_models() -> pd.DataFrame:
    groups = {
        "baseline": {"scheme": "none", "p_mask": 0.0},
        "m3": {"scheme": "m3", "p_mask": 0.2, "pi_text": 0.33},
    }
    a = fake_runs(groups).assign(model="m3_baseline")
    b = fake_runs(groups, seed=1).assign(model="mult")
    b["run_id"] = "b" + b["run_id"]
    return pd.concat([b, a], ignore_index=True)


def test_cross_model_table_means_std_and_n():
    df = _two_models()
    t = X.robustness_models(df, "corr")
    assert list(zip(t["model"], t["regime"], strict=True)) == [
        ("m3_baseline", "baseline"),
        ("m3_baseline", "M3 (pM=0.2, πT=0.33)"),
        ("mult", "baseline"),
        ("mult", "M3 (pM=0.2, πT=0.33)"),
    ]
    assert (t["n"] == 3).all()
    for _, row in t.iterrows():
        runs = df[
            (df["model"] == row["model"])
            & (df["variant"] == ("m3" if "M3" in row["regime"] else "baseline"))
        ]
        col = diag_key("text", "noisy", "30", "corr", drop=True)
        assert row["clean_mean"] == pytest.approx(runs["test_corr"].mean())
        assert row["noisy_30_mean"] == pytest.approx(runs[col].mean())
        assert row["noisy_30_std"] == pytest.approx(runs[col].std(ddof=1))
    md = T.to_markdown(t)
    assert "| model | training regime | n | Corr clean | missing 10% |" in md
    with pytest.raises(T.NotApplicable, match="1 model"):
        X.robustness_models(df[df["model"] == "mult"])


def test_multibench_table_matches_the_runs_and_baseline_er_is_zero():
    df = _two_models()
    t = X.multibench_robustness(df)
    assert len(t) == 2 * 2 * 2 and (t["n"] == 3).all()  # models x regimes x kinds
    row = t[(t["model"] == "mult") & (t["regime"] != "baseline") & (t["diagnostic"] == "missing")]
    runs = df[(df["model"] == "mult") & (df["variant"] == "m3")]
    base = df[(df["model"] == "mult") & (df["variant"] == "baseline")]

    def curve(r):
        return [r["test_f1"], *(r[diag_key("text", "missing", p, "f1")] for p in ("10", "30"))]

    rr = [relative_robustness([0, 0.1, 0.3], curve(r)) for _, r in runs.iterrows()]
    ref = np.mean([curve(r) for _, r in base.iterrows()], axis=0)
    er = [effective_robustness(curve(r), ref) for _, r in runs.iterrows()]
    assert row["rr_f1_mean"].item() == pytest.approx(np.mean(rr))
    assert row["er_f1_mean"].item() == pytest.approx(np.mean(er))
    assert t.loc[t["regime"] == "baseline", "er_corr_mean"].abs().max() < 1e-12


def test_missing_rate_curve_one_model_tested_at_0_to_90():
    pcts = tuple(str(p) for p in range(10, 100, 10))
    df = fake_runs({"30+0": {"scheme": "none", "p_missing": 0.3}}, fractions=pcts)
    assert X.required_models(df) == 1 and X.required_models(_two_models()) == 2
    t = X.robustness_models(df, "f1", min_models=X.required_models(df))
    assert len(t) == 1 and "missing_90_mean" in t and t["regime"].item() == "perturbation 30+0 %"
    mb = X.multibench_robustness(df)
    assert mb["er_corr_mean"].isna().all()  # no baseline runs: no reference curve
    r = df.iloc[0]
    ys = [r["test_corr"], *(r[diag_key("text", "noisy", p, "corr")] for p in pcts)]
    want = sum((ys[i] + ys[i + 1]) * 0.1 / 2 for i in range(9))  # MultiBench's 0.1 steps
    got = relative_robustness(np.arange(10) / 10, ys)
    assert got == pytest.approx(want)


def test_drops_plot_renders(tmp_path):
    r = X.robustness_drops(_two_models(), tmp_path / "drops.png")
    assert r and r.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    skipped = X.robustness_drops(fake_runs({"b": {"scheme": "none"}}), tmp_path / "no.png")
    assert not skipped and "1 model" in skipped.reason and not (tmp_path / "no.png").exists()


# ----------------------------------------------------------------------------- one real search

EXPERIMENT = "analysis_models"


@pytest.fixture(scope="module")
def models_grid(tmp_path_factory) -> dict:
    """ONE tiny real grid: scheme {none, m3} x model {m3_baseline, mult} x seeds {0, 1}."""
    from searchutil import grid_store

    fixed = {"batch_size": 16, "threads": 1, "max_epochs": 1, "checkpoint_every": 1}
    return grid_store(
        tmp_path_factory.mktemp("models"),
        EXPERIMENT,
        fixed={**fixed, "diag_fractions": [0.1, 0.3], "p_mask": 0.2},
        model={"class": "mult", "kwargs": {"d": 4, "heads": 2, "layers": 1}},
        search={"scheme": {"grid": ["none", "m3"]}, "model": {"grid": ["m3_baseline", "mult"]}},
        seeds=[0, 1],
    )


@pytest.mark.slow
def test_grid_over_scheme_and_model_reports(models_grid, tmp_path):
    rep = build_report(EXPERIMENT, models_grid["uri"], tmp_path / "rep", log_to_mlflow=False)
    tables = dict(rep.tables)
    assert {"m3_table1", "robustness_models_corr", "multibench_robustness"} <= set(tables)
    t1 = tables["m3_table1"]  # the scheme column was inserted twice before
    assert list(t1.columns).count("scheme") == 1 and set(t1["scheme"]) == {"none", "m3"}
    df, _ = load_runs(EXPERIMENT, models_grid["uri"])
    t = tables["robustness_models_corr"]
    assert len(t) == 4 and (t["n"] == 2).all()
    for _, row in t.iterrows():
        scheme = "m3" if row["regime"].startswith("M3") else "none"
        runs = df[(df["model"] == row["model"]) & (df["scheme"] == scheme)]
        col = diag_key("text", "missing", "30", "corr", drop=True)
        assert row["missing_30_mean"] == pytest.approx(runs[col].mean(), rel=1e-12)
        assert row["clean_mean"] == pytest.approx(runs["test_corr"].mean(), rel=1e-12)
    # RR from the per-fraction values = the diagnostics' own auc x the largest fraction
    mb = tables["multibench_robustness"]
    for (model, scheme), runs in df.groupby(["model", "scheme"]):
        regime = "baseline" if scheme == "none" else "M3 (pM=0.2, πT=0.333)"
        row = mb[(mb["model"] == model) & (mb["regime"] == regime) & (mb["diagnostic"] == "noisy")]
        auc = runs[diag_auc_key("text", "noisy", "corr")].mean() * 0.3
        assert row["rr_corr_mean"].item() == pytest.approx(auc, rel=1e-9)
    names = {p.name for p in rep.plots}
    assert (
        "robustness_drops" in names
        and (rep.out / "plots" / "robustness_drops_text_corr.png").exists()
    )
