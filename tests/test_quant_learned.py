"""Learned quantizer scales (LSQ; power-of-two for shift-only methods) in quantization-aware training.

The learned forms of the fake quantizers compute the same values as the frozen ones, with LSQ's
step-size gradient; QAT with learned scales returns a plan of the same method holding the trained
scales, and that plan's exported IR is exactly the trained fake-quantized network (the golden
model's integer logits equal the float64 fake-quantized logits over the last scale).
"""

import math

import numpy as np
import pytest
import torch

from lowbit.sw.datasets import load_dataset
from lowbit.sw.formats import IntFormat
from lowbit.sw.golden import run_network
from lowbit.sw.quant import QuantError, folded, make_plan, quantize
from lowbit.sw.quant.core import ActSpec, WeightQuant, export_network, fake_forward
from lowbit.sw.quant.learned import LearnedScales
from lowbit.sw.quant.qat import qat_finetune
from lowbit.sw.train import to_input, train_preset
from tests.test_quant_conv import assert_exact  # the golden model == the float64 fake-quantized pass


def test_learned_activation_quantizer_values_and_lsq_gradient():
    spec = ActSpec("uint", 2, 0.1)  # codes 0..3
    z = torch.tensor([-0.3, 0.04, 0.05, 0.26, 1.0], dtype=torch.float64, requires_grad=True)
    step = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    y = spec.fake(z, 0.0, step)
    assert torch.equal(y.detach(), spec.fake(z.detach().to(torch.float64)))
    assert torch.allclose(y.detach(), torch.tensor([0.0, 0.0, 0.1, 0.3, 0.3], dtype=torch.float64))
    y.sum().backward()
    # LSQ: d/ds = round(v) − v inside the range, Q above it, 0 below; d/dz = 1 inside only
    v = np.array([0.4, 0.5, 2.6])
    assert math.isclose(float(step.grad), float(np.sum(np.floor(v + 0.5) - v)) + 3.0, rel_tol=1e-12)
    assert z.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    # bipolar: the step is c, the output {0, c}
    bip = ActSpec("bipolar", 1, 0.25, 0.25)
    zb = torch.tensor([0.2, 0.3, 0.7])
    assert torch.equal(bip.fake(zb, 0.0, torch.tensor(0.5)), bip.fake(zb))


@pytest.mark.parametrize("kind,fmt", [("int", IntFormat.signed(3)), ("bipolar", IntFormat.bipolar())])
def test_learned_weight_quantizer_values_equal_frozen(kind, fmt):
    w = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    scale = np.array([0.2, 0.5, 0.1, 0.3])
    wq = WeightQuant(kind, fmt, scale)
    s = torch.tensor(scale, requires_grad=True)
    y = wq.fake(w, s)
    assert torch.allclose(y.detach(), wq.fake(w), rtol=0, atol=1e-15)
    y.sum().backward()
    assert s.grad is not None and torch.all(s.grad != 0)
    with pytest.raises(ValueError, match="ternary weight quantizer has no learned scale"):
        WeightQuant("ternary", IntFormat.ternary(), scale, scale / 2).fake(w, s)


@pytest.fixture(scope="module")
def digits_cnn():
    ds = load_dataset("digits")
    model, _ = train_preset("cnn_digits", ds, epochs=10, seed=0, progress=False)
    return ds, folded(model)


def _is_pow2(x) -> bool:
    x = np.asarray(x, np.float64)
    return bool(np.all(np.exp2(np.round(np.log2(x))) == x))


@pytest.mark.parametrize("method,wb,ab,opts", [
    ("pow2", 2, 2, {}), ("dfp", 3, 3, {}), ("scaled", 2, 2, {}), ("binary", 1, 1, {}),
    ("binary", 1, 2, {"input_bits": 8}), ("ternary", 2, 4, {"cluster": 4})])
def test_qat_with_learned_scales_exports_exactly_what_it_trained(digits_cnn, method, wb, ab, opts):
    ds, graph = digits_cnn
    plan = make_plan(graph, method, wb, ab, ds.x_train[:300], **opts)
    # digits has 12 batches per epoch: a learning rate for the scales that moves an exponent past rounding
    tuned, learned = qat_finetune(graph, plan, ds.x_train, ds.y_train, epochs=2, seed=0, progress=False,
                                  learn_scales=True, scale_lr=0.05)
    assert learned.metadata["learned_scales"] == ("pow2" if method in ("pow2", "dfp") else "lsq")
    assert learned.metadata["method"] == method and learned.requant == plan.requant
    moved = [not np.allclose(learned.acts[a].scale, plan.acts[a].scale) for a in plan.acts]
    assert any(moved)
    for name in plan.weights:
        old, new = plan.weights[name], learned.weights[name]
        assert np.shape(new.scale) == np.shape(old.scale) and new.kind == old.kind
        if old.kind == "ternary":  # calibrated clusters kept
            assert np.array_equal(new.scale, old.scale) and np.array_equal(new.threshold, old.threshold)
        # a scale shared by every channel in the plan stays shared (the last layer: argmax of raw logits)
        if np.all(old.scale == old.scale[0]):
            assert np.all(new.scale == new.scale[0])
    for spec in learned.acts.values():
        if spec.kind == "bipolar":
            assert spec.scale == spec.offset > 0
    net = export_network(tuned, learned)
    if method in ("pow2", "dfp"):
        assert all(_is_pow2(wq.scale) for wq in learned.weights.values())
        assert all(_is_pow2(spec.scale) for spec in learned.acts.values())
        shifts = [np.asarray(l.requant.shift) for l in net.layers if getattr(l, "requant", None) is not None]
        assert shifts and all(np.all(s >= 0) for s in shifts)
        assert all(l.requant.multiplier is None for l in net.layers if getattr(l, "requant", None) is not None)
    assert_exact(tuned, learned, net, ds)
    acc = float(np.mean(run_network(net, ds.x_test, raw_pixels=True).classes == ds.y_test))
    # scale_lr 0.05 is chosen to move exponents, not for accuracy: the trained network beats the
    # plan it started from before its bias correction (pow2 W2A2: 61.6% against 43.2%; corrected 73.8%)
    plain = make_plan(graph, method, wb, ab, ds.x_train[:300], bias_correction=False, **opts)
    assert acc > float(np.mean(run_network(export_network(graph, plain), ds.x_test, raw_pixels=True).classes
                               == ds.y_test)) or acc > 0.9


def test_quantize_learn_scales_names_it_in_the_metadata(digits_cnn):
    ds, graph = digits_cnn
    net = quantize(graph, "pow2", 4, 4, ds.x_train[:300], qat=True, train_data=(ds.x_train, ds.y_train), qat_epochs=1,
                   progress=False, learn_scales=True)
    assert net.metadata["learned_scales"] == "pow2" and net.metadata["qat_epochs"] == 1


def test_exact_mode_refuses_learned_scales(digits_cnn):
    ds, graph = digits_cnn
    plan = make_plan(graph, "scaled", 4, 4, ds.x_train[:300])
    with pytest.raises(QuantError, match="export learned scales into a plan first"):
        fake_forward(graph, plan, to_input(ds.x_test[:4]), exact=True, scales=LearnedScales(graph, plan).resolve())
