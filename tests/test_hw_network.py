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
