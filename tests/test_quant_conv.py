"""Every quantizer on the small digits CNN: the integer IR equals the fake-quantized forward pass.

``cnn_digits`` is conv0 (1→16, 3×3, pad 1), BN, ReLU, max-pool 2, conv1 (16→32), BN, ReLU,
max-pool 2, flatten, fc2 (128→64), BN, ReLU, fc3: its IR is conv2d, maxpool2d, conv2d,
maxpool2d, dense, dense (the batch norms folded, flatten no layer). The fake-quantized pass in
``exact`` mode, run in float64, computes what the IR computes: its logits divided by the last
accumulator scale are the golden model's integer logits, for every method.
"""

import copy

import numpy as np
import pytest
import torch

from lowbit.sw.datasets import load_dataset
from lowbit.sw.frontends.graph import BatchNorm
from lowbit.sw.frontends.passes import fold_batchnorm
from lowbit.sw.golden import run_network
from lowbit.sw.ir import Conv2dLayer
from lowbit.sw.quant import QuantError, folded, make_plan, quantize
from lowbit.sw.quant.core import export_network, fake_forward
from lowbit.sw.quant.qat import qat_finetune
from lowbit.sw.train import to_input, train_preset

OPS = ["conv2d", "maxpool2d", "conv2d", "maxpool2d", "dense", "dense"]


@pytest.fixture(scope="module")
def setup():
    ds = load_dataset("digits")
    model, info = train_preset("cnn_digits", ds, epochs=10, seed=0, progress=False)
    assert any(isinstance(l, BatchNorm) for l in model.layers.values())
    return ds, model, info["test_accuracy"]


def golden(net, ds):
    return run_network(net, ds.x_test, raw_pixels=True)


def accuracy(net, ds):
    return float(np.mean(golden(net, ds).classes == ds.y_test))


def assert_exact(graph, plan, net, ds):
    """The golden model's integer logits are the float64 fake-quantized logits / the last scale."""
    res = golden(net, ds)
    with torch.no_grad():
        fake = fake_forward(copy.deepcopy(graph).double(), plan, None,
                            pixels=torch.as_tensor(ds.x_test, dtype=torch.float64), exact=True).numpy()
    s_acc = plan.acts[-1].scale * plan.weights[-1].scale[0]
    assert np.array_equal(np.round(fake / s_acc), res.logits)
    assert np.allclose(fake / s_acc, res.logits, rtol=0, atol=1e-6)


# (method, weight bits, act bits, options, least accuracy on the 359 test images; chance is 0.1)
CASES = [("pow2", 8, 8, {}, 0.9), ("pow2", 4, 4, {}, 0.85), ("pow2", 2, 2, {}, 0.2), ("dfp", 8, 8, {}, 0.9),
         ("dfp", 4, 4, {}, 0.7), ("scaled", 4, 4, {"granularity": "channel"}, 0.9),
         ("scaled", 4, 4, {"granularity": "layer"}, 0.8), ("scaled", 2, 2, {}, 0.2),
         ("ternary", 2, 8, {"cluster": 4}, 0.7), ("ternary", 2, 4, {"cluster": 1}, 0.5),
         ("ternary", 2, 8, {"cluster": "layer"}, 0.5), ("binary", 1, 4, {}, 0.12), ("binary", 1, 1, {}, 0.12),
         ("binary", 1, 1, {"input_bits": 8}, 0.12), ("pow2", 4, 4, {"input_bits": 8}, 0.85)]


@pytest.mark.parametrize("method,wb,ab,opts,least", CASES)
def test_conv_ir_equals_fake_quantized_forward(setup, method, wb, ab, opts, least):
    ds, model, _ = setup
    graph = folded(model)
    plan = make_plan(model, method, wb, ab, ds.x_train[:300], **opts)  # planned on the folded graph
    net = export_network(graph, plan, name="n")
    assert [l.op for l in net.layers] == OPS
    assert [l.name for l in net.layers] == ["conv0", "pool0", "conv1", "pool1", "fc2", "fc3"]
    conv0, conv1 = net.layers[0], net.layers[2]
    assert conv0.weights.shape == (16, 3, 3, 1) and conv1.weights.shape == (32, 3, 3, 16)
    assert conv0.padding == (1, 1) and conv0.in_shape == (8, 8, 1) and net.layers[4].in_features == 128
    # a max-pool runs on the codes of the requantizer before it
    assert net.layers[1].in_format == conv0.requant.out_format
    assert_exact(graph, plan, net, ds)
    assert accuracy(net, ds) >= least
    # quantize() folds the batch norms itself and gives the same network
    again = quantize(model, method, wb, ab, ds.x_train[:300], **opts)
    assert all(np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)
               for a, b in zip(again.layers[::2], net.layers[::2]))


@pytest.mark.parametrize("method,opts", [("pow2", {}), ("scaled", {"granularity": "channel"}), ("dfp", {})])
def test_conv_weight_scales_are_per_filter(setup, method, opts):
    """Scales run along axis 0 of the IR's [OC, KH, KW, IC] weights: each filter's integers times
    its scale reconstruct its float weights (within half a step where not clipped)."""
    ds, model, _ = setup
    graph = folded(model)
    plan = make_plan(model, method, 4, 4, ds.x_train[:300], **opts)
    net = export_network(graph, plan)
    for st in graph.stages()[:2]:
        w, _ = st.float_params()
        q = next(l for l in net.layers if l.name == st.name).weights
        s = plan.weights[st.name].scale.reshape(-1, 1, 1, 1)
        inside = np.abs(q) < 7
        assert np.all(np.abs(q * s - w)[inside] <= s.repeat(w[0].size).reshape(w.shape)[inside] / 2 + 1e-12)
    if opts.get("granularity") == "channel":
        assert len(np.unique(plan.weights["conv1"].scale)) == 32
        assert len(net.layers[2].requant.multiplier) == 32  # one multiplier per output channel


@pytest.mark.parametrize("cluster,scales", [(1, 32), (4, 8), (16, 2), ("layer", 1)])
def test_ternary_clusters_of_filters(setup, cluster, scales):
    ds, model, _ = setup
    net = quantize(model, "ternary", None, 8, ds.x_train[:300], cluster=cluster)
    conv1 = net.layers[2]
    assert isinstance(conv1, Conv2dLayer) and str(conv1.weight_format) == "ternary"
    mult = np.broadcast_to(conv1.requant.multiplier, (32,))
    assert len(np.unique(mult)) <= scales
    if cluster != "layer":  # the filters of one cluster share their scale
        n = 32 // scales
        assert all(len(np.unique(mult[i:i + n])) == 1 for i in range(0, 32, n))
    t = net.metadata["ternary"]
    weighted = [l for l in net.layers if l.op in ("conv2d", "dense")]
    products = sum(l.macs() for l in weighted)  # a convolution's weights once per output pixel
    outputs = sum(int(np.prod(l.out_shape)) for l in weighted)
    assert t["products"] == products == 16 * 9 * 64 + 32 * 9 * 16 * 16 + 128 * 64 + 64 * 10
    assert t["mults_replaced_share"] == pytest.approx(products / (products + outputs))
    zeros = sum(int((l.weights == 0).sum()) for l in weighted)
    assert t["zero_weight_share"] == pytest.approx(zeros / sum(l.weights.size for l in weighted))


def test_batchnorm_must_be_folded_before_export(setup):
    ds, model, _ = setup
    plan = make_plan(model, "pow2", 4, 4, ds.x_train[:200])
    with pytest.raises(QuantError, match=r"layer 'conv0' is followed by batch norm 'bn0': fold it first"):
        export_network(model, plan)
    with pytest.raises(QuantError, match="fold it first"):
        fake_forward(model, plan, to_input(ds.x_test[:4]))
    net = export_network(fold_batchnorm(model), plan)
    assert accuracy(net, ds) >= 0.85


@pytest.mark.parametrize("method,wb,ab,opts,epochs,least", [
    ("pow2", 2, 2, {}, 2, 0.45), ("scaled", 2, 2, {}, 2, 0.45), ("ternary", 2, 8, {"cluster": 4}, 1, 0.8),
    ("binary", 1, 1, {}, 10, 0.35)])
def test_qat_on_conv_is_exact_and_learns(setup, method, wb, ab, opts, epochs, least):
    """QAT fine-tunes the folded graph (batch norm folded first), so the exported IR is exactly the
    trained fake-quantized network."""
    ds, model, _ = setup
    graph = folded(model)
    plan = make_plan(graph, method, wb, ab, ds.x_train[:300], **opts)
    tuned, _ = qat_finetune(graph, plan, ds.x_train, ds.y_train, epochs=epochs, seed=0, progress=False)
    net = export_network(tuned, plan)
    assert_exact(tuned, plan, net, ds)
    ptq = export_network(graph, plan)
    assert accuracy(net, ds) >= least and accuracy(net, ds) > accuracy(ptq, ds)


def test_wage_on_cnn_golden_equals_training_forward():
    from lowbit.sw.quant.wage import export_wage, train_wage

    ds = load_dataset("digits")
    model = train_wage(ds.x_train, ds.y_train, preset="cnn_digits", epochs=3, seed=0, progress=False)
    assert [n for n in model.layers if n.startswith(("conv", "scale", "pool"))] == [
        "conv0", "scale0", "pool0", "conv1", "scale1", "pool1", "scale2", "scale3"]
    assert all(l.bias is None for l in (model.layers["conv0"], model.layers["fc3"]))
    net = export_wage(model)
    assert [l.op for l in net.layers] == OPS
    assert str(net.layers[0].weight_format) == "ternary" and str(net.layers[2].in_format) == "u7"
    assert all(l.requant.multiplier is None for l in net.layers[::2][:-1])
    res = run_network(net, ds.x_test, raw_pixels=True)
    with torch.no_grad():
        out = model(to_input(ds.x_test)).numpy()
    step = 2.0 ** -7 * (0.5 / model.alphas[-1])  # the last layer's accumulator scale
    assert np.array_equal(out / step, res.logits)
    assert float(np.mean(res.classes == ds.y_test)) > 0.5


def test_wage_refuses_images_of_another_size():
    from lowbit.sw.quant.wage import train_wage

    ds = load_dataset("digits")
    with pytest.raises(QuantError, match=r"preset 'lenet' takes 28×28×1 images, not pixel rows of 64 features"):
        train_wage(ds.x_train, ds.y_train, preset="lenet", epochs=1)


def test_minifloat_on_cnn_folds_batchnorm(setup):
    from lowbit.sw.quant.minifloat import Minifloat, fast_precision_search, minifloat_forward

    ds, model, base = setup
    x = ds.x_test[:64]
    with torch.no_grad():
        plain = model.eval()(to_input(x)).numpy()
    assert np.allclose(minifloat_forward(model, x, None).numpy(), plain, atol=1e-4)
    # e8m23 rounds nothing (float32's own grid): the folded network is the trained one
    assert np.allclose(minifloat_forward(model, x, Minifloat(8, 23)).numpy(), plain, atol=1e-4)
    fast = fast_precision_search(model, ds.x_train[:10], ds.x_test, ds.y_test, float_accuracy=base)
    assert fast.evaluations <= 2 and fast.chosen is not None and fast.accuracy >= base - 0.01


def test_quantize_command_on_cnn(tmp_path, monkeypatch, capsys):
    from lowbit.sw.cli import main
    from lowbit.sw.ir import Network

    monkeypatch.chdir(tmp_path)  # the float checkpoint goes to build/models here
    assert main(["quantize", "--preset", "cnn_digits", "--dataset", "digits", "--epochs", "3", "--method", "ternary",
                 "--calib", "200", "--out", str(tmp_path / "t.npz")]) == 0
    out = capsys.readouterr().out
    assert "ternary, clusters of 4 output channels" in out and "of the multiplications replaced" in out
    net = Network.load(tmp_path / "t.npz")
    assert [l.op for l in net.layers] == OPS
