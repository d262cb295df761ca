"""Search-space files: every shipped space validates; every invalid file gets its message."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from tune_m3.config import make_config
from tune_m3.errors import UserError
from tune_m3.search.space import available_spaces, load_space

SHIPPED = {
    "demo": 8,
    "m3_mosei": 40,
    "m3_mosi": 40,
    "perturb_mosei": 30,
    "perturb_mosi": 30,
    "m3_grid_mosei": 40,
    "masking_schemes_mosei": 20,
    "robust_grid_mosei": 24,
    "robust_grid_mosi": 24,
    "m3_mult_mosei": 40,
    "robust_models_mosi": 18,
    "missing_rate_curve_mosi": 6,
}


def test_all_shipped_spaces_validate_with_expected_trial_counts():
    assert set(SHIPPED) <= set(available_spaces())
    for name, n in SHIPPED.items():
        assert load_space(name).num_trials() == n, name


def test_m3_grid_is_the_papers_table3_grid():
    space = load_space("m3_grid_mosei")
    points = space.grid_points()
    assert len(points) == 40
    cells = {(p["pi_text"], p["p_mask"]) for p in points}
    assert cells == {(t, m) for t in (0.33, 0.6) for m in (0.1, 0.2, 0.25, 0.4)}
    for p in points:
        v = space.trial_values(p)
        assert (
            v["pi_audio"] == pytest.approx((1 - p["pi_text"]) / 2) == pytest.approx(v["pi_vision"])
        )
    assert sorted({p["seed"] for p in points}) == [0, 1, 2, 3, 4]


def test_robust_grid_variants_times_models_times_seeds():
    space = load_space("robust_grid_mosei")
    pts = space.grid_points()
    assert len(pts) == 24
    assert {p["model"] for p in pts} == {"m3_baseline", "mult"}
    v = space.trial_values({"variant": "15+15", "model": "mult", "seed": 2})
    assert (v["p_missing"], v["p_noise"], v["seed"], v["model"]) == (0.15, 0.15, 2, "mult")


def test_model_block_bare_or_full_and_model_kwargs_searched(tmp_path):
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump({**BASE, "model": "mult"}))
    assert load_space(str(bare)).example_configs()[0].model == "mult"
    full = tmp_path / "full.yaml"
    spec = {"class": "mult", "kwargs": {"d": 10, "heads": 2}, "augment_at": "input"}
    search = {**BASE["search"], "model.layers": {"choice": [1, 2]}}
    full.write_text(yaml.safe_dump({**BASE, "model": spec, "search": search}))
    space = load_space(str(full))
    cfg = make_config(space.trial_values({"p_mask": 0.1, "model.layers": 2}))
    assert (cfg.model, cfg.augment_at) == ("mult", "input")
    assert cfg.model_kwargs == {"d": 10, "heads": 2, "layers": 2}
    assert cfg.params()["model.layers"] == 2
    # the block's kwargs belong to its class: another model chosen by --set drops them
    kw = tmp_path / "kw.yaml"
    kw.write_text(yaml.safe_dump({**BASE, "model": {"class": "mult", "kwargs": {"d": 10}}}))
    other = load_space(str(kw), overrides={"model": "m3_baseline", "model.hidden": 4})
    assert make_config(other.trial_values({"p_mask": 0.1})).model_kwargs == {"hidden": 4}


BASE = {
    "dataset": {"name": "x"},
    "search": {"p_mask": {"uniform": [0.0, 0.5]}},
    "algorithm": {"type": "optuna"},
}


def _with(**kw):
    d = yaml.safe_load(yaml.safe_dump(BASE))
    for k, v in kw.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    return d


BAD_SPACES = [
    ("unknown-top-key", _with(serach={}), "unknown key 'serach' (did you mean 'search'?)"),
    (
        "unknown-param",
        _with(search={"p_mak": {"uniform": [0, 1]}}),
        "search.p_mak: unknown parameter (did you mean 'p_mask'?)",
    ),
    (
        "unknown-fixed",
        _with(fixed={"learning_rate": 0.1}),
        "fixed.learning_rate: unknown parameter",
    ),
    (
        "prob-out-of-range",
        _with(search={"p_mask": {"uniform": [0.1, 1.5]}}),
        "search.p_mask: p_mask is a probability; 1.5 is outside [0, 1]",
    ),
    (
        "fixed-prob-out-of-range",
        _with(fixed={"p_noise": -0.1}),
        "fixed.p_noise: p_noise is a probability",
    ),
    (
        "pi-cannot-sum",
        _with(search={"pi_audio": {"uniform": [0, 1]}}),
        "pi_audio and pi_vision follow from pi_text",
    ),
    (
        "pi-text-above-1",
        _with(search={"pi_text": {"choice": [0.5, 1.2]}}),
        "pi_text is a probability; 1.2 is outside",
    ),
    (
        "empty-grid",
        _with(
            algorithm={"type": "grid"}, scheduler={"type": "fifo"}, search={"p_mask": {"grid": []}}
        ),
        "grid: empty list of values",
    ),
    (
        "unknown-distribution",
        _with(search={"p_mask": {"normal": [0, 1]}}),
        "unknown key 'search.p_mask.normal'",
    ),
    (
        "two-distributions",
        _with(search={"p_mask": {"uniform": [0, 1], "choice": [0.1]}}),
        "give exactly one distribution",
    ),
    ("low-above-high", _with(search={"lr": {"loguniform": [1e-2, 1e-4]}}), "low must be < high"),
    (
        "loguniform-zero",
        _with(search={"lr": {"loguniform": [0, 1e-2]}}),
        "loguniform: low must be > 0",
    ),
    (
        "grid-with-optuna",
        _with(search={"p_mask": {"grid": [0.1, 0.2]}}),
        "grid values need algorithm: {type: grid}",
    ),
    (
        "asha-with-grid",
        _with(algorithm={"type": "grid"}, search={"p_mask": {"grid": [0.1]}}),
        "Use scheduler: {type: fifo}",
    ),
    ("seeds-with-optuna", _with(seeds=[0, 1]), "Optuna searches take one seed"),
    ("test-metric", _with(metric="test_mae"), "only known at the end"),
    ("unknown-algorithm", _with(algorithm={"type": "hyperopt"}), "'algorithm.type'"),
    ("missing-dataset-key", _with(dataset=None), "'dataset': Field required"),
    ("bad-simplex", _with(simplex={"audio_share": 2}), "audio_share must be a number in [0, 1]"),
    (
        "perturb-sum",
        _with(fixed={"p_missing": 0.7, "p_noise": 0.7}),
        "p_missing + p_noise must be <= 1",
    ),
    ("bad-scheme-value", _with(fixed={"scheme": "m4"}), "'scheme'"),
    ("not-a-mapping", ["a", "b"], "expected a mapping"),
]


@pytest.mark.parametrize("case,content,message", BAD_SPACES, ids=[c[0] for c in BAD_SPACES])
def test_invalid_space_files(tmp_path, case, content, message):
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(UserError) as err:
        load_space(str(path))
    assert message in str(err.value)
    assert str(path) in str(err.value) or "space" in str(err.value)


def test_unknown_named_space_and_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="did you mean 'demo'"):
        load_space("dmeo")
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_space(str(bad))


def _cli(*args, env_extra=None, tmp_path=None):
    import os

    env = {**os.environ, **(env_extra or {})}
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "tune_m3.search", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return out, time.perf_counter() - t0


def test_dry_run_lists_the_exact_grid_without_ray(tmp_path):
    out, _ = _cli(
        "--space", "m3_grid_mosei", "--dry-run", env_extra={"TUNE_M3_DATA_DIR": str(tmp_path)}
    )
    assert out.returncode == 0, out.stderr
    assert "trials: 40" in out.stdout
    assert out.stdout.count("pi_text=0.33  p_mask=0.25") == 5
    assert "dataset: MISSING" in out.stdout and "dry run: nothing trained" in out.stdout
    out, _ = _cli(
        "--space", "robust_grid_mosei", "--dry-run", env_extra={"TUNE_M3_DATA_DIR": str(tmp_path)}
    )
    assert "trials: 24" in out.stdout and "variant=15+15  model=mult  seed=2" in out.stdout


def test_missing_dataset_fails_before_ray(tmp_path):
    out, _ = _cli(
        "--space",
        "m3_mosei",
        env_extra={"TUNE_M3_DATA_DIR": str(tmp_path), "TUNE_M3_RESULTS": str(tmp_path / "r")},
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error: dataset 'mosei' is not in the store")
    assert "python -m tune_m3.data import" in out.stderr and "--dataset synth_mosei" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "r").exists()  # nothing written: no MLflow store, no Ray dir


@pytest.mark.parametrize(
    "args,message",
    [
        (["--space", "demo", "--set", "p_mak=0.1"], "unknown parameter (did you mean 'p_mask'?)"),
        (["--space", "demo", "--set", "p_mask"], "expected key=value"),
        (["--space", "demo", "--set", "p_mask=2"], "p_mask is a probability"),
        (["--space", "demo", "--num-samples", "0"], "--num-samples must be >= 1"),
        (["--space", "demo", "--gpus-per-trial", "-1"], "--gpus-per-trial must be >= 0"),
        (["--space", "nope.yaml"], "space file nope.yaml does not exist"),
    ],
)
def test_cli_user_errors(tmp_path, args, message):
    out, _ = _cli(*args, env_extra={"TUNE_M3_DATA_DIR": str(tmp_path)})
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_a_confirm_seed_that_also_trained_the_search_gets_a_note(tmp_path):
    """Allowed (the search-efficiency bench compares on the grid's seeds), but said aloud."""
    from pathlib import Path

    demo = Path(__file__).resolve().parent.parent / "search_spaces" / "demo.yaml"
    spec = yaml.safe_load(demo.read_text())
    spec["confirm"] = {"top_k": 2, "seeds": [0, 1, 2]}
    path = tmp_path / "overlap.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {"TUNE_M3_DATA_DIR": str(tmp_path), "TUNE_M3_RESULTS": str(tmp_path / "r")}
    out, _ = _cli("--space", str(path), "--dry-run", env_extra=env)
    assert out.returncode == 0, out.stderr
    assert "note: confirm seed(s) [0] also trained the search's trials" in out.stderr
    assert "confirm: {seeds: [1, 2, 3]}" in out.stderr
    out, _ = _cli("--space", "demo", "--dry-run", env_extra=env)  # seeds [1, 2]: no note
    assert out.returncode == 0 and "note: confirm" not in out.stderr


def test_repeated_seeds_are_refused(tmp_path):
    base = {"dataset": {"name": "tiny"}, "search": {"p_mask": {"grid": [0.1]}}}
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({**base, "algorithm": {"type": "grid"}, "seeds": [0, 1, 0]}))
    with pytest.raises(UserError, match=r"seeds.*\[0\] appear more than once"):
        load_space(str(grid))
    conf = tmp_path / "confirm.yaml"
    conf.write_text(yaml.safe_dump({**base, "confirm": {"top_k": 1, "seeds": [2, 2]}}))
    with pytest.raises(UserError, match=r"confirm.seeds.*\[2\] appear more than once"):
        load_space(str(conf))


@pytest.mark.parametrize(
    "spec,seeds",
    [
        ({}, {0}),
        ({"seeds": [4]}, {4}),
        ({"fixed": {"seed": 7}}, {7}),
        ({"search": {"seed": {"choice": [1, 2]}}}, {1, 2}),
        ({"search": {"seed": {"quniform": [0, 9, 1]}}}, None),
        (
            {
                "algorithm": {"type": "grid"},
                "scheduler": {"type": "fifo"},
                "seeds": [0, 1],
                "fixed": {"seed": 7},
            },
            {0, 1},
        ),
    ],
)
def test_training_seeds_follow_trial_values(tmp_path, spec, seeds):
    base = {"dataset": {"name": "tiny"}, "search": {"p_mask": {"uniform": [0.1, 0.2]}}}
    if spec.get("algorithm", {}).get("type") == "grid":
        base["search"] = {"p_mask": {"grid": [0.1]}}
    if "search" in spec:
        spec = {**spec, "search": {**base["search"], **spec["search"]}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**base, **spec}))
    space = load_space(str(path))
    assert space.training_seeds() == seeds
    if seeds is not None and len(seeds) == 1 and "search" not in spec:  # the law it mirrors
        assert space.trial_values({"p_mask": 0.1})["seed"] in seeds


def test_dry_run_into_a_closed_pipe_ends_without_a_traceback():
    """``python -m tune_m3.search --space X --dry-run | head -1``: the reader leaves early; the
    command ends with 141 (SIGPIPE's code) and prints no traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "tune_m3.search", "--space", "m3_grid_mosei", "--dry-run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    proc.stdout.readline()
    proc.stdout.close()  # like `head -1`
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
