"""FloatGraph: the one forward loop, its hooks, stages, configs and checkpoints (old and new format)."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from lowbit.sw.frontends.graph import (BatchNorm, Conv2d, Dropout, Flatten, FloatGraph, GraphError, Linear, MaxPool2d,
                                      ReLU, Scale)
from lowbit.sw.quant import QuantError, make_plan
from lowbit.sw.quant.core import QuantPlan, export_network, quant_stages
from lowbit.sw.train import CheckpointError, load_checkpoint, mlp, predict, save_checkpoint


@pytest.fixture
def graph():
    torch.manual_seed(0)
    return mlp(8, [6, 5], 3, dropout=0.25)


def reference(g, x, *, train=False, weights=None, act=torch.relu):
    """The MLP forward pass written out by hand (what the torch MLP class computed)."""
    lins = [g.layers[f"fc{i}"] for i in range(3)]
    for i, lin in enumerate(lins):
        w, b = (lin.weight, lin.bias) if weights is None else weights[i]
        x = F.linear(x, w, b)
        if i < 2:
            x = F.dropout(act(x), 0.25, training=train)
    return x


def test_layers_shapes_and_state_dict(graph):
    assert list(graph.layers) == ["fc0", "relu0", "drop0", "fc1", "relu1", "drop1", "fc2"]
    assert graph.shapes == {"fc0": (6,), "relu0": (6,), "drop0": (6,), "fc1": (5,), "relu1": (5,), "drop1": (5,),
                            "fc2": (3,)}
    assert graph.input_shape == (8,) and graph.output_shape == (3,)
    assert list(graph.state_dict()) == ["fc0.weight", "fc0.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert [l.out_features for l in graph.linears] == [6, 5, 3]
    assert "dropout" not in [l.kind for l in mlp(8, [6], 3, dropout=0.0).layers.values()]


def test_forward_equals_hand_written_reference(graph):
    x = torch.rand(17, 8)
    graph.eval()
    assert torch.equal(graph(x), reference(graph, x))
    # training mode: dropout draws from torch's RNG in the same order as the reference
    graph.train()
    torch.manual_seed(5)
    y = graph(x)
    torch.manual_seed(5)
    assert torch.equal(y, reference(graph, x, train=True))
    assert not torch.equal(y, reference(graph, x))


def test_collect_every_layer_output(graph):
    graph.eval()
    x = torch.rand(4, 8)
    outs = {}
    y = graph.run(x, collect=outs)
    assert list(outs) == list(graph.layers) and outs["fc2"] is y
    assert torch.equal(outs["fc0"], F.linear(x, graph.fc0.weight, graph.fc0.bias))
    assert torch.equal(outs["relu0"], torch.relu(outs["fc0"]))
    assert all(tuple(t.shape[1:]) == graph.shapes[n] for n, t in outs.items())


def test_weight_activation_and_output_hooks(graph):
    graph.eval()
    x = torch.rand(9, 8)
    subst = {n: (2 * l.weight, None) for n, l in graph.layers.items() if l.weighted}
    seen = []
    y = graph.run(x, params=lambda name, layer: subst[name], act=lambda name, layer, z: torch.clamp(z, 0, 0.1),
                  out=lambda name, layer, t: seen.append(name) or t)
    assert torch.equal(y, reference(graph, x, weights=[subst[f"fc{i}"] for i in range(3)],
                                    act=lambda z: torch.clamp(z, 0, 0.1)))
    assert seen == list(graph.layers)
    # params returning None keeps the layer's own tensors; out transforms what the next layer sees
    assert torch.equal(graph.run(x, params=lambda name, layer: None), graph(x))
    y = graph.run(x, out=lambda name, layer, t: t + 1 if name == "fc0" else t)
    h = torch.relu(F.linear(x, graph.fc0.weight, graph.fc0.bias) + 1)
    assert torch.equal(y, graph.fc2(torch.relu(graph.fc1(h))))


def test_shape_and_layer_errors():
    with pytest.raises(GraphError, match=r"layer 'fc0' \(linear 5->3\) takes inputs of shape \(5,\), but the graph "
                                         r"input gives \(4,\)"):
        FloatGraph((4,), [("fc0", Linear(5, 3))])
    with pytest.raises(GraphError, match=r"layer 'fc1' \(linear 4->2\) takes inputs of shape \(4,\), but layer "
                                         r"'relu0' gives \(3,\)"):
        FloatGraph((4,), [("fc0", Linear(4, 3)), ("relu0", ReLU()), ("fc1", Linear(4, 2))])
    g = FloatGraph((4,), [("fc0", Linear(4, 3))])
    with pytest.raises(GraphError, match=r"FloatGraph input must have shape \(batch, 4\), not \(2, 5\)"):
        g(torch.rand(2, 5))
    with pytest.raises(GraphError, match="layer name must be unique, not 'a'"):
        FloatGraph((4,), [("a", Linear(4, 4)), ("a", ReLU())])
    with pytest.raises(GraphError, match="layer name must be a Python identifier not used by FloatGraph, not 'run'"):
        FloatGraph((4,), [("run", Linear(4, 4))])
    with pytest.raises(GraphError, match="layer 'c' must be one of the float layer kinds Linear, Conv2d, BatchNorm, "
                                         "ReLU, MaxPool2d, Flatten, Dropout, Scale, not torch.nn.modules.conv.Conv2d"):
        FloatGraph((4, 4, 1), [("c", torch.nn.Conv2d(1, 1, 3))])
    with pytest.raises(GraphError, match="Linear out_features must be a positive integer, not 0"):
        Linear(4, 0)
    with pytest.raises(GraphError, match=r"Dropout p must be a number in \[0, 1\), not 1.5"):
        Dropout(1.5)
    with pytest.raises(GraphError, match="Scale divisor must be a positive finite number, not 0"):
        Scale(0)


def test_config_round_trip(graph):
    cfg = graph.config()
    assert cfg["layers"][0] == {"name": "fc0", "kind": "linear", "in_features": 8, "out_features": 6, "bias": True}
    assert cfg["layers"][2] == {"name": "drop0", "kind": "dropout", "p": 0.25}
    g2 = FloatGraph.from_config(cfg)
    g2.load_state_dict(graph.state_dict())
    x = torch.rand(3, 8)
    assert g2.config() == cfg and torch.equal(g2.eval()(x), graph.eval()(x))
    with pytest.raises(GraphError, match=r"config layer 1 \('c'\) kind must be one of linear, conv2d, batchnorm, relu, "
                                         r"maxpool2d, flatten, dropout, scale, not 'lstm'"):
        FloatGraph.from_config({"input_shape": [8], "layers": [cfg["layers"][0], {"name": "c", "kind": "lstm"}]})


def test_stages():
    g = FloatGraph((4,), [("fc0", Linear(4, 3, bias=False)), ("s0", Scale(4.0)), ("relu0", ReLU()),
                          ("drop0", Dropout(0.1)), ("fc1", Linear(3, 2)), ("s1", Scale(2.0))])
    (a, b) = g.stages()
    assert (a.name, a.divisors, a.act) == ("fc0", (4.0,), "relu0") and (b.name, b.divisors, b.act) == ("fc1", (2.0,), None)
    w, bias = a.float_params()
    assert np.array_equal(w, g.fc0.weight.detach().double().numpy() / 4.0) and np.array_equal(bias, np.zeros(3))
    assert np.array_equal(b.float_params()[1], g.fc1.bias.detach().double().numpy() / 2.0)
    with pytest.raises(GraphError, match="layer 'relu0' \\(relu\\) comes before any layer with weights"):
        FloatGraph((4,), [("relu0", ReLU()), ("fc0", Linear(4, 2))]).stages()
    with pytest.raises(QuantError, match="layer 'fc0' needs an activation \\(ReLU\\) before the next layer"):
        quant_stages(FloatGraph((4,), [("fc0", Linear(4, 3)), ("fc1", Linear(3, 2))]))
    with pytest.raises(QuantError, match="the last layer 'fc0' must emit raw logits, not pass activation 'relu0'"):
        quant_stages(FloatGraph((4,), [("fc0", Linear(4, 3)), ("relu0", ReLU())]))


def test_plan_keyed_by_layer_name(graph):
    graph.eval()
    calib = np.random.default_rng(0).integers(0, 256, (200, 8), dtype=np.uint8)
    plan = make_plan(graph, "pow2", 4, 4, calib)
    assert list(plan.weights) == ["fc0", "fc1", "fc2"] and list(plan.acts) == ["relu0", "relu1"]
    assert plan.acts[-1] is plan.acts["relu1"]
    net = export_network(graph, plan)
    assert [l.name for l in net.layers] == ["fc0", "fc1", "fc2"]
    # a plan built elsewhere (an importer's) with the same quantizers gives the same IR
    handed = QuantPlan(dict(plan.weights), dict(plan.acts), plan.input, plan.transform, plan.requant,
                       plan.multiplier_bits, dict(plan.metadata))
    again = export_network(graph, handed)
    assert again.to_header() == net.to_header()
    assert all(np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)
               for a, b in zip(again.layers, net.layers))
    bad = QuantPlan({"a": plan.weights[0], "fc1": plan.weights[1], "fc2": plan.weights[2]}, dict(plan.acts),
                    plan.input, plan.transform)
    with pytest.raises(QuantError, match=r"plan weights must be keyed by the graph's layers \['fc0', 'fc1', 'fc2'\] "
                                         r"\(in order\), not \['a', 'fc1', 'fc2'\]"):
        export_network(graph, bad)
    with pytest.raises(QuantError, match="QuantPlan acts must be a mapping layer name → quantizer, not list"):
        QuantPlan(dict(plan.weights), list(plan.acts.values()), plan.input, plan.transform)


def v1_checkpoint(path, state, arch, info):
    """A checkpoint exactly as lowbit wrote it before FloatGraph (the torch MLP class)."""
    torch.save({"format": "lowbit-mlp", "version": 1, "arch": arch, "info": info, "state_dict": state}, path)
    return path


def test_old_format_checkpoint_loads_and_predicts_identically(tmp_path):
    gen = torch.Generator().manual_seed(3)
    sizes = [64, 64, 64, 64, 10]
    state = {}
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        state[f"linears.{i}.weight"] = torch.randn(b, a, generator=gen) * 0.2
        state[f"linears.{i}.bias"] = torch.randn(b, generator=gen) * 0.1
    arch = {"in_features": 64, "hidden": [64, 64, 64], "classes": 10}
    p = v1_checkpoint(tmp_path / "tfc_digits_s0_e10.pt", state, arch, {"test_accuracy": 0.5})
    model, info = load_checkpoint(p, preset="tfc", in_features=64)
    assert info == {"test_accuracy": 0.5, "preset": "tfc"}
    pixels = np.random.default_rng(1).integers(0, 256, (50, 64), dtype=np.uint8)
    x = torch.as_tensor(pixels, dtype=torch.float32) / 256
    for i in range(4):
        x = F.linear(x, state[f"linears.{i}.weight"], state[f"linears.{i}.bias"])
        x = torch.relu(x) if i < 3 else x
    assert np.array_equal(predict(model, pixels), x.argmax(1).numpy())
    # re-saved, it is a version-2 checkpoint recording the layer list, still weights-only
    p2 = save_checkpoint(model, tmp_path / "v2.pt", **info)
    ck = torch.load(p2, weights_only=True)
    assert ck["version"] == 2 and [l["name"] for l in ck["graph"]["layers"]][:3] == ["fc0", "relu0", "drop0"]
    m2, info2 = load_checkpoint(p2, preset="tfc")
    assert info2 == info and np.array_equal(predict(m2, pixels), predict(model, pixels))
    with pytest.raises(CheckpointError, match="holds a 64-64-64-64-10 MLP, but preset 'lfc'"):
        load_checkpoint(p, preset="lfc")


def test_unreadable_checkpoints_say_how_to_retrain(tmp_path):
    hint = "retrain it: lowbit train --preset tfc --dataset digits --seed 0 --epochs 10 --out "
    p = tmp_path / "tfc_digits_s0_e10.pt"
    torch.save({"format": "lowbit-mlp", "version": 7}, p)
    with pytest.raises(CheckpointError, match="is a lowbit checkpoint of version 7; this lowbit reads versions 1 and "
                                              "2; " + hint) as e:
        load_checkpoint(p)
    assert str(p) in str(e.value)
    arch = {"in_features": 64, "hidden": [64, 64, 64], "classes": 10}
    v1_checkpoint(p, {"linears.0.weight": torch.zeros(64, 64)}, arch, {})
    with pytest.raises(CheckpointError, match="its weights do not fit its layer list .*" + hint):
        load_checkpoint(p)
    torch.save({"format": "lowbit-mlp", "version": 2, "graph": {"input_shape": [64], "layers": [{"kind": "x"}]}}, p)
    with pytest.raises(CheckpointError, match="is a damaged lowbit checkpoint of version 2 .*must be a dict with "
                                              "'name' and 'kind'.*" + hint):
        load_checkpoint(p)
    other = tmp_path / "mine.pt"
    other.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"is not a lowbit checkpoint .*retrain it: lowbit train "
                                              r"--preset tfc\|sfc\|lfc\|lenet\|cnn_digits --dataset <name> --out "):
        load_checkpoint(other)


# ---- image layers: NHWC tensors, torch semantics ----------------------------------------
def small_cnn(bias=True):
    torch.manual_seed(1)
    return FloatGraph((6, 7, 2), [("conv0", Conv2d(2, 4, (3, 2), stride=(1, 2), padding=1, bias=bias)),
                                  ("bn0", BatchNorm(4)), ("relu0", ReLU()), ("pool0", MaxPool2d(2)),
                                  ("drop0", Dropout(0.3)), ("flatten", Flatten()), ("fc1", Linear(24, 5)),
                                  ("bn1", BatchNorm(5)), ("relu1", ReLU()), ("fc2", Linear(5, 3))])


def test_image_layers_are_torch_on_nhwc():
    g = small_cnn()
    # conv (6+2-3)+1 = 6 rows, (7+2-2)//2+1 = 4 columns; pool 3×2; flatten 3·2·4 = 24
    assert g.shapes == {"conv0": (6, 4, 4), "bn0": (6, 4, 4), "relu0": (6, 4, 4), "pool0": (3, 2, 4),
                        "drop0": (3, 2, 4), "flatten": (24,), "fc1": (5,), "bn1": (5,), "relu1": (5,), "fc2": (3,)}
    assert g.conv0.weight.shape == (4, 2, 3, 2)  # torch's [OC, IC, KH, KW]
    x = torch.rand(5, 6, 7, 2)
    ref_conv = torch.nn.Conv2d(2, 4, (3, 2), stride=(1, 2), padding=1)
    ref_conv.load_state_dict(g.conv0.state_dict())
    ref_bn = torch.nn.BatchNorm2d(4)
    for train in (True, False):  # batch statistics (and running-stat updates), then the running ones
        g.train(train), ref_bn.train(train)
        outs = {}
        g.run(x, collect=outs)
        nchw = ref_conv(x.permute(0, 3, 1, 2))
        assert torch.equal(outs["conv0"], nchw.permute(0, 2, 3, 1))
        bn = ref_bn(nchw)
        assert torch.allclose(outs["bn0"], bn.permute(0, 2, 3, 1), rtol=0, atol=1e-6)
        pooled = torch.nn.functional.max_pool2d(torch.relu(bn), 2)
        assert torch.allclose(outs["pool0"], pooled.permute(0, 2, 3, 1), rtol=0, atol=1e-6)
        assert torch.equal(g.bn0.running_mean, ref_bn.running_mean) and torch.equal(g.bn0.running_var,
                                                                                    ref_bn.running_var)
    # flatten is NHWC order: (h, w, c), channels innermost
    assert torch.equal(outs["flatten"][:, :4], outs["drop0"][:, 0, 0, :])
    assert torch.equal(outs["flatten"][:, 4:8], outs["drop0"][:, 0, 1, :])
    # a batch norm after a Linear is torch's BatchNorm1d
    ref1 = torch.nn.BatchNorm1d(5)
    ref1.load_state_dict(g.bn1.state_dict())
    assert torch.equal(outs["bn1"], ref1.eval()(outs["fc1"]))
    # the graph also takes its input as flat pixel rows (NHWC order)
    assert torch.equal(g(x.reshape(5, -1)), g(x))
    with pytest.raises(GraphError, match=r"input must have shape \(batch, 6, 7, 2\) or \(batch, 84\), not \(5, 83\)"):
        g(torch.rand(5, 83))


def test_conv_weight_orders_and_params_hook():
    g = small_cnn(bias=False).eval()
    w = g.conv0.weight
    assert torch.equal(g.conv0.ir_weight(), w.permute(0, 2, 3, 1))
    assert np.array_equal(g.conv0.ir_weight(w.detach().numpy()), np.transpose(w.detach().numpy(), (0, 2, 3, 1)))
    assert torch.equal(g.fc1.ir_weight(), g.fc1.weight)
    x = torch.rand(3, 6, 7, 2)
    y = g.run(x, params=lambda name, layer: (-layer.weight, None) if name == "conv0" else None)
    outs = {}
    g.run(-x, collect=outs, params=lambda name, layer: (layer.weight, None) if name == "conv0" else None)
    assert torch.equal(y, outs["fc2"])  # conv(x; −W) = conv(−x; W) with zero padding and no bias


def test_image_layer_errors_and_descriptions():
    with pytest.raises(GraphError, match=r"layer 'c' \(conv2d 3->4 3x3\) takes images of shape \(height, width, 3\), "
                                         r"but the graph input gives \(8, 8, 1\)"):
        FloatGraph((8, 8, 1), [("c", Conv2d(3, 4, 3))])
    with pytest.raises(GraphError, match=r"layer 'c' \(conv2d 1->4 5x5 pad 1\) takes images of at least 3×3 pixels, "
                                         r"but the graph input gives \(2, 8, 1\)"):
        FloatGraph((2, 8, 1), [("c", Conv2d(1, 4, 5, padding=1))])
    with pytest.raises(GraphError, match=r"layer 'p' \(maxpool2d 2x2\) takes images of shape \(height, width, "
                                         r"channels\), but the graph input gives \(64,\)"):
        FloatGraph((64,), [("p", MaxPool2d(2))])
    with pytest.raises(GraphError, match=r"layer 'b' \(batchnorm 3\) takes inputs of shape \(\.\.\., 3\), but the "
                                         r"graph input gives \(8, 8, 1\)"):
        FloatGraph((8, 8, 1), [("b", BatchNorm(3))])
    for make, msg in ((lambda: Conv2d(1, 2, 0), r"Conv2d kernel_size must be a positive integer or a pair of them, "
                                                r"not 0"),
                      (lambda: Conv2d(1, 2, 3, padding=-1), "Conv2d padding must be a non-negative integer or a pair "
                                                            "of them, not -1"),
                      (lambda: Conv2d(1, 2, 3, padding="same"), "Conv2d padding must be a non-negative integer or a "
                                                                "pair of them, not 'same'"),
                      (lambda: Conv2d(0, 2, 3), "Conv2d in_channels must be a positive integer, not 0"),
                      (lambda: MaxPool2d((2, 2, 2)), r"MaxPool2d kernel_size must be a positive integer or a pair of "
                                                     r"them, not \(2, 2, 2\)"),
                      (lambda: BatchNorm(4, eps=0), r"BatchNorm eps must be a number in \(0, inf\], not 0")):
        with pytest.raises(GraphError, match=msg):
            make()
    assert Conv2d(3, 8, (3, 5), stride=2, padding=(1, 2), bias=False).describe() == \
        "conv2d 3->8 3x5 stride 2 pad (1, 2) (no bias)"
    assert MaxPool2d(3, 2).describe() == "maxpool2d 3x3 stride (2, 2)"
    with pytest.raises(GraphError, match=r"image layers take a batch of shape \(batch, height, width, channels\), "
                                         r"not \(2, 3, 4, 4, 1\)"):
        FloatGraph((4, 4, 1), [("c", Conv2d(1, 1, 3))])(torch.rand(2, 3, 4, 4, 1))


def test_image_graph_config_round_trip():
    g = small_cnn()
    g.train()
    g(torch.rand(8, 6, 7, 2))  # running statistics away from their initial values
    cfg = g.config()
    assert cfg["layers"][0] == {"name": "conv0", "kind": "conv2d", "in_channels": 2, "out_channels": 4,
                                "kernel_size": [3, 2], "stride": [1, 2], "padding": [1, 1], "bias": True}
    assert cfg["layers"][1] == {"name": "bn0", "kind": "batchnorm", "num_features": 4, "eps": 1e-5, "momentum": 0.1}
    assert cfg["layers"][3] == {"name": "pool0", "kind": "maxpool2d", "kernel_size": [2, 2], "stride": [2, 2]}
    assert cfg["layers"][5] == {"name": "flatten", "kind": "flatten"}
    g2 = FloatGraph.from_config(cfg)
    g2.load_state_dict(g.state_dict())
    assert "bn0.running_var" in g.state_dict() and g2.config() == cfg
    x = torch.rand(3, 6, 7, 2)
    assert torch.equal(g2.eval()(x), g.eval()(x))


def test_image_stages():
    g = small_cnn()
    conv, fc1, fc2 = g.stages()
    assert (conv.name, conv.bn, conv.act, conv.pool, conv.in_shape, conv.out_shape) == (
        "conv0", "bn0", "relu0", "pool0", (6, 7, 2), (6, 4, 4))
    assert list(conv.members) == ["conv0", "bn0", "relu0", "pool0", "drop0", "flatten"]
    assert (fc1.name, fc1.bn, fc1.act, fc1.pool, fc1.in_shape) == ("fc1", "bn1", "relu1", None, (24,))
    assert (fc2.name, fc2.bn, fc2.act) == ("fc2", None, None)
    # float_params: the IR's weight order, the batch norm's eval statistics folded in
    g.bn0.running_mean.uniform_(-1, 1), g.bn0.running_var.uniform_(0.5, 2), g.bn0.weight.data.uniform_(-2, 2)
    w, b = conv.float_params()
    gamma, mean, var = (t.detach().double().numpy() for t in (g.bn0.weight, g.bn0.running_mean, g.bn0.running_var))
    scale = gamma / np.sqrt(var + g.bn0.eps)
    w_ref = np.transpose(g.conv0.weight.detach().double().numpy(), (0, 2, 3, 1)) * scale[:, None, None, None]
    assert w.shape == (4, 3, 2, 2) and np.allclose(w, w_ref, rtol=1e-12, atol=0)
    b_ref = (g.conv0.bias.detach().double().numpy() - mean) * scale + g.bn0.bias.detach().double().numpy()
    assert np.allclose(b, b_ref, rtol=1e-12, atol=1e-15)

    def layers(*names_kinds):
        kinds = {"conv": lambda: Conv2d(1, 2, 3), "bn": lambda: BatchNorm(2), "relu": ReLU, "pool": MaxPool2d,
                 "scale": lambda: Scale(2.0), "drop": Dropout, "flatten": Flatten}
        return FloatGraph((6, 6, 1), [(f"{k}{i}", kinds[k]()) for i, k in enumerate(names_kinds)])

    assert layers("flatten").stages() == () and layers("drop", "conv", "scale", "relu").stages()[0].divisors == (2.0,)
    for kinds, msg in ((("conv", "relu", "bn"), r"layer 'bn2' \(batchnorm\) must directly follow a layer with weights "
                                                r"\(Linear or Conv2d\), not layer 'relu1' \(relu\)"),
                       (("conv", "drop", "bn"), r"layer 'bn2' \(batchnorm\) must directly follow .* not layer 'drop1'"),
                       (("conv", "bn", "bn"), r"layer 'bn2' \(batchnorm\) must directly follow .* not layer 'bn1'"),
                       (("conv", "pool", "relu"), r"layer 'pool1' \(maxpool2d\) must follow the activation of layer "
                                                  r"'conv0' \(pooling works on its requantized codes\)"),
                       (("conv", "relu", "pool", "relu"), r"layer 'relu3' \(relu\) follows max-pool 'pool2' of layer "
                                                          r"'conv0'; only dropout and flatten may follow it"),
                       (("conv", "relu", "scale"), r"layer 'scale2' \(scale\) follows activation 'relu1' of layer "
                                                   r"'conv0'; only a max-pool, dropout and flatten may follow"),
                       (("pool", "conv"), r"layer 'pool0' \(maxpool2d\) comes before any layer with weights")):
        with pytest.raises(GraphError, match=msg):
            layers(*kinds).stages()


def test_stage_to_ir_builds_conv_and_pool_layers():
    from lowbit.sw.ir import Conv2dLayer, DenseLayer, MaxPool2dLayer
    from lowbit.sw.requant import RequantParams

    g = small_cnn()
    conv, fc1, fc2 = g.stages()
    w, _ = conv.float_params()
    q = np.round(w * 20).astype(np.int64)  # integer weights in the IR's [OC, KH, KW, IC] order
    bias = np.arange(4, dtype=np.int64) - 2
    rq = RequantParams("u4", 3, None, "half_up", True)
    ir_conv, ir_pool = conv.to_ir(q, "s8", "u8", bias, rq)
    assert isinstance(ir_conv, Conv2dLayer) and isinstance(ir_pool, MaxPool2dLayer)
    assert (ir_conv.name, ir_conv.in_shape, ir_conv.stride, ir_conv.padding, ir_conv.out_shape) == (
        "conv0", (6, 7, 2), (1, 2), (1, 1), (6, 4, 4))
    assert (ir_pool.name, ir_pool.in_shape, ir_pool.kernel, ir_pool.stride, str(ir_pool.fmt)) == (
        "pool0", (6, 4, 4), (2, 2), (2, 2), str(rq.out_format))
    assert np.array_equal(ir_conv.weights, q)
    # the IR's formula (its docstring) on integer pixels equals the float layer's torch convolution with the
    # same integers back in torch's order: the weight permutation is the right one
    x = np.random.default_rng(0).integers(0, 256, (3, 6, 7, 2))
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    acc = np.zeros((3, 6, 4, 4), np.int64)
    for oy in range(6):
        for ox in range(4):
            win = xp[:, oy:oy + 3, 2 * ox:2 * ox + 2, :]
            acc[:, oy, ox] = np.einsum("bhwc,ohwc->bo", win, q) + bias
    torch_w = torch.as_tensor(np.transpose(q, (0, 3, 1, 2)), dtype=torch.float64)
    ref = g.conv0.compute(torch.as_tensor(x, dtype=torch.float64), torch_w, torch.as_tensor(bias, dtype=torch.float64))
    assert np.array_equal(ref.numpy().astype(np.int64), acc)
    (dense,) = fc2.to_ir(np.ones((3, 5), np.int64), "s2", "u4")
    assert isinstance(dense, DenseLayer) and dense.name == "fc2" and dense.in_features == 5
    with pytest.raises(GraphError, match="max-pool 'pool0' needs the requantized codes of layer 'conv0'"):
        conv.to_ir(q, "s8", "u8", bias, None)
