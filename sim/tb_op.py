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
from cocotb.triggers import with_timeout

from .tbkit import StreamTB


class OpTB(StreamTB):
    """Driver and monitor of one op's component (streams ``i`` and ``o``)."""

    def __init__(self, dut, cfg: dict):
        super().__init__(dut)
        self.cfg = cfg
        self.rng = random.Random(cfg.get("seed", 0))

    async def drive(self, beats: list[int]):
        stress = self.cfg["stress_beats"]
        for k, beat in enumerate(beats):
            while k < stress and self.rng.random() < self.cfg["gap"]:
                await self.idle_input()
            await self.send(beat)
        self.dut.i__valid.value = 0

    async def collect(self, n: int) -> tuple[list[int], list[int]]:
        out, cycles = [], []
        stress = self.cfg["stress_out"]
        stall_rng = random.Random(self.cfg.get("seed", 0) + 1)
        while len(out) < n:
            ready = not (len(out) < stress and stall_rng.random() < self.cfg["stall"])
            payload = await self.receive(ready)
            if payload is not None:
                # a 1-bit payload (one bipolar lane) is a Logic, wider ones a LogicArray
                out.append(int(payload.to_unsigned()) if hasattr(payload, "to_unsigned") else int(payload))
                cycles.append(self.cycle)
        self.dut.o__ready.value = 0
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
