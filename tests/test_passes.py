"""FloatGraph passes: batch norm folded exactly once (real images, trained statistics, negative γ), dropout dropped."""

import numpy as np
import pytest
import torch

from lowbit.sw.datasets import load_dataset
from lowbit.sw.frontends.graph import BatchNorm, Conv2d, Dropout, FloatGraph, GraphError, Linear, ReLU
from lowbit.sw.frontends.passes import drop_dropout, fold_batchnorm
from lowbit.sw.train import to_input, train_preset


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module", params=[("tfc", True), ("cnn_digits", None)], ids=["mlp-bn", "cnn"])
def trained(request, digits):
    """A preset with batch norm trained 2 epochs on digits, so its running statistics are its own."""
    preset, bn = request.param
    model, _ = train_preset(preset, digits, 2, seed=1, batch_size=64, batchnorm=bn, progress=False)
    return model


def negate_some_gammas(model):
    """A copy with γ < 0 on every other channel of each batch norm (β moved too)."""
    m = FloatGraph.from_config(model.config())
    m.load_state_dict(model.state_dict())
    with torch.no_grad():
        for layer in m.layers.values():
            if isinstance(layer, BatchNorm):
                layer.weight[::2] *= -1.5
                layer.bias[1::2] += 0.25
    return m.eval()


@pytest.mark.parametrize("negative", [False, True], ids=["trained", "negative-gamma"])
def test_folded_graph_equals_unfolded_on_real_images(trained, digits, negative):
    model = negate_some_gammas(trained) if negative else trained.eval()
    bns = {n: l for n, l in model.layers.items() if isinstance(l, BatchNorm)}
    assert len(bns) == 3
    for bn in bns.values():  # trained statistics, not the initial 0 and 1
        assert bn.running_mean.abs().max() > 0.01 and (bn.running_var - 1).abs().max() > 0.01
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    folded = fold_batchnorm(model)
    assert torch.equal(rng, torch.get_rng_state())  # no random numbers drawn
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input is untouched
    assert list(folded.layers) == [n for n in model.layers if n not in bns]
    assert not any(isinstance(l, BatchNorm) for l in folded.layers.values()) and not folded.training
    x = to_input(digits.x_test)
    with torch.no_grad():
        ref, got = model(x), folded(x)
    ratio = float((got - ref).abs().max() / ref.abs().max())
    assert ratio <= 1e-5, ratio
    assert np.array_equal(got.argmax(1).numpy(), ref.argmax(1).numpy())
    # a negative scale flips that channel's weights; folding again changes nothing (exactly once)
    for name, bn in bns.items():
        weighted = list(model.layers)[list(model.layers).index(name) - 1]
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
        w0, w1 = model.layers[weighted].weight.detach(), folded.layers[weighted].weight.detach()
        flat0, flat1 = w0.reshape(len(w0), -1), w1.reshape(len(w1), -1)
        assert torch.equal(torch.sign(flat1), torch.sign(flat0) * torch.sign(scale)[:, None])
        assert (scale < 0).any() == negative
    again = fold_batchnorm(folded)
    assert again.config() == folded.config()
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), folded.state_dict().values()))


def test_stages_of_folded_and_unfolded_graphs_agree(trained):
    model = negate_some_gammas(trained)
    folded = fold_batchnorm(model)
    a, b = model.stages(), folded.stages()
    assert [(s.name, s.act, s.pool, s.in_shape) for s in a] == [(s.name, s.act, s.pool, s.in_shape) for s in b]
    assert [s.bn for s in a][:-1] == [f"bn{i}" for i in range(len(a) - 1)] and all(s.bn is None for s in b)
    for sa, sb in zip(a, b):  # the stage folds in float64, the pass stores float32
        for pa, pb in zip(sa.float_params(), sb.float_params()):
            assert pa.shape == pb.shape
            np.testing.assert_allclose(pb, pa, rtol=1e-6, atol=1e-7)


def test_fold_gives_a_bias_and_refuses_a_batch_norm_after_anything_else():
    torch.manual_seed(0)
    g = FloatGraph((4, 4, 1), [("conv0", Conv2d(1, 3, 3, bias=False)), ("bn0", BatchNorm(3)), ("relu0", ReLU())])
    g.bn0.running_mean.fill_(0.5)
    f = fold_batchnorm(g.eval())
    assert f.conv0.bias is not None and f.config()["layers"][0]["bias"] is True and g.conv0.bias is None
    x = torch.rand(2, 4, 4, 1)
    assert torch.allclose(f(x), g(x), rtol=0, atol=1e-6)
    for layers, after in (([("relu0", ReLU()), ("bn0", BatchNorm(4))], "layer 'relu0' (relu)"),
                          ([("bn0", BatchNorm(4))], "the graph input"),
                          ([("fc0", Linear(4, 4)), ("bn0", BatchNorm(4)), ("bn1", BatchNorm(4))],
                           "layer 'bn0' (batchnorm)"),
                          ([("fc0", Linear(4, 4)), ("drop0", Dropout(0.1)), ("bn0", BatchNorm(4))],
                           "layer 'drop0' (dropout)")):
        bad = layers[-1][0]
        with pytest.raises(GraphError, match=rf"batch norm '{bad}' must directly follow a Linear or Conv2d layer to "
                                             rf"be folded, not {after.replace('(', '[(]').replace(')', '[)]')}"):
            fold_batchnorm(FloatGraph((4,), layers))
    with pytest.raises(GraphError, match="fold_batchnorm takes a FloatGraph, not Linear"):
        fold_batchnorm(Linear(2, 2))


def test_drop_dropout():
    torch.manual_seed(0)
    g = FloatGraph((4,), [("drop", Dropout(0.5)), ("fc0", Linear(4, 3)), ("relu0", ReLU()), ("drop0", Dropout(0.2)),
                          ("fc1", Linear(3, 2))])
    d = drop_dropout(g)
    assert list(d.layers) == ["fc0", "relu0", "fc1"] and list(g.layers) == ["drop", "fc0", "relu0", "drop0", "fc1"]
    x = torch.rand(5, 4)
    assert d.training and torch.equal(d(x), g.eval()(x))
