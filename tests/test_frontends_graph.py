"""FloatGraph: the one forward loop, its hooks, stages, configs and checkpoints (old and new format)."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from lowbit.sw.frontends.graph import Dropout, FloatGraph, GraphError, Linear, ReLU, Scale
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
    with pytest.raises(GraphError, match="layer 'c' must be one of the float layer kinds Linear, ReLU, Dropout, "
                                         "Scale, not Conv2d"):
        FloatGraph((1, 4, 4), [("c", torch.nn.Conv2d(1, 1, 3))])
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
    with pytest.raises(GraphError, match=r"config layer 1 \('c'\) kind must be one of linear, relu, dropout, scale, "
                                         r"not 'conv2d'"):
        FloatGraph.from_config({"input_shape": [8], "layers": [cfg["layers"][0], {"name": "c", "kind": "conv2d"}]})


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
                                              r"--preset tfc\|sfc\|lfc --dataset <name> --out "):
        load_checkpoint(other)
