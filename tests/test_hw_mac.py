"""MAC array circuit == golden model in Amaranth's simulator, every multiplier kind."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from lowbit.hw.mac import LATENCY, MacArray
from lowbit.sim.streams import get_n, put_all
from lowbit.sim.stimulus import mac_beats, mac_vectors
from lowbit.sw.specs import MacArraySpec

CASES = [  # (weight, activation, pe, simd, beats) — covers xnor, negate, ternary, shift, multiply
    ("bipolar", "bipolar", 4, 16, 3),
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
]


def simulate(spec, vectors, gap, stall, seed=0):
    dut = MacArray(spec)
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


@pytest.mark.parametrize("wf, af, pe, simd, beats", CASES, ids=lambda v: str(v))
def test_mac_array_equals_golden(wf, af, pe, simd, beats):
    spec = MacArraySpec(pe=pe, simd=simd, weight_format=wf, act_format=af, beats=beats)
    rng = np.random.default_rng(pe * 100 + simd)
    vectors = mac_vectors(spec, 20, rng)
    got = simulate(spec, vectors, gap=0.3, stall=0.3)
    expected = np.array([spec.golden(x, w) for x, w in vectors])
    assert np.array_equal(got, expected)
    # the corner vectors reach the accumulator bound exactly, so the width is tight
    lo, hi = spec.acc_range
    assert expected.min() == lo and expected.max() == hi


def test_vectors_of_different_lengths_and_exact_cycle_count():
    """A full-rate stream of n-beat vectors takes n cycles per vector, results LATENCY cycles after."""
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
        for cycle in range(20):
            *_, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                log.append((cycle, [int(v) for v in payload]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    # Beats are accepted at edges 0..9; vectors end with the beats of edges 0, 4, 6, 9, and
    # each result is on o LATENCY = 4 edges later (products, two adder-tree halves,
    # accumulator): sampled at cycles 4, 8, 10, 13.
    assert LATENCY == 4
    assert [c for c, _ in log] == [4, 8, 10, 13]
    assert [v for _, v in log] == [spec.golden(x, w).tolist() for x, w in vectors]
