"""analysis/ knows what it is looking at: grid or Optuna search, training regimes, models, the
confirm stage, the search's own objectives, and never prints -0.00.

Fast: hand-made frames and a hand-made MLflow store (no training)."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pandas as pd
import pytest
from test_analysis import SCHEMES, fake_runs

from analysis import plots as P
from analysis import tables as T
from analysis.load import load_runs
from analysis.report import build_report
from tune_m3.names import (
    COMPLETED,
    SCHEDULER_STOPPED,
    STAGE_CONFIRM,
    TAG_CONFIRM_OF,
    TAG_PARENT,
    TAG_PARETO,
    TAG_SEARCH,
    TAG_STAGE,
    TAG_STATUS,
    TAG_STATUS_LEGACY,
    TAG_SYNTHETIC,
    diag_key,
)

# ----------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("v", "dec", "sign", "want"),
    [
        (-0.0001, 2, False, "0.00"),
        (-0.004, 2, False, "0.00"),
        (-0.006, 2, False, "-0.01"),
        (-0.0004, 3, False, "0.000"),
        (0.0, 2, True, "0.00"),
        (-0.001, 2, True, "0.00"),
        (0.25, 2, True, "+0.25"),
        (-0.25, 2, True, "-0.25"),
    ],
)
def test_fmt_num_never_prints_negative_zero(v, dec, sign, want):
    assert T.fmt_num(v, dec, sign=sign) == want


def test_tables_never_print_negative_zero():
    df = fake_runs({"m3": SCHEMES["m3"]}, synthetic=True)
    key = diag_key("text", "missing", 0.3, "f1", drop=True)
    df[key] = [-0.001, -0.002, -0.0004]  # mean -0.0011, rounds to zero at 2 decimals
    df[diag_key("text", "noisy", 0.3, "corr", drop=True)] = [-1e-5, 0.0, -2e-5]
    t = T.robustness_table1(df)
    for text in (T.to_markdown(t), T.to_latex(t), T.to_html(t)):
        assert "-0.00" not in text and "-0 " not in text
    assert T.fmt_value(-0.0) == "0" and T.fmt_value(-0.0, "p_mask") == "0.00"


# ----------------------------------------------------------------------------- regimes


def test_regime_labels():
    assert T.regime_label({"scheme": "none", "p_missing": 0.0, "p_noise": 0.0}) == "baseline"
    assert T.regime_label({"p_mask": 0.0}) == "baseline"  # no scheme param: none
    m3 = {"scheme": "m3", "p_mask": 0.2, "pi_text": 0.33, "p_missing": 0.0, "p_noise": 0.0}
    assert T.regime_label(m3) == "M3 (pM=0.2, πT=0.33)"
    assert T.regime_label({**m3, "scheme": "soft_m3"}) == "soft M3 (pM=0.2, πT=0.33)"
    assert T.regime_label({**m3, "scheme": "random_mask"}) == "random mask (pM=0.2, πT=0.33)"
    pert = {"scheme": "none", "p_missing": 0.15, "p_noise": 0.15}
    assert T.regime_label(pert) == "perturbation 15+15 %"
    both = {**m3, "p_missing": 0.05, "p_noise": 0.1}
    assert T.regime_label(both) == "M3 (pM=0.2, πT=0.33) + perturbation 5+10 %"


def test_robustness_table1_names_each_regime():
    groups = {
        "none": {"scheme": "none", "p_mask": 0.0, "pi_text": 0.33},
        "m3": {"scheme": "m3", "p_mask": 0.2, "pi_text": 0.33},
        "15+15": {
            "scheme": "none",
            "p_mask": 0.0,
            "pi_text": 0.33,
            "p_missing": 0.15,
            "p_noise": 0.15,
        },
    }
    t = T.robustness_table1(fake_runs(groups))
    clean = t[t["diagnostic"] == "clean"]
    assert list(clean["regime"]) == ["baseline", "M3 (pM=0.2, πT=0.33)", "perturbation 15+15 %"]
    md = T.to_markdown(t)
    assert "no robust training" not in md and "training regime" in md
    # published MulT rows only where the paper has them: baseline ('-') and perturbation
    pub = dict(zip(clean["regime"], clean["f1_pub"], strict=True))
    assert pub["baseline"] == 83.37 and math.isnan(pub["M3 (pM=0.2, πT=0.33)"])
    assert T.F1_SWAPPED in md and T.ACC_CONVENTION in md  # the conventions footnote


def test_m3_tables_carry_the_metric_convention_footnote():
    assert T.ACC_CONVENTION in T.to_markdown(T.m3_table1(fake_runs(SCHEMES)))


# ----------------------------------------------------------------------------- models


def test_robustness_tables_one_per_model():
    base = fake_runs({"none": {"scheme": "none"}, "m3": SCHEMES["m3"]})
    mult = fake_runs({"none": {"scheme": "none"}}, seed=1).assign(model="mult")
    df = pd.concat([base.assign(model="m3_baseline"), mult], ignore_index=True)
    assert T.models(df) == ["m3_baseline", "mult"]
    with pytest.raises(T.NotApplicable, match="2 models"):
        T.robustness_table1(df)
    t = T.robustness_table(df, model="mult")
    assert (t["n"] == 3).all() and set(t["regime"]) == {"baseline"}
    clean = t[t["diagnostic"] == "clean"].iloc[0]
    assert clean["corr_mean"] == pytest.approx(mult["test_corr"].mean())
    assert "model mult" in t.attrs["title"] and "a different model" not in t.attrs["published"]
    t = T.robustness_table1(df, model="m3_baseline")
    assert len(t) == 2 * 3 and "a different model from ours (m3_baseline)" in t.attrs["published"]
    for table in (t, T.robustness_table1(base)):  # no model column: the default model
        assert "M3 paper's baseline" not in table.attrs["published"] + table.attrs["title"]


# ----------------------------------------------------------------------------- confirm stage


def _confirm_frame() -> pd.DataFrame:
    rows = [
        {"run_id": f"s{i}", "trial_id": f"t{i}", "stage": "search", "confirm_of": "",
         "p_mask": pm, "seed": 0, "val_mae": v, "test_mae": v}
        for i, (pm, v) in enumerate([(0.1, 0.30), (0.2, 0.29), (0.3, 0.31)])
    ]  # fmt: skip
    confirm = {"s0": [0.300, 0.304, 0.296], "s1": [0.299, 0.310, 0.305]}
    for sid, vals in confirm.items():
        pm = {"s0": 0.1, "s1": 0.2}[sid]
        for k, v in enumerate(vals):
            rows.append(
                {"run_id": f"c{sid}{k}", "trial_id": "", "stage": STAGE_CONFIRM,
                 "confirm_of": sid, "p_mask": pm, "seed": k + 1, "val_mae": v,
                 "test_mae": v + 0.01}
            )  # fmt: skip
    df = pd.DataFrame(rows)
    return df.assign(run_name=df["run_id"], trial_status=COMPLETED, synthetic=True)


def test_confirmed_ranking_mean_std_and_separation():
    df = _confirm_frame()
    t = T.confirmed_ranking(df, "val_mae", "min")
    assert list(t["confirm_of"]) == ["s0", "s1"] and list(t["trial"]) == ["t0", "t1"]
    assert list(t["p_mask"]) == [0.1, 0.2] and list(t["n"]) == [3, 3]
    a, b = [0.300, 0.304, 0.296], [0.299, 0.310, 0.305]
    assert t["val_mae_mean"].tolist() == pytest.approx([statistics.mean(a), statistics.mean(b)])
    assert t["val_mae_std"].tolist() == pytest.approx([statistics.stdev(a), statistics.stdev(b)])
    assert t["test_mae_mean"].iloc[0] == pytest.approx(statistics.mean(a) + 0.01)
    pooled = math.sqrt((statistics.stdev(a) ** 2 + statistics.stdev(b) ** 2) / 2)
    sep = (statistics.mean(b) - statistics.mean(a)) / pooled
    assert t.attrs["separation"] == pytest.approx(sep)
    md = T.to_markdown(t)
    assert f"{sep:.1f} seed-stds apart" in md and "0.3000 ± 0.0040" in md
    # max mode ranks the other way
    assert list(T.confirmed_ranking(df, "val_mae", "max")["confirm_of"]) == ["s1", "s0"]
    with pytest.raises(T.NotApplicable, match="confirm"):
        T.confirmed_ranking(df[df["stage"] == "search"], "val_mae", "min")


# ----------------------------------------------------------------------------- pareto


def test_non_dominated_with_modes():
    v = np.array([[1.0, 3.0], [2.0, 1.0], [3.0, 0.5], [2.5, 2.0], [1.0, 4.0]])
    assert P.non_dominated(v, ["min", "min"]).tolist() == [True, True, True, False, False]
    assert P.non_dominated(v, ["max", "max"]).tolist() == [False, False, True, True, True]
    assert P.non_dominated(v[:, :1], ["min"]).tolist() == [True, False, False, False, True]


def test_pareto_objectives_uses_the_tags_or_computes_the_front(tmp_path):
    objs = [("val_mae", "min"), ("val_drop", "min")]
    df = pd.DataFrame(
        {"val_mae": [1.0, 2.0, 3.0, 2.5], "val_drop": [3.0, 1.0, 0.5, 2.0], "synthetic": False}
    )
    r = P.pareto_objectives(df, tmp_path / "computed.png", objs)
    assert r and "computed" in r.caption
    tagged = df.assign(pareto=[True, False, False, False])
    r = P.pareto_objectives(tagged, tmp_path / "tagged.png", objs)
    assert r and "tagged" in r.caption
    assert not P.pareto_objectives(df, tmp_path / "one.png", objs[:1])


# ----------------------------------------------------------------------------- real reports


def _child(c, exp, parent, params, metrics, tags, history=None):
    from mlflow.entities import Metric, Param, RunTag

    run = c.create_run(exp, tags={TAG_PARENT: parent, TAG_SYNTHETIC: "true", **tags})
    rid = run.info.run_id
    ms = [Metric(k, float(v), 0, 0) for k, v in metrics.items()]
    for m, values in (history or {}).items():
        ms += [Metric(m, float(v), 0, step) for step, v in enumerate(values, 1)]
    c.log_batch(rid, metrics=ms, params=[Param(k, str(v)) for k, v in params.items()])
    c.log_batch(rid, tags=[RunTag("mlflow.runName", f"trial {params}")])
    c.set_terminated(rid, "FINISHED")
    return rid


def _metrics(rng, pm: float) -> dict:
    out = {"test_mae": 0.6 + 0.1 * pm + 0.01 * rng.normal(), "test_corr": 0.7, "test_f1": 80.0}
    out |= {"test_acc2": 80.0, "test_acc7": 50.0, "val_mae": out["test_mae"]}
    for kind in ("missing", "noisy"):
        for f in (0.1, 0.3):
            for met in ("corr", "f1", "mae"):
                d = abs(rng.normal()) * 0.05
                out[diag_key("text", kind, f, met, drop=True)] = d
                out[diag_key("text", kind, f, met)] = out[f"test_{met}"] + (
                    d if met == "mae" else -d
                )
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """'grid_exp': a 2 x 2 grid x 2 seeds (legacy status tag); 'optuna_exp': 8 continuous samples
    of a two-objective search (Pareto tags, new status tag) and a confirm stage of 2 x 2 runs."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('kinds')}/mlflow.db"
    c = MlflowClient(uri)
    rng = np.random.default_rng(0)
    exp = c.create_experiment("grid_exp")
    p = c.create_run(exp, tags={TAG_SEARCH: "g-1"}).info.run_id
    c.log_batch(p, params=_params({"algorithm": "grid", "metric": "val_mae", "mode": "min"}))
    for pt in (0.33, 0.6):
        for pm in (0.1, 0.4):
            for seed in (0, 1):
                params = {"scheme": "m3", "pi_text": pt, "p_mask": pm, "seed": seed}
                tags = {TAG_SEARCH: "g-1", TAG_STATUS_LEGACY: COMPLETED}
                _child(c, exp, p, params, _metrics(rng, pm), tags, {"val_mae": [0.7, 0.65]})
    exp = c.create_experiment("optuna_exp")
    p = c.create_run(exp, tags={TAG_SEARCH: "o-1"}).info.run_id
    objectives = [{"metric": "val_mae", "mode": "min"}, {"metric": "val_drop", "mode": "min"}]
    c.log_batch(
        p,
        params=_params(
            {
                "algorithm": "optuna",
                "metric": "val_mae",
                "mode": "min",
                "objectives": json.dumps(objectives),
            }
        ),  # fmt: skip
    )
    trial_ids = []
    for i in range(8):
        pm, pt, lr = rng.uniform(0, 0.5), rng.uniform(0.2, 0.8), 10 ** rng.uniform(-4, -2)
        params = {"scheme": "m3", "pi_text": pt, "p_mask": pm, "lr": lr, "seed": 0}
        status = SCHEDULER_STOPPED if i % 3 == 2 else COMPLETED
        m = _metrics(rng, pm) if status == COMPLETED else {"val_mae": 0.8}
        m["val_drop"] = rng.uniform(0, 0.1)
        tags = {TAG_SEARCH: "o-1", TAG_STATUS: status, TAG_PARETO: str(i < 2).lower()}
        trial_ids.append(_child(c, exp, p, params, m, tags, {"val_mae": [0.9, m["val_mae"]]}))
    for rid in trial_ids[:2]:
        for seed in (1, 2):
            params = {"scheme": "m3", "p_mask": 0.2, "seed": seed}
            tags = {TAG_SEARCH: "o-1", TAG_STATUS: COMPLETED, TAG_STAGE: STAGE_CONFIRM,
                    TAG_CONFIRM_OF: rid}  # fmt: skip
            _child(c, exp, p, params, _metrics(rng, 0.2), tags)
    return uri


def _params(d: dict) -> list:
    from mlflow.entities import Param

    return [Param(k, str(v)) for k, v in d.items()]


def test_load_reads_new_and_legacy_status_tags_stage_and_model(store):
    df, info = load_runs("grid_exp", store)
    assert (df["trial_status"] == COMPLETED).all() and info.algorithm == "grid"
    assert (df["stage"] == "search").all() and (df["model"] == "m3_baseline").all()
    df, info = load_runs("optuna_exp", store)
    assert (df["trial_status"] == SCHEDULER_STOPPED).sum() == 2
    assert (df["stage"] == STAGE_CONFIRM).sum() == 4 and df["pareto"].sum() == 2
    assert info.objectives == [("val_mae", "min"), ("val_drop", "min")]


def test_grid_report_has_grid_tables_and_heatmaps(store, tmp_path):
    rep = build_report("grid_exp", store, tmp_path / "g", log_to_mlflow=False)
    names = {n for n, _ in rep.tables}
    plots = {r.path.stem for r in rep.plots}
    assert {"m3_table3", "robustness_table1", "summary"} <= names
    assert "best_trials" not in names and "confirmed_ranking" not in names
    assert {"heatmap_test_mae", "heatmap_text_missing_30_corr_drop"} <= plots
    assert "param_scatter" not in plots and "pareto_mae_vs_text_missing" in plots
    assert "confirm" not in rep.markdown.read_text()  # no confirm runs: not even skipped


def test_optuna_report_has_scatter_not_grid(store, tmp_path):
    rep = build_report("optuna_exp", store, tmp_path / "o", log_to_mlflow=False)
    names = {n for n, _ in rep.tables}
    plots = {r.path.stem for r in rep.plots}
    assert "m3_table3" not in names and not any(p.startswith("heatmap") for p in plots)
    assert {"best_trials", "confirmed_ranking"} <= names
    assert {"param_scatter", "pareto_objectives"} <= plots
    assert "pareto_mae_vs_text_missing" not in plots
    best = dict(rep.tables)["best_trials"]
    assert len(best) == 8  # search trials only, not the confirm runs
    ranking = dict(rep.tables)["confirmed_ranking"]
    assert (ranking["n"] == 2).all() and len(ranking) == 2
    md = rep.markdown.read_text()
    assert "confirm stage: 4 runs" in md and "-0.00" not in md
