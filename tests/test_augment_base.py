"""AugmentLayer: the one-method contract a new augmentation implements, and what it inherits."""

from __future__ import annotations

import pytest
import torch

from tune_m3.augment import AugmentLayer, AugmentPipeline, ModalityMasking, ModalityPerturbation


class DropFirst(AugmentLayer):
    """The docstring's example: zero modality 0 of the whole batch with probability p."""

    def __init__(self, p: float, seed: int | None = None):
        super().__init__(seed)
        self.p = p

    def augment(self, mods, lengths=None):
        gen = self.generator(mods[0].device)
        if torch.rand((), generator=gen, device=mods[0].device) < self.p:
            return [torch.zeros_like(mods[0]), *mods[1:]]
        return list(mods)


def mods(b=4):
    return [torch.ones(b, 3, d) for d in (5, 2, 4)]


def test_a_layer_must_implement_augment():
    class Incomplete(AugmentLayer):
        pass

    with pytest.raises(TypeError, match="augment"):
        Incomplete(seed=0)


def test_an_extenders_layer_inherits_eval_identity_checks_and_a_resumable_stream():
    x = mods()
    layer = DropFirst(0.5, seed=3).train()
    state = layer.generator_state()
    draws = [layer(x)[0].sum().item() == 0 for _ in range(20)]
    assert 0 < sum(draws) < 20  # both outcomes occur: the draws come from the generator
    layer.set_generator_state(state)
    assert [layer(x)[0].sum().item() == 0 for _ in range(20)] == draws
    out = layer.eval()(x)
    assert all(a is b for a, b in zip(x, out, strict=True))  # eval: the inputs themselves
    with pytest.raises(ValueError, match="batch size"):
        layer([torch.ones(4, 3, 5), torch.ones(2, 3, 2)])  # checked in eval mode too


def test_pipeline_checkpoints_an_extenders_layer_beside_the_built_in_ones():
    x = mods(32)
    pipe = AugmentPipeline(
        [
            ModalityMasking("m3", p_mask=0.5, seed=0),
            DropFirst(0.5, seed=1),
            ModalityPerturbation(0.25, seed=2),
        ]
    ).train()
    state = pipe.generator_state()
    first = pipe(x)
    pipe.set_generator_state(state)
    assert all(torch.equal(a, b) for a, b in zip(first, pipe(x), strict=True))


def test_pipeline_refuses_a_module_that_is_not_an_augment_layer():
    with pytest.raises(TypeError, match=r"layers\[1\].*AugmentLayer"):
        AugmentPipeline([ModalityMasking("m3", seed=0), torch.nn.Identity()])
