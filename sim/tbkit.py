"""What every cocotb testbench of a streaming component shares: the clock, a cycle counter,
a synchronous reset, and the valid/ready handshake of one input beat and one output beat.

Streams follow :mod:`amaranth.lib.stream`: a beat transfers on a rising edge with valid and
ready high. Ports are named as Amaranth emits them (``i__valid``, ``i__ready``,
``i__payload``, ``o__valid``, ``o__ready``, ``o__payload``, ``clk``, ``rst``).
"""

from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

__all__ = ["StreamTB"]


class StreamTB:
    """Clock, cycle count, reset and the two stream handshakes of ``dut``."""

    def __init__(self, dut):
        self.dut = dut
        self.cycle = 0  # rising edges since the clock started

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

    async def idle_input(self):
        """One cycle with input valid low (a gap)."""
        self.dut.i__valid.value = 0
        await RisingEdge(self.dut.clk)

    async def send(self, payload) -> int:
        """Offer one input beat until it is taken; returns the cycle of the transfer."""
        dut = self.dut
        dut.i__payload.value = payload
        dut.i__valid.value = 1
        while True:
            await FallingEdge(dut.clk)  # combinational ready has settled
            fire = int(dut.i__ready.value) == 1
            await RisingEdge(dut.clk)
            if fire:
                return self.cycle

    async def receive(self, ready: bool):
        """One cycle of the output stream with ready as given: the payload if a beat transferred, else None."""
        dut = self.dut
        dut.o__ready.value = int(ready)
        await FallingEdge(dut.clk)
        payload = dut.o__payload.value if ready and int(dut.o__valid.value) == 1 else None
        await RisingEdge(dut.clk)
        return payload
