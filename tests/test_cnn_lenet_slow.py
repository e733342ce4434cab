"""The convolutional-hardware targets on LeNet (WAGE's 32C5-MP2-64C5-MP2-512FC-10) trained on
Fashion-MNIST: slow tier (``pytest -m slow tests/test_cnn_lenet_slow.py``; trains the float32
LeNet into build/models the first time, about 11 minutes, then about 6 minutes a network).

Every network is folded for about 4,096 cycles per image and compared, class and every
logit, with the golden model on real test images with random valid gaps and stalls on the
first 50; the measured steady state must stay within 1.05x of the slowest op's cycles."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

NETS = [  # (id, method, weight bits, act bits, quantizer options)
    ("W1A1-binary-in8", "binary", 1, 1, {"input_bits": 8}),
    ("W2A2-pow2", "pow2", 2, 2, {}),
    ("W4A4-pow2", "pow2", 4, 4, {}),
    ("W8A8-pow2", "pow2", 8, 8, {}),
    ("ternary-A8", "ternary", 2, 8, {}),
    # quantization-aware training exports to the same IR kinds; one QAT LeNet in hardware (the accuracy issue's
    # "no regression in bit-exactness"), at the width where QAT matters most
    ("W2A2-scaled-qat", "scaled", 2, 2, {"qat": True, "qat_epochs": 1}),
]
TARGET_CYCLES = 4096


@pytest.fixture(scope="module")
def lenet():
    from lowbit.sw.datasets import load_dataset
    from lowbit.sw.train import load_or_train

    ds = load_dataset("fashion-mnist")
    model, _ = load_or_train("lenet", ds, epochs=10, seed=0, progress=False)
    return model, ds


def _build(lenet, tmp_path, method, wb, ab, opts):
    from lowbit.hw.build import build_network, load_build
    from lowbit.sw.fold import auto_fold
    from lowbit.sw.quant import quantize

    model, ds = lenet
    if opts.get("qat"):
        opts = {**opts, "train_data": (ds.x_train, ds.y_train)}
    net = quantize(model, method, wb, ab, ds.x_train[:2000], progress=False, **opts)
    plan = auto_fold(net, target_cycles=TARGET_CYCLES)
    build_network(net, plan, tmp_path / "build")
    manifest, back = load_build(tmp_path / "build")
    return manifest, back, plan


def _check(rep, manifest, images):
    assert rep.run.passed and rep.images == images
    assert rep.mismatches == 0, rep.first_mismatches
    assert rep.accuracy == rep.golden_accuracy
    assert rep.cycles_per_image <= 1.05 * manifest["expected_cycles_per_image"]


@pytest.mark.hdl
@pytest.mark.parametrize("method,wb,ab,opts", [pytest.param(*n[1:], id=n[0]) for n in NETS])
def test_lenet_bit_exact_on_1000_fashion_mnist_images(lenet, tmp_path, method, wb, ab, opts):
    from lowbit.sim.netrun import simulate_build

    manifest, net, plan = _build(lenet, tmp_path, method, wb, ab, opts)
    assert plan.initiation_interval <= TARGET_CYCLES
    _, ds = lenet
    rep = simulate_build(tmp_path / "build", manifest, net, ds.x_test[:1000], ds.y_test[:1000], stress=50,
                         model="simulation")
    _check(rep, manifest, 1000)


@pytest.mark.hdl
def test_lenet_synthesized_netlist(lenet, tmp_path):
    """The FPGA's Verilog itself on 200 images (Verilator). Not Icarus: it simulates this 1,314-lane
    LeNet at about 4 cycles/s (measured: 4,910 cycles in 1,191 s), so 5 images would take hours;
    the digits CNN runs on Icarus in the default tier (tests/test_cnn_hw.py)."""
    from lowbit.sim.netrun import simulate_build

    manifest, net, _ = _build(lenet, tmp_path, "pow2", 4, 4, {})
    _, ds = lenet
    rep = simulate_build(tmp_path / "build", manifest, net, ds.x_test[:200], ds.y_test[:200], stress=50,
                         model="synthesis", sim_dir=tmp_path / "sim_synthesis")
    _check(rep, manifest, 200)
