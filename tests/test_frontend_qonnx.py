"""QONNX import (lowbit.sw.frontends.qonnx): small Brevitas models trained here on the 8×8 digits,
exported with ``export_qonnx`` and imported; the integer IR is compared with qonnx's own executor on
the whole digits test set (359 images)."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from lowbit.sw.datasets import load_dataset
from lowbit.sw.frontends.common import ModelImportError
from lowbit.sw.frontends.qonnx import import_qonnx, qonnx_agreement

import brevitas.nn as qnn  # noqa: E402
from brevitas.export import export_qonnx  # noqa: E402
from brevitas.inject.enum import ScalingImplType  # noqa: E402
from brevitas.quant import (Int8WeightPerChannelFloat, Int8WeightPerTensorFixedPoint, Int16Bias,  # noqa: E402
                            Int32Bias, Uint8ActPerTensorFixedPoint)  # noqa: E402
from brevitas.quant.binary import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst  # noqa: E402

DIGITS = load_dataset("digits")


class FixedInput(Uint8ActPerTensorFixedPoint):
    """Unsigned 8-bit input quantizer with the fixed scale 2^-8: code = pixel for x = pixel/256."""

    scaling_impl_type = ScalingImplType.CONST
    scaling_const = 1.0  # the threshold: scale 2^round(log2(1/255)) = 2^-8
    max_val = 1.0


class Centered(nn.Module):
    """x − ½, so a bipolar input quantizer gives pixel ≥ 128 → +1 (a sign of pixel/255 alone is always +1)."""

    def forward(self, x):
        return x - 0.5


def float_cnn():
    """(a) W4A4 CNN with float scales and batch norm: conv-BN-ReLU-pool, conv-BN-ReLU, linear."""
    return nn.Sequential(
        qnn.QuantConv2d(1, 8, 3, padding=1, weight_bit_width=4, bias=False), nn.BatchNorm2d(8),
        qnn.QuantReLU(bit_width=4), nn.MaxPool2d(2),
        qnn.QuantConv2d(8, 16, 3, weight_bit_width=4, bias=False), nn.BatchNorm2d(16),
        qnn.QuantReLU(bit_width=4), nn.Flatten(),
        qnn.QuantLinear(16 * 2 * 2, 10, bias=True, weight_bit_width=4))


def pow2_cnn():
    """(b) the same with power-of-two scales, integer biases in the accumulator scale and no batch norm."""
    w = dict(weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=4, bias=True, bias_quant=Int16Bias)
    act = dict(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4, return_quant_tensor=True)
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=FixedInput, bit_width=8, return_quant_tensor=True),
        qnn.QuantConv2d(1, 8, 3, padding=1, **w), qnn.QuantReLU(**act), nn.MaxPool2d(2),
        qnn.QuantConv2d(8, 16, 3, **w), qnn.QuantReLU(**act), nn.Flatten(),
        qnn.QuantLinear(16 * 2 * 2, 10, **w))


def binary_mlp():
    """(c) W1A1 MLP: bipolar input (pixel ≥ 128), binary weights, BN + bipolar activations."""
    act = dict(act_quant=SignedBinaryActPerTensorConst)
    wq = dict(weight_quant=SignedBinaryWeightPerTensorConst, bias=False)
    return nn.Sequential(
        nn.Flatten(), Centered(), qnn.QuantIdentity(**act),
        qnn.QuantLinear(64, 96, **wq), nn.BatchNorm1d(96), qnn.QuantIdentity(**act),
        qnn.QuantLinear(96, 10, **wq))


def per_channel_cnn():
    """(d) float per-channel weight scales, integer biases in the accumulator scale (Int32Bias), no BN."""
    w = dict(weight_quant=Int8WeightPerChannelFloat, weight_bit_width=4, bias=True, bias_quant=Int32Bias)
    act = dict(bit_width=4, return_quant_tensor=True)
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=FixedInput, bit_width=8, return_quant_tensor=True),
        qnn.QuantConv2d(1, 8, 3, padding=1, **w), qnn.QuantReLU(**act), nn.MaxPool2d(2),
        qnn.QuantConv2d(8, 16, 3, **w), qnn.QuantReLU(**act), nn.Flatten(),
        qnn.QuantLinear(16 * 2 * 2, 10, weight_bit_width=4, bias=True, bias_quant=Int16Bias))


def train_and_export(model, path, *, divisor: float = 255.0, steps: int = 300, lr: float = 1e-2):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared cores: one thread is as fast for these tiny models
    try:
        return _train_and_export(model, path, divisor, steps, lr)
    finally:
        torch.set_num_threads(threads)


def _train_and_export(model, path, divisor, steps, lr):
    torch.manual_seed(0)
    x = torch.tensor(DIGITS.x_train, dtype=torch.float32).reshape(-1, 1, 8, 8) / divisor
    y = torch.tensor(DIGITS.y_train)
    opt = torch.optim.Adam(model.parameters(), lr)
    for _ in range(steps):
        i = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, torch.zeros(1, 1, 8, 8), export_path=str(path), dynamo=False)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The three models, trained once for the module: name → (path, input_scale)."""
    d = tmp_path_factory.mktemp("qonnx")

    def seeded(build):
        torch.manual_seed(0)  # the initial weights too: the same models every run
        return build()

    return {"float_cnn": (train_and_export(seeded(float_cnn), d / "float_cnn.onnx"), 1 / 255),
            "pow2_cnn": (train_and_export(seeded(pow2_cnn), d / "pow2_cnn.onnx", divisor=256.0), 1 / 256),
            "binary_mlp": (train_and_export(seeded(binary_mlp), d / "binary_mlp.onnx"), 1 / 255),
            "per_channel_cnn": (train_and_export(seeded(per_channel_cnn), d / "per_channel.onnx", divisor=256.0),
                                1 / 256)}


def _import(exported, name):
    path, scale = exported[name]
    net, report = import_qonnx(path, input_scale=scale)
    return path, scale, net, report


def test_float_cnn_agrees_with_qonnx(exported):
    path, scale, net, report = _import(exported, "float_cnn")
    assert [l.op for l in net.layers] == ["conv2d", "maxpool2d", "conv2d", "dense"]
    assert report["ops"] == ["Quant", "Conv", "BatchNormalization", "Relu", "MaxPool", "Flatten", "Gemm"]
    conv0 = report["layers"][0]
    assert (conv0["weight_format"], conv0["weight_scale"], conv0["batchnorm"], conv0["requant"]) == \
        ("s4", "float", True, "multiplier + offset")
    assert net.input.to_json() == {"kind": "shift", "amount": 0, "shift_amount": 0}  # pixels, scale 1/255
    # BN shifts are not whole accumulator steps, which an integer bias cannot place (9/120 and 15/240
    # thresholds one step off without offsets); floor rounding with product offsets places every one
    conv = [l for l in report["layers"] if l["op"] == "conv2d"]
    assert all(l["exact"] and l["thresholds_missed"] == 0 and l["offset_bits"] > 0 for l in conv), conv
    assert [l.requant.rounding.value for l in net.layers if l.op == "conv2d"] == ["floor", "floor"]
    assert all(l.requant.offset is not None for l in net.layers if l.op == "conv2d")
    # only the raw logits' float bias is rounded (to whole accumulator steps): the import as a whole is not exact
    assert report["exact"] is False and report["layers"][-1]["bias_exact"] is False
    agreement = qonnx_agreement(path, net, DIGITS.x_test, input_scale=scale)
    assert agreement["images"] == 359
    # every logit equal on the integer grid (0.848 of them before product offsets), every class equal
    assert agreement["logits_equal"] == 1.0 and agreement["class_agreement"] == 1.0, agreement


def test_pow2_cnn_is_exact(exported):
    path, scale, net, report = _import(exported, "pow2_cnn")
    assert report["exact"] is True and report["lines"][0].endswith("exact import")
    assert all(l.get("requant") in ("shift", None) for l in report["layers"] if l["op"] != "maxpool2d")
    assert all(l.requant is None or l.requant.multiplier is None for l in net.layers if l.op != "maxpool2d")
    assert report["input"]["quant"] is not None and net.input.to_json()["kind"] == "shift"
    assert np.log2(report["output_scale"]) == round(np.log2(report["output_scale"]))
    agreement = qonnx_agreement(path, net, DIGITS.x_test, input_scale=scale)
    assert agreement["logits_exact"] == 1.0 and agreement["max_abs_diff"] == 0.0, agreement
    assert agreement["class_agreement"] == 1.0
    # a ModelProto or the file's bytes give the same network
    for source in (onnx.load(str(path)), path.read_bytes()):
        again, _ = import_qonnx(source, input_scale=scale, name=net.name)
        assert again.to_header()["layers"] == net.to_header()["layers"]


def test_binary_mlp_thresholds_are_exact(exported):
    path, scale, net, report = _import(exported, "binary_mlp")
    assert net.input.to_json() == {"kind": "threshold", "amount": 128, "shift_amount": 0}  # x − ½ ≥ 0
    assert [str(l.weight_format) for l in net.layers] == ["bipolar", "bipolar"]
    assert str(net.layers[0].requant.out_format) == "bipolar" and report["layers"][0]["requant"] == "sign"
    assert report["exact"] is True
    agreement = qonnx_agreement(path, net, DIGITS.x_test, input_scale=scale)
    # every logit equal; qonnx's float32 logits (0.1·k) may break a tie between equal ones otherwise
    assert agreement["logits_equal"] == 1.0 and agreement["max_abs_diff"] < 1e-3, agreement
    assert agreement["class_agreement_rounded"] == 1.0 and agreement["class_agreement"] >= 0.99, agreement


def test_per_channel_float_scales_fit_the_thresholds(exported):
    path, scale, net, report = _import(exported, "per_channel_cnn")
    conv = [l for l in report["layers"] if l["op"] == "conv2d"]
    assert all(l["granularity"] == "channel" and l["weight_scale"] == "float" and l["bias_exact"] for l in conv)
    assert all(l["requant"] == "multiplier" and l["multiplier_bits"] <= 16 for l in conv)
    # integer biases: the staircase of (nearly) every channel is reproduced exactly by some m/2^s
    assert sum(l["thresholds_missed"] for l in conv) <= 0.02 * sum(l["thresholds"] for l in conv), conv
    assert report["layers"][-1]["exact"] is True  # logits: one scale, integer bias
    agreement = qonnx_agreement(path, net, DIGITS.x_test, input_scale=scale)
    assert agreement["class_agreement"] >= 0.999 and agreement["logits_equal"] >= 0.99, agreement


def test_narrow_multipliers_are_reported(exported):
    path, scale = exported["float_cnn"]
    net, report = import_qonnx(path, input_scale=scale, multiplier_bits=8)
    conv = [l for l in report["layers"] if l["op"] == "conv2d"]
    assert all(0 < l["multiplier_bits"] <= 8 and l["exact"] is False and l["max_rel_scale_error"] > 0 for l in conv)
    assert any("no multiplier of ≤ 8 bits" in note for note in report["notes"])
    with pytest.raises(ModelImportError, match=r"multiplier_bits must be an integer in 2\.\.16, not 17"):
        import_qonnx(path, multiplier_bits=17)


# ---- errors --------------------------------------------------------------------------------------
def _edited(path, tmp_path, edit):
    model = onnx.load(str(path))
    edit(model)
    out = tmp_path / "edited.onnx"
    onnx.save(model, str(out))
    return out


def _init(model, name):
    return next(i for i in model.graph.initializer if i.name == name)


def test_nonzero_zero_point_is_refused(exported, tmp_path):
    def edit(model):
        q = next(n for n in model.graph.node if n.op_type == "Quant" and "act_quant" in n.name)
        zp = onnx.numpy_helper.from_array(np.array(1.0, np.float32), "nonzero_zp")
        model.graph.initializer.append(zp)
        q.input[2] = "nonzero_zp"

    path = _edited(exported["float_cnn"][0], tmp_path, edit)
    with pytest.raises(ModelImportError, match=r"node 'Quant_\d+' \(Quant\): zero point \[1\.0\] is not 0.*"
                                               r"supported ops: Quant"):
        import_qonnx(path)


def test_grouped_conv_is_refused(tmp_path):
    model = nn.Sequential(qnn.QuantConv2d(1, 4, 3, weight_bit_width=4, bias=False), qnn.QuantReLU(bit_width=4),
                          qnn.QuantConv2d(4, 4, 3, groups=2, weight_bit_width=4, bias=False))
    path = train_and_export(model, tmp_path / "grouped.onnx", steps=0)
    with pytest.raises(ModelImportError, match=r"node 'Conv_1' \(Conv\): grouped convolution \(group=2\) is not "
                                               r"supported"):
        import_qonnx(path)


def test_residual_add_is_refused(tmp_path):
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = qnn.QuantLinear(64, 64, bias=False, weight_bit_width=4)
            self.act = qnn.QuantReLU(bit_width=4)
            self.out = qnn.QuantLinear(64, 10, bias=False, weight_bit_width=4)

        def forward(self, x):
            h = self.act(self.fc(x.flatten(1)))
            return self.out(h + self.act(self.fc(h)))

    path = train_and_export(Residual(), tmp_path / "residual.onnx", steps=0)
    with pytest.raises(ModelImportError, match=r"\(Add\): a residual Add of two computed tensors"):
        import_qonnx(path)


def test_unmappable_input_quant_is_refused(exported):
    # a model trained on pixel/256 with a 2^-8 input Quant, read as pixel/255: codes are not pixel >> k
    path, _ = exported["pow2_cnn"]
    with pytest.raises(ModelImportError, match=r"\(Quant\): its codes round\(pixel·0\.00392157 / 0\.00390625\) "
                                               r"are no lowbit input transform"):
        import_qonnx(path, input_scale=1 / 255)


def test_malformed_files_are_refused(exported, tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported["float_cnn"][0].read_bytes()[:500])
    with pytest.raises(ModelImportError, match=r"truncated\.onnx' is not a readable QONNX/ONNX model"):
        import_qonnx(truncated)
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelImportError, match=r"noise\.onnx' is not a readable QONNX/ONNX model"):
        import_qonnx(noise)
    with pytest.raises(ModelImportError, match=r"QONNX file '.*missing\.onnx' does not exist"):
        import_qonnx(tmp_path / "missing.onnx")


def test_float_weights_are_refused(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    path = tmp_path / "float.onnx"
    torch.onnx.export(model, torch.zeros(1, 1, 8, 8), str(path), dynamo=False)
    with pytest.raises(ModelImportError, match=r"its weights .* are float \(no Quant node\)"):
        import_qonnx(path)


def test_network_round_trips_through_its_file(exported, tmp_path):
    from lowbit.sw.golden import run_network
    from lowbit.sw.ir import Network

    _, _, net, report = _import(exported, "pow2_cnn")
    back = Network.load(net.save(tmp_path / "net.npz"))
    assert back.metadata["output_scale"] == report["output_scale"] and back.metadata["source"] == "qonnx"
    x = DIGITS.x_test[:20]
    assert np.array_equal(run_network(back, x, raw_pixels=True).logits, run_network(net, x, raw_pixels=True).logits)


# ---- hand-built QONNX graphs: rounding modes, signed outputs, flipped channels, trailing ops ----------
class Graph:
    """A QONNX graph written node by node (Quant nodes in qonnx's domain), flat input [1, 64]."""

    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, prefix="t"):
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, value):
        name = self.name("c")
        self.inits.append(onnx.numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(self, op, inputs, domain="", **attrs):
        out = self.name()
        self.nodes.append(onnx.helper.make_node(op, inputs, [out], name=f"{op}_{self.count}", domain=domain, **attrs))
        return out

    def quant(self, x, scale, bits, *, signed=True, narrow=False, mode="ROUND"):
        return self.node("Quant", [x, self.const(scale), self.const(0.0), self.const(float(bits))],
                         domain="qonnx.custom_op.general", signed=int(signed), narrow=int(narrow), rounding_mode=mode)

    def weights(self, codes, scale, bits=4, narrow=True):
        """A Quant on a [in, out] MatMul weight initializer holding exactly ``codes · scale``."""
        return self.quant(self.const(np.asarray(codes, np.float64).T * scale), scale, bits, narrow=narrow)

    def save(self, out, path):
        graph = onnx.helper.make_graph(
            self.nodes, "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])],
            [onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)], initializer=self.inits)
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13),
                                                             onnx.helper.make_opsetid("qonnx.custom_op.general", 2)])
        onnx.save(model, str(path))
        return path


def tie_mlp(path, *, mode="ROUND", signed=True, narrow=False, channel_mul=None, trailing_quant=False,
            last_bn=False):
    """x = pixel/256 → MatMul (codes ±1: acc = pixel_i − pixel_j) + integer bias → Quant with scale 32
    accumulator steps (a tie whenever acc + bias ≡ 16 mod 32) → MatMul → logits: power-of-two scales."""
    rng = np.random.default_rng(1)
    w1 = np.zeros((16, 64))
    for row in w1:
        i, j = rng.choice(64, 2, replace=False)
        row[i], row[j] = 1, -1
    s_acc = 2.0 ** -8 * 2.0 ** -3
    g = Graph()
    h = g.node("MatMul", ["x", g.weights(w1, 2.0 ** -3)])
    h = g.node("Add", [h, g.const(rng.integers(-20, 21, 16) * s_acc)])
    if channel_mul is not None:
        h = g.node("Mul", [h, g.const(channel_mul)])
    h = g.quant(h, 32 * s_acc, 4, signed=signed, narrow=narrow, mode=mode)
    out = g.node("MatMul", [h, g.weights(rng.integers(-7, 8, (10, 16)), 2.0 ** -2)])
    if trailing_quant:
        out = g.quant(out, 2.0 ** -3, 8)
    if last_bn:
        out = g.node("BatchNormalization", [out, g.const(rng.uniform(0.5, 2, 10)), g.const(rng.normal(0, 1, 10)),
                                            g.const(np.zeros(10)), g.const(np.ones(10))], epsilon=1e-5)
    return g.save(out, path)


@pytest.mark.parametrize("mode, signed, narrow, requant", [
    ("ROUND", True, False, "shift"),  # half-even ties, the format's whole range: the shift itself
    ("FLOOR", True, False, "shift"),
    ("HALF_UP", False, False, "shift"),  # unsigned: ties only at ≥ 0, where qonnx and lowbit both round up
    ("HALF_UP", True, False, "multiplier"),  # negative ties round away from zero in qonnx: thresholds fitted
])
def test_rounding_modes_and_signed_outputs_are_exact(tmp_path, mode, signed, narrow, requant):
    path = tie_mlp(tmp_path / "ties.onnx", mode=mode, signed=signed, narrow=narrow)
    net, report = import_qonnx(path, input_scale=1 / 256)
    assert report["exact"] is True and report["layers"][0]["requant"] == requant, report["layers"][0]
    agreement = qonnx_agreement(path, net, DIGITS.x_test, input_scale=1 / 256)
    assert agreement["logits_exact"] == 1.0 and agreement["max_abs_diff"] == 0.0, agreement


def test_narrow_activation_range_is_reported(tmp_path):
    # a signed narrow Quant clips at −7; lowbit's s4 clips at −8, which these accumulators reach
    path = tie_mlp(tmp_path / "narrow.onnx", narrow=True)
    net, report = import_qonnx(path, input_scale=1 / 256)
    first = report["layers"][0]
    assert first["exact"] is False and first["narrow_range_reached"] is True
    assert any("the narrow range -7..7 of Quant_" in note for note in report["notes"])


def test_negative_channel_scales_flip_weights(tmp_path):
    mul = np.where(np.arange(16) % 3 == 0, -0.5, 0.25)  # a negative scale: the multiplier cannot be negative
    path = tie_mlp(tmp_path / "flip.onnx", channel_mul=mul)
    net, report = import_qonnx(path, input_scale=1 / 256)
    first = report["layers"][0]
    assert first["flipped_channels"] == 6 and first["exact"] is True
    assert net.layers[0].requant.shift.shape == (16,)  # two ratios: a shift per channel
    agreement = qonnx_agreement(path, net, DIGITS.x_test, input_scale=1 / 256)
    assert agreement["logits_exact"] == 1.0, agreement


def test_trailing_quant_becomes_the_last_requantizer(tmp_path):
    path = tie_mlp(tmp_path / "trailing.onnx", trailing_quant=True)
    net, report = import_qonnx(path, input_scale=1 / 256)
    assert str(net.layers[-1].requant.out_format) == "s8" and report["output_scale"] == 2.0 ** -3
    agreement = qonnx_agreement(path, net, DIGITS.x_test, input_scale=1 / 256)
    assert agreement["logits_exact"] == 1.0, agreement


def test_batchnorm_after_the_last_layer_records_per_output_scales(tmp_path):
    path = tie_mlp(tmp_path / "last_bn.onnx", last_bn=True)
    net, report = import_qonnx(path, input_scale=1 / 256)
    assert isinstance(net.metadata["output_scale"], list) and len(net.metadata["output_scale"]) == 10
    assert report["exact"] is False and any("a scale per output" in n for n in report["notes"])
    agreement = qonnx_agreement(path, net, DIGITS.x_test, input_scale=1 / 256)
    assert agreement["max_abs_diff"] <= 0.5 + 1e-3, agreement  # only the bias rounding: half a step at most


def test_unsupported_rounding_and_ops_are_refused(tmp_path):
    g = Graph()
    h = g.node("MatMul", ["x", g.weights(np.eye(16, 64), 0.5)])
    h = g.quant(h, 0.25, 4, mode="CEIL")
    with pytest.raises(ModelImportError, match=r"node 'Quant_\d+' \(Quant\): rounding_mode CEIL is not supported "
                                               r"for activations \(supported: ROUND, HALF_EVEN, HALF_UP, FLOOR\)"):
        import_qonnx(g.save(h, tmp_path / "ceil.onnx"))
    g = Graph()
    h = g.node("MatMul", ["x", g.weights(np.eye(10, 64), 0.5)])
    h = g.node("Softmax", [h], axis=1)
    with pytest.raises(ModelImportError, match=r"node 'Softmax_\d+' \(Softmax\): op Softmax is not supported "
                                               r"\(supported ops: Quant, BipolarQuant"):
        import_qonnx(g.save(h, tmp_path / "softmax.onnx"))
    g = Graph()
    h = g.quant(g.node("MatMul", ["x", g.weights(np.eye(16, 64), 0.5)]), 0.25, 8, signed=False)
    h = g.node("Trunc", [h, g.const(0.25), g.const(0.0), g.const(8.0), g.const(1.0), g.const(6.0)],
               domain="qonnx.custom_op.general", rounding_mode="FLOOR")
    with pytest.raises(ModelImportError, match=r"node 'Trunc_\d+' \(Trunc\): op Trunc is not supported \(Brevitas "
                                               r"writes it for a QuantAvgPool2d"):
        import_qonnx(g.save(h, tmp_path / "trunc.onnx"))


@pytest.mark.parametrize("mode", ["FLOOR", "ROUND", "HALF_UP"])
def test_fitted_offsets_reproduce_batchnorm_thresholds_on_every_accumulator(mode):
    """Sixteen channels of ``y = clip(R(r·(acc + b*)), 0, 15)`` with real ratios and fractional biases
    (a float BN's): the fitted floor + offset requantizer equals them on every accumulator in range."""
    from lowbit.sw.formats import parse_format
    from lowbit.sw.frontends.qonnx_requant import fit_thresholds
    from lowbit.sw.requant import requantize

    rng = np.random.default_rng(11)
    r = rng.uniform(0.004, 0.2, 16)
    b_star = rng.normal(0, 40, 16)
    lo, hi = np.full(16, -400), np.full(16, 400)
    rq, bias, info = fit_thresholds(r, b_star, parse_format("u4"), 0, 15, True, mode, lo, hi, 16)
    # "+ offset": the half-up search with integer biases alone missed some threshold
    assert info["exact"] and info["thresholds_missed"] == 0 and info["requant"] == "multiplier + offset", info
    assert rq.rounding.value == "floor" and rq.offset is not None and info["offset_bits"] == rq.offset_bits
    acc = np.arange(-400, 401)[:, None].repeat(16, 1)
    z = r * (acc + b_star)
    real = {"FLOOR": np.floor(z), "ROUND": np.round(z), "HALF_UP": np.floor(z + 0.5)}[mode]
    assert np.array_equal(requantize(acc + bias, rq), np.clip(real, 0, 15))
