"""Bring-your-own-model targets on Fashion-MNIST (slow tier: ``pytest -m slow tests/test_import_fashion_slow.py``,
about 20 minutes on 2 cores, most of it Verilator builds).

Each user model is trained here (one epoch, or a few hundred Brevitas QAT steps), handed to lowbit as a
file — a torch CNN (custom ``forward`` with ``torch.flatten`` in NCHW) and an ``nn.Sequential`` MLP, each
as a ``torch.export`` ``.pt2`` and as ONNX; Brevitas W4A4 CNNs with float and with power-of-two scales and a
W1A1 MLP exported with ``export_qonnx`` — imported, built, and simulated in Verilator on 500 test images
with 0 mismatches against lowbit's golden model. The QONNX imports are also compared with qonnx's own
execution on all 10,000 test images: class agreement ≥ 99.9%, and for the power-of-two model (no float
operation but power-of-two scales) the integer logits equal qonnx's outputs exactly.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

pytestmark = pytest.mark.slow

SIM_IMAGES = 500
TARGET_CYCLES = 4096  # the first layer (24x24x8 outputs of 5x5 kernels) needs at least 2,880 cycles


@pytest.fixture(scope="module")
def fashion():
    from lowbit.sw.datasets import load_dataset

    return load_dataset("fashion-mnist")


class UserCnn(nn.Module):
    """A LeNet-like user CNN: 8C5-BN-MP2-16C5-BN-MP2-64FC-10, flattened in NCHW order."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 8, 5), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 16, 5), nn.BatchNorm2d(16)
        self.fc1, self.fc2 = nn.Linear(16 * 4 * 4, 64), nn.Linear(64, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.b1(self.c1(x))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.b2(self.c2(x))), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def user_mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))


def _train(model, ds, *, divisor=255.0, steps=None, lr=1e-3, batch=128):
    torch.manual_seed(0)
    x = torch.tensor(ds.x_train, dtype=torch.float32).reshape(-1, 1, 28, 28) / divisor
    y = torch.tensor(ds.y_train)
    opt = torch.optim.Adam(model.parameters(), lr)
    model.train()
    steps = steps or len(x) // batch  # one epoch
    for _ in range(steps):
        i = torch.randint(0, len(x), (batch,))
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _build_and_simulate(net, ds, tmp_path):
    from lowbit.hw.build import build_network, load_build
    from lowbit.sim.netrun import simulate_build
    from lowbit.sw.fold import auto_fold

    plan = auto_fold(net, target_cycles=TARGET_CYCLES) if any(l.op == "conv2d" for l in net.layers) else \
        auto_fold(net, max_lanes=512)
    build_network(net, plan, tmp_path / "build")
    manifest, back = load_build(tmp_path / "build")
    rep = simulate_build(tmp_path / "build", manifest, back, ds.x_test[:SIM_IMAGES], ds.y_test[:SIM_IMAGES],
                         stress=50, model="simulation")
    assert rep.run.passed and rep.images == SIM_IMAGES
    assert rep.mismatches == 0, rep.first_mismatches
    assert rep.accuracy == rep.golden_accuracy
    assert rep.cycles_per_image <= 1.05 * manifest["expected_cycles_per_image"]
    print(f"  {net.name}: fold {plan}, {rep.images} images, {rep.mismatches} mismatches, hardware "
          f"{100 * rep.accuracy:.2f}% = golden, {rep.cycles_per_image:.1f} cycles/image (model "
          f"{manifest['expected_cycles_per_image']}), Verilator build {rep.run.build_seconds:.0f} s")
    return rep


def _export_file(model, fmt, path):
    example = torch.zeros(1, 1, 28, 28)
    if fmt == "pt2":
        torch.export.save(torch.export.export(model, (example,)), str(path))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example, str(path), dynamo=False)
    return path


@pytest.mark.hdl
@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_float_model_file_imported_built_and_bit_exact(fashion, tmp_path, arch, fmt):
    from lowbit.sw.frontends.common import finish_import
    from lowbit.sw.frontends.load import load_float_model
    from lowbit.sw.golden import run_network
    from lowbit.sw.quant import quantize

    ds = fashion
    torch.manual_seed(0)  # the initial weights too: the same model as .pt2 and as ONNX
    model = _train(UserCnn() if arch == "cnn" else user_mlp(), ds)
    imported = load_float_model(_export_file(model, fmt, tmp_path / f"user.{fmt}"), image_shape=(28, 28, 1))
    graph, rel = finish_import(imported, ds.x_test[:1000])
    assert rel <= 1e-4
    net = quantize(graph, "pow2", 4, 4, ds.x_train[:2000], progress=False)
    golden = run_network(net, ds.x_test, raw_pixels=True, keep="logits")
    x = torch.as_tensor(ds.x_test.reshape(-1, 1, 28, 28) / 255.0, dtype=torch.float32)
    with torch.no_grad():
        float_acc = float((model(x).argmax(1).numpy() == ds.y_test).mean())
    print(f"{arch} {fmt}: check {rel:.1e}, float32 {100 * float_acc:.2f}%, pow2 W4A4 golden "
          f"{100 * np.mean(golden.classes == ds.y_test):.2f}%")
    assert np.mean(golden.classes == ds.y_test) > (0.80 if arch == "cnn" else 0.78)
    _build_and_simulate(net, ds, tmp_path)


def _brevitas_models():
    import brevitas.nn as qnn
    from brevitas.inject.enum import ScalingImplType
    from brevitas.quant import Int8WeightPerTensorFixedPoint, Int16Bias, Uint8ActPerTensorFixedPoint
    from brevitas.quant.binary import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst

    class FixedInput(Uint8ActPerTensorFixedPoint):  # code = pixel for x = pixel/256
        scaling_impl_type = ScalingImplType.CONST
        scaling_const = 1.0
        max_val = 1.0

    class Centered(nn.Module):  # bipolar input: pixel >= 128 -> +1
        def forward(self, x):
            return x - 0.5

    def float_cnn():
        return nn.Sequential(
            qnn.QuantConv2d(1, 8, 5, weight_bit_width=4, bias=False), nn.BatchNorm2d(8),
            qnn.QuantReLU(bit_width=4), nn.MaxPool2d(2),
            qnn.QuantConv2d(8, 16, 5, weight_bit_width=4, bias=False), nn.BatchNorm2d(16),
            qnn.QuantReLU(bit_width=4), nn.MaxPool2d(2), nn.Flatten(),
            qnn.QuantLinear(16 * 4 * 4, 10, bias=True, weight_bit_width=4))

    def pow2_cnn():
        w = dict(weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=4, bias=True, bias_quant=Int16Bias)
        act = dict(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4, return_quant_tensor=True)
        return nn.Sequential(
            qnn.QuantIdentity(act_quant=FixedInput, bit_width=8, return_quant_tensor=True),
            qnn.QuantConv2d(1, 8, 5, **w), qnn.QuantReLU(**act), nn.MaxPool2d(2),
            qnn.QuantConv2d(8, 16, 5, **w), qnn.QuantReLU(**act), nn.MaxPool2d(2), nn.Flatten(),
            qnn.QuantLinear(16 * 4 * 4, 10, **w))

    def binary_mlp():
        act = dict(act_quant=SignedBinaryActPerTensorConst)
        wq = dict(weight_quant=SignedBinaryWeightPerTensorConst, bias=False)
        return nn.Sequential(
            nn.Flatten(), Centered(), qnn.QuantIdentity(**act),
            qnn.QuantLinear(784, 256, **wq), nn.BatchNorm1d(256), qnn.QuantIdentity(**act),
            qnn.QuantLinear(256, 10, **wq))

    # name -> (builder, the model's input divisor, whether lowbit's import is exact)
    return {"w4a4_float_scales": (float_cnn, 255.0, False), "w4a4_pow2_scales": (pow2_cnn, 256.0, True),
            "w1a1_mlp": (binary_mlp, 255.0, False)}


@pytest.mark.hdl
@pytest.mark.parametrize("name", ["w4a4_float_scales", "w4a4_pow2_scales", "w1a1_mlp"])
def test_brevitas_qonnx_imported_agrees_built_and_bit_exact(fashion, tmp_path, name):
    from brevitas.export import export_qonnx

    from lowbit.sw.frontends.qonnx import import_qonnx, qonnx_agreement

    ds = fashion
    build, divisor, exact = _brevitas_models()[name]
    torch.manual_seed(0)
    model = _train(build(), ds, divisor=divisor, steps=600, lr=1e-2 if name != "w1a1_mlp" else 3e-3)
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, torch.zeros(1, 1, 28, 28), export_path=str(path), dynamo=False)
    net, report = import_qonnx(path, input_scale=1 / divisor)
    agree = qonnx_agreement(path, net, ds.x_test, input_scale=1 / divisor)
    print(name, {k: agree[k] for k in ("class_agreement", "logits_equal", "max_abs_diff")})
    assert agree["images"] == 10000
    assert agree["class_agreement"] >= 0.999, agree
    if exact:
        assert agree["logits_equal"] == 1.0 and agree["max_abs_diff"] == 0, agree
    _build_and_simulate(net, ds, tmp_path)
