"""M3Baseline: shapes, exact padding handling, encode/fusion split, size, trainability."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tune_m3.augment import AugmentPipeline, ModalityMasking
from tune_m3.models import M3Baseline, ModelConfig
from tune_m3.models.m3_baseline import BiLSTM

pytestmark = pytest.mark.usefixtures("one_thread")

MOSEI = (300, 74, 35)
MOSI = (300, 5, 20)
# parameter counts at the paper's sizes (hidden 100, proj 100); the MOSEI count equals the
# authors' implementation (1,633,801). A change here is a change of architecture: say so.
N_PARAMS = {MOSEI: 1_633_801, MOSI: 1_566_601}


def inputs(dims, b, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, n, d, generator=g) for d in dims]


def small(dims=(6, 3, 4), **kw):
    torch.manual_seed(0)
    return M3Baseline(ModelConfig(input_dims=dims, hidden=8, proj=8, **kw))


@pytest.mark.parametrize("dims", [MOSEI, MOSI])
def test_parameter_count_at_paper_sizes(dims):
    model = M3Baseline(ModelConfig(input_dims=dims))
    print(f"M3Baseline{dims}: {model.num_parameters():,} parameters")
    assert model.num_parameters() == N_PARAMS[dims]


@pytest.mark.parametrize("dims", [MOSEI, MOSI])
@pytest.mark.parametrize(("b", "n"), [(3, 7), (1, 1), (2, 20)])
def test_output_is_one_value_per_sample(dims, b, n):
    torch.manual_seed(0)
    model = M3Baseline(ModelConfig(input_dims=dims, hidden=16, proj=12)).eval()
    y = model(inputs(dims, b, n))
    assert y.shape == (b,) and torch.isfinite(y).all()


def test_bilstm_matches_torch_bidirectional_lstm_and_packed_sequences():
    torch.manual_seed(0)
    ours = BiLSTM(5, 7, num_layers=2)
    ref = nn.LSTM(5, 7, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for layer in range(2):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{name}_l{layer}").copy_(getattr(ours.fwd[layer], f"{name}_l0"))
                getattr(ref, f"{name}_l{layer}_reverse").copy_(
                    getattr(ours.bwd[layer], f"{name}_l0")
                )
    x = torch.randn(4, 9, 5)
    assert torch.allclose(ours(x), ref(x)[0], atol=1e-6)
    # front-padded batch == packed sequences of the valid steps
    lengths = torch.tensor([9, 4, 1, 6])
    for i, length in enumerate(lengths.tolist()):
        x[i, : 9 - length] = 0.0
    out = ours(x, lengths)  # (B, N, 2h), front-padded layout
    for i, length in enumerate(lengths.tolist()):
        expected = ref(x[i : i + 1, 9 - length :])[0][0]  # the unpadded sequence alone
        assert torch.allclose(out[i, 9 - length :], expected, atol=1e-6)
        assert torch.all(out[i, : 9 - length] == 0)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_front_padding_gives_the_unpadded_prediction(num_layers):
    dims, n = MOSI, 11
    torch.manual_seed(0)
    model = M3Baseline(ModelConfig(input_dims=dims, hidden=16, proj=12, num_layers=num_layers))
    model.eval()
    lengths = torch.tensor([11, 5, 1, 8])
    padded = inputs(dims, 4, n)
    singles = []
    for i, length in enumerate(lengths.tolist()):
        for m in padded:
            m[i, : n - length] = 0.0
        singles.append(model([m[i : i + 1, n - length :] for m in padded]))
    batched = model(padded, lengths)
    assert torch.allclose(batched, torch.cat(singles), atol=1e-5), (batched, singles)
    # padded steps carry no information: filling them with garbage changes nothing
    noisy = [m.clone() for m in padded]
    for i, length in enumerate(lengths.tolist()):
        for m in noisy:
            m[i, : n - length] = 100.0
    assert torch.allclose(model(noisy, lengths), batched, atol=1e-5)


def test_lengths_all_full_equals_no_lengths():
    model = small().eval()
    x = inputs((6, 3, 4), 3, 5)
    assert torch.allclose(model(x, torch.tensor([5, 5, 5])), model(x))
    assert torch.allclose(model(x, [5, 5, 5]), model(x))


def test_encode_then_fusion_equals_forward_in_eval():
    model = small().eval()
    x = inputs((6, 3, 4), 3, 7)
    lengths = torch.tensor([7, 2, 5])
    reps = model.encode(x, lengths)
    assert [r.shape for r in reps] == [torch.Size([3, 7, 8])] * 3
    assert torch.allclose(model.fusion(reps, lengths), model(x, lengths))
    # the representations are zero on padded steps
    assert torch.all(reps[0][1, :5] == 0)


def test_dict_inputs_equal_list_inputs():
    model = small().eval()
    x = inputs((6, 3, 4), 3, 5)
    lengths = torch.tensor([5, 2, 4])
    as_dict = dict(zip(("text", "audio", "vision"), x, strict=True))
    lens = {m: lengths for m in as_dict}
    assert torch.equal(model(as_dict, lens), model(x, lengths))


def test_m3_changes_training_outputs_but_not_evaluation():
    from tune_m3.models.seam import AugmentedModel

    m3 = AugmentPipeline([ModalityMasking("m3", p_mask=1.0, modal_probs=(1, 0, 0), seed=0)])
    model = AugmentedModel(small(dropout=0.0), m3, "fusion", "m3_baseline")
    plain = small(dropout=0.0)
    plain.load_state_dict(model.net.state_dict())
    x = dict(zip(("text", "audio", "vision"), inputs((6, 3, 4), 3, 5), strict=True))
    lens = {m: torch.tensor([5, 5, 5]) for m in x}
    model.train()
    plain.train()
    assert not torch.allclose(model(x, lens), plain(x, lens))
    model.eval()
    plain.eval()
    assert torch.allclose(model(x, lens), plain(x, lens))


def test_a_few_adam_steps_reduce_the_l1_loss():
    model = small(dropout=0.0)
    x = inputs((6, 3, 4), 16, 6, seed=1)
    y = torch.tanh(x[0].mean(dim=(1, 2)) * 5) * 2  # learnable from the text alone
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(20):
        loss = (model(x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_gradients_reach_every_parameter_with_padding():
    model = small()
    model.train()
    model(inputs((6, 3, 4), 3, 5), torch.tensor([5, 1, 3])).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"input_dims": (300, 74)}, "input_dims"),
        ({"input_dims": (300, 74, 35, 10)}, "input_dims"),
        ({"input_dims": (300, 0, 35)}, "input_dims"),
        ({"input_dims": MOSEI, "hidden": 0}, "hidden"),
        ({"input_dims": MOSEI, "proj": 2.5}, "proj"),
        ({"input_dims": MOSEI, "num_layers": 0}, "num_layers"),
        ({"input_dims": MOSEI, "dropout": 1.0}, "dropout"),
    ],
)
def test_config_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ModelConfig(**kwargs)


def test_config_is_frozen_and_normalises_lists():
    cfg = ModelConfig(input_dims=[300, 74, 35])
    assert cfg.input_dims == MOSEI and cfg.d == 100
    with pytest.raises(AttributeError):
        cfg.hidden = 5  # type: ignore[misc]


def test_bad_inputs_are_clear_errors():
    model = small()
    x = inputs((6, 3, 4), 2, 5)
    with pytest.raises(ValueError, match="audio"):
        model([x[0], torch.randn(2, 5, 4), x[2]])
    with pytest.raises(ValueError, match="3 tensors"):
        model(x[:2])
    with pytest.raises(ValueError, match="lengths"):
        model(x, torch.tensor([6, 2]))
    with pytest.raises(ValueError, match="lengths"):
        model(x, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="lengths"):
        model(x, torch.tensor([5]))


# ---------------------------------------------------------------------------------------------
# the authors' recipe as options: dropout on attention weights, Xavier attention projections


def _built(**kw):
    torch.manual_seed(0)
    return M3Baseline(ModelConfig(input_dims=(6, 3, 4), hidden=8, proj=8), **kw)


def _attention_linears(model):
    from tune_m3.models.m3_baseline import SelfAttention, SymmetricCrossAttention

    return [
        (name, lin)
        for name, mod in model.named_modules()
        if isinstance(mod, (SelfAttention, SymmetricCrossAttention))
        for lin in mod.children()
    ]


def test_attn_dropout_acts_in_training_only_and_zero_is_today():
    x, lengths = inputs((6, 3, 4), 5, 7), torch.tensor([7, 3, 1, 5, 7])
    base, drop = _built(), _built(attn_dropout=0.5)
    assert all(torch.equal(a, b) for a, b in zip(base.parameters(), drop.parameters(), strict=True))
    base.eval(), drop.eval()
    torch.testing.assert_close(drop(x, lengths), base(x, lengths))  # eval: no dropout
    base.train(), drop.train()
    torch.manual_seed(1)
    y0 = base(x, lengths)
    torch.manual_seed(1)
    assert not torch.allclose(drop(x, lengths), y0)  # train: attention weights dropped
    zero = _built(attn_dropout=0.0).train()
    torch.manual_seed(1)
    torch.testing.assert_close(zero(x, lengths), y0)  # attn_dropout 0 = today's model
    with pytest.raises(ValueError, match="attn_dropout"):
        _built(attn_dropout=1.0)


def test_xavier_init_touches_attention_projections_only():
    default, xavier = _built(), _built(init="xavier")
    att = {id(lin) for _, lin in _attention_linears(xavier)}
    assert len(att) == 3 * 3 + 6 * 4  # three self-attentions, four symmetric cross-attentions
    for (name, p), q in zip(default.named_parameters(), xavier.parameters(), strict=True):
        if "attn" in name or "cross" in name:
            continue
        assert torch.equal(p, q), name  # LSTMs and the head keep PyTorch's default init
    for _, lin in _attention_linears(xavier):
        fan_out, fan_in = lin.weight.shape
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert lin.weight.abs().max() <= bound
        # uniform on [-bound, bound]: the largest of >= 64 draws is close to the bound
        assert lin.weight.abs().max() > 0.8 * bound
    with pytest.raises(ValueError, match="init"):
        _built(init="kaiming")


def test_unaligned_inputs_padding_exact_and_align_to_law():
    from tune_m3.models.m3_baseline import align_to

    # align_to: 6 source steps onto 3 -> means of pairs; 2 onto 4 -> nearest earlier step
    x = torch.arange(6.0).view(1, 6, 1)
    assert align_to(x, None, 3, None).flatten().tolist() == [0.5, 2.5, 4.5]
    y = torch.tensor([[[0.0], [7.0], [9.0]]])  # front-padded: 2 valid steps
    out = align_to(y, torch.tensor([2]), 5, torch.tensor([4]))
    assert out.flatten().tolist() == [0.0, 7.0, 7.0, 9.0, 9.0]
    # the model: a padded unaligned batch gives the unpadded predictions
    model = small().eval()
    steps = {"text": 5, "audio": 9, "vision": 3}
    g = torch.Generator().manual_seed(0)
    x = {
        m: torch.randn(3, n, d, generator=g)
        for (m, n), d in zip(steps.items(), (6, 3, 4), strict=True)
    }
    lens = {m: torch.tensor([n, max(1, n - 2), 1]) for m, n in steps.items()}
    for m, n in steps.items():
        for i, k in enumerate(lens[m].tolist()):
            x[m][i, : n - k] = 0.0
    batched = model(x, lens)
    for i in range(3):
        one = {m: x[m][i : i + 1, steps[m] - int(lens[m][i]) :] for m in steps}
        single = model(one, {m: lens[m][i : i + 1] for m in steps})
        assert torch.allclose(single, batched[i : i + 1], atol=1e-5)
