"""ModalityPerturbation (NAACL 2022 robust training) and AugmentPipeline."""

from __future__ import annotations

import pytest
import torch

from tune_m3.augment import AugmentPipeline, ModalityMasking, ModalityPerturbation

DIMS = (8, 3, 5)


def batch(b=20, n=6, dims=DIMS, offset=5.0):
    # offset keeps every clean value far from 0, so "zeroed" and "noised" are easy to tell apart
    g = torch.Generator().manual_seed(0)
    return [torch.rand(b, n, d, generator=g) + offset for d in dims]


def classify(x, out):
    """(missing, noisy, clean) sample-index sets of the target modality."""
    missing = {i for i in range(x.shape[0]) if torch.all(out[i] == 0)}
    changed = {i for i in range(x.shape[0]) if not torch.equal(out[i], x[i])}
    return missing, changed - missing, set(range(x.shape[0])) - changed


@pytest.mark.parametrize(
    ("b", "p_missing", "p_noise", "k_missing", "k_noise"),
    [
        (20, 0.15, 0.25, 3, 5),
        (32, 0.15, 0.15, 5, 5),  # the paper's "total 30 %" at batch size 32
        (10, 0.05, 0.05, 1, 1),  # 0.5 rounds half up, not to even
        (7, 0.5, 0.5, 4, 3),  # k_noise capped at B - k_missing
        (16, 0.0, 0.3, 0, 5),
        (16, 1.0, 0.0, 16, 0),
    ],
)
def test_exact_counts_and_disjoint_sets(b, p_missing, p_noise, k_missing, k_noise):
    mods = batch(b)
    layer = ModalityPerturbation(p_missing, p_noise, sigma=1.0, target=0, seed=0).train()
    assert layer.counts(b) == (k_missing, k_noise)
    for _ in range(3):
        out = layer(mods)
        missing, noisy, clean = classify(mods[0], out[0])
        assert (len(missing), len(noisy)) == (k_missing, k_noise)
        assert len(clean) == b - k_missing - k_noise
        # other modalities are untouched
        assert torch.equal(out[1], mods[1]) and torch.equal(out[2], mods[2])


def test_last_indices_tell_which_samples_forward_perturbed():
    mods = batch(24)
    layer = ModalityPerturbation(0.25, 0.25, seed=3).train()
    twin = ModalityPerturbation(0.25, 0.25, seed=3)
    assert layer.last_indices is None
    for i in range(3):
        out = layer(mods)
        missing_idx, noisy_idx = layer.last_indices
        assert set(missing_idx.tolist()).isdisjoint(noisy_idx.tolist())
        missing, noisy, _ = classify(mods[0], out[0])
        assert missing == set(missing_idx.tolist())
        assert noisy == set(noisy_idx.tolist())
        if i == 0:  # forward draws the indices first, so a same-seed twin reproduces them
            twin_missing, twin_noisy = twin.sample_indices(24)
            assert torch.equal(twin_missing, missing_idx) and torch.equal(twin_noisy, noisy_idx)


def test_noise_has_standard_deviation_sigma_and_zero_mean():
    mods = [torch.ones(64, 50, 32), torch.ones(64, 50, 2)]
    layer = ModalityPerturbation(0.0, 0.5, sigma=2.5, target=0, seed=1).train()
    out = layer(mods)
    _, noisy_idx = layer.last_indices
    noise = out[0][noisy_idx] - 1.0
    assert abs(noise.std().item() - 2.5) < 0.05
    assert abs(noise.mean().item()) < 0.05


def test_noise_only_on_valid_steps_when_lengths_given():
    b, n = 16, 9
    lengths = torch.tensor([9, 1, 4, 7] * 4)
    mods = batch(b, n)
    for i, length in enumerate(lengths.tolist()):  # front padding: zeros first
        for m in mods:
            m[i, : n - length] = 0.0
    layer = ModalityPerturbation(0.0, 1.0, sigma=1.0, target=1, seed=2).train()
    out = layer(mods, lengths)
    for i, length in enumerate(lengths.tolist()):
        assert torch.all(out[1][i, : n - length] == 0), "padding must stay zero"
        assert torch.all(out[1][i, n - length :] != mods[1][i, n - length :])
    # without lengths every step is noised
    out = ModalityPerturbation(0.0, 1.0, seed=2).train()([m.clone() for m in mods])
    assert torch.all(out[0] != mods[0])


def test_eval_mode_is_identity():
    mods = batch()
    out = ModalityPerturbation(0.5, 0.5, seed=0).eval()(mods)
    assert all(a is b for a, b in zip(mods, out, strict=True))


def test_determinism_and_generator_state():
    mods = batch()
    a = ModalityPerturbation(0.2, 0.3, seed=7).train()
    b = ModalityPerturbation(0.2, 0.3, seed=7).train()
    c = ModalityPerturbation(0.2, 0.3, seed=8).train()
    oa, ob, oc = a(mods), b(mods), c(mods)
    assert torch.equal(oa[0], ob[0]) and not torch.equal(oa[0], oc[0])
    state = a.generator_state()
    expected = a(mods)[0]
    a.set_generator_state(state)
    assert torch.equal(a(mods)[0], expected)


def test_inputs_untouched_and_gradients_flow():
    mods = [m.requires_grad_() for m in batch()]
    before = mods[0].detach().clone()
    out = ModalityPerturbation(0.25, 0.25, seed=0).train()(mods)
    out[0].sum().backward()
    assert torch.equal(mods[0].detach(), before)
    zero_rows = (mods[0].grad == 0).all(-1).all(-1)
    assert zero_rows.sum() == 5  # d out/d in is 0 exactly on the missing samples


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"p_missing": -0.1}, "p_missing"),
        ({"p_missing": 1.1}, "p_missing"),
        ({"p_noise": 2.0}, "p_noise"),
        ({"p_missing": 0.6, "p_noise": 0.5}, "p_missing \\+ p_noise"),
        ({"sigma": -1.0}, "sigma"),
        ({"sigma": float("nan")}, "sigma"),
        ({"target": -1}, "target"),
    ],
)
def test_invalid_arguments_are_refused_by_name(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ModalityPerturbation(**kwargs)


def test_target_beyond_the_modalities_is_an_error():
    with pytest.raises(ValueError, match="target=3"):
        ModalityPerturbation(0.5, target=3).train()(batch())


# ---------------------------------------------------------------------------------------------
# AugmentPipeline


def test_empty_pipeline_is_identity():
    mods = batch()
    out = AugmentPipeline().train()(mods)
    assert all(a is b for a, b in zip(mods, out, strict=True))


def test_pipeline_applies_layers_in_order_and_checkpoints_them():
    mods = [torch.ones(32, 10, d) for d in DIMS]
    pipe = AugmentPipeline(
        [
            ModalityMasking("m3", p_mask=1.0, modal_probs=(0, 1, 0), seed=0),
            ModalityPerturbation(p_missing=0.5, target=0, seed=1),
        ]
    ).train()
    state = pipe.generator_state()
    out = pipe(mods, lengths=torch.full((32,), 10))
    assert torch.all(out[1] == 0)  # masking: audio always masked
    assert (out[0] == 0).all(-1).all(-1).sum() == 16  # perturbation: half the text missing
    pipe.set_generator_state(state)
    again = pipe(mods)
    assert all(torch.equal(a, b) for a, b in zip(out, again, strict=True))
    pipe.eval()
    assert all(torch.equal(a, b) for a, b in zip(pipe(mods), mods, strict=True))
    with pytest.raises(ValueError, match="2 layers"):
        pipe.set_generator_state(state[:1])


# ---------------------------------------------------------------------------------------------
# the papers' noise: multiplicative (their code) and rms-scaled additive; counts that truncate


def padded(b=64, n=12, d=6, seed=1):
    """A front-padded (B, N, d) batch with lengths in [1, N]; padding is exactly zero."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, d, generator=g) * 0.05
    lengths = torch.randint(1, n + 1, (b,), generator=g)
    valid = torch.arange(n) >= (n - lengths).unsqueeze(1)  # (B, N)
    return x * valid.unsqueeze(-1), lengths, valid


def test_multiplicative_is_scale_invariant_and_one_scalar_per_sample():
    x, lengths, _ = padded()
    c = 37.5
    kw = dict(p_missing=0.1, p_noise=0.4, sigma=1.0, noise_kind="multiplicative")
    a = ModalityPerturbation(**kw, seed=4).train()([x], lengths)[0]
    b = ModalityPerturbation(**kw, seed=4).train()([c * x], lengths)[0]
    torch.testing.assert_close(b, c * a)  # perturb(c·x) = c·perturb(x), same generator
    # the additive law at an absolute sigma is not scale-free (the reason for the option)
    add = dict(kw, noise_kind="additive")
    a2 = ModalityPerturbation(**add, seed=4).train()([x], lengths)[0]
    b2 = ModalityPerturbation(**add, seed=4).train()([c * x], lengths)[0]
    assert not torch.allclose(b2, c * a2)
    # each noisy sample is x times one scalar
    layer = ModalityPerturbation(**kw, seed=4).train()
    out = layer([x], lengths)[0]
    _, noisy = layer.last_indices
    for i in noisy.tolist():
        nz = x[i].abs() > 1e-6
        ratio = out[i][nz] / x[i][nz]
        torch.testing.assert_close(ratio, ratio[0].expand_as(ratio))


def test_multiplicative_z_has_std_sigma():
    x = torch.ones(100, 2, 3)
    sigma = 0.7
    layer = ModalityPerturbation(0.0, 0.5, sigma=sigma, noise_kind="multiplicative", seed=0)
    layer.train()
    zs = []
    for _ in range(80):  # 4000 draws of z
        out = layer([x])[0]
        zs.append(out[layer.last_indices[1], 0, 0])
    z = torch.cat(zs)
    assert abs(z.mean().item()) < 4 * sigma / z.numel() ** 0.5
    assert abs(z.std().item() / sigma - 1) < 0.05  # ~5 standard errors of a 4000-sample std


def test_rms_scaled_noise_has_the_stated_rms_ratio_and_padding_stays_zero():
    from tune_m3.augment.perturb import rms_over_valid

    x, lengths, valid = padded(b=200, n=12, d=16)
    r = rms_over_valid(x, lengths)
    for sigma in (0.5, 2.0):
        layer = ModalityPerturbation(0.0, 1.0, sigma=sigma, sigma_scale="rms", rms=r, seed=2)
        out = layer.train()([x], lengths)[0]
        noise = out - x
        assert torch.all(noise[~valid] == 0)  # padding stays zero
        ratio = rms_over_valid(noise, lengths) / r
        assert abs(ratio / sigma - 1) < 0.02  # ~25k valid elements: std error ~0.5 %
    # the same noise in absolute units would be ~20x the signal here
    out = ModalityPerturbation(0.0, 1.0, sigma=1.0, seed=2).train()([x], lengths)[0]
    assert rms_over_valid(out - x, lengths) / r > 10


def test_multiplicative_keeps_padding_zero():
    x, lengths, valid = padded()
    layer = ModalityPerturbation(0.0, 1.0, sigma=3.0, noise_kind="multiplicative", seed=0)
    out = layer.train()([x], lengths)[0]
    assert torch.all(out[~valid] == 0)


def test_rms_over_valid_ignores_padding():
    from tune_m3.augment.perturb import rms_over_valid

    x = torch.zeros(2, 4, 3)
    x[0, 2:] = 2.0  # sample 0: 2 valid steps of value 2
    x[1, 1:] = 2.0  # sample 1: 3 valid steps
    assert rms_over_valid(x, torch.tensor([2, 3])) == pytest.approx(2.0)
    assert rms_over_valid(x) == pytest.approx((5 * 3 * 4 / 24) ** 0.5)  # all steps count


def test_rms_scale_needs_the_rms_and_refuses_multiplicative():
    layer = ModalityPerturbation(0.0, 0.5, sigma_scale="rms", seed=0).train()
    with pytest.raises(RuntimeError, match="set_rms"):
        layer([torch.ones(4, 2, 3)])
    layer.set_rms(0.1)
    assert layer.noise_std() == pytest.approx(0.1)
    with pytest.raises(ValueError, match="scale-free"):
        ModalityPerturbation(0.0, 0.5, noise_kind="multiplicative", sigma_scale="rms")
    with pytest.raises(ValueError, match="noise_kind"):
        ModalityPerturbation(0.0, 0.5, noise_kind="gaussian")
    with pytest.raises(ValueError, match="rms must be"):
        layer.set_rms(float("nan"))


@pytest.mark.parametrize(
    ("b", "p_missing", "p_noise", "floor", "round_"),
    [
        (32, 0.15, 0.15, (4, 4), (5, 5)),  # the reference's int(0.15 * 32) = 4
        (10, 0.05, 0.05, (0, 0), (1, 1)),
        (100, 0.29, 0.0, (29, 0), (29, 0)),  # 0.29 * 100 = 28.999999999999996 still counts 29
        (7, 0.5, 0.5, (3, 3), (4, 3)),
    ],
)
def test_floor_counts_truncate_like_the_reference(b, p_missing, p_noise, floor, round_):
    assert ModalityPerturbation(p_missing, p_noise, count="floor").counts(b) == floor
    assert ModalityPerturbation(p_missing, p_noise).counts(b) == round_
    layer = ModalityPerturbation(p_missing, p_noise, count="floor", seed=0).train()
    mods = batch(b)
    missing, noisy, _ = classify(mods[0], layer(mods)[0])
    assert (len(missing), len(noisy)) == floor
