"""Whole-network top in Amaranth's simulator: every output equal to the golden model."""

import random

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.sim import Simulator

from lowbit.hw.network import NetworkTop
from lowbit.hw.streams import WidthConverter
from lowbit.sim.streams import get_n, put_all
from lowbit.sw.fold import plan_folding
from lowbit.sw.golden import run_network
from lowbit.sw.pack import pack_words, unpack_words
from lowbit.sw.randnet import random_network


class Clocked(Elaboratable):
    """Gives a purely combinational DUT (a pass-through converter) a clock domain to tick."""

    def __init__(self, dut):
        self.dut = dut

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        tick = Signal()
        m.d.sync += tick.eq(~tick)
        return m


def run_sim(dut, beats, n_out, gap, stall):
    got = {}

    async def producer(ctx):
        await put_all(ctx, dut.i, beats, gap_prob=gap, rng=random.Random(3))

    async def consumer(ctx):
        got["o"] = await get_n(ctx, dut.o, n_out, stall_prob=stall, rng=random.Random(4))

    sim = Simulator(Clocked(dut))
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return got["o"]


@pytest.mark.parametrize("lanes_in, lanes_out", [(2, 6), (6, 2), (4, 4), (1, 8), (8, 1)])
def test_width_converter_preserves_order(lanes_in, lanes_out):
    rng = np.random.default_rng(0)
    values = rng.integers(0, 8, 48)
    dut = WidthConverter(lanes_in, lanes_out, 3)
    out = run_sim(dut, pack_words(values.reshape(-1, lanes_in), 3), 48 // lanes_out, 0.3, 0.3)
    assert unpack_words([int(v) for v in out], lanes_out, 3).ravel().tolist() == values.tolist()


CASES = [  # weight, activation, multiplier, folds for sizes 12-8-6-4
    ("s4", "u4", False, [(4, 3), (2, 4), (2, 2)]),
    ("bipolar", "bipolar", False, [(8, 12), (6, 8), (1, 6)]),
    ("ternary", "u8", True, [(1, 1), (2, 1), (4, 2)]),
    ("s2", "s2", False, [(2, 6), (3, 2), (2, 3)]),
    ("pow2_3", "u3", True, [(8, 4), (2, 8), (4, 1)]),
]


@pytest.mark.parametrize("wf, af, mult, folds", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_network_top_equals_golden(wf, af, mult, folds):
    net = random_network([12, 8, 6, 4], wf, af, seed=1, multiplier=mult)
    plan = plan_folding(net, folds)
    pixels = np.random.default_rng(0).integers(0, 256, (12, 12))
    x = net.input.apply(pixels)
    golden = run_network(net, x)
    fmt = net.layers[0].in_format
    beats = pack_words(fmt.encode(x).reshape(-1, plan.layers[0].simd), fmt.bits)
    out = run_sim(NetworkTop(net, plan), beats, len(x), 0.2, 0.2)
    assert [int(p.cls) for p in out] == golden.classes.tolist()
    assert [[int(v) for v in p.logits] for p in out] == golden.logits.tolist()


@pytest.mark.parametrize("classes, pe", [(10, 1), (6, 2), (4, 4)])
def test_argmax_collector_lowest_index_wins_at_every_extreme(classes, pe):
    """Ties, the most negative and the most positive logit, under gaps and stalls; then the
    rate with an always-ready consumer: one image per NF beats, no bubble."""
    from lowbit.hw.network import ArgmaxCollector
    from lowbit.sw.golden import argmax_lowest

    lb = 5
    lo, hi = -(1 << (lb - 1)), (1 << (lb - 1)) - 1
    rng = np.random.default_rng(classes)
    images = [np.full(classes, lo), np.full(classes, hi), np.full(classes, 0),
              np.array([lo] * (classes - 1) + [hi]), np.array([hi] + [lo] * (classes - 1)),
              np.array([lo + 1] * (classes - 1) + [lo])]
    images += [rng.integers(lo, hi + 1, classes) for _ in range(30)]
    images += [rng.integers(-1, 2, classes) for _ in range(30)]  # many ties
    logits = np.array(images)
    nf = classes // pe
    beats = pack_words((logits & ((1 << lb) - 1)).reshape(-1, pe), lb)
    dut = ArgmaxCollector(classes, pe, lb)
    out = run_sim(dut, beats, len(logits), 0.3, 0.3)
    assert [int(p.cls) for p in out] == argmax_lowest(logits).tolist()
    assert [[int(v) for v in p.logits] for p in out] == logits.tolist()

    seen = []

    async def testbench(ctx):  # full rate in, always ready out: the cycle of each result
        ctx.set(dut.o.ready, 1)
        for k, beat in enumerate(list(beats) + [None] * 4):
            ctx.set(dut.i.valid, beat is not None)
            if beat is not None:
                ctx.set(dut.i.payload, int(beat))
            if ctx.get(dut.o.valid):
                seen.append(k)
            if beat is not None:
                assert ctx.get(dut.i.ready)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert seen == [nf * (k + 1) for k in range(len(logits))]
