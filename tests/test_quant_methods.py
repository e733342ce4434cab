"""Post-training quantizers: the exported IR's golden run is what the plan computes."""

import numpy as np
import pytest
import torch

from lowbit.sw.datasets import load_dataset
from lowbit.sw.golden import run_network
from lowbit.sw.ir import Network
from lowbit.sw.quant import QuantError, folded, make_plan, quantize
from lowbit.sw.quant.core import export_network, fake_forward, multiplier_shift
from lowbit.sw.train import evaluate, train_mlp


@pytest.fixture(scope="module")
def setup():
    ds = load_dataset("digits")
    model, info = train_mlp("tfc", ds, epochs=10, seed=0, batch_size=32, progress=False)
    # the preset has batch norm: plans, exports and fake passes all see the one folded graph
    return ds, folded(model), info["test_accuracy"]


def golden_acc(net, ds):
    return float(np.mean(run_network(net, ds.x_test, raw_pixels=True).classes == ds.y_test))


def fake_logits(model, plan, ds):
    with torch.no_grad():
        return fake_forward(model, plan, None, pixels=torch.as_tensor(ds.x_test, dtype=torch.float32)).numpy()


CASES = [("pow2", 8, 8, {}, 0.02), ("pow2", 4, 4, {}, 0.05), ("dfp", 8, 8, {}, 0.03),
         ("scaled", 4, 4, {"granularity": "channel"}, 0.05), ("scaled", 4, 4, {"granularity": "layer"}, 0.06),
         ("ternary", 2, 8, {"cluster": 4}, 0.15), ("binary", 1, 4, {}, 0.45), ("binary", 1, 1, {}, 0.6),
         # the first layer's input width on its own (--input-bits): 8-bit pixels, or fewer bits than -a
         ("pow2", 2, 2, {"input_bits": 8}, 0.3), ("dfp", 4, 4, {"input_bits": 2}, 0.1),
         ("scaled", 3, 3, {"input_bits": 8}, 0.1), ("ternary", 2, 4, {"input_bits": 8}, 0.2),
         ("binary", 1, 1, {"input_bits": 8}, 0.6), ("binary", 1, 2, {"input_bits": 1}, 0.6)]


@pytest.mark.parametrize("method,wb,ab,opts,max_loss", CASES)
def test_method_ir_matches_plan(setup, method, wb, ab, opts, max_loss):
    ds, model, base = setup
    calib = ds.x_train[:500]
    plan = make_plan(model, method, wb, ab, calib, **opts)
    ib = f"_in{opts['input_bits']}" if "input_bits" in opts else ""
    net = export_network(model, plan, name=f"{method}_w{plan.metadata['weight_bits']}a{ab}{ib}")
    res = run_network(net, ds.x_test, raw_pixels=True)
    fake = fake_logits(model, plan, ds)
    if plan.requant == "shift" or ab == 1:
        # no multiplier rounding: the fake-quantized pass is the integer network times its
        # last accumulator scale (argmax may still differ on exact integer ties, so compare values)
        s_acc = plan.acts[-1].scale * plan.weights[-1].scale[0]
        assert np.allclose(fake, s_acc * res.logits, rtol=1e-4, atol=1e-3 * s_acc)
    else:
        # multipliers round each requantization ratio to 16 bits: near-identical classes (the
        # class the fake pass picks is a largest integer logit: small integer logits often tie)
        picked = res.logits[np.arange(len(fake)), fake.argmax(1)]
        assert np.mean(picked == res.logits.max(1)) >= 0.99
    acc = float(np.mean(res.classes == ds.y_test))
    assert acc >= base - max_loss
    assert net.layers[-1].requant is None
    assert all(l.requant.relu or l.requant.out_format.kind.value == "bipolar" for l in net.layers[:-1])
    assert quantize(model, method, wb, ab, calib, **opts).to_header() == net.to_header()


def test_pow2_is_shift_only(setup):
    ds, model, _ = setup
    net = quantize(model, "pow2", 3, 3, ds.x_train[:500])
    assert net.input.kind == "shift" and net.input.amount == 5
    for l in net.layers[:-1]:
        assert l.requant.multiplier is None and int(l.requant.shift) >= 0
        assert str(l.weight_format) == "s3" and str(l.requant.out_format) == "u3"


def test_scaled_multiplier_error_reported(setup):
    ds, model, _ = setup
    e16 = quantize(model, "scaled", 4, 4, ds.x_train[:500]).metadata["multiplier_max_rel_error"]
    e4 = quantize(model, "scaled", 4, 4, ds.x_train[:500], multiplier_bits=4).metadata["multiplier_max_rel_error"]
    assert e16 < 2 ** -14 and e16 < e4 <= 2 ** -3
    m, s, err = multiplier_shift(np.array([0.3, 1.7]), 8)
    assert np.all(m < 256) and err == pytest.approx(np.max(np.abs(m / 2.0 ** s - [0.3, 1.7]) / [0.3, 1.7]))


@pytest.mark.parametrize("cluster,expected", [(1, 64), (4, 16), (16, 4), (64, 1), ("layer", 1)])
def test_ternary_clusters(setup, cluster, expected):
    ds, model, _ = setup
    net = quantize(model, "ternary", None, 8, ds.x_train[:500], cluster=cluster)
    assert str(net.layers[0].weight_format) == "ternary"
    assert len(np.unique(net.layers[0].requant.multiplier)) <= expected
    t = net.metadata["ternary"]
    assert t["cluster"] == cluster and 0.98 < t["mults_replaced_share"] < 1


@pytest.mark.parametrize("method,wb,ab,opts", [("pow2", 4, 4, {}), ("binary", 1, 1, {}), ("scaled", 2, 2, {}),
                                               ("ternary", 2, 8, {"cluster": 4})])
def test_input_bits_default_is_min_act_bits(setup, method, wb, ab, opts):
    """Without input_bits every IR is what it was; naming the default width changes nothing but
    the metadata and the name that record the option."""
    ds, model, _ = setup
    calib = ds.x_train[:300]
    default = quantize(model, method, wb, ab, calib, **opts)
    ib = 1 if method == "binary" else min(ab, 8)
    named = quantize(model, method, wb, ab, calib, input_bits=ib, **opts)
    assert "input_bits" not in default.metadata and named.metadata.pop("input_bits") == ib
    assert named.name == default.name.replace(f"a{ab}", f"a{ab}_in{ib}")
    named.name = default.name
    assert named.to_header() == default.to_header()
    assert all(np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)
               for a, b in zip(named.layers, default.layers))


@pytest.mark.parametrize("method,wb,ab", [("pow2", 2, 2), ("binary", 1, 1), ("ternary", None, 4)])
def test_input_bits_8_keeps_pixels(setup, method, wb, ab):
    ds, model, _ = setup
    net = quantize(model, method, wb, ab, ds.x_train[:300], input_bits=8)
    assert net.input.kind == "shift" and net.input.amount == 0
    assert str(net.layers[0].in_format) == "u8"
    later = "bipolar" if ab == 1 else f"u{ab}"
    assert all(str(l.in_format) == later for l in net.layers[1:])
    if method == "binary":  # bipolar weights against unsigned pixels: the products are ±pixel
        assert str(net.layers[0].weight_format) == "bipolar"
    x = ds.x_test[:50]
    assert np.array_equal(run_network(net, x, raw_pixels=True).activations[0],
                          run_network(net, x.astype(np.int64), raw_pixels=False).activations[0])


def test_binary_w1a1_is_bipolar(setup):
    ds, model, _ = setup
    net = quantize(model, "binary", 1, 1, ds.x_train[:500])
    assert net.input.kind == "threshold" and net.input.amount == 128
    assert all(str(l.weight_format) == "bipolar" for l in net.layers)
    assert all(str(l.in_format) == "bipolar" for l in net.layers)


def test_ir_save_load(setup, tmp_path):
    ds, model, _ = setup
    net = quantize(model, "scaled", 3, 3, ds.x_train[:500])
    net2 = Network.load(net.save(tmp_path / "n.npz"))
    assert golden_acc(net2, ds) == golden_acc(net, ds)


@pytest.mark.parametrize("call,message", [
    (dict(method="nope"), "method must be one of pow2, scaled, dfp, ternary, binary, wage, minifloat, not 'nope'"),
    (dict(method="pow2", weight_bits=1), "weight_bits for method 'pow2' must be an integer in 2..16, not 1 "
                                         "(1-bit weights: method 'binary'"),
    (dict(method="pow2", act_bits=17), "act_bits for method 'pow2' must be an integer in 1..16, not 17"),
    (dict(method="scaled", granularity="row"), "granularity for method 'scaled' must be one of channel, layer, not 'row'"),
    (dict(method="scaled", multiplier_bits=20), "multiplier_bits for method 'scaled' must be an integer in 2..16, not 20"),
    (dict(method="ternary", weight_bits=3), "weight_bits for method 'ternary' must be an integer in 2..2, not 3"),
    (dict(method="ternary", cluster="x"), "cluster for method 'ternary' must be a positive integer"),
    (dict(method="binary", weight_bits=2), "weight_bits for method 'binary' must be an integer in 1..1, not 2"),
    (dict(method="wage"), "method 'wage' is not a post-training quantizer"),
    (dict(method="pow2", input_bits=9), "input_bits for method 'pow2' must be an integer in 1..8, not 9 (pixels have "
                                        "8 bits)"),
    (dict(method="binary", input_bits=0), "input_bits for method 'binary' must be an integer in 1..8, not 0"),
    (dict(method="ternary", input_bits="8"), "input_bits for method 'ternary' must be an integer in 1..8, not '8'"),
])
def test_bad_parameters(setup, call, message):
    ds, model, _ = setup
    call = dict(call)
    method = call.pop("method")
    with pytest.raises(QuantError) as e:
        quantize(model, method, calib_data=ds.x_train[:100], **call)
    assert message in str(e.value)


def test_bias_correction_recovers_two_bit_ptq_and_auto_picks_by_agreement(setup):
    """Batch norm folded into 2-bit weights leaves a bias that no longer cancels the channel's
    mean: the correction recovers most of it, and "auto" keeps the plan that agrees more often
    with the float network on the calibration images."""
    ds, model, base = setup
    calib = ds.x_train[:500]
    acc = {}
    for mode in (False, True, "auto"):
        net = quantize(model, "pow2", 2, 2, calib, input_bits=8, bias_correction=mode)
        assert net.metadata["bias_correction"] == (mode if mode != "auto" else net.metadata["bias_correction"])
        acc[mode] = golden_acc(net, ds)
    assert acc[True] >= acc[False] + 0.2 and acc[True] >= base - 0.1, acc  # measured 49.3% -> 95.0%
    assert acc["auto"] == acc[True]
    plan = make_plan(model, "pow2", 2, 2, calib, input_bits=8, bias_correction=True)
    assert all(wq.bias_shift is not None and wq.bias_shift.shape == (wq.scale.shape[0],)
               for wq in plan.weights.values())
    assert all(wq.bias_shift is None for wq in make_plan(model, "pow2", 2, 2, calib, bias_correction=False)
               .weights.values())
    with pytest.raises(QuantError, match=r"bias_correction must be True, False or 'auto', not 'yes'"):
        make_plan(model, "pow2", 2, 2, calib, bias_correction="yes")
