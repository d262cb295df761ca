"""ModalityMasking: the laws of M3, soft M3 and random mask (M3 paper eq. 4-5, Table 1)."""

from __future__ import annotations

import pytest
import torch

from tune_m3.augment import ModalityMasking

B, N = 64, 50
DIMS = (6, 3, 4)  # small feature sizes keep the statistics fast; the laws do not depend on them


def ones(dims=DIMS, b=B, n=N, dtype=torch.float32):
    return [torch.ones(b, n, d, dtype=dtype) for d in dims]


def zeroed_units(out):
    """(M, B, N) bool: whole feature vector of modality l is zero at (b, i)."""
    return torch.stack([(o == 0).all(-1) for o in out])


def draw(layer, n_draws, dims=DIMS):
    layer.train()
    return torch.stack([zeroed_units(layer(ones(dims))) for _ in range(n_draws)])  # (D, M, B, N)


# ---------------------------------------------------------------------------------------------
# m3: the law P(l zeroed) = p_mask * pi_l, at most one modality per unit, whole vectors


@pytest.mark.parametrize(
    ("granularity", "n_draws", "tol"),
    [("timestep", 40, 0.01), ("sample", 200, 0.015), ("batch", 800, 0.04)],
)
def test_m3_zero_frequency_is_p_mask_times_pi(granularity, n_draws, tol):
    p_mask, probs = 0.3, (0.6, 0.3, 0.1)
    layer = ModalityMasking("m3", p_mask=p_mask, modal_probs=probs, granularity=granularity, seed=0)
    z = draw(layer, n_draws)  # (D, M, B, N)
    freq = z.float().mean(dim=(0, 2, 3))
    expected = torch.tensor([p_mask * p for p in probs])
    assert torch.allclose(freq, expected, atol=tol), (freq, expected)
    # at most one modality zeroed per (b, i)
    assert z.sum(dim=1).max() <= 1


def test_m3_zeroes_whole_feature_vectors():
    layer = ModalityMasking("m3", p_mask=0.5, seed=1).train()
    out = layer(ones())
    for o in out:
        any_zero, all_zero = (o == 0).any(-1), (o == 0).all(-1)
        assert torch.equal(any_zero, all_zero)
        assert torch.all((o == 0) | (o == 1))  # no rescaling by default


def test_timestep_granularity_varies_over_time():
    layer = ModalityMasking("m3", p_mask=0.5, granularity="timestep", seed=2).train()
    z = zeroed_units(layer(ones()))  # (M, B, N)
    assert (z != z[:, :, :1]).any()


def test_sample_granularity_is_constant_over_time():
    layer = ModalityMasking("m3", p_mask=0.5, granularity="sample", seed=3).train()
    for _ in range(5):
        out = layer(ones())
        for o in out:
            assert torch.equal(o, o[:, :1].expand_as(o))
        z = zeroed_units(out)
        assert z.any() and not z.all()


def test_batch_granularity_is_all_or_nothing_per_batch():
    layer = ModalityMasking("m3", p_mask=0.5, granularity="batch", seed=4).train()
    kinds = set()
    for _ in range(40):
        z = zeroed_units(layer(ones()))  # (M, B, N)
        per_unit = z.sum(0)  # (B, N) masked modalities per unit
        if per_unit.sum() == 0:
            kinds.add("untouched")
        else:
            assert torch.all(per_unit == 1), "a masked batch masks one modality at every unit"
            kinds.add("masked")
    assert kinds == {"untouched", "masked"}


def test_p_mask_zero_is_identity():
    x = [torch.randn(B, N, d) for d in DIMS]
    out = ModalityMasking("m3", p_mask=0.0, seed=0).train()(x)
    for a, b in zip(x, out, strict=True):
        assert torch.equal(a, b)


def test_p_mask_one_with_text_only_zeroes_text_everywhere():
    x = [torch.randn(B, N, d) for d in DIMS]
    out = ModalityMasking("m3", p_mask=1.0, modal_probs=(1, 0, 0), seed=0).train()(x)
    assert torch.all(out[0] == 0)
    assert torch.equal(out[1], x[1]) and torch.equal(out[2], x[2])


def test_scheme_none_is_identity_in_train_mode():
    x = [torch.randn(4, 5, d) for d in DIMS]
    out = ModalityMasking("none", p_mask=0.9).train()(x)
    assert all(torch.equal(a, b) for a, b in zip(x, out, strict=True))


# ---------------------------------------------------------------------------------------------
# soft m3 and random mask


def test_soft_m3_zeroes_a_p_feature_subset_of_one_modality():
    p_mask, probs, p_feature = 0.4, (0.5, 0.25, 0.25), 0.3
    dims = (40, 40, 40)
    layer = ModalityMasking(
        "soft_m3", p_mask=p_mask, modal_probs=probs, p_feature=p_feature, seed=5
    ).train()
    rates, within, touched = [], [], []
    for _ in range(10):
        out = layer(ones(dims))
        zero = torch.stack([o == 0 for o in out])  # (M, B, N, d)
        rates.append(zero.float().mean(dim=(1, 2, 3)))
        hit = zero.any(-1)  # (M, B, N) units where this modality lost features
        touched.append(hit.sum(0).max())
        within.append(zero[hit].float().mean())  # fraction of features zeroed at a hit unit
    rate = torch.stack(rates).mean(0)
    expected = torch.tensor([p_mask * p * p_feature for p in probs])
    assert torch.allclose(rate, expected, atol=0.006), (rate, expected)
    assert max(touched) <= 1  # still one modality per unit
    # P(zeroed | at least one zeroed) = p / (1 - (1-p)^d), ~ p for d = 40
    assert abs(torch.stack(within).mean().item() - p_feature / (1 - (1 - p_feature) ** 40)) < 0.01


def test_random_mask_zeroes_each_element_with_p_mask():
    layer = ModalityMasking("random_mask", p_mask=0.25, modal_probs=(1, 0, 0), seed=6).train()
    out = layer(ones())
    for o in out:  # modal_probs is ignored: every modality is hit
        assert abs((o == 0).float().mean().item() - 0.25) < 0.02
    # element-wise, not whole vectors
    assert ((out[0] == 0).any(-1) & ~(out[0] == 0).all(-1)).any()


@pytest.mark.parametrize("scheme", ["m3", "soft_m3", "random_mask"])
@pytest.mark.parametrize("granularity", ["timestep", "sample", "batch"])
def test_rescale_preserves_expectation(scheme, granularity):
    layer = ModalityMasking(
        scheme,
        p_mask=0.5,
        modal_probs=(0.6, 0.2, 0.2),
        granularity=granularity,
        p_feature=0.5,
        rescale=True,
        seed=7,
    ).train()
    n_draws = 400 if granularity == "batch" else 40
    means = torch.stack([torch.stack([o.mean() for o in layer(ones())]) for _ in range(n_draws)])
    assert torch.allclose(means.mean(0), torch.ones(3), atol=0.05), means.mean(0)


def test_rescale_with_certain_masking_stays_finite():
    layer = ModalityMasking("m3", p_mask=1.0, modal_probs=(1, 0, 0), rescale=True).train()
    out = layer(ones())
    assert torch.all(out[0] == 0) and torch.all(out[1] == 1)


# ---------------------------------------------------------------------------------------------
# modes, randomness, checkpointing


def test_eval_mode_is_identity():
    x = [torch.randn(4, 5, d) for d in DIMS]
    layer = ModalityMasking("m3", p_mask=1.0, rescale=True, seed=0).eval()
    out = layer(x)
    assert all(a is b for a, b in zip(x, out, strict=True))


def test_same_seed_same_masks_different_seed_different_masks():
    x = ones()
    a = ModalityMasking("m3", p_mask=0.5, seed=11).train()
    b = ModalityMasking("m3", p_mask=0.5, seed=11).train()
    c = ModalityMasking("m3", p_mask=0.5, seed=12).train()
    for _ in range(3):
        oa, ob, oc = a(x), b(x), c(x)
        assert all(torch.equal(u, v) for u, v in zip(oa, ob, strict=True))
    assert not all(torch.equal(u, v) for u, v in zip(oa, oc, strict=True))


def test_unseeded_layers_follow_the_global_seed():
    x = ones()
    torch.manual_seed(123)
    out1 = ModalityMasking("m3", p_mask=0.5).train()(x)
    torch.manual_seed(123)
    out2 = ModalityMasking("m3", p_mask=0.5).train()(x)
    assert all(torch.equal(u, v) for u, v in zip(out1, out2, strict=True))


def test_generator_state_save_and_restore(tmp_path):
    x = ones()
    layer = ModalityMasking("soft_m3", p_mask=0.5, seed=21).train()
    layer(x)
    state = layer.generator_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = layer(x)
    layer(x)  # move on
    layer.set_generator_state(torch.load(tmp_path / "rng.pt"))
    again = layer(x)
    assert all(torch.equal(u, v) for u, v in zip(expected, again, strict=True))
    # a fresh layer with another seed resumes the same stream too
    fresh = ModalityMasking("soft_m3", p_mask=0.5, seed=999).train()
    fresh.set_generator_state(state)
    assert all(torch.equal(u, v) for u, v in zip(expected, fresh(x), strict=True))


def test_state_before_first_forward_restarts_from_seed():
    x = ones()
    layer = ModalityMasking("m3", p_mask=0.5, seed=5).train()
    state = layer.generator_state()
    first = layer(x)
    layer.set_generator_state(state)
    assert all(torch.equal(u, v) for u, v in zip(first, layer(x), strict=True))


# ---------------------------------------------------------------------------------------------
# validation, shapes, autograd


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"p_mask": -0.1}, "p_mask"),
        ({"p_mask": 1.5}, "p_mask"),
        ({"p_feature": 2.0}, "p_feature"),
        ({"modal_probs": (0.5, 0.6, -0.1)}, "modal_probs"),
        ({"modal_probs": (0.3, 0.3, 0.3)}, "modal_probs"),
        ({"modal_probs": ()}, "modal_probs"),
        ({"scheme": "hard"}, "scheme"),
        ({"granularity": "token"}, "granularity"),
        ({"modal_probs": (0.5, 0.5), "n_modalities": 3}, "n_modalities"),
    ],
)
def test_invalid_arguments_are_refused_by_name(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ModalityMasking(**kwargs)


def test_modal_probs_within_tolerance_are_accepted():
    ModalityMasking(modal_probs=(1 / 3, 1 / 3, 1 / 3))
    ModalityMasking(modal_probs=(0.6, 0.2, 0.2 + 5e-7))


def test_wrong_number_of_modalities_is_a_clear_error():
    layer = ModalityMasking(modal_probs=(0.5, 0.5)).train()
    with pytest.raises(ValueError, match="modal_probs has 2 entries"):
        layer(ones((3, 3, 3)))
    uniform = ModalityMasking().train()
    uniform(ones((3, 3)))  # M = 2 fixed here
    with pytest.raises(ValueError, match="3 modalities"):
        uniform(ones((3, 3, 3)))


def test_mismatched_batch_is_an_error():
    # different step counts are allowed (unaligned features: see test_unaligned_timestep_law)
    layer = ModalityMasking().train()
    with pytest.raises(ValueError, match="share"):
        layer([torch.ones(2, 5, 3), torch.ones(3, 5, 3), torch.ones(2, 5, 3)])


def test_unaligned_timestep_law():
    """N_l differs: each modality's own steps are masked with P = p_mask * pi_l, at most one
    modality per end-aligned unit."""
    layer = ModalityMasking("m3", p_mask=0.6, modal_probs=(0.5, 0.3, 0.2), seed=0).train()
    out = layer([torch.ones(4000, 5, 2), torch.ones(4000, 12, 3), torch.ones(4000, 3, 1)])
    zeroed = [(o == 0).all(-1) for o in out]  # (B, N_l)
    for z, pi in zip(zeroed, (0.5, 0.3, 0.2), strict=True):
        assert abs(z.float().mean().item() - 0.6 * pi) < 0.01
    # the last 3 steps are shared units: never two modalities there
    last = torch.stack([z[:, -3:] for z in zeroed]).sum(0)
    assert last.max() <= 1


@pytest.mark.parametrize("dims", [(7, 2), (5, 1, 9, 3)])
def test_any_number_of_modalities_and_dims(dims):
    probs = tuple([1 / len(dims)] * len(dims))
    layer = ModalityMasking("m3", p_mask=0.6, modal_probs=probs, seed=0).train()
    z = draw(layer, 10, dims)
    assert z.shape[1] == len(dims)
    assert z.sum(1).max() <= 1
    freq = z.float().mean(dim=(0, 2, 3))
    assert torch.allclose(freq, torch.full((len(dims),), 0.6 / len(dims)), atol=0.02)
    out = layer(ones(dims))
    assert [o.shape[-1] for o in out] == list(dims)


@pytest.mark.parametrize("scheme", ["m3", "soft_m3", "random_mask"])
def test_gradients_flow_and_inputs_are_untouched(scheme):
    x = [torch.randn(8, 6, d, requires_grad=True) for d in DIMS]
    before = [t.detach().clone() for t in x]
    layer = ModalityMasking(scheme, p_mask=0.5, rescale=True, seed=0).train()
    out = layer(x)
    sum(o.sum() for o in out).backward()
    for t, o, b in zip(x, out, before, strict=True):
        assert torch.equal(t.detach(), b)  # not in place
        assert t.grad is not None
        # d out / d in is the mask itself (times the rescaling factor)
        assert torch.allclose(t.grad * b, o.detach(), atol=1e-5)
        values = t.grad.unique()
        assert len(values[values != 0]) == 1  # kept elements all get the same factor


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtype_is_kept(dtype):
    out = ModalityMasking("soft_m3", p_mask=0.5, rescale=True, seed=0).train()(ones(dtype=dtype))
    assert all(o.dtype == dtype for o in out)


def test_lengths_argument_is_accepted():
    layer = ModalityMasking("m3", p_mask=0.5, seed=0).train()
    out = layer(ones(), lengths=torch.full((B,), N))
    assert len(out) == 3


# ---------------------------------------------------------------------------------------------
# soft_m3, the authors' mode: one modality per batch, no p_mask gate, rate pi_l * p_mask


def test_soft_m3_authors_touches_exactly_one_modality_per_batch():
    probs = (0.6, 0.3, 0.1)
    layer = ModalityMasking("soft_m3", p_mask=0.2, modal_probs=probs, soft_mode="authors", seed=0)
    layer.train()
    picks, rates = [], torch.zeros(3)
    n_draws = 1500
    for _ in range(n_draws):
        out = layer(ones())
        touched = [bool((o == 0).any()) for o in out]
        assert sum(touched) == 1  # every batch: one modality (B·N·d >> 1/p: never none)
        k = touched.index(True)
        picks.append(k)
        rates[k] += (out[k] == 0).float().mean()
    freq = torch.bincount(torch.tensor(picks), minlength=3).float() / n_draws
    # which modality: Cat(pi); ~3.5 binomial standard errors at 1500 batches
    assert torch.allclose(freq, torch.tensor(probs), atol=0.045)
    # given the modality, each element is zeroed with p_mask (no gate, no p_feature)
    for k in range(3):
        assert abs(rates[k] / max(picks.count(k), 1) - 0.2) < 0.01
    # the marginal per-element rate is pi_l * p_mask, which zero_prob reports
    assert [layer.zero_prob(k) for k in range(3)] == pytest.approx([0.12, 0.06, 0.02])


def test_soft_m3_authors_marginal_rate_is_pi_times_p():
    probs = (0.5, 0.25, 0.25)
    layer = ModalityMasking("soft_m3", p_mask=0.4, modal_probs=probs, soft_mode="authors", seed=1)
    layer.train()
    z = torch.zeros(3)
    n_draws = 2000
    for _ in range(n_draws):
        out = layer(ones())
        z += torch.stack([(o == 0).float().mean() for o in out])
    rate = z / n_draws
    expected = torch.tensor([0.2, 0.1, 0.1])
    # the per-batch modality choice dominates the variance: sd of a batch's rate ~ p*sqrt(pi(1-pi))
    se = 0.4 * torch.sqrt(torch.tensor(probs) * (1 - torch.tensor(probs))) / n_draws**0.5
    assert torch.all((rate - expected).abs() < 4 * se)


def test_soft_m3_paper_mode_is_unchanged_and_bad_mode_refused():
    a = ModalityMasking("soft_m3", p_mask=0.3, seed=3).train()
    b = ModalityMasking("soft_m3", p_mask=0.3, seed=3, soft_mode="paper").train()
    for x, y in zip(a(ones()), b(ones()), strict=True):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="soft_mode"):
        ModalityMasking("soft_m3", soft_mode="theirs")
