"""cocotb testbench of one hardware op's component, generic over ops (the op-contract test).

Configuration (``LOWBIT_TB_CONFIG``): ``beats`` (input beats as hex strings, image after
image), ``n_out`` (output beats to collect), ``stress_beats``/``stress_out`` (how many of
them see random valid gaps / ready stalls, probability ``gap``/``stall``), ``seed``,
``timeout_ns``. The testbench only moves beats and counts cycles; it writes every output
beat and the cycle of each output transfer to ``LOWBIT_TB_RESULT``, and
:func:`lowbit.sim.verify.verify_op` scores them against the op's golden function in numpy.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, with_timeout


class OpTB:
    """Clock, reset, driver and monitor of one op's component (streams ``i`` and ``o``)."""

    def __init__(self, dut, cfg: dict):
        self.dut, self.cfg = dut, cfg
        self.rng = random.Random(cfg.get("seed", 0))
        self.cycle = 0

    async def start(self):
        cocotb.start_soon(Clock(self.dut.clk, 10, unit="ns").start())
        cocotb.start_soon(self._count())
        self.dut.rst.value = 1
        self.dut.i__valid.value = 0
        self.dut.o__ready.value = 0
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def _count(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    async def drive(self, beats: list[int]):
        dut, stress = self.dut, self.cfg["stress_beats"]
        for k, beat in enumerate(beats):
            while k < stress and self.rng.random() < self.cfg["gap"]:
                dut.i__valid.value = 0
                await RisingEdge(dut.clk)
            dut.i__payload.value = beat
            dut.i__valid.value = 1
            while True:
                await FallingEdge(dut.clk)  # combinational ready has settled
                fire = int(dut.i__ready.value) == 1
                await RisingEdge(dut.clk)
                if fire:
                    break
        dut.i__valid.value = 0

    async def collect(self, n: int) -> tuple[list[int], list[int]]:
        dut, out, cycles = self.dut, [], []
        stress = self.cfg["stress_out"]
        stall_rng = random.Random(self.cfg.get("seed", 0) + 1)
        while len(out) < n:
            ready = not (len(out) < stress and stall_rng.random() < self.cfg["stall"])
            dut.o__ready.value = int(ready)
            await FallingEdge(dut.clk)
            fire = ready and int(dut.o__valid.value) == 1
            if fire:
                out.append(int(dut.o__payload.value.to_unsigned()))
            await RisingEdge(dut.clk)
            if fire:
                cycles.append(self.cycle)
        dut.o__ready.value = 0
        return out, cycles


@cocotb.test()
async def op_streams_every_beat(dut):
    with open(os.environ["LOWBIT_TB_CONFIG"]) as f:
        cfg = json.load(f)
    tb = OpTB(dut, cfg)
    await tb.start()
    driver = cocotb.start_soon(tb.drive([int(b, 16) for b in cfg["beats"]]))
    out, cycles = await with_timeout(tb.collect(cfg["n_out"]), cfg["timeout_ns"], "ns")
    await driver
    with open(os.environ["LOWBIT_TB_RESULT"], "w") as f:
        json.dump({"outputs": [f"{v:x}" for v in out], "out_cycles": cycles}, f)
