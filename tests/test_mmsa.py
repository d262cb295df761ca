"""The MMSA zoo by name (``mmsa:TFN``, ``mmsa:MFN``, ...): MMSA 2.2.1's own models, unmodified.

Skipped where the optional extra is not installed (``pip install -e '.[mmsa]'``), except the
test that its absence is one clear error.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_arrays
from searchutil import make_search_env
from test_modality_hooks import PROBS, positive_batch

from tune_m3.config import make_config
from tune_m3.errors import UserError
from tune_m3.models.law import zeroed_per_sample
from tune_m3.models.seam import build_model, check_model_spec, model_defaults
from tune_m3.names import MODALITIES, length_key
from tune_m3.training import train

pytestmark = pytest.mark.usefixtures("one_thread")

MOSI = {"text": 300, "audio": 5, "vision": 20}
MOSEI = {"text": 300, "audio": 74, "vision": 35}
SUBNET_ZOO = ["mmsa:TFN", "mmsa:LMF", "mmsa:LF_DNN"]  # per-modality hooks at their subnets
ALIGNED_ONLY = ["mmsa:EF_LSTM", "mmsa:Graph_MFN", "mmsa:MFM"]  # MMSA's need_data_aligned
RECURRENT = ["mmsa:MFN", *ALIGNED_ONLY]  # aligned first, as MMSA's AMIO does
INPUT_ZOO = ["mmsa:MulT", *RECURRENT]  # M3 at the input
ZOO = [*SUBNET_ZOO, *INPUT_ZOO]
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
@pytest.mark.parametrize("model", INPUT_ZOO)
@pytest.mark.parametrize("dims", [MOSI, MOSEI], ids=["mosi", "mosei"])
def test_zoo_model_builds_and_the_m3_law_holds_at_its_input(model, dims):
    """Build and check at MOSI / MOSEI dims; P(l zeroed) = pM * pi_l in what the model
    receives (sample units), never two at once."""
    conf = zoo_cfg(model, scheme="m3", p_mask=0.6, granularity="sample")
    check_model_spec(conf, dims)
    net = build_model(conf, dims)
    assert net.augment_at == "input"
    mods, lengths = positive_batch(3000, {"text": 6, "audio": 6, "vision": 6}, dims)
    zero = zeroed_per_sample(net, mods, lengths)  # (B, 3)
    assert int((zero.sum(1) > 1).sum()) == 0
    for k, p in enumerate(PROBS):
        rate, q = zero[:, k].double().mean().item(), 0.6 * p
        assert abs(rate - q) < 4 * (q * (1 - q) / 3000) ** 0.5, (k, rate)


def unaligned_data() -> dict:
    from test_seam import unaligned_split

    return {
        s: unaligned_split(n=24, steps=(5, 9, 7), seed=i)
        for i, s in enumerate(("train", "valid", "test"))
    }


@needs_mmsa
@pytest.mark.parametrize("model", ZOO)
@pytest.mark.parametrize("aligned", [True, False])
def test_zoo_model_trains_an_epoch_with_diagnostics(model, aligned):
    """Unaligned features: MMSA's AlignSubNet aligns them where MMSA wants aligned data."""
    data = tiny_arrays(n=(40, 16, 16)) if aligned else unaligned_data()
    own = {"model.need_data_aligned": False} if model in ALIGNED_ONLY and not aligned else {}
    conf = zoo_cfg(
        model,
        scheme="m3",
        p_mask=0.3,
        p_noise=0.2,
        max_epochs=1,
        batch_size=8,
        diag_fractions=(0.3,),
        threads=1,
        **own,
    )
    res = train(conf, data)
    assert np.isfinite(res.final["test_mae"])
    assert np.isfinite(res.final["diag_test_text_noisy_30_corr_drop"])
    if model in SUBNET_ZOO:  # sigma 'auto': rms at the subnets, absolute at the input
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
@pytest.mark.parametrize("model", ALIGNED_ONLY)
def test_aligned_only_models_refuse_unaligned_features_at_the_check(model):
    with pytest.raises(UserError, match=r"text 5, audio 9, vision 7.*need_data_aligned=false"):
        check_model_spec(zoo_cfg(model), MOSI, {"text": 5, "audio": 9, "vision": 7})


@needs_mmsa
def test_ef_lstm_pads_to_its_steps_and_refuses_longer_data():
    """Its BatchNorm1d has one channel per step: shorter batches get zero steps in front."""
    conf = zoo_cfg("mmsa:EF_LSTM", **{"model.seq_lens": 12, "model.hidden_dims": 8})
    check_model_spec(conf, MOSI, {m: 12 for m in MODALITIES})
    net = build_model(conf, MOSI).eval()
    mods, lengths = positive_batch(4, {m: 5 for m in MODALITIES}, MOSI)
    padded = {m: torch.cat([torch.zeros(4, 7, d), mods[m]], 1) for m, d in MOSI.items()}
    torch.testing.assert_close(net(mods, lengths), net(padded, lengths))
    with pytest.raises(UserError, match=r"built for 12 steps.*--set model.seq_lens=13"):
        check_model_spec(conf, MOSI, {m: 13 for m in MODALITIES})


@needs_mmsa
def test_graph_mfn_keeps_its_fusion_graph_nodes_frozen_as_in_mmsa():
    """MMSA's DynamicFusionGraph keeps its node networks in a dict: MMSA never trains them."""
    net = build_model(zoo_cfg("mmsa:Graph_MFN"), MOSI).net
    nodes = list(net.model.graph_mfn.networks.values())
    assert [id(m) for m in net.graph_nodes] == [id(m) for m in nodes]
    assert not any(p.requires_grad for m in nodes for p in m.parameters())
    assert any(k.startswith("graph_nodes.") for k in net.state_dict())  # checkpointed


@needs_mmsa
def test_mfm_adds_its_losses_with_mmsas_weights():
    """loss = L1 + gen_loss + lda_mmd * mmd_loss, MMSA's trainer's sum (lda_mmd: 100 on MOSI)."""
    model = build_model(zoo_cfg("mmsa:MFM"), MOSI).train()
    assert model.aux_losses == {"gen_loss": 1.0, "mmd_loss": 100.0}
    mods, lengths = positive_batch(4, {m: 5 for m in MODALITIES}, MOSI)
    out = {}
    model.net.register_forward_hook(lambda mod, a, o: out.update(o))
    torch.manual_seed(0)
    model(mods, lengths)
    torch.testing.assert_close(model.aux_loss, out["gen_loss"] + 100.0 * out["mmd_loss"])
    mine = build_model(zoo_cfg("mmsa:MFM", aux_losses={"gen_loss": 0.5}), MOSI)
    assert mine.aux_losses == {"gen_loss": 0.5}  # a configured aux_losses replaces them
    # what a trial's MLflow params say, without building the model
    assert model_defaults(zoo_cfg("mmsa:MFM"), MOSI)["aux_losses"] == "gen_loss=1,mmd_loss=100"
    lda = model_defaults(zoo_cfg("mmsa:MFM", model_kwargs={"lda_mmd": 3.0}), MOSI)
    assert lda["aux_losses"] == "gen_loss=1,mmd_loss=3"
    assert "aux_losses" not in model_defaults(
        zoo_cfg("mmsa:MFM", aux_losses={"gen_loss": 0.5}), MOSI
    )


@needs_mmsa
def test_mctns_refusal_holds_its_predictions_mix_the_samples_of_a_batch():
    """MMSA's MCTN gives its time-first LSTMs batch-first tensors: one sample changed, the
    other samples' predictions change. If an MMSA release fixes that, offer MCTN instead."""
    from MMSA import config
    from MMSA.models.singleTask import MCTN

    args = config.get_config_regression("mctn", "mosi")
    args.update(feature_dims=[8, 4, 3], output_dim=8, train_mode="regression")
    torch.manual_seed(0)
    net = MCTN(args).eval()
    net.seq2seq1.device = net.seq2seq2.device = "cpu"  # MMSA hard-codes "cuda"
    xs, y = [torch.randn(4, 5, d) for d in (8, 4, 3)], torch.zeros(4, 1)
    with torch.no_grad():
        before = net(*xs, y, None)[1]
        xs[0][3] += 1.0  # sample 3's text only
        after = net(*xs, y, None)[1]
    assert not torch.allclose(before[:3], after[:3])


@needs_mmsa
def test_zoo_names_refused_with_one_line():
    with pytest.raises(UserError, match="'mmsa:MISA': not offered: its text encoder is BERT"):
        check_model_spec(zoo_cfg("mmsa:MISA"))
    with pytest.raises(UserError, match="'mmsa:MTFN': not offered: MMSA configures it for CH-SIMS"):
        check_model_spec(zoo_cfg("mmsa:MTFN"))
    with pytest.raises(UserError, match="'mmsa:MCTN': not offered: .* along the batch axis"):
        check_model_spec(zoo_cfg("mmsa:MCTN"))
    with pytest.raises(UserError, match="did you mean 'mmsa:TFN'"):
        check_model_spec(zoo_cfg("mmsa:TNF"))
    with pytest.raises(UserError, match="no config key.*'hiden_dims'"):
        check_model_spec(zoo_cfg("mmsa:TFN", **{"model.hiden_dims": [1, 2, 3]}))


def _dry_run(env: dict, tmp_path: Path, dataset: str, model: str) -> subprocess.CompletedProcess:
    """``python -m tune_m3.search --dry-run`` of a 2-trial Optuna space over ``model``."""
    space = tmp_path / "zoo.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "dataset": {"name": dataset},
                "model": model,
                "fixed": {"max_epochs": 1},
                "search": {"p_mask": {"uniform": [0.0, 0.3]}},
                "algorithm": {"type": "optuna", "seed": 0},
                "num_samples": 2,
            }
        )
    )
    return subprocess.run(
        [sys.executable, "-m", "tune_m3.search", "--space", str(space), "--dry-run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_zoo_without_the_extra_says_how_to_install_it(tmp_path: Path):
    """A search --dry-run over mmsa:TFN where MMSA cannot be imported: one error line, exit 2."""
    env = make_search_env(tmp_path)
    fake = tmp_path / "no_mmsa" / "MMSA"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'MMSA'\")\n")
    env["PYTHONPATH"] = f"{fake.parent}:{env.get('PYTHONPATH', '')}"
    out = _dry_run(env, tmp_path, "tiny", "mmsa:TFN")
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    assert "pip install -e '.[mmsa]'" in out.stderr


def _write_unaligned(store: Path) -> None:
    """``unaligned_data()`` as dataset 'tiny_unaligned' (SYNTHETIC) in ``store``."""
    from tune_m3.data.formats import CanonicalSplit
    from tune_m3.data.store import write_dataset

    splits = {}
    for s, a in unaligned_data().items():
        own = {m: a[length_key(m)].astype(np.int32) for m in MODALITIES}
        splits[s] = CanonicalSplit(
            features={m: a[m] for m in MODALITIES},
            labels=np.clip(a["labels"], -3, 3),
            ids=np.arange(len(a["labels"])).astype(str),
            lengths=own["text"],
            modality_lengths=own,
        )
    source = {"kind": "synthetic", "fingerprint": "tiny_unaligned"}
    write_dataset(store, "tiny_unaligned", splits, synthetic=True, source=source)


@needs_mmsa
def test_dry_run_refuses_an_aligned_only_model_on_unaligned_data(tmp_path: Path):
    """mmsa:Graph_MFN over unaligned features: --dry-run says so in one line, exit 2."""
    env = make_search_env(tmp_path)
    _write_unaligned(Path(env["TUNE_M3_DATA_DIR"]))
    out = _dry_run(env, tmp_path, "tiny_unaligned", "mmsa:Graph_MFN")
    assert out.returncode == 2, out.stderr[-2000:]
    assert (
        out.stderr.startswith("error: model 'mmsa:Graph_MFN': ") and "Traceback" not in out.stderr
    )
    assert out.stderr.count("\n") == 1 and "--set model.need_data_aligned=false" in out.stderr


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
    # where the model decides (augment_at, output_key unset), its run says what it decided
    hooks = "text=model.text_subnet,audio=model.audio_subnet,vision=model.video_subnet"
    assert tfn.data.params["augment_at"] == hooks and tfn.data.params["output_key"] == "M"
    assert by_model["mult"].data.params["augment_at"] == "crossmodal"
    assert "diag_test_text_missing_30_corr_drop" in tfn.data.metrics
    assert np.isfinite(tfn.data.metrics["test_mae"])
