"""Requantizer circuit == golden rule, exhaustively over a 10-bit accumulator (Amaranth simulator)."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from lowbit.hw.requant import Requantizer
from lowbit.sim.streams import get_n, put_all
from lowbit.sim.stimulus import requant_corner_accs
from lowbit.sw.specs import RequantSpec

LANES = 16
ACC_BITS = 10


def codes_to_values(spec, codes):
    return spec.out_format.decode(np.asarray(codes))


def run(spec, accs, bias, mult, shift, gap=0.2, stall=0.2, model="synthesis", offsets=None):
    """Every acc through the circuit with the given per-beat parameters (``offsets``: one product offset per
    lane, for a spec with ``offset_bits``); returns ``(acc, decoded values)``, both ``[beats, lanes]``."""
    dut = Requantizer(spec, model=model)
    lanes = spec.lanes
    pad = (-len(accs)) % lanes
    acc = np.concatenate([accs, accs[:pad]]).reshape(-1, lanes)
    beats = [{"acc": a.tolist(), "bias": [bias] * lanes, "shift": [shift] * lanes,
              **({"mult": [mult] * lanes} if spec.mult_bits else {}),
              **({"offset": [int(c) for c in offsets]} if offsets is not None else {})} for a in acc]
    got = {}

    async def producer(ctx):
        await put_all(ctx, dut.i, beats, gap_prob=gap, rng=random.Random(shift))

    async def consumer(ctx):
        got["o"] = await get_n(ctx, dut.o, len(beats), stall_prob=stall, rng=random.Random(mult))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    codes = np.array([[int(v) for v in p] for p in got["o"]])
    if spec.out_format.kind.value == "bipolar":
        codes = codes & 1
    return acc, codes_to_values(spec, codes & ((1 << spec.out_format.bits) - 1))


@pytest.mark.parametrize("rounding", ["floor", "half_up", "half_even"])
@pytest.mark.parametrize("out_format, relu", [("s4", False), ("u3", True), ("ternary", True), ("bipolar", False),
                                              ("s8", True)])
def test_every_10_bit_accumulator_in_every_mode(rounding, out_format, relu):
    spec = RequantSpec(LANES, ACC_BITS, out_format, bias_bits=4, mult_bits=3, shift_bits=3,
                       rounding=rounding, relu=relu)
    every = np.arange(-(1 << (ACC_BITS - 1)), 1 << (ACC_BITS - 1))
    for shift, mult, bias in [(0, 1, 0), (1, 1, 0), (2, 3, -5), (3, 7, 7), (5, 2, -8), (7, 5, 3)]:
        acc, got = run(spec, every, bias, mult, shift)
        assert np.array_equal(got, spec.golden(acc, bias, mult, shift)), (shift, mult, bias)


@pytest.mark.parametrize("out_format, relu", [("s4", False), ("u3", True), ("bipolar", False)])
def test_simulation_model_equals_golden_with_gaps_and_stalls(out_format, relu):
    """The simulation model's stage registers hold in bubbles; with heavy gaps and stalls every
    output still equals the rule."""
    spec = RequantSpec(LANES, ACC_BITS, out_format, bias_bits=4, mult_bits=3, shift_bits=3,
                       rounding="half_even", relu=relu)
    every = np.arange(-(1 << (ACC_BITS - 1)), 1 << (ACC_BITS - 1))
    for shift, mult, bias in [(0, 1, 0), (3, 7, 7), (5, 2, -8)]:
        acc, got = run(spec, every, bias, mult, shift, gap=0.5, stall=0.5, model="simulation")
        assert np.array_equal(got, spec.golden(acc, bias, mult, shift)), (shift, mult, bias)


@pytest.mark.parametrize("rounding", ["floor", "half_up", "half_even"])
def test_without_multiplier_and_at_every_boundary(rounding):
    spec = RequantSpec(LANES, 20, "s4", bias_bits=1, mult_bits=0, shift_bits=4, rounding=rounding)
    for shift in range(16):
        accs = requant_corner_accs(spec, shift)
        acc, got = run(spec, accs, 0, 1, shift, gap=0, stall=0)
        assert np.array_equal(got, spec.golden(acc, 0, 1, shift)), shift


@pytest.mark.parametrize("rounding", ["floor", "half_up", "half_even"])
@pytest.mark.parametrize("out_format, relu", [("s3", False), ("u2", True), ("bipolar", False)])
def test_shifts_past_the_product_width(rounding, out_format, relu):
    """Every 6-bit accumulator at every shift 0..15, most of them wider than the 7-bit product.

    The round-up bit is read from ``(v << 1) >> s`` and the sticky bits through a thermometer
    mask of ``s``; past the width both must see the sign extension, as the golden rule does.
    """
    spec = RequantSpec(LANES, 6, out_format, bias_bits=1, mult_bits=0, shift_bits=4, rounding=rounding, relu=relu)
    every = np.arange(-32, 32)
    for shift in range(16):
        acc, got = run(spec, every, 0, 1, shift, gap=0.1, stall=0.1)
        assert np.array_equal(got, spec.golden(acc, 0, 1, shift)), shift
