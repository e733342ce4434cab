"""Quantization-aware training and WAGE (on scikit-learn's digits, a few seconds)."""

import numpy as np
import pytest
import torch

from lowbit.sw.datasets import load_dataset
from lowbit.sw.golden import run_network
from lowbit.sw.quant import QuantError, quantize
from lowbit.sw.quant.wage import export_wage, parse_wage_bits, train_wage
from lowbit.sw.train import to_input, train_mlp


@pytest.fixture(scope="module")
def setup():
    ds = load_dataset("digits")
    model, info = train_mlp("tfc", ds, epochs=10, seed=0, batch_size=32, progress=False)
    return ds, model


def acc(net, ds):
    return float(np.mean(run_network(net, ds.x_test, raw_pixels=True).classes == ds.y_test))


def test_qat_improves_w2a2_and_is_deterministic(setup):
    ds, model = setup
    before = model.linears[0].weight.clone()
    ptq = quantize(model, "pow2", 2, 2, ds.x_train[:500])
    kw = dict(qat=True, train_data=(ds.x_train, ds.y_train), qat_epochs=4, seed=1, progress=False)
    qat = quantize(model, "pow2", 2, 2, ds.x_train[:500], **kw)
    assert torch.equal(model.linears[0].weight, before)  # the float model is not modified
    assert acc(qat, ds) > acc(ptq, ds)
    assert qat.metadata["qat"] is True
    again = quantize(model, "pow2", 2, 2, ds.x_train[:500], **kw)
    assert all(np.array_equal(a.weights, b.weights) for a, b in zip(qat.layers, again.layers))


@pytest.mark.parametrize("method,wb,ab,opts", [("ternary", 2, 8, {"cluster": 4}), ("binary", 1, 1, {}),
                                               ("binary", 1, 1, {"input_bits": 8}), ("scaled", 2, 2, {}),
                                               ("dfp", 3, 3, {})])
def test_qat_other_methods_export(setup, method, wb, ab, opts):
    ds, model = setup
    net = quantize(model, method, wb, ab, ds.x_train[:500], qat=True, train_data=(ds.x_train, ds.y_train),
                   qat_epochs=1, progress=False, **opts)
    assert acc(net, ds) > 0.3


def test_qat_needs_train_data(setup):
    ds, model = setup
    with pytest.raises(QuantError, match="qat=True needs train_data"):
        quantize(model, "pow2", 4, 4, ds.x_train[:100], qat=True)


def test_wage_golden_equals_training_forward():
    ds = load_dataset("digits")
    model = train_wage(ds.x_train, ds.y_train, preset="tfc", epochs=4, seed=0, progress=False)
    net = export_wage(model)
    res = run_network(net, ds.x_test, raw_pixels=True)
    with torch.no_grad():
        out = model(to_input(ds.x_test)).numpy()
    step = net.metadata and (2.0 ** -7) * (0.5 / model.alphas[-1])  # last layer's accumulator scale
    assert np.allclose(out, step * res.logits, atol=1e-5)
    assert float(np.mean(res.classes == ds.y_test)) > 0.6
    assert str(net.layers[0].weight_format) == "ternary" and str(net.layers[1].in_format) == "u7"
    assert all(l.requant.multiplier is None for l in net.layers[:-1])


def test_wage_bits_parse():
    assert parse_wage_bits("2-8-8-8") == (2, 8, 8, 8)
    with pytest.raises(QuantError, match=r"WAGE bits must be 'W-A-G-E' .* not '2-8-8'"):
        parse_wage_bits("2-8-8")
