"""The model seam: any nn.Module gets M3 / perturbation at its hook, diagnostics, checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_arrays
from searchutil import TINY_FIXED, make_search_env, mlflow_runs, run_search, write_space
from torch import nn

from tune_m3.batches import batch_tensors
from tune_m3.config import make_config
from tune_m3.errors import UserError
from tune_m3.models.seam import build_model, check_model_spec, fake_batch
from tune_m3.names import MODALITIES, length_key
from tune_m3.training import load_checkpoint, train
from tune_m3.training.diagnostics import perturbed_order, run_diagnostics

pytestmark = pytest.mark.usefixtures("one_thread")

DIMS = {"text": 8, "audio": 4, "vision": 3}


class Mixer(nn.Module):
    """Takes a dict {modality: (B, N_l, h)}; mean over time and modalities -> (B, h)."""

    def forward(self, seqs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([s.mean(1) for s in seqs.values()]).mean(0)


class DictSeq(nn.Module):
    """The second user model: its hook (``mixer``) takes a dict of sequences; a head follows."""

    augment_at = "mixer"

    def __init__(self, input_dims, width: int = 6):
        super().__init__()
        self.proj = nn.ModuleDict({m: nn.Linear(d, width) for m, d in input_dims.items()})
        self.mixer = Mixer()
        self.head = nn.Linear(width, 1)

    def forward(self, mods, lengths):
        seqs = {m: torch.tanh(p(mods[m])) + 2.0 for m, p in self.proj.items()}  # never zero
        return self.head(self.mixer(seqs))  # (B, 1)


def cfg(model="test_seam:DictSeq", **kw):
    return make_config({"model": model, "seed": 0, **kw})


def spy_on(model):
    """Record the arguments the hooked module receives (after the augmentation)."""
    seen = []
    target = model.net if model.augment_at == "input" else model.net.get_submodule(model.augment_at)
    target.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    return seen


@pytest.mark.parametrize(
    ("model", "kind"),
    [("test_seam:DictSeq", "dict"), ("user_models:LateFusion", "list"), ("mult", "list")],
)
def test_masking_law_at_a_user_models_hook(model, kind):
    """P(modality l zeroed) = pM * pi_l, measured on what the user's hooked module receives."""
    probs, p_mask = (0.5, 0.3, 0.2), 0.6
    small = {"model.d": 4, "model.heads": 2, "model.layers": 1} if model == "mult" else {}
    c = cfg(model, scheme="m3", p_mask=p_mask, pi_text=0.5, pi_audio=0.3, pi_vision=0.2, **small)
    net = build_model(c, DIMS).train()
    seen = spy_on(net)
    mods, lengths = fake_batch(DIMS, {"text": 5, "audio": 9, "vision": 3}, B=3000)
    for m in MODALITIES:  # no padding, no zero inputs: a zero at the hook is a mask
        mods[m] = mods[m].abs() + 1
        lengths[m][:] = mods[m].shape[1]
    net(mods, lengths)
    got = seen[0]
    tensors = [got[m] for m in MODALITIES] if kind == "dict" else list(got)
    assert isinstance(got, dict if kind == "dict" else list)
    for t, pi in zip(tensors, probs, strict=True):
        zeroed = (t == 0).all(-1).float()  # (B, N) or (B,)
        assert abs(zeroed.mean().item() - p_mask * pi) < 0.02, (zeroed.mean(), p_mask * pi)
    net.eval()
    seen.clear()
    net(mods, lengths)
    after = seen[0].values() if kind == "dict" else seen[0]
    assert not any((t == 0).all(-1).any() for t in after)  # eval: nothing masked


def test_perturbation_at_the_input_hook_respects_each_modalitys_padding():
    c = cfg("user_models:LateFusion", augment_at="input", p_missing=0.25, p_noise=0.5, sigma=1.0)
    c = c.model_copy(update={"perturb_target": "audio"})
    net = build_model(c, DIMS).train()
    seen = spy_on(net)
    mods, lengths = fake_batch(DIMS, {"text": 4, "audio": 7, "vision": 2}, B=8)
    net(mods, lengths)
    audio = seen[0]["audio"]  # (8, 7, 4)
    assert ((audio == 0).all(-1).all(-1)).sum() == 2  # exactly round(0.25 * 8) samples missing
    assert torch.all(audio[1, :1] == 0)  # sample 1 is front-padded by one step: stays zero
    assert torch.equal(seen[0]["text"], mods["text"])


def test_bad_hook_and_output_shapes_are_user_errors():
    class Flat(nn.Module):
        augment_at = "mixer"

        def __init__(self, input_dims):
            super().__init__()
            self.mixer = nn.Identity()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, mods, lengths):
            return self.mixer(torch.cat([m.mean(1) for m in mods.values()], -1)).sum(-1)

    class Wide(DictSeq):
        def forward(self, mods, lengths):
            return super().forward(mods, lengths).expand(-1, 2)  # (B, 2)

    class Twice(DictSeq):
        def forward(self, mods, lengths):
            seqs = {m: p(mods[m]) for m, p in self.proj.items()}
            return self.head(self.mixer(seqs) + self.mixer(seqs))

    import test_seam as me

    me.Flat, me.Wide, me.Twice = Flat, Wide, Twice
    with pytest.raises(UserError, match="'mixer' ran 2 times in one forward"):
        check_model_spec(cfg("test_seam:Twice"), DIMS)
    with pytest.raises(UserError, match="'proj' ran 0 times"):  # a ModuleDict is never called
        check_model_spec(cfg(augment_at="proj"), DIMS)
    with pytest.raises(UserError, match="first positional argument"):
        check_model_spec(cfg("test_seam:Flat"), DIMS)
    with pytest.raises(UserError, match=r"returned \(4, 2\)"):
        check_model_spec(cfg("test_seam:Wide"), DIMS)
    with pytest.raises(UserError, match="names no submodule.*proj, mixer, head"):
        check_model_spec(cfg(augment_at="mixr"), DIMS)
    with pytest.raises(UserError, match="failed: .*unexpected keyword argument 'widht'"):
        check_model_spec(cfg(**{"model.widht": 3}), DIMS)
    with pytest.raises(UserError, match="did you mean 'mult'"):
        check_model_spec(cfg("mul"), DIMS)
    with pytest.raises(UserError, match="not a torch.nn.Module"):
        check_model_spec(cfg("test_seam:cfg"), DIMS)
    with pytest.raises(UserError, match="cannot import module 'no_such_mod'"):
        check_model_spec(cfg("no_such_mod:X"), DIMS)


def test_check_touches_no_global_rng():
    before = torch.get_rng_state()
    check_model_spec(cfg(scheme="m3", p_mask=0.3), DIMS)
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("model", ["test_seam:DictSeq", "user_models:LateFusion"])
def test_diagnostics_at_the_hook_equal_a_naive_full_pass(model):
    """Terminal hook (LateFusion's fuse: shortcut) and non-terminal (DictSeq's mixer: reruns)."""
    test = tiny_arrays()["test"]
    net = build_model(cfg(model), DIMS).eval()
    res, clean = run_diagnostics(net, test, fractions=(0.3,), modalities=("audio",))
    n = len(test["labels"])
    pick = torch.from_numpy(perturbed_order(n, 1234)[: round(0.3 * n)])

    def zero_audio_of_picked(seq, lens):
        out = list(seq)
        keep = torch.ones(n, 1, 1)
        keep[pick] = 0
        out[1] = seq[1] * keep
        return out

    with torch.no_grad(), net.intervene(zero_audio_of_picked):
        mods, lengths, _ = batch_tensors(test, np.arange(n), MODALITIES, "cpu")
        naive = net(mods, lengths).double().numpy()
    from tune_m3.metrics import compute_metrics

    expect = compute_metrics(naive, test["labels"])
    assert np.isclose(res["diag_test_audio_missing_30_mae"], expect["mae"], atol=1e-5)
    assert res["diag_test_audio_noisy_30_mae"] != res["test_mae"]


def test_user_model_trains_and_resumes_bit_identically(tmp_path):
    data = tiny_arrays()
    conf = dict(
        model="user_models:LateFusion",
        scheme="m3",
        p_mask=0.3,
        p_missing=0.2,
        p_noise=0.1,
        batch_size=16,
        lr=5e-3,
        threads=1,
        diag_fractions=(0.3,),
    )
    full = train(make_config({**conf, "max_epochs": 3}), data)
    ck = tmp_path / "ck"
    train(make_config({**conf, "max_epochs": 1}), data, checkpoint_dir=ck, final_eval=False)
    assert load_checkpoint(ck)["augment_rng"]  # the masking and perturbation generators
    resumed = train(make_config({**conf, "max_epochs": 3}), data, resume_from=ck)
    strip = [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in full.history]
    assert strip == [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in resumed.history]
    assert full.final == resumed.final


def unaligned_split(n=6, steps=(5, 9, 3), seed=0, own_lengths=True):
    """Front-padded arrays, a different L per modality; valid steps = the last lengths[b]."""
    rng = np.random.default_rng(seed)
    out = {"labels": rng.standard_normal(n).astype(np.float32)}
    for m, L, d in zip(MODALITIES, steps, DIMS.values(), strict=True):
        lens = rng.integers(1, L, size=n)
        lens[0] = L - 1  # nobody fills L: the batch trims one step
        x = rng.standard_normal((n, L, d)).astype(np.float32)
        x[~np.arange(L)[None, :] >= (L - lens[:, None])] = 0
        out[m] = x
        if own_lengths:
            out[length_key(m)] = lens
    out["lengths"] = out.get(length_key("text"), np.full(n, steps[0] - 1))
    return out


def test_batches_trim_each_modality_by_its_own_lengths():
    arr = unaligned_split()
    idx = np.array([0, 2, 3])
    mods, lens, y = batch_tensors(arr, idx, MODALITIES, "cpu")
    for m in MODALITIES:
        own = arr[length_key(m)][idx]
        assert mods[m].shape[1] == own.max()
        np.testing.assert_array_equal(lens[m].numpy(), own)
        np.testing.assert_array_equal(mods[m].numpy(), arr[m][idx, -own.max() :])
    # without per-modality columns (aligned data), every modality uses `lengths`
    aligned = {k: v for k, v in arr.items() if not k.startswith("lengths_")}
    aligned.update({m: np.zeros((6, 5, d), np.float32) for m, d in DIMS.items()})
    _, lens, _ = batch_tensors(aligned, idx, MODALITIES, "cpu")
    for m in MODALITIES:
        np.testing.assert_array_equal(lens[m].numpy(), arr["lengths"][idx])


@pytest.mark.parametrize(
    "model",
    [{"model": "user_models:LateFusion"}, {"model": "mult", "model.d": 4, "model.heads": 2}],
)
def test_models_train_on_unaligned_arrays(model):
    data = {s: unaligned_split(n=16, seed=i) for i, s in enumerate(("train", "valid", "test"))}
    res = train(
        make_config(
            {**model, "scheme": "m3", "p_mask": 0.3, "max_epochs": 2, "diag_fractions": (0.3,)}
            | {"threads": 1, "p_noise": 0.2, "perturb_target": "vision"}
        ),
        data,
    )
    assert np.isfinite(res.final["test_mae"]) and "diag_test_vision_noisy_30_mae" in res.final


def test_config_model_keys_and_params():
    c = make_config({"model": "mult", "model.d": 16, "augment_at": "input"})
    assert c.model_kwargs == {"d": 16}
    p = c.params()
    assert p["model"] == "mult" and p["model.d"] == 16 and "model_kwargs" not in p
    legacy = make_config({"hidden": 8, "proj": 8})  # the flat names of before the seam
    assert legacy.model_kwargs == {"hidden": 8, "proj": 8}
    assert legacy.params()["model.hidden"] == 8
    with pytest.raises(UserError, match="did you mean 'augment_at'"):
        make_config({"augment_a": "input"}, where="--set")


TESTS = Path(__file__).resolve().parent


def test_train_cli_runs_a_user_model_from_the_working_directory(tmp_path):
    """The docs' worked example, as a user runs it: `python -m tune_m3.train` in its directory."""
    (tmp_path / "user_models.py").write_text((TESTS / "user_models.py").read_text())
    env = make_search_env(tmp_path / "w")
    args = ["--dataset", "tiny", "--epochs", "2", "--set", "threads=1"]
    args += ["--set", "model=user_models:LateFusion", "--set", "model.hidden=16"]
    args += ["--set", "scheme=m3", "--set", "p_mask=0.3", "--set", "diag_fractions=[0.3]"]
    out = subprocess.run(
        [sys.executable, "-m", "tune_m3.train", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "test: " in out.stdout and "text missing" in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "aug", [{"scheme": "m3", "p_mask": 0.3}, {"p_missing": 0.15, "p_noise": 0.15}]
)
def test_search_end_to_end_with_a_user_model(tmp_path, aug):
    """2 trials x 2 epochs of the worked example; child runs carry model and its kwargs."""
    (tmp_path / "user_models.py").write_text((TESTS / "user_models.py").read_text())
    env = make_search_env(tmp_path / "w")
    fixed = {k: v for k, v in TINY_FIXED.items() if k not in ("hidden", "proj")}
    space = write_space(
        tmp_path / "user.yaml",
        model={"class": "user_models:LateFusion", "kwargs": {"dropout": 0.0}},
        fixed={**fixed, **aug, "max_epochs": 2},
        search={"model.hidden": {"choice": [8, 16]}, "lr": {"loguniform": [1e-3, 1e-2]}},
        algorithm={"type": "optuna", "seed": 0},
        scheduler={"type": "fifo"},
        num_samples=2,
    )
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the user's directory: where user_models.py is
    try:
        run_search(env, "--space", str(space), "--experiment", "user_model")
    finally:
        os.chdir(cwd)
    _, _, children = mlflow_runs(env, "user_model")
    assert len(children) == 2
    for r in children:
        assert r.data.params["model"] == "user_models:LateFusion"
        assert r.data.params["model.hidden"] in ("8", "16")
        assert r.data.params["model.dropout"] == "0.0"
        assert "diag_test_text_missing_30_corr_drop" in r.data.metrics


def test_docs_worked_example_is_the_tested_user_model():
    docs = (TESTS.parent / "docs" / "models.md").read_text()
    code = (TESTS / "user_models.py").read_text().split('"""', 2)[2].lstrip("\n")
    assert f"```python\n{code}```" in docs, "docs/models.md and tests/user_models.py differ"
