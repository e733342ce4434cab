"""The requantizer's product offset ``c`` (``round_shift((acc + bias)·m + c, s)``) end to end:
the IR file, the parameter memories, the circuit (Amaranth simulation, exhaustively over a
10-bit accumulator; Verilator for a whole op) and the golden rule, all bit-exact; and a layer
without offsets builds the circuit it did before offsets existed."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from lowbit.hw.requant import requant_input_layout
from lowbit.sw.cost import estimate_block
from lowbit.sw.fold import plan_folding
from lowbit.sw.golden import dense_forward, run_network
from lowbit.sw.ir import DenseLayer, IRError, Network
from lowbit.sw.ops import lower
from lowbit.sw.pack import ParamLayout, param_banks, params_from_banks
from lowbit.sw.randnet import random_network
from lowbit.sw.requant import RequantParams, requantize
from lowbit.sw.specs import RequantSpec
from tests.test_hw_requant import run as run_requantizer

LANES = 8
ACC_BITS = 10


def run(spec, accs, bias, mult, shift, offsets):
    """Every acc through the circuit, lane ``k`` with ``offsets[k]`` (the requantizer testbench's driver)."""
    return run_requantizer(spec, accs, bias, mult, shift, offsets=offsets)


@pytest.mark.parametrize("rounding", ["floor", "half_up", "half_even"])
@pytest.mark.parametrize("out_format, relu", [("s4", False), ("u3", True), ("bipolar", False)])
def test_circuit_equals_golden_for_every_10_bit_accumulator_with_offsets(rounding, out_format, relu):
    spec = RequantSpec(LANES, ACC_BITS, out_format, bias_bits=4, mult_bits=3, shift_bits=3,
                       rounding=rounding, relu=relu, offset_bits=8)
    every = np.arange(-(1 << (ACC_BITS - 1)), 1 << (ACC_BITS - 1))
    # per lane offsets, the extremes of the 8-bit field among them
    offsets = np.array([-128, 127, -1, 1, 0, -77, 45, 100])
    for shift, mult, bias in [(0, 1, 0), (3, 7, 7), (5, 2, -8), (7, 5, 3)]:
        acc, got = run(spec, every, bias, mult, shift, offsets)
        want = spec.golden(acc, bias, mult, shift, np.broadcast_to(offsets, acc.shape))
        assert np.array_equal(got, want), (shift, mult, bias)
        # the offsets do change outputs (else the test would prove nothing)
        if shift:
            assert not np.array_equal(want, spec.golden(acc, bias, mult, shift)), (shift, mult, bias)


def test_a_spec_without_offset_has_no_offset_input_and_reads_as_before():
    spec = RequantSpec(4, 12, "u4", bias_bits=6, mult_bits=4, shift_bits=4)
    assert "offset" not in requant_input_layout(spec).members
    assert "offset_bits" not in spec.to_json() and spec.product_bits == spec.sum_bits + 4
    assert RequantSpec.from_json(spec.to_json()) == spec
    with_offset = replace(spec, offset_bits=10)
    assert with_offset.product_bits == max(spec.product_bits, 10) + 1
    assert RequantSpec.from_json(with_offset.to_json()) == with_offset
    assert ParamLayout.from_spec(spec).widths == (6, 4, 4, 0)
    with pytest.raises(ValueError, match=r"offset_bits must be an integer in 0\.\.62, not 63"):
        RequantSpec(4, 12, "u4", offset_bits=63)


def test_cost_model_sees_the_wider_product():
    """The offset widens the product the rounding stage works on (half_even here); the offset adder
    itself is not a feature of the fitted model (measured with yosys: about 25 LUTs per lane)."""
    net = _offset_network()
    mac, rq, _ = lower(net, plan_folding(net, [(4, 3), (3, 2)]))[0].specs
    assert rq.rounding.value == "half_even"
    plain = estimate_block(mac, replace(rq, offset_bits=0))["lut"]
    assert estimate_block(mac, rq)["lut"] > plain


def _offset_network(seed: int = 3) -> Network:
    """random_network's two layers, the hidden one with per-channel offsets up to ±m·2^s."""
    net = random_network([12, 8, 6], "s4", "u4", seed=seed, multiplier=True)
    hidden, last = net.layers
    m, s = hidden.requant.per_channel(8)
    offsets = np.random.default_rng(seed).integers(-(m << s), (m << s) + 1)
    rq = replace(hidden.requant, offset=offsets)
    return Network([DenseLayer(hidden.weights, hidden.weight_format, hidden.in_format, hidden.bias, rq, hidden.name),
                    last], net.input, net.name)


def test_ir_file_round_trips_the_offsets_and_old_files_have_none(tmp_path):
    net = _offset_network()
    path = net.save(tmp_path / "net.npz")
    back = Network.load(path)
    assert back.layers[0].requant == net.layers[0].requant
    assert np.array_equal(back.layers[0].requant.offset, net.layers[0].requant.offset)
    x = np.random.default_rng(0).choice(net.layers[0].in_format.values(), (50, 12))
    assert np.array_equal(run_network(back, x).logits, run_network(net, x).logits)
    plain = random_network([12, 8, 6], "s4", "u4", seed=3, multiplier=True)
    assert "offset" not in plain.layers[0].requant.to_json()
    assert Network.load(plain.save(tmp_path / "plain.npz")).layers[0].requant.offset is None


def test_golden_forward_applies_the_offset():
    net = _offset_network()
    layer = net.layers[0]
    x = np.random.default_rng(1).choice(layer.in_format.values(), (64, 12))
    acc = x @ layer.weights.T + layer.bias
    m, s = layer.requant.per_channel(8)
    v = acc * m + layer.requant.offset
    # half_even by hand, through Python's round on exact fractions
    from fractions import Fraction
    want = np.array([[round(Fraction(int(t), 1 << int(k))) for t, k in zip(row, s)] for row in v])
    want = np.clip(want, layer.requant.lo, layer.requant.hi)
    assert np.array_equal(requantize(acc, layer.requant), want)
    assert np.array_equal(dense_forward(x, layer), want)
    assert not np.array_equal(want, requantize(acc, replace(layer.requant, offset=None)))


def test_ir_refuses_bad_offsets_naming_the_field(tmp_path):
    net = _offset_network()
    path = net.save(tmp_path / "net.npz")
    with np.load(path) as z:
        arrays = dict(z)
    header = json.loads(bytes(arrays["header"]).decode())
    header["layers"][0]["requant"]["offset"] = [1, 2, 3]
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(IRError, match=r"requant\.offset must be null or an integer or a list of 8 integers"):
        Network.load(tmp_path / "bad.npz")


def test_ir_product_bound_includes_the_offset():
    net = _offset_network()
    hidden = net.layers[0]
    lo, hi = hidden.acc_range
    m = int(hidden.requant.multiplier.max())
    big = (1 << 62) - 1 - hi * m  # hi·m + big is the widest value that still fits 63 bits
    fits = replace(hidden.requant, offset=np.full(8, big))
    DenseLayer(hidden.weights, hidden.weight_format, hidden.in_format, hidden.bias, fits, "ok")
    over = replace(hidden.requant, offset=np.full(8, big + 1))
    with pytest.raises(IRError, match=r"wide: \(acc \+ bias\)·multiplier \+ offset must fit 63-bit signed integers "
                                      r".* not 64 bits .* offsets \d+\.\.\d+\)"):
        DenseLayer(hidden.weights, hidden.weight_format, hidden.in_format, hidden.bias, over, "wide")


def test_parameter_memories_carry_the_offsets():
    net = _offset_network()
    layer = net.layers[0]
    lay = ParamLayout.for_layer(layer)
    assert lay.offset_bits == layer.requant.offset_bits and [f["name"] for f in lay.fields()][-1] == "offset"
    back = params_from_banks(param_banks(layer, 4, lay), 8, 4, lay)
    assert np.array_equal(back.offset, layer.requant.offset) and np.array_equal(back.bias, layer.bias)
    narrow = replace(lay, offset_bits=lay.offset_bits - 1)
    with pytest.raises(ValueError, match=rf"offset_bits must be at least {lay.offset_bits} for the offsets of "
                                         rf"layer 'fc0', not {lay.offset_bits - 1}"):
        param_banks(layer, 4, narrow)
    assert params_from_banks(param_banks(net.layers[1], 3, ParamLayout.for_layer(net.layers[1])), 6, 3,
                             ParamLayout.for_layer(net.layers[1])).offset is None


def _offset_op():
    net = _offset_network()
    return lower(net, plan_folding(net, [(4, 3), (3, 2)]))[0]


def test_op_with_offsets_equals_golden_in_amaranth_simulation():
    from tests.test_op_contract import _inputs, _simulate

    op = _offset_op()
    assert op.specs[1].offset_bits == op.layer.requant.offset_bits
    x = _inputs(op, 6)
    got, _ = _simulate(op, op.in_stream.encode(x), 6 * op.out_stream.beats_per_image, gap=0.3, stall=0.3)
    assert np.array_equal(op.out_stream.decode(got), op.golden(x).out.reshape(len(x), -1))


@pytest.mark.hdl
def test_op_with_offsets_equals_golden_in_verilator(tmp_path):
    from lowbit.sim.verify import verify_op
    from tests.test_op_contract import _inputs

    op = _offset_op()
    res = verify_op(op, _inputs(op, 8, seed=2), tmp_path, stress_images=3)
    assert res["run"].passed
    assert np.array_equal(res["outputs"], res["golden"])
    assert res["cycles_per_image"] == op.cycles()


def test_params_validate_offsets_with_clear_errors():
    with pytest.raises(ValueError, match=r"offset must be in -4611686018427387903\.\.4611686018427387903, "
                                         r"not 4611686018427387904"):
        RequantParams("s4", 1, None, offset=1 << 62)
    with pytest.raises(ValueError, match=r"offset must be None, an integer or a 1-D integer array, not 1\.5"):
        RequantParams("s4", 1, None, offset=1.5)
    with pytest.raises(ValueError, match=r"per-channel shift, multiplier and offset lengths differ: \[2, 3\]"):
        RequantParams("s4", [1, 2], None, offset=[1, 2, 3]).channels()
