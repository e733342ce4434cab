"""lowbit's integer IR → QONNX: qonnx's own executor reproduces the golden model on every output.

Networks come from lowbit's quantizers (a tfc MLP and the cnn_digits CNN, one epoch on digits)
and from :mod:`lowbit.sw.randnet` (every rounding, per-channel multipliers, signed, ternary,
bipolar and pow2 formats); each file passes ``onnx.checker`` and is run by
``qonnx.core.onnx_exec.execute_onnx`` (through :func:`qonnx_outputs`) on the 359 digits test
images or 1,000 random uint8 images, compared with :func:`run_network`'s integer logits exactly.
The rounding cases assert that exact ties (negative ones too) occur, so the tie rules are tested,
not only argued.
"""

import numpy as np
import onnx
import pytest

from lowbit.sw.datasets import load_dataset
from lowbit.sw.export_qonnx import export_qonnx, qonnx_outputs
from lowbit.sw.formats import parse_format
from lowbit.sw.golden import run_network
from lowbit.sw.ir import Conv2dLayer, DenseLayer, InputTransform, MaxPool2dLayer, Network
from lowbit.sw.quant import quantize
from lowbit.sw.randnet import random_cnn, random_network
from lowbit.sw.requant import RequantParams
from lowbit.sw.train import train_preset


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def models(digits):
    return {p: train_preset(p, digits, epochs=1, seed=0, progress=False)[0] for p in ("tfc", "cnn_digits")}


def random_pixels(net, n=1000, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, net.in_features), dtype=np.uint8)


def roundtrip(net, pixels, path):
    """Export ``net``, check the file, and return (summary, qonnx's outputs, the golden logits)."""
    summary = export_qonnx(net, path)
    onnx.checker.check_model(onnx.load(str(path)))
    theirs = qonnx_outputs(path, pixels)
    ours = run_network(net, pixels, raw_pixels=True, keep="logits").logits
    return summary, theirs, ours


def exact_ties(net, pixels):
    """Per layer with a shift: how many ``(acc + bias)·m`` lie exactly halfway, and how many of those are negative."""
    res = run_network(net, pixels, raw_pixels=True)
    out = []
    for layer, acc in zip(net.layers, res.accumulators):
        rq = getattr(layer, "requant", None)
        if rq is None or acc is None:
            continue
        m, s = rq.per_channel(acc.shape[-1])
        v = acc * m
        tie = (s > 0) & ((v & ((1 << s) - 1)) == (1 << s >> 1))
        out.append((int(tie.sum()), int((tie & (v < 0)).sum())))
    return out


# (preset, method, weight bits, act bits, options, ops the export must use)
QUANTIZED = [
    ("tfc", "pow2", 4, 4, {}, {"Quant", "MatMul"}),
    ("cnn_digits", "pow2", 4, 4, {}, {"Conv", "MaxPool", "Flatten", "MatMul"}),
    ("cnn_digits", "scaled", 4, 4, {"granularity": "channel"}, {"Conv", "Mul"}),
    ("tfc", "scaled", 4, 4, {"granularity": "layer"}, {"Mul"}),
    ("cnn_digits", "ternary", 2, 4, {"cluster": 4}, {"Conv"}),
    ("tfc", "binary", 1, 1, {}, {"BipolarQuant"}),
    ("cnn_digits", "binary", 1, 1, {}, {"BipolarQuant", "Pad"}),
    ("cnn_digits", "dfp", 8, 8, {}, {"Conv"}),
]


@pytest.mark.parametrize("preset,method,wb,ab,opts,ops", QUANTIZED,
                         ids=[f"{c[0]}-{c[1]}-w{c[2]}a{c[3]}" for c in QUANTIZED])
def test_quantized_network_runs_in_qonnx_equal_to_the_golden_model(models, digits, tmp_path, preset, method, wb,
                                                                   ab, opts, ops):
    net = quantize(models[preset], method, wb, ab, digits.x_train[:500], progress=False, **opts)
    summary, theirs, ours = roundtrip(net, digits.x_test, tmp_path / "net.onnx")
    assert theirs.shape == ours.shape == (359, 10)
    assert np.array_equal(theirs, ours)  # integer logits, every output of every image
    assert ops <= set(summary["ops"])
    assert summary["input"]["shape"] == ([1, 64] if preset == "tfc" else [1, 1, 8, 8])
    assert summary["output"] == {"name": "logits", "shape": [1, 10], "dtype": "float32"}
    if method == "binary":  # the bipolar input threshold and bipolar activations, with its ±1 weights
        assert net.input.kind == "threshold" and net.layers[0].weight_format.kind.value == "bipolar"


def test_a_thousand_images_equal_on_every_output(models, digits, tmp_path):
    """The issue's target: the round trip on 1,000 images is equal on every output (the digits test set
    and random uint8 images), with qonnx's executor run on the whole batch in one call."""
    net = quantize(models["cnn_digits"], "scaled", 4, 4, digits.x_train[:500], progress=False)
    px = np.concatenate([digits.x_test, random_pixels(net, 1000 - len(digits.x_test))])
    _, theirs, ours = roundtrip(net, px, tmp_path / "net.onnx")
    assert theirs.shape == ours.shape == (1000, 10)
    assert np.array_equal(theirs, ours)
    assert np.array_equal(qonnx_outputs(tmp_path / "net.onnx", px, chunk=300), theirs)  # chunking changes nothing


RANDOM = [  # (weight format, activation format, rounding, multiplier, per channel)
    ("s4", "u4", "floor", False, True),
    ("s4", "u4", "half_up", True, True),
    ("s4", "u4", "half_even", True, False),
    ("s3", "s4", "half_up", True, True),  # signed activations: the offset input transform
    ("ternary", "u4", "half_even", True, True),
    ("bipolar", "bipolar", "half_up", False, True),
    ("bipolar", "bipolar", "half_even", True, True),
    ("pow2_4", "u3", "half_even", False, True),
]


@pytest.mark.parametrize("wf,af,rounding,mult,per_channel", RANDOM, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in RANDOM])
def test_random_networks_every_rounding(tmp_path, wf, af, rounding, mult, per_channel):
    kw = dict(rounding=rounding, multiplier=mult, per_channel=per_channel, seed=3)
    for net in (random_network([64, 48, 32, 10], wf, af, **kw),
                random_cnn((8, 8, 1), ("8C3", "MP2", "12C3s2p1", "10"), wf, af, **kw)):
        px = random_pixels(net, 600)
        _, theirs, ours = roundtrip(net, px, tmp_path / f"{net.name}.onnx")
        assert np.array_equal(theirs, ours), net.describe()
        if rounding != "floor":
            ties = exact_ties(net, px)
            assert sum(t for t, _ in ties) > 0 and sum(neg for _, neg in ties) > 0, ties


def test_pool_first_strides_and_a_convolutional_last_layer(tmp_path):
    """A max-pool on the input codes (3×3, stride 1), a strided padded convolution, and a convolution
    emitting the logits: qonnx_outputs gives them in lowbit's NHWC order."""
    rng = np.random.default_rng(4)
    pool = MaxPool2dLayer("u4", "pool0", in_shape=(8, 8, 2), kernel=(3, 3), stride=(1, 1))
    conv1 = Conv2dLayer(rng.integers(-8, 8, (5, 3, 3, 2)), "s4", "u4", rng.integers(-20, 20, 5),
                        RequantParams("u4", shift=[3, 4, 5, 3, 4], rounding="half_up", relu=True), "conv1",
                        in_shape=(6, 6, 2), stride=(2, 2), padding=(1, 1))
    conv2 = Conv2dLayer(rng.integers(-8, 8, (4, 2, 2, 5)), "s4", "u4", rng.integers(-20, 20, 4), None, "conv2",
                        in_shape=(3, 3, 5))
    net = Network([pool, conv1, conv2], InputTransform("shift", 4))
    summary, theirs, ours = roundtrip(net, random_pixels(net), tmp_path / "shapes.onnx")
    assert summary["input"]["shape"] == [1, 2, 8, 8] and summary["output"]["shape"] == [1, 4, 2, 2]
    assert theirs.shape == ours.shape == (1000, 2, 2, 4) and np.array_equal(theirs, ours)
    assert summary["ops"][:3] == ["Mul", "Quant", "MaxPool"]


def test_wide_layers_compute_in_float64(tmp_path):
    """s16 weights on u16 inputs with multipliers: (acc + bias)·m reaches ~2^40, past float32's 2^24. Dense
    layers cast to float64; a convolution is lowered (im2col by a one-hot float32 Conv, then a float64 MatMul:
    onnxruntime has no float64 Conv)."""
    kw = dict(rounding="half_up", multiplier=True, seed=1)
    mlp = random_network([64, 40, 10], "s16", "u16", **kw)
    cnn = random_cnn((8, 8, 1), ("4C3p1", "MP2", "6C3", "10"), "s16", "u16", **kw)
    for net, names in ((mlp, ("fc0", "fc1")), (cnn, ("conv0", "conv2", "fc3"))):
        summary, theirs, ours = roundtrip(net, random_pixels(net), tmp_path / "wide.onnx")
        assert summary["float_types"] == dict.fromkeys(names, "float64") and "Cast" in summary["ops"]
        assert summary["output"]["dtype"] == "float64"
        assert np.abs(ours).max() > 2 ** 24 and np.array_equal(theirs, ours)
    assert {"Conv", "Transpose", "MatMul"} <= set(summary["ops"])
    # a bipolar input padded with −1 (the Pad before the one-hot Conv), 9·128 terms of s16 weights: ~2^24.2
    rng = np.random.default_rng(2)
    conv = Conv2dLayer(rng.integers(-32768, 32768, (6, 3, 3, 128)), "s16", "bipolar", rng.integers(-99, 99, 6),
                       RequantParams("bipolar", shift=20, rounding="half_even"), "conv0", in_shape=(4, 4, 128),
                       padding=(1, 1))
    net = Network([conv, DenseLayer(rng.integers(-7, 8, (10, 96)), "s4", "bipolar", None, None, "fc1")],
                  InputTransform("threshold", 128))
    assert conv.acc_range[1] >= 2 ** 24
    summary, theirs, ours = roundtrip(net, random_pixels(net, 300), tmp_path / "bipolar.onnx")
    assert summary["float_types"]["conv0"] == "float64" and "Pad" in summary["ops"]
    assert np.array_equal(theirs, ours)


def test_datatype_annotations(models, digits, tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper

    net = quantize(models["cnn_digits"], "pow2", 4, 4, digits.x_train[:500], progress=False)
    export_qonnx(net, tmp_path / "net.onnx")
    m = ModelWrapper(str(tmp_path / "net.onnx"))
    conv = net.layers[0]
    assert m.get_tensor_datatype("pixels").name == "UINT8"
    assert m.get_tensor_datatype("l0_conv0_weights").name == conv.weight_format.qonnx_datatype == "INT4"
    assert m.get_tensor_datatype("l0_conv0_out").name == "UINT4"
    assert m.get_tensor_datatype("l0_conv0_acc").name == f"INT{conv.acc_bits}"
    assert np.array_equal(m.get_initializer("l0_conv0_weights"), conv.weights.transpose(0, 3, 1, 2))
    # what FINN's flow does first: qonnx's cleanup and datatype inference; the codes' types are ours,
    # and execution is unchanged
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.util.cleanup import cleanup_model

    clean = cleanup_model(m).transform(InferDataTypes())
    checked = 0
    for ours, theirs in zip(m.graph.node, clean.graph.node):
        assert ours.op_type == theirs.op_type
        if ours.op_type in ("Quant", "BipolarQuant", "MaxPool", "Flatten"):
            checked += 1
            assert m.get_tensor_datatype(ours.output[0]) == clean.get_tensor_datatype(theirs.output[0])
    assert checked == 7  # the input shift, conv0, pool0, conv1, pool1, flatten, fc2
    clean.save(str(tmp_path / "clean.onnx"))
    assert np.array_equal(qonnx_outputs(tmp_path / "clean.onnx", digits.x_test), qonnx_outputs(tmp_path / "net.onnx",
                                                                                               digits.x_test))


def test_qonnx_datatype_names_are_qonnx_datatypes():
    from qonnx.core.datatype import DataType

    for text, name in [("s4", "INT4"), ("u3", "UINT3"), ("u1", "BINARY"), ("bipolar", "BIPOLAR"),
                       ("ternary", "TERNARY"), ("s16", "INT16"), ("pow2_4", "INT8"), ("pow2_2", "INT2")]:
        fmt = parse_format(text)
        assert fmt.qonnx_datatype == name and DataType[name].name == name
        if fmt.kind.value != "pow2":  # one-to-one: the same range
            assert (DataType[name].min(), DataType[name].max()) == (fmt.min, fmt.max)
        else:  # the narrowest INT holding the powers of two
            assert DataType[name].allowed(fmt.max) and DataType[name].allowed(fmt.min)


def test_a_layer_that_cannot_be_exact_is_refused_and_nothing_is_written(tmp_path):
    """float64 holds integers up to 2^53; the IR allows (acc + bias)·m up to 2^62 (the golden model's int64)."""
    rq = RequantParams("u4", shift=48, multiplier=65535)
    # 5·5·64 terms of 32767·65535: accumulators of ~2^41.6, times the multiplier ~2^57.6
    conv = Conv2dLayer(np.full((2, 5, 5, 64), 32767), "s16", "u16", None, rq, "conv0", in_shape=(5, 5, 64))
    net = Network([conv, DenseLayer(np.ones((3, 2)), "s2", "u4", None, None, "fc1")], InputTransform("shift", 0))
    with pytest.raises(ValueError, match=r"^layer 0 \(conv0\): \(acc \+ bias\)·multiplier reaches "
                                         r"±225166237735320000 \(about 2\^57\.6\), which the QONNX export cannot "
                                         r"compute exactly: it must stay below 2\^53 \(float64\)$"):
        export_qonnx(net, tmp_path / "conv.onnx")
    dense = DenseLayer(np.full((4, 1024), 32767), "s16", "u16", None, rq, "big")
    net = Network([dense, DenseLayer(np.ones((2, 4)), "s2", "u4", None, None, "out")])
    with pytest.raises(ValueError, match=r"^layer 0 \(big\): \(acc \+ bias\)·multiplier reaches .* below 2\^53"):
        export_qonnx(net, tmp_path / "dense.onnx")
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind


def test_pixels_of_the_wrong_size_are_refused(tmp_path):
    net = random_network([64, 10], "s4", "u4")
    export_qonnx(net, tmp_path / "n.onnx")
    with pytest.raises(ValueError, match=r"pixels have 63 features per image, the model takes 64"):
        qonnx_outputs(tmp_path / "n.onnx", np.zeros((2, 63), np.uint8))


def with_offsets(net: Network, seed: int = 0) -> Network:
    """``net`` with a random per-channel product offset (−m·2^s..m·2^s) on every requantizer."""
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    layers = []
    for layer in net.layers:
        rq = getattr(layer, "requant", None)
        if rq is not None:
            n = layer.bias.shape[0]
            m, s = rq.per_channel(n)
            layer = replace(layer, requant=replace(rq, offset=rng.integers(-(m << s), (m << s) + 1)))
        layers.append(layer)
    return Network(layers, net.input, net.name)


OFFSET_CASES = [("s4", "u4", "floor", True), ("s4", "u4", "half_up", True), ("s3", "s4", "half_even", True),
                ("bipolar", "bipolar", "half_even", False), ("ternary", "u4", "half_up", False)]


@pytest.mark.parametrize("wf,af,rounding,mult", OFFSET_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in OFFSET_CASES])
def test_product_offsets_round_trip_exactly(tmp_path, wf, af, rounding, mult):
    kw = dict(rounding=rounding, multiplier=mult, seed=5)
    for base in (random_network([64, 48, 32, 10], wf, af, **kw),
                 random_cnn((8, 8, 1), ("8C3", "MP2", "12C3s2p1", "10"), wf, af, **kw)):
        net = with_offsets(base)
        px = random_pixels(net, 600)
        summary, theirs, ours = roundtrip(net, px, tmp_path / f"{net.name}.onnx")
        assert np.array_equal(theirs, ours), net.describe()
        assert not np.array_equal(ours, run_network(base, px, raw_pixels=True).logits)  # the offsets matter
        model = onnx.load(str(tmp_path / f"{net.name}.onnx"))
        assert any(n.name.endswith("_plus_offset") for n in model.graph.node)


def test_an_offset_counts_in_the_float_bound(tmp_path):
    """An offset of 2^30 makes a float32-sized layer compute in float64 (exactly); one of 2^55 is refused."""
    rng = np.random.default_rng(7)
    w = rng.integers(-8, 8, (6, 16))

    def net_with(offset):
        rq = RequantParams("u4", shift=30, multiplier=3, offset=offset, relu=True)
        return Network([DenseLayer(w, "s4", "u4", rng.integers(-5, 5, 6), rq, "fc0"),
                        DenseLayer(rng.integers(-8, 8, (4, 6)), "s4", "u4", None, None, "fc1")],
                       InputTransform("shift", 4))

    # channel j steps from j − 1 to j where acc·3 reaches 40·j: the offset is j·2^30 − 40·j
    j = np.arange(1, 7)
    net = net_with((j << 30) - 40 * j)
    px = random_pixels(net, 400)
    summary, theirs, ours = roundtrip(net, px, tmp_path / "wide.onnx")
    assert summary["float_types"]["fc0"] == "float64" and np.array_equal(theirs, ours)
    hidden = run_network(net, px, raw_pixels=True).activations[0]
    assert all(set(np.unique(hidden[:, k]).tolist()) == {k, k + 1} for k in range(6))
    with pytest.raises(ValueError, match=r"^layer 0 \(fc0\): \(acc \+ bias\)·multiplier \+ offset reaches .* "
                                         r"below 2\^53 \(float64\)$"):
        export_qonnx(net_with(np.full(6, 1 << 55)), tmp_path / "too_wide.onnx")
