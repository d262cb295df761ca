"""The MMSA zoo by name (``mmsa:TFN``, ``mmsa:LMF``): MMSA 2.2.1's own models, unmodified.

Skipped where the optional extra is not installed (``pip install -e '.[mmsa]'``), except the
test that its absence is one clear error.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import tiny_arrays
from searchutil import make_search_env
from test_modality_hooks import PROBS, positive_batch

from tune_m3.config import make_config
from tune_m3.errors import UserError
from tune_m3.models.law import zeroed_per_sample
from tune_m3.models.seam import build_model, check_model_spec
from tune_m3.names import MODALITIES
from tune_m3.training import train

pytestmark = pytest.mark.usefixtures("one_thread")

MOSI = {"text": 300, "audio": 5, "vision": 20}
MOSEI = {"text": 300, "audio": 74, "vision": 35}
SUBNET_ZOO = ["mmsa:TFN", "mmsa:LMF", "mmsa:LF_DNN"]  # per-modality hooks at their subnets
ZOO = [*SUBNET_ZOO, "mmsa:MulT"]
SUBNETS = {"text": "text_subnet", "audio": "audio_subnet", "vision": "video_subnet"}


def _have_mmsa() -> bool:
    try:
        import MMSA  # noqa: F401
    except ImportError:
        return False
    return True


needs_mmsa = pytest.mark.skipif(not _have_mmsa(), reason="the mmsa extra is not installed")


def zoo_cfg(model: str, **kw):
    probs = dict(zip(("pi_text", "pi_audio", "pi_vision"), PROBS, strict=True))
    return make_config({"model": model, "seed": 0, **probs, **kw})


@needs_mmsa
@pytest.mark.parametrize("model", SUBNET_ZOO)
@pytest.mark.parametrize("dims", [MOSI, MOSEI], ids=["mosi", "mosei"])
def test_zoo_model_builds_and_the_m3_law_holds_at_its_subnets(model, dims):
    """Build at MOSI / MOSEI dims; P(l zeroed) = pM * pi_l at the subnets, never two at once."""
    small = {"text": 12, "audio": dims["audio"], "vision": dims["vision"]}  # narrow text: fast
    conf = zoo_cfg(model, scheme="m3", p_mask=0.6, **{"model.dropouts": [0.0] * 4})
    check_model_spec(conf, dims)
    net = build_model(conf, small)
    assert net.augment_at == ",".join(f"{m}=model.{SUBNETS[m]}" for m in MODALITIES)
    mods, lengths = positive_batch(3000, {"text": 6, "audio": 9, "vision": 7}, small)
    zero = zeroed_per_sample(net, mods, lengths)  # (B, 3)
    assert int((zero.sum(1) > 1).sum()) == 0
    for k, p in enumerate(PROBS):
        rate, q = zero[:, k].double().mean().item(), 0.6 * p
        assert abs(rate - q) < 4 * (q * (1 - q) / 3000) ** 0.5, (k, rate)


@needs_mmsa
@pytest.mark.parametrize("model", ZOO)
@pytest.mark.parametrize("aligned", [True, False])
def test_zoo_model_trains_an_epoch_with_diagnostics(model, aligned):
    from test_seam import unaligned_split

    if aligned:
        data = tiny_arrays(n=(40, 16, 16))
    else:
        data = {
            s: unaligned_split(n=24, steps=(5, 9, 7), seed=i)
            for i, s in enumerate(("train", "valid", "test"))
        }
    conf = zoo_cfg(
        model,
        scheme="m3",
        p_mask=0.3,
        p_noise=0.2,
        max_epochs=1,
        batch_size=8,
        diag_fractions=(0.3,),
        threads=1,
    )
    res = train(conf, data)
    assert np.isfinite(res.final["test_mae"])
    assert np.isfinite(res.final["diag_test_text_noisy_30_corr_drop"])
    if model in SUBNET_ZOO:  # sigma 'auto': rms at the subnets, absolute at MulT's input
        assert res.final["diag_noise_rms_text"] > 0
    else:
        assert "diag_noise_rms_text" not in res.final


@needs_mmsa
@pytest.mark.parametrize("dims", [MOSI, MOSEI], ids=["mosi", "mosei"])
def test_mult_builds_with_its_hook_at_the_input(dims):
    conf = zoo_cfg("mmsa:MulT", scheme="m3", p_mask=0.3)
    check_model_spec(conf, dims, {"text": 50, "audio": 500, "vision": 375})  # MMSA's unaligned
    assert build_model(conf, dims).augment_at == "input"


@needs_mmsa
def test_zoo_names_refused_with_one_line():
    with pytest.raises(UserError, match="'mmsa:MISA': not offered: its text encoder is BERT"):
        check_model_spec(zoo_cfg("mmsa:MISA"))
    with pytest.raises(UserError, match="'mmsa:MTFN': not offered: MMSA configures it for CH-SIMS"):
        check_model_spec(zoo_cfg("mmsa:MTFN"))
    with pytest.raises(UserError, match="did you mean 'mmsa:TFN'"):
        check_model_spec(zoo_cfg("mmsa:TNF"))
    with pytest.raises(UserError, match="no config key.*'hiden_dims'"):
        check_model_spec(zoo_cfg("mmsa:TFN", **{"model.hiden_dims": [1, 2, 3]}))


def test_zoo_without_the_extra_says_how_to_install_it(tmp_path: Path):
    """A search --dry-run over mmsa:TFN where MMSA cannot be imported: one error line, exit 2."""
    env = make_search_env(tmp_path)
    fake = tmp_path / "no_mmsa" / "MMSA"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'MMSA'\")\n")
    env["PYTHONPATH"] = f"{fake.parent}:{env.get('PYTHONPATH', '')}"
    space = tmp_path / "zoo.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "dataset": {"name": "tiny"},
                "model": "mmsa:TFN",
                "fixed": {"max_epochs": 1},
                "search": {"p_mask": {"uniform": [0.0, 0.3]}},
                "algorithm": {"type": "optuna", "seed": 0},
                "num_samples": 2,
            }
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "tune_m3.search", "--space", str(space), "--dry-run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    assert "pip install -e '.[mmsa]'" in out.stderr


@needs_mmsa
@pytest.mark.slow
def test_search_over_the_zoo_in_a_grid_with_the_built_ins(tmp_path: Path):
    """model: {grid: [m3_baseline, mult, mmsa:TFN]} with M3 at each model's default hook; the
    child runs name the model (and the zoo model's hooks)."""
    from searchutil import TINY_FIXED, mlflow_runs, run_search, write_space

    env = make_search_env(tmp_path / "w")
    fixed = {k: v for k, v in TINY_FIXED.items() if k not in ("hidden", "proj")}
    space = write_space(
        tmp_path / "zoo.yaml",
        fixed={**fixed, "scheme": "m3", "p_mask": 0.3, "max_epochs": 1},
        search={"model": {"grid": ["m3_baseline", "mult", "mmsa:TFN"]}},
        algorithm={"type": "grid"},
        scheduler={"type": "fifo"},
    )
    run_search(env, "--space", str(space), "--experiment", "zoo")
    _, _, children = mlflow_runs(env, "zoo")
    by_model = {r.data.params["model"]: r for r in children}
    assert sorted(by_model) == ["m3_baseline", "mmsa:TFN", "mult"]
    tfn = by_model["mmsa:TFN"]
    assert "diag_test_text_missing_30_corr_drop" in tfn.data.metrics
    assert np.isfinite(tfn.data.metrics["test_mae"])
