"""analysis/: MLflow runs -> tables, plots, report.

Fast tests use hand-made frames and a hand-made MLflow store; the slow ones run ONE tiny real
grid search (p_mask in {0.1, 0.3} x seeds {0, 1}, one epoch, FIFO) through the CLI into a
temporary store and check what the analysis makes of it.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import plots as P
from analysis import tables as T
from analysis.load import load_history, load_runs
from analysis.report import build_report, main
from tune_m3.errors import UserError

# ----------------------------------------------------------------------------- hand-made data


def fake_runs(
    groups: dict[str, dict],
    seeds=(0, 1, 2),
    synthetic: bool = False,
    dataset: str = "mosei",
    fractions=("10", "30"),
    seed: int = 0,
) -> pd.DataFrame:
    """A frame shaped like load_runs(): one row per (group, seed), random but fixed metrics."""
    rng = np.random.default_rng(seed)
    rows = []
    for gi, (variant, params) in enumerate(groups.items()):
        for s in seeds:
            row = {
                "run_id": f"r{gi}{s}",
                "run_name": f"trial_{gi}{s}",
                "trial_id": f"t{gi}{s}",
                "trial_status": "completed",
                "status": "FINISHED",
                "synthetic": synthetic,
                "dataset_tag": dataset,
                "variant": variant,
                "seed": s,
                "p_missing": 0.0,
                "p_noise": 0.0,
                **params,
                "test_acc2": 80 + rng.normal(),
                "test_f1": 80 + rng.normal(),
                "test_acc7": 50 + rng.normal(),
                "test_corr": 0.7 + 0.01 * rng.normal(),
                "test_mae": 0.6 + 0.01 * rng.normal(),
                "val_mae": 0.6 + 0.01 * rng.normal(),
            }
            for mod in ("text", "audio"):
                for kind in ("missing", "noisy"):
                    for f in fractions:
                        for met in ("corr", "f1", "mae"):
                            d = abs(rng.normal()) * (0.1 if met != "f1" else 5)
                            row[f"diag_test_{mod}_{kind}_{f}_{met}_drop"] = d
                            base = row[f"test_{met}"]
                            row[f"diag_test_{mod}_{kind}_{f}_{met}"] = (
                                base + d if met == "mae" else base - d
                            )
            rows.append(row)
    return pd.DataFrame(rows)


SCHEMES = {
    "baseline": {"scheme": "none", "p_mask": 0.0},
    "m3": {"scheme": "m3", "p_mask": 0.2},
    "soft_m3": {"scheme": "soft_m3", "p_mask": 0.2},
    "random_mask": {"scheme": "random_mask", "p_mask": 0.1},
}


def test_aggregate_is_mean_and_sample_std():
    df = pd.DataFrame(
        {
            "g": ["a", "a", "a", "b", "b", "c"],
            "x": [1.0, 2.0, 4.0, 10.0, np.nan, 5.0],
            "y": [0.5, 0.7, 0.9, 1.0, 3.0, 2.0],
        }
    )
    t = T.aggregate(df, ["g"], ["x", "y"]).set_index("g")
    assert list(t.index) == ["a", "b", "c"]
    assert t.loc["a", "x_mean"] == pytest.approx(7 / 3)
    assert t.loc["a", "x_std"] == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))
    assert t.loc["b", "y_std"] == pytest.approx(statistics.stdev([1.0, 3.0]))
    assert (t.loc["a", "n"], t.loc["b", "n"], t.loc["b", "x_n"]) == (3, 2, 1)
    assert math.isnan(t.loc["b", "x_std"]) and math.isnan(t.loc["c", "y_std"])  # n = 1: no std


def test_m3_table1_rows_published_and_difference():
    df = fake_runs(SCHEMES)
    t = T.m3_table1(df)
    assert list(t["label"]) == ["Baseline", "Random Mask", "Soft M3", "M3"]  # the paper's order
    assert (t["n"] == 3).all()
    m3 = df[df["scheme"] == "m3"]["test_acc2"]
    row = t[t["scheme"] == "m3"].iloc[0]
    assert row["acc2_mean"] == pytest.approx(m3.mean())
    assert row["acc2_std"] == pytest.approx(statistics.stdev(m3))
    assert row["acc2_pub"] == 82.46 and row["mae_pub_std"] == 0.004
    assert row["acc2_diff"] == pytest.approx(m3.mean() - 82.46)
    md = T.to_markdown(t)
    assert "SYNTHETIC" not in md and "Acc2 Δ" in md and "82.46 ± 0.50" in md
    assert len([ln for ln in md.splitlines() if ln.startswith("| ")]) == 1 + 4  # header + rows


def test_synthetic_runs_are_labelled_and_not_compared():
    t = T.m3_table1(fake_runs(SCHEMES, synthetic=True, dataset="synth_mosei"))
    assert "SYNTHETIC" in t.attrs["title"] and "shape only" in t.attrs["title"]
    assert not any(c.endswith("_diff") for c in t.columns)
    assert "acc2_pub" in t.columns  # shown, but labelled
    for text in (T.to_markdown(t), T.to_html(t), T.to_latex(t)):
        assert "SYNTHETIC" in text and "shape only" in text and "Δ" not in text
    # real data of another dataset: published shown, no difference either
    t = T.m3_table1(fake_runs(SCHEMES, dataset="mosi"))
    assert not any(c.endswith("_diff") for c in t.columns)


def test_m3_table3_grid_cells_and_reference():
    groups = {
        f"{pt}/{pm}": {"scheme": "m3", "pi_text": pt, "p_mask": pm}
        for pt in (0.33, 0.6)
        for pm in (0.1, 0.2, 0.25, 0.4)
    }
    t = T.m3_table3(fake_runs(groups, seeds=(0, 1)))
    assert len(t) == 8 and list(t.columns[:3]) == ["pi_text", "p_mask", "n"]
    row = t[(t["pi_text"] == 0.6) & (t["p_mask"] == 0.25)].iloc[0]
    assert (row["acc2_pub"], row["f1_pub"], row["mae_pub"]) == (82.50, 82.92, 0.586)
    with pytest.raises(T.NotApplicable, match="one cell"):
        T.m3_table3(fake_runs({"m3": {"scheme": "m3", "pi_text": 0.33, "p_mask": 0.2}}))
    with pytest.raises(T.NotApplicable, match="one scheme"):
        T.m3_table1(fake_runs(groups))


def test_robustness_tables_layout_and_mult_reference():
    groups = {
        "none": {"scheme": "none", "p_missing": 0.0, "p_noise": 0.0},
        "15+15": {"scheme": "none", "p_missing": 0.15, "p_noise": 0.15},
    }
    df = fake_runs(groups, fractions=("5", "10", "15", "30"))
    t1 = T.robustness_table1(df)
    assert list(zip(t1["diagnostic"], t1["training"], strict=True)) == [
        ("clean", "none"),
        ("clean", "15+15"),
        ("missing", "none"),
        ("missing", "15+15"),
        ("noisy", "none"),
        ("noisy", "15+15"),
    ]
    pub = dict(zip(zip(t1["diagnostic"], t1["training"], strict=True), t1["f1_pub"], strict=True))
    assert pub[("clean", "none")] == 83.37 and pub[("noisy", "15+15")] == -0.02  # MulT, MOSEI
    drops = df[df["variant"] == "15+15"]["diag_test_text_missing_30_corr_drop"]
    row = t1[(t1["diagnostic"] == "missing") & (t1["training"] == "15+15")].iloc[0]
    assert row["corr_mean"] == pytest.approx(drops.mean())
    assert row["corr_std"] == pytest.approx(statistics.stdev(drops))
    t = T.robustness_table(df)
    assert len(t) == 2 * (1 + 2 * 4)  # per training: clean + {missing, noise} x 4 fractions
    assert list(t["diagnostic_label"][:3]) == ["clean", "missing 5%", "noise 5%"]


def test_reference_files_match_the_papers():
    t1 = T.reference("m3_table1").set_index("scheme")
    assert t1.loc["m3", "acc2"] == 82.46 and t1.loc["none", "corr"] == 0.695
    t3 = T.reference("m3_table3")
    assert len(t3) == 8 and t3["mae"].between(0.586, 0.590).all()
    rob = T.reference("robustness_tables3to7")
    mult = rob[(rob["model"] == "MulT") & (rob["dataset"] == "mosei")]
    assert len(mult) == 4 * 9 and set(rob["model"]) == {"MISA", "BBFN", "Self-MM", "MMIM", "MulT"}
    one = T.reference("robustness_table1")
    m = one[(one["model"] == "MulT") & (one["dataset"] == "mosei")]
    assert set(m["corr"]) >= {0.738, 0.745, 0.109, 0.113, 0.263, 0.001}


def test_kinds_agree_with_diagnostics():
    from tune_m3.training.diagnostics import KINDS

    assert T.KINDS == KINDS


def test_latex_escaping():
    t = T.m3_table1(fake_runs(SCHEMES, synthetic=True))
    tex = T.to_latex(t)
    assert "\\begin{tabular}" in tex and "$\\pm$" in tex and "82.46" in tex
    assert "%" not in tex.replace("\\%", "").split("\n", 1)[1]  # only the header comment


def test_plots_on_hand_made_runs(tmp_path):
    df = fake_runs(SCHEMES)
    assert P.robustness_curves(df, tmp_path / "rob.png").path.stat().st_size > 1000
    r = P.pareto_scatter(df, tmp_path / "pareto.png")
    assert r and r.path.stat().st_size > 1000
    r = P.heatmap(df, tmp_path / "heat.png")
    assert not r and "pi_text" in r.reason and not (tmp_path / "heat.png").exists()
    rng = np.random.default_rng(0)
    search = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(10)],
            "trial_status": "completed",
            "synthetic": False,
            "lr": 10 ** rng.uniform(-4, -2, 10),
            "p_mask": rng.uniform(0, 0.5, 10),
            "seed": 0,
        }
    )
    search["val_mae"] = 0.6 + 0.3 * search["p_mask"] + rng.normal(0, 0.01, 10)
    r = P.param_importance(search, tmp_path / "imp.png", "val_mae", "min")
    assert r, r.reason
    assert (tmp_path / "imp.png").stat().st_size > 1000
    r = P.param_importance(search.drop(columns="lr"), tmp_path / "imp1.png")
    assert not r and "trivial" in r.reason


def test_pareto_front():
    x = np.array([1.0, 2.0, 3.0, 2.5, 1.0])
    y = np.array([3.0, 1.0, 0.5, 2.0, 4.0])
    assert P.pareto_front(x, y).tolist() == [True, True, True, False, False]


# ----------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> str:
    """A hand-made MLflow store: 'm3_grid_mosei' (1 finished, 1 failed, 1 deleted trial) and
    'still_running' (one trial, RUNNING)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"
    c = MlflowClient(uri)
    for name, statuses in (
        ("m3_grid_mosei", ["FINISHED", "FAILED", "DELETED"]),
        ("still_running", ["RUNNING"]),
    ):
        exp = c.create_experiment(name)
        parent = c.create_run(exp, tags={"tune_m3.search_id": f"{name}-1"})
        for i, st in enumerate(statuses):
            run = c.create_run(
                exp,
                tags={
                    "mlflow.parentRunId": parent.info.run_id,
                    "tune_m3.search_id": f"{name}-1",
                    "tune_m3.synthetic": "true",
                    "tune_m3.trial_status": "completed" if st == "FINISHED" else "failed",
                },
            )
            rid = run.info.run_id
            c.log_param(rid, "p_mask", "0.2")
            c.log_param(rid, "seed", str(i))
            c.log_param(rid, "grad_clip", "None")
            c.log_param(rid, "lr", "0.001")
            c.log_param(rid, "diag_fractions", "0.05,0.1")
            c.log_metric(rid, "lr", 0.001, step=1)
            c.log_metric(rid, "test_mae", 0.5 + i)
            if st == "DELETED":
                c.set_terminated(rid, "KILLED")
                c.delete_run(rid)
            elif st != "RUNNING":
                c.set_terminated(rid, st)
    return uri


def test_load_runs_filters_and_types(small_store):
    df, info = load_runs("m3_grid_mosei", small_store)
    assert len(df) == 1 and info.left_out == {"failed": 1, "deleted": 1}
    assert df["p_mask"].dtype == float and df["seed"].dtype == np.int64
    assert df["grad_clip"].iloc[0] is None and df["diag_fractions"].iloc[0] == "0.05,0.1"
    assert "lr" not in info.metric_columns and "last_lr" in df  # metric lr vs param namespace
    assert bool(df["synthetic"].iloc[0]) and info.synthetic
    df, info = load_runs("m3_grid_mosei", small_store, include_unfinished=True)
    assert len(df) == 2 and info.left_out == {"deleted": 1}


def test_unknown_experiment_lists_known_with_did_you_mean(small_store, capsys):
    with pytest.raises(UserError, match=r"did you mean 'm3_grid_mosei'.*still_running"):
        load_runs("m3_grid_mosi", small_store)
    assert main(["--experiment", "nope", "--tracking-uri", small_store]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no MLflow experiment named 'nope'") and "Traceback" not in err


def test_no_finished_runs_is_a_user_error(small_store, capsys):
    with pytest.raises(UserError, match="no finished trial runs.*1 running"):
        load_runs("still_running", small_store)
    assert main(["--experiment", "still_running", "--tracking-uri", small_store]) == 2


def test_unreachable_tracking_uri_fails_fast_with_exit_2(capsys, tmp_path):
    t0 = time.monotonic()
    assert main(["--experiment", "x", "--tracking-uri", "http://127.0.0.1:9"]) == 2
    assert time.monotonic() - t0 < 10
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: MLflow tracking server http://127.0.0.1:9 is not reachable")
    assert len(err.splitlines()) == 1
    missing = tmp_path / "nowhere" / "mlflow.db"
    with pytest.raises(UserError, match="no MLflow store"):
        load_runs("x", f"sqlite:///{missing}")
    assert not missing.exists()  # a typo must not create an empty store


# ----------------------------------------------------------------------------- one real search

TINY_FIXED = {
    "hidden": 8,
    "proj": 8,
    "batch_size": 16,
    "threads": 1,
    "max_epochs": 1,
    "diag_fractions": [0.1, 0.3],
    "checkpoint_every": 1,
    "scheme": "m3",
}
EXPERIMENT = "analysis_grid"


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> dict:
    """ONE tiny real grid search (2 configs x 2 seeds) into a temporary MLflow store."""
    from searchutil import grid_store

    root = tmp_path_factory.mktemp("analysis")
    search = {"p_mask": {"grid": [0.1, 0.3]}}
    return grid_store(root, EXPERIMENT, 300, fixed=TINY_FIXED, search=search, seeds=[0, 1])


def _raw_children(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(EXPERIMENT)
    runs = c.search_runs([exp.experiment_id])
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


@pytest.mark.slow
def test_real_grid_loads_and_aggregates_exactly(grid):
    df, info = load_runs(EXPERIMENT, grid["uri"])
    assert len(df) == 4 and info.left_out == {} and info.synthetic
    assert sorted(zip(df["p_mask"], df["seed"], strict=True)) == [
        (0.1, 0),
        (0.1, 1),
        (0.3, 0),
        (0.3, 1),
    ]
    assert (df["trial_status"] == "completed").all() and len(info.searches) == 1
    assert info.metric == "val_mae" and info.mode == "min"

    t3 = T.m3_table3(df)
    assert len(t3) == 2 and list(t3["p_mask"]) == [0.1, 0.3] and (t3["n"] == 2).all()
    # the arithmetic, against the raw MLflow metrics
    raw = _raw_children(grid["uri"])
    for pm in (0.1, 0.3):
        for met in ("mae", "corr", "acc2"):
            vals = [
                r.data.metrics[f"test_{met}"] for r in raw if float(r.data.params["p_mask"]) == pm
            ]
            row = t3[t3["p_mask"] == pm].iloc[0]
            assert row[f"{met}_mean"] == pytest.approx(sum(vals) / 2, rel=1e-12)
            assert row[f"{met}_std"] == pytest.approx(abs(vals[0] - vals[1]) / math.sqrt(2))
    assert "SYNTHETIC" in t3.attrs["title"] and not any(c.endswith("_diff") for c in t3)
    with pytest.raises(T.NotApplicable):
        T.m3_table1(df)
    assert len(T.robustness_table1(df)) == 2 * 3  # 2 configs x {clean, missing, noise}
    assert len(T.robustness_table(df)) == 2 * (1 + 2 * 2)  # fractions 10 and 30 %
    assert len(T.summary_table(df)) == 2

    hist = load_history(df, ("val_mae",), grid["uri"])
    assert len(hist) == 4 and set(hist["step"]) == {1}


@pytest.mark.slow
def test_real_grid_report(grid, capsys, monkeypatch):
    monkeypatch.setenv("TUNE_M3_RESULTS", str(grid["results"]))
    assert main(["--experiment", EXPERIMENT, "--tracking-uri", grid["uri"]]) == 0
    printed = capsys.readouterr().out
    out = grid["results"] / "reports" / EXPERIMENT  # the default --out
    assert f"wrote {out / 'report.md'}" in printed
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "SYNTHETIC" in md and "SYNTHETIC" in page
    pngs = sorted((out / "plots").glob("*.png"))
    names = {p.stem for p in pngs}
    assert {
        "heatmap_test_mae",
        "heatmap_text_missing_30_corr_drop",
        "robustness_curves_text",
        "learning_curves",
        "pareto_mae_vs_text_missing",
    } <= names
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000
        assert f"(plots/{p.name})" in md and f'src="plots/{p.name}"' in page
    assert "param_importance" not in names and "trivial" in md  # one param varies: skipped
    for name in ("m3_table3", "robustness_table1", "robustness_tables3to7", "summary"):
        for ext in ("md", "tex", "csv"):
            assert (out / "tables" / f"{name}.{ext}").stat().st_size > 0
    csv = pd.read_csv(out / "tables" / "m3_table3.csv")
    assert list(csv["n"]) == [2, 2]

    # logged on the parent run, one click away in the UI
    from mlflow.tracking import MlflowClient

    c = MlflowClient(grid["uri"])
    parent = c.get_run(_raw_children(grid["uri"])[0].data.tags["mlflow.parentRunId"])
    top = {Path(a.path).name for a in c.list_artifacts(parent.info.run_id, "report")}
    assert {"report.md", "report.html", "plots", "tables"} <= top
    logged = {Path(a.path).name for a in c.list_artifacts(parent.info.run_id, "report/plots")}
    assert logged == {p.name for p in pngs}

    # regenerated into another directory through the Python API, without MLflow logging
    rep = build_report(EXPERIMENT, grid["uri"], grid["results"] / "again", log_to_mlflow=False)
    assert rep.html.exists() and rep.logged_to is None and len(rep.plots) == len(pngs)
