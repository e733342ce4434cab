"""MAC array circuit == golden model in Amaranth's simulator, every multiplier kind."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from lowbit.hw.mac import MacArray
from lowbit.sim.streams import get_n, put_all
from lowbit.sim.stimulus import mac_beats, mac_vectors
from lowbit.sw.specs import MacArraySpec

CASES = [  # (weight, activation, pe, simd, beats) — covers xnor, negate, ternary, shift, multiply
    ("bipolar", "bipolar", 4, 16, 3),
    ("bipolar", "bipolar", 1, 112, 2),  # four adder-tree stages (fan-ins 4, 4, 4, 2), partial last group
    ("bipolar", "bipolar", 2, 13, 2),
    ("bipolar", "u2", 2, 5, 2),
    ("ternary", "u8", 3, 4, 4),
    ("ternary", "s4", 1, 7, 1),
    ("pow2_3", "u4", 2, 3, 3),
    ("pow2_4", "s3", 3, 2, 2),
    ("s2", "u2", 4, 4, 5),
    ("s3", "s3", 2, 6, 2),
    ("s4", "u4", 8, 8, 2),
    ("s8", "s8", 1, 3, 4),
    ("u3", "u5", 2, 2, 3),
    ("s2", "u2", 1, 37, 2),  # three adder-tree stages, the last group of one term
]


def simulate(spec, vectors, gap, stall, seed=0, model="synthesis"):
    dut = MacArray(spec, model=model)
    beats = [b for x, w in vectors for b in mac_beats(spec, x, w)]
    got = {}

    async def producer(ctx):
        await put_all(ctx, dut.i, beats, gap_prob=gap, rng=random.Random(seed))

    async def consumer(ctx):
        got["o"] = await get_n(ctx, dut.o, len(vectors), stall_prob=stall, rng=random.Random(seed + 1))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return np.array([[int(v) for v in p] for p in got["o"]])


@pytest.mark.parametrize("model", ["synthesis", "simulation"])
@pytest.mark.parametrize("wf, af, pe, simd, beats", CASES, ids=lambda v: str(v))
def test_mac_array_equals_golden(wf, af, pe, simd, beats, model):
    """Both netlists (the simulation model: ``*`` lanes, data registers held in bubbles), with
    random input gaps and output stalls."""
    spec = MacArraySpec(pe=pe, simd=simd, weight_format=wf, act_format=af, beats=beats)
    rng = np.random.default_rng(pe * 100 + simd)
    vectors = mac_vectors(spec, 20, rng)
    got = simulate(spec, vectors, gap=0.3, stall=0.3, model=model)
    expected = np.array([spec.golden(x, w) for x, w in vectors])
    assert np.array_equal(got, expected)
    # the corner vectors reach the accumulator bound exactly, so the width is tight
    lo, hi = spec.acc_range
    assert expected.min() == lo and expected.max() == hi


def test_vectors_of_different_lengths_and_exact_cycle_count():
    """A full-rate stream of n-beat vectors takes n cycles per vector, results spec.latency cycles after."""
    spec = MacArraySpec(pe=2, simd=2, weight_format="s4", act_format="u4", beats=4)
    rng = np.random.default_rng(7)
    vectors = [mac_vectors(spec, 1, rng, beats=b)[-1] for b in (1, 4, 2, 3)]
    dut = MacArray(spec)
    beats = [b for x, w in vectors for b in mac_beats(spec, x, w)]
    log = []

    async def producer(ctx):
        await put_all(ctx, dut.i, beats)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle in range(24):
            *_, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                log.append((cycle, [int(v) for v in payload]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    # Beats are accepted at edges 0..9; vectors end with the beats of edges 0, 4, 6, 9, and
    # each result is on o spec.latency = 4 edges later (operands, products, the one adder-tree
    # stage of two lanes, accumulator): sampled at cycles 4, 8, 10, 13.
    assert spec.tree_fanins == (2,) and spec.latency == 4
    assert [c for c, _ in log] == [4, 8, 10, 13]
    assert [v for _, v in log] == [spec.golden(x, w).tolist() for x, w in vectors]


@pytest.mark.parametrize("wf, af", [("s4", "u4"), ("s4", "s4"), ("s2", "s3"), ("u3", "u5"), ("s3", "u1"),
                                    ("u4", "s2"), ("s8", "s8")])
def test_multiplier_every_code_pair(wf, af):
    """The partial-product multiplier of one lane == the integer product, for every pair of codes
    (a 2,000-pair sample, extremes included, for 8 x 8 bits)."""
    from amaranth.hdl import Module, Signal

    from lowbit.hw.arith import product
    from lowbit.sw.formats import parse_format

    wfmt, afmt = parse_format(wf), parse_format(af)
    w_code, x_code = Signal(wfmt.bits), Signal(afmt.bits)
    out = Signal(product(w_code, x_code, wfmt, afmt).shape())
    m = Module()
    m.d.comb += out.eq(product(w_code, x_code, wfmt, afmt))
    wv, xv = wfmt.values(), afmt.values()
    pairs = [(a, b) for a in wv for b in xv]
    if len(pairs) > 4096:
        rng = np.random.default_rng(0)
        extremes = [(a, b) for a in (wv.min(), wv.max(), 0) for b in (xv.min(), xv.max(), 0)]
        pairs = extremes + [pairs[k] for k in rng.choice(len(pairs), 2000, replace=False)]
    assert len(out) <= wfmt.bits + afmt.bits  # the product register is no wider than w·x
    got = []

    async def bench(ctx):
        for a, b in pairs:
            ctx.set(w_code, int(wfmt.encode(np.array([a]))[0]))
            ctx.set(x_code, int(afmt.encode(np.array([b]))[0]))
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [int(a) * int(b) for a, b in pairs]


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_xnor_group_dot_every_code(n):
    """The table of a first XNOR tree stage == the one XNOR rule (specs.xnor_dot) for every word."""
    from amaranth.hdl import Module, Signal

    from lowbit.hw.arith import xnor_group_dot
    from lowbit.sw.specs import xnor_dot

    agree = Signal(n)
    out = Signal(xnor_group_dot(agree).shape())
    m = Module()
    m.d.comb += out.eq(xnor_group_dot(agree))
    got = []

    async def bench(ctx):
        for code in range(1 << n):
            ctx.set(agree, code)
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [xnor_dot(bin(c).count("1"), n) for c in range(1 << n)]


@pytest.mark.parametrize("simd, fanins", [(1, (2,)), (2, (2,)), (4, (4,)), (5, (4, 2)), (16, (4, 4)),
                                          (64, (4, 4, 4)), (112, (4, 4, 4, 2)), (784, (4, 4, 4, 4, 4))])
def test_adder_tree_has_a_register_every_two_levels(simd, fanins):
    spec = MacArraySpec(pe=1, simd=simd, weight_format="s2", act_format="u2")
    assert spec.tree_fanins == fanins
    assert np.prod(fanins) >= simd and (simd == 1 or simd > np.prod(fanins[:-1]))  # no stage more than needed
    assert spec.latency == 3 + len(fanins)
