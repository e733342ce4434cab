"""The IR's convolution and max-pool kinds: shapes, MACs, accumulator bounds, padding values, file round trips
and every validation message (the dense kind, the file format and the registry: tests/test_ir.py)."""

import numpy as np
import pytest

from lowbit.sw.ir import (Conv2dLayer, DenseLayer, InputTransform, IRError, MaxPool2dLayer, Network,
                          accumulator_range, pad_value)
from lowbit.sw.requant import RequantParams
from tests.test_ir import drop, read_ir, seta, setl, setrq, write_ir  # the file-tampering helpers


def conv_net(seed=0, in_fmt="u4", transform=InputTransform("shift", 4)):
    """conv 3x3 pad 1 → pool 2x2 → conv 2x1 stride (1, 2) → pool 2x1 stride 1 → dense, on a 6x6x2 input."""
    rng = np.random.default_rng(seed)
    c0 = Conv2dLayer(rng.integers(-8, 8, (4, 3, 3, 2)), "s4", in_fmt, rng.integers(-20, 20, 4),
                     RequantParams("u3", shift=np.arange(4) % 3, multiplier=np.arange(1, 5), rounding="half_up",
                                   relu=True), "conv0", in_shape=(6, 6, 2), padding=(1, 1))
    p0 = MaxPool2dLayer("u3", "pool0", in_shape=(6, 6, 4))
    c1 = Conv2dLayer(rng.choice([-1, 0, 1], (5, 2, 1, 4)), "ternary", "u3", None,
                     RequantParams("u3", shift=1, relu=True), "conv1", in_shape=(3, 3, 4), stride=(1, 2))
    p1 = MaxPool2dLayer("u3", "pool1", in_shape=(2, 2, 5), kernel=(2, 1), stride=(1, 1))
    fc = DenseLayer(rng.integers(-2, 2, (3, 10)), "s2", "u3", rng.integers(-3, 3, 3), None, "fc")
    return Network([c0, p0, c1, p1, fc], transform, "cnn", {"note": "conv"})


def test_conv_and_pool_shapes_macs_and_accumulator_range():
    net = conv_net()
    assert [(l.in_shape, l.out_shape) for l in net.layers] == [
        ((6, 6, 2), (6, 6, 4)), ((6, 6, 4), (3, 3, 4)), ((3, 3, 4), (2, 2, 5)), ((2, 2, 5), (1, 2, 5)), ((10,), (3,))]
    c0 = net.layers[0]
    assert c0.macs() == 36 * 4 * 18 and net.layers[1].macs() == 0 and c0.kernel == (3, 3)
    dense = c0.as_dense()
    assert dense.weights.shape == (4, 18) and np.array_equal(dense.weights, c0.weights.reshape(4, 18))
    # the (ky, kx, c) column order: column (ky·KW + kx)·IC + c
    assert dense.weights[2, (1 * 3 + 2) * 2 + 1] == c0.weights[2, 1, 2, 1]
    assert c0.acc_range == accumulator_range(dense.weights, c0.bias, c0.in_format) and c0.acc_bits == dense.acc_bits
    assert (net.in_shape, net.in_features, net.out_features) == ((6, 6, 2), 72, 3)
    assert net.layers[1].out_format == net.layers[1].in_format == c0.requant.out_format
    assert "conv 3x3 stride 1x1 pad 1x1" in net.describe() and "maxpool 2x1 stride 1x1 u3" in net.describe()


def test_pad_value_is_the_value_of_real_zero():
    from lowbit.sw.formats import parse_format

    assert [pad_value(parse_format(f)) for f in ("u4", "s4", "ternary", "bipolar")] == [0, 0, 0, -1]
    net = conv_net()
    assert net.layers[0].pads_with == 0 and net.layers[2].pads_with is None and net.layers[1].pads_with is None


def test_conv_net_round_trip(tmp_path):
    net = conv_net()
    header, arrays = read_ir(net.save(tmp_path / "cnn.npz"))
    assert [l["op"] for l in header["layers"]] == ["conv2d", "maxpool2d", "conv2d", "maxpool2d", "dense"]
    assert header["layers"][0] == {
        "op": "conv2d", "name": "conv0", "in_shape": [6, 6, 2], "out_channels": 4, "kernel": [3, 3], "stride": [1, 1],
        "padding": [1, 1], "weight_format": "s4", "in_format": "u4", "acc_bits": net.layers[0].acc_bits,
        "requant": net.layers[0].requant.to_json()}
    assert header["layers"][3] == {"op": "maxpool2d", "name": "pool1", "in_shape": [2, 2, 5], "kernel": [2, 1],
                                   "stride": [1, 1], "format": "u3"}
    assert sorted(arrays) == ["layer0_bias", "layer0_weights", "layer2_bias", "layer2_weights", "layer4_bias",
                              "layer4_weights"]
    assert arrays["layer0_weights"].shape == (4, 3, 3, 2)
    back = Network.load(tmp_path / "cnn.npz")
    assert back.to_header() == net.to_header() and back.metadata == {"note": "conv"}
    for a, b in zip(net.layers, back.layers, strict=True):
        assert type(a) is type(b)
        for key, arr in a.arrays().items():
            assert np.array_equal(arr, b.arrays()[key]) and b.arrays()[key].dtype == np.int64
    assert back.layers[0].requant == net.layers[0].requant and back.layers[2].stride == (1, 2)


def conv(**kw):
    args = dict(weights=np.ones((2, 3, 3, 1), int), weight_format="s4", in_format="u4", name="c", in_shape=(5, 5, 1))
    args.update(kw)
    return Conv2dLayer(**args)


@pytest.mark.parametrize("kw, message", [
    (dict(in_shape=(5, 5)), r"c.in_shape must be 3 integers ≥ 1 \(H, W, C\), not \(5, 5\)"),
    (dict(in_shape=(5, 0, 1)), r"c.in_shape must be 3 integers ≥ 1 \(H, W, C\), not \(5, 0, 1\)"),
    (dict(in_shape=None), r"c.in_shape must be 3 integers ≥ 1 \(H, W, C\), not None"),
    (dict(stride=(0, 1)), r"c.stride must be 2 integers ≥ 1 \(sh, sw\), not \(0, 1\)"),
    (dict(stride=2), r"c.stride must be 2 integers ≥ 1 \(sh, sw\), not 2"),
    (dict(padding=(-1, 0)), r"c.padding must be 2 integers ≥ 0 \(ph, pw\), not \(-1, 0\)"),
    (dict(padding=(3, 0)), r"c.padding must be below the 3×3 kernel on each axis .*not \(3, 0\)"),
    (dict(weights=np.ones((2, 9), int)), r"c.weights must be a non-empty 4-D array \[OC, KH, KW, IC\], not shape \(2, 9\)"),
    (dict(weights=np.ones((2, 3, 3, 2), int)), r"c.weights must have IC = 1 \(the channels of in_shape \(5, 5, 1\)\) "
                                               r"in \[OC, KH, KW, IC\], not shape \(2, 3, 3, 2\)"),
    (dict(in_shape=(2, 5, 1)), r"c: the 3×3 kernel must fit the 2×5 padded input \(in_shape \(2, 5, 1\), padding "
                               r"\(0, 0\)\)"),
    (dict(weights=np.full((2, 3, 3, 1), 9)), r"c.weights holds 9, which s4 cannot represent"),
    (dict(in_format="pow2_3"), r"c.in_format must not be pow2"),
    (dict(bias=np.zeros(3, int)), r"c.bias must have shape \(2,\), not \(3,\)"),
    (dict(requant=RequantParams("u4", shift=np.array([1, 2, 3]))), r"requantization has 3 channels, the layer has 2"),
])
def test_conv_layer_validation_messages(kw, message):
    with pytest.raises((IRError, ValueError), match=message):
        conv(**kw)


@pytest.mark.parametrize("kw, message", [
    (dict(in_shape=(5, 4, 3)), r"p: a 2×2 pool with stride \(2, 2\) must tile the 5×4 input exactly: H − KH = 3 must "
                               r"be a multiple of sh and W − KW = 2 of sw \(with stride = kernel: KH divides H"),
    (dict(kernel=(3, 3), stride=(2, 2), in_shape=(6, 5, 1)), r"must tile the 6×5 input exactly: H − KH = 3"),
    (dict(kernel=(2, 2), stride=(3, 1)), r"p.stride must be at most the kernel \(2, 2\) on each axis \(every input "
                                         r"is read\), not \(3, 1\)"),
    (dict(kernel=(5, 1)), r"p.kernel must fit the 4×4 input, not \(5, 1\)"),
    (dict(kernel=(0, 2)), r"p.kernel must be 2 integers ≥ 1 \(KH, KW\), not \(0, 2\)"),
    (dict(fmt="pow2_4"), r"p.fmt must not be pow2"),
    (dict(fmt="q3"), r"p.fmt must be one of"),
])
def test_maxpool_layer_validation_messages(kw, message):
    args = dict(fmt="u4", name="p", in_shape=(4, 4, 3))
    args.update(kw)
    with pytest.raises((IRError, ValueError), match=message):
        MaxPool2dLayer(**args)


def test_maxpool_overlapping_windows_that_tile_are_allowed():
    assert MaxPool2dLayer("s4", in_shape=(7, 7, 2), kernel=(3, 3), stride=(2, 2)).out_shape == (3, 3, 2)
    assert MaxPool2dLayer("s4", in_shape=(6, 4, 2)).stride == (2, 2)


def test_conv_chain_validation_messages():
    net = conv_net()
    c0, p0, c1, p1, fc = net.layers
    with pytest.raises(IRError, match=r"layer 1 \(pool1\) outputs shape \(1, 2, 5\), 10 values flattened in \(h, w, c\) "
                                      r"order, but layer 2 \(fc\) expects 9 inputs"):
        Network([c1, p1, DenseLayer(np.ones((3, 9), int), "s2", "u3", name="fc")])
    with pytest.raises(IRError, match=r"layer 0 \(conv0\) outputs shape \(6, 6, 4\) but layer 1 \(conv1\) takes shape "
                                      r"\(3, 3, 4\)"):
        Network([c0, c1])
    # a vector does not become an image: a dense layer cannot feed a convolution
    d = DenseLayer(np.ones((36, 5), int), "s2", "u3", requant=RequantParams("u3"), name="d")
    with pytest.raises(IRError, match=r"layer 0 \(d\) outputs shape \(36,\) but layer 1 \(conv1\) takes shape "
                                      r"\(3, 3, 4\)"):
        Network([d, c1])
    with pytest.raises(IRError, match=r"layer 0 \(conv0\) outputs u3 but layer 1 \(p\) takes u4"):
        Network([c0, MaxPool2dLayer("u4", "p", in_shape=(6, 6, 4))])
    last = Conv2dLayer(np.ones((2, 1, 1, 4), int), "s2", "u3", name="last", in_shape=(6, 6, 4))
    with pytest.raises(IRError, match=r"layer 0 \(last\) has no requantization but is not the last layer"):
        Network([last, MaxPool2dLayer("u3", in_shape=(6, 6, 2))])
    assert Network([c0, p0]).layers[-1].out_format == c0.requant.out_format  # a pool may end a network


def test_padding_with_an_offset_input_transform_is_refused():
    """An offset transform maps pixel 0 (real zero) to -amount, so padding with 0 would not be zero."""
    with pytest.raises(IRError, match=r"layer 0 \(conv0\) pads its input with 0, which an offset input transform of "
                                      r"amount 8 gives pixel 128, not pixel 0 \(real zero\): padding must be \(0, 0\)"):
        conv_net(in_fmt="s4", transform=InputTransform("offset", 8, 4))
    assert conv_net(in_fmt="s4", transform=InputTransform("offset", 0, 4)).layers[0].pads_with == 0
    # bipolar inputs pad with -1, which a threshold transform gives pixel 0
    rng = np.random.default_rng(0)
    c = Conv2dLayer(rng.choice([-1, 1], (2, 3, 3, 1)), "bipolar", "bipolar", name="b", in_shape=(4, 4, 1),
                    padding=(1, 1))
    assert Network([c], InputTransform("threshold", 128)).layers[0].pads_with == -1


def conv_tampered(tmp_path, edit, name="c.npz"):
    header, arrays = read_ir(conv_net().save(tmp_path / "good.npz"))
    edit(header, arrays)
    return write_ir(tmp_path / name, header, arrays)


@pytest.mark.parametrize("edit, message", [
    (drop("kernel"), r"layer 0 \(conv0\): kernel must be a list of 2 integers ≥ 1 \(KH, KW\), not missing"),
    (setl(stride=[1, 0]), r"layer 0 \(conv0\): stride must be a list of 2 integers ≥ 1 \(sh, sw\), not \[1, 0\]"),
    (setl(padding=[1]), r"layer 0 \(conv0\): padding must be a list of 2 integers ≥ 0 \(ph, pw\), not \[1\]"),
    (setl(in_shape=[6, 6, 2.0]), r"layer 0 \(conv0\): in_shape must be a list of 3 integers ≥ 1 \(H, W, C\), "
                                 r"not \[6, 6, 2.0\]"),
    (setl(out_channels=0), r"layer 0 \(conv0\): out_channels must be an integer ≥ 1, not 0"),
    (setl(kernel=[3, 2]), r"layer 0 \(conv0\): array weights must have shape \(out_channels, \*kernel, in_shape\[2\]\) "
                          r"= \(4, 3, 2, 2\), not \(4, 3, 3, 2\)"),
    (setl(in_shape=[6, 6, 3]), r"array weights must have shape .* = \(4, 3, 3, 3\), not \(4, 3, 3, 2\)"),
    (setl(padding=[3, 0]), r"layer 0 \(conv0\): conv0.padding must be below the 3×3 kernel"),
    (setl(acc_bits=2), r"layer 0 \(conv0\): acc_bits must be at least \d+, the worst-case bound of these weights over "
                       r"the u4 input range"),
    (setl(dilation=[1, 1]), r"layer 0 \(conv0\): the layer has an unknown field 'dilation'; allowed fields: name, "
                            r"in_shape, out_channels, kernel, stride, padding, weight_format, in_format, acc_bits, "
                            r"requant"),
    (setrq(shift=[1, 2]), r"layer 0 \(conv0\): requant.shift must be an integer or a list of 4 integers"),
    (seta("layer0_bias", np.zeros(5, np.int64)), r"array bias must have shape \(out_channels,\) = \(4,\), not \(5,\)"),
    (lambda h, a: a.pop("layer2_weights"), r"layer 2 \(conv1\): array layer2_weights must be in the file \(a conv2d "
                                           r"layer stores weights, bias\), not missing"),
    (seta("layer1_weights", np.zeros((2, 2), np.int64)), r"holds arrays no layer owns: layer1_weights"),
    (setl(1, format="pow2_3"), r"layer 1 \(pool0\): format must be .*\(pow2 is a weight format\), not 'pow2_3'"),
    (drop("format", 1), r"layer 1 \(pool0\): format must be a format string: .*, not missing"),
    (setl(1, kernel=[3, 3]), r"layer 1 \(pool0\): pool0: a 3×3 pool with stride \(2, 2\) must tile the 6×6 input"),
    (setl(1, stride=None), r"layer 1 \(pool0\): stride must be a list of 2 integers ≥ 1 \(sh, sw\), not None"),
    (setl(1, out_format="u3"), r"layer 1 \(pool0\): the layer has an unknown field 'out_format'; allowed fields: "
                               r"name, in_shape, kernel, stride, format"),
    (setl(1, format="u4"), r"layer 0 \(conv0\) outputs u3 but layer 1 \(pool0\) takes u4"),
    (setl(4, in_features=9), r"array weights must have shape \(out_features, in_features\) = \(3, 9\)"),
])
def test_bad_conv_files_name_the_layer_field_value_and_what_is_allowed(tmp_path, edit, message):
    with pytest.raises(IRError, match=message):
        Network.load(conv_tampered(tmp_path, edit))
