"""Per-layer widths (``layer_bits``): a layer's weight width and the width of the codes it emits, over
the method's ``weight_bits``/``act_bits``; the IR holds exactly those formats and equals the
fake-quantized network."""

import pytest

from lowbit.sw.datasets import load_dataset
from lowbit.sw.quant import QuantError, check_options, folded, make_plan, quantize
from lowbit.sw.quant.core import export_network, parse_layer_bits
from lowbit.sw.train import train_preset
from tests.test_quant_conv import assert_exact  # the golden model == the float64 fake-quantized pass


def test_parse_layer_bits():
    assert parse_layer_bits("fc3=w8, fc0=w4a8,conv1=a2") == {"fc3": {"w": 8}, "fc0": {"w": 4, "a": 8},
                                                             "conv1": {"a": 2}}
    assert parse_layer_bits("") == {}
    for text, message in (("fc3=8", "layer_bits entries must be LAYER=wN, LAYER=aN or LAYER=wNaN"),
                          ("fc3=", "not 'fc3='"), ("fc3=w8,fc3=a4", "names layer 'fc3' twice")):
        with pytest.raises(QuantError, match=message):
            parse_layer_bits(text)


@pytest.mark.parametrize("method,opts,message", [
    ("pow2", {"layer_bits": "fc3=w17"}, r"layer_bits\['fc3'\] weight width for method 'pow2' must be an integer in "
                                        r"2\.\.16, not 17"),
    ("ternary", {"layer_bits": "fc3=w8"}, "method 'ternary' has no weight width to choose"),
    ("binary", {"layer_bits": "fc0=a0"}, r"activation width for method 'binary' must be an integer in 1\.\.16, not 0"),
])
def test_bad_widths_are_refused_before_any_model(method, opts, message):
    with pytest.raises(QuantError, match=message):
        check_options(method, **opts)


@pytest.fixture(scope="module")
def digits_tfc():
    ds = load_dataset("digits")
    model, _ = train_preset("tfc", ds, epochs=5, seed=0, progress=False)
    return ds, folded(model)


def _formats(net):
    return [(str(l.weight_format), str(l.in_format), str(l.requant.out_format) if l.requant else None)
            for l in net.layers]


@pytest.mark.parametrize("method", ["pow2", "scaled", "dfp"])
def test_weight_and_activation_widths_per_layer(digits_tfc, method):
    ds, graph = digits_tfc
    lb = {"fc3": {"w": 8}, "fc0": {"w": 4, "a": 8}}
    plan = make_plan(graph, method, 2, 2, ds.x_train[:300], layer_bits=lb)
    net = export_network(graph, plan)
    assert _formats(net) == [("s4", "u2", "u8"), ("s2", "u8", "u2"), ("s2", "u2", "u2"), ("s8", "u2", None)]
    assert_exact(graph, plan, net, ds)
    named = quantize(graph, method, 2, 2, ds.x_train[:300], layer_bits="fc3=w8,fc0=w4a8")
    assert named.name == f"{method}_w2a2_fc3w8_fc0w4a8" and named.metadata["layer_bits"] == lb
    assert _formats(named) == _formats(net)


def test_binary_and_ternary_take_activation_widths(digits_tfc):
    ds, graph = digits_tfc
    net = quantize(graph, "binary", 1, 1, ds.x_train[:300], layer_bits="fc2=a4")
    assert _formats(net) == [("bipolar", "bipolar", "bipolar"), ("bipolar", "bipolar", "bipolar"),
                             ("bipolar", "bipolar", "u4"), ("bipolar", "u4", None)]
    plan = make_plan(graph, "ternary", 2, 4, ds.x_train[:300], layer_bits="fc1=a8")
    net = export_network(graph, plan)
    assert [f[2] for f in _formats(net)] == ["u4", "u8", "u4", None]
    assert_exact(graph, plan, net, ds)


def test_unknown_layers_and_the_last_layers_activation_are_refused(digits_tfc):
    ds, graph = digits_tfc
    with pytest.raises(QuantError, match="layer_bits names layer 'fc9', which this network does not have: its layers "
                                         "with weights are fc0, fc1, fc2, fc3"):
        quantize(graph, "pow2", 4, 4, ds.x_train[:300], layer_bits="fc9=w8")
    with pytest.raises(QuantError, match=r"layer_bits\['fc3'\]: the last layer emits logits, it has no activation"):
        quantize(graph, "scaled", 4, 4, ds.x_train[:300], layer_bits="fc3=a8")
