"""lowbit's QONNX export read back by its QONNX importer: ``export_qonnx`` then ``import_qonnx`` gives the
same integer IR (weights, formats, biases, requantizers, input transform) for networks from lowbit's
quantizers, and the same golden-model logits on every digits test image for any network the export
writes (random ones: every rounding, per-channel multipliers, offset input transforms, bipolar,
ternary and pow2 formats). The file's metadata ``lowbit.input = pixels`` makes the import take raw
pixels (input scale 1) without being told; ``lowbit export`` then ``lowbit import`` agree 100%.
"""

import numpy as np
import onnx
import pytest
import torch

from lowbit.sw.cli import main
from lowbit.sw.datasets import load_dataset
from lowbit.sw.export_qonnx import export_qonnx
from lowbit.sw.frontends.common import ModelImportError
from lowbit.sw.frontends.qonnx import import_qonnx, qonnx_agreement
from lowbit.sw.golden import run_network
from lowbit.sw.ir import Network
from lowbit.sw.quant import quantize
from lowbit.sw.randnet import random_cnn, random_network
from lowbit.sw.train import build_preset

DIGITS = load_dataset("digits")
QUANTIZED = [("pow2", 4, 4), ("scaled", 4, 4), ("binary", 1, 1), ("ternary", None, None)]
PRESETS = {"tfc": 64, "cnn_digits": (8, 8, 1)}


def quantized(preset: str, method: str, w, a) -> Network:
    torch.manual_seed(0)
    return quantize(build_preset(preset, PRESETS[preset]), method, w, a, DIGITS.x_train[:500], progress=False)


def logits(net, px):
    return run_network(net, px, raw_pixels=True, keep="logits").logits


def ir_differences(a: Network, b: Network) -> list[str]:
    """What differs between two IR networks (empty: the same network)."""
    out = [] if a.input == b.input else [f"input {a.input} vs {b.input}"]
    if len(a.layers) != len(b.layers):
        return out + [f"{len(a.layers)} vs {len(b.layers)} layers"]
    for x, y in zip(a.layers, b.layers):
        if type(x) is not type(y) or x.name != y.name:
            out.append(f"{x.name} ({type(x).__name__}) vs {y.name} ({type(y).__name__})")
            continue
        for f in ("weight_format", "in_format", "fmt", "in_shape", "out_shape", "stride", "padding", "kernel"):
            if str(getattr(x, f, None)) != str(getattr(y, f, None)):
                out.append(f"{x.name}.{f}: {getattr(x, f)} vs {getattr(y, f)}")
        for f in ("weights", "bias"):
            if hasattr(x, f) and not np.array_equal(getattr(x, f), getattr(y, f)):
                out.append(f"{x.name}.{f}")
        rx, ry = getattr(x, "requant", None), getattr(y, "requant", None)
        if (rx is None) != (ry is None):
            out.append(f"{x.name}: requant {rx} vs {ry}")
        elif rx is not None:
            n = x.bias.size
            for f in ("out_format", "rounding", "relu"):
                if getattr(rx, f) != getattr(ry, f):
                    out.append(f"{x.name}.requant.{f}: {getattr(rx, f)} vs {getattr(ry, f)}")
            if not all(np.array_equal(u, v) for u, v in zip(rx.per_channel(n), ry.per_channel(n))):
                out.append(f"{x.name}.requant multiplier/shift")
            if not np.array_equal(rx.offsets(n), ry.offsets(n)):
                out.append(f"{x.name}.requant offsets")
    return out


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("method,w,a", QUANTIZED, ids=[q[0] for q in QUANTIZED])
def test_quantized_networks_come_back_as_the_same_ir(tmp_path, preset, method, w, a):
    net = quantized(preset, method, w, a)
    path = tmp_path / "net.onnx"
    summary = export_qonnx(net, path)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["lowbit.input"] == "pixels"
    again, report = import_qonnx(path)  # no input_scale: the metadata says raw pixels
    assert report["exact"] and again.metadata["input_scale"] == 1.0 and report["output_scale"] == 1.0
    assert ir_differences(net, again) == [] and again.name == net.name
    np.testing.assert_array_equal(logits(again, DIGITS.x_test), logits(net, DIGITS.x_test))
    if method in ("scaled", "ternary"):  # 16-bit multipliers: the requantizers compute in float64 (Cast)
        assert "Cast" in summary["ops"] and "Cast" in report["ops"]


RANDOM = [  # (weight format, activation format, rounding, multiplier, per channel)
    ("s4", "u4", "floor", False, True),
    ("s4", "u4", "half_up", True, True),
    ("s3", "s4", "half_even", True, False),  # signed activations: the offset input transform
    ("ternary", "s4", "half_up", True, True),
    ("bipolar", "bipolar", "half_even", True, True),
    ("pow2_4", "u3", "half_even", False, True),
]


@pytest.mark.parametrize("wf,af,rounding,mult,per_channel", RANDOM, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in RANDOM])
def test_any_exported_network_computes_the_same_logits(tmp_path, wf, af, rounding, mult, per_channel):
    """Random multipliers are not lowbit's normalised (widest) ones, a bipolar output's shift and rounding
    become its exact sign threshold in the bias, pow2 weights come back in the INTn their annotation names:
    the IR may differ there, the golden model's logits never do."""
    kw = dict(rounding=rounding, multiplier=mult, per_channel=per_channel, seed=3)
    px = np.concatenate([DIGITS.x_test, np.random.default_rng(0).integers(0, 256, (300, 64), dtype=np.uint8)])
    for net in (random_network([64, 48, 32, 10], wf, af, **kw),
                random_cnn((8, 8, 1), ("8C3", "MP2", "12C3s2p1", "10"), wf, af, **kw)):
        export_qonnx(net, tmp_path / "net.onnx")
        again, report = import_qonnx(tmp_path / "net.onnx")
        assert report["exact"], report["lines"]
        assert again.input == net.input and [l.name for l in again.layers] == [l.name for l in net.layers]
        np.testing.assert_array_equal(logits(again, px), logits(net, px))


def test_agreement_with_qonnx_and_an_explicit_input_scale(tmp_path):
    net = quantized("cnn_digits", "binary", 1, 1)  # a bipolar input padded with −1 by an explicit Pad
    path = tmp_path / "net.onnx"
    export_qonnx(net, path)
    again, report = import_qonnx(path)
    assert "Pad" in report["ops"] and again.layers[0].padding == net.layers[0].padding
    agree = qonnx_agreement(path, again, DIGITS.x_test)  # the net's input scale (1): raw pixels
    assert agree["logits_exact"] == 1.0 and agree["class_agreement"] == 1.0
    # an explicit input scale wins over the metadata: 1/255 makes the threshold unreachable (every code −1)
    assert ir_differences(net, import_qonnx(path, input_scale=1.0)[0]) == []
    assert import_qonnx(path, input_scale=1 / 255)[0].input.amount == 256


def test_a_float64_convolution_is_refused(tmp_path):
    net = random_cnn((8, 8, 1), ("4C3p1", "MP2", "6C3", "10"), "s16", "u16", rounding="half_up", multiplier=True,
                     seed=1)
    export_qonnx(net, tmp_path / "wide.onnx")
    with pytest.raises(ModelImportError, match=r"\(Transpose\): op Transpose is not supported: re-import of an "
                                               r"export that computes a convolution in float64"):
        import_qonnx(tmp_path / "wide.onnx")
    dense = random_network([64, 40, 10], "s16", "u16", rounding="half_up", multiplier=True, seed=1)
    export_qonnx(dense, tmp_path / "wide_fc.onnx")  # float64 dense layers (Casts) come back exactly
    again, _ = import_qonnx(tmp_path / "wide_fc.onnx")
    # randnet's multipliers are not lowbit's widest ones; its first layer takes u16 codes of u8 pixels
    assert set(ir_differences(dense, again)) <= {"fc0.requant multiplier/shift", "fc0.in_format: u16 vs u8"}
    np.testing.assert_array_equal(logits(again, DIGITS.x_test), logits(dense, DIGITS.x_test))


def test_cli_export_then_import(tmp_path, capsys):
    net = quantized("tfc", "scaled", 4, 4)
    ir, onnx_path, back = tmp_path / "net.npz", tmp_path / "n.onnx", tmp_path / "net2.npz"
    net.save(ir)
    assert main(["export", str(ir), "-o", str(onnx_path), "--dataset", "digits"]) == 0
    capsys.readouterr()
    assert main(["import", str(onnx_path), "-o", str(back), "--dataset", "digits"]) == 0
    out = capsys.readouterr().out
    assert "classes agree on 100.00%, logits equal after undoing the output scale 100.00% (max |diff| 0" in out
    again = Network.load(back)
    assert ir_differences(net, again) == []
    np.testing.assert_array_equal(logits(again, DIGITS.x_test), logits(net, DIGITS.x_test))
