"""Stream glue: re-cutting a stream of lanes into beats of another width."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["WidthConverter"]


class WidthConverter(wiring.Component):
    """Re-cut beats of ``lanes_in`` lanes into beats of ``lanes_out`` lanes, order preserved.

    Lane ``k`` of a beat is element ``beat·lanes + k`` of the vector, so gathering packs
    consecutive input beats from the low lanes up and splitting emits the low lanes first.
    One of ``lanes_in`` and ``lanes_out`` must divide the other. Full rate either way: a
    gather accepts one beat per cycle, a split emits one beat per cycle.

    Parameters
    ----------
    lanes_in, lanes_out : int
    lane_bits : int

    Members
    -------
    i : ``In(stream.Signature(unsigned(lanes_in·lane_bits)))``
    o : ``Out(stream.Signature(unsigned(lanes_out·lane_bits)))``
    """

    def __init__(self, lanes_in: int, lanes_out: int, lane_bits: int):
        if lanes_in % lanes_out and lanes_out % lanes_in:
            raise ValueError(f"lanes_in ({lanes_in}) and lanes_out ({lanes_out}) must divide one another")
        self.lanes_in, self.lanes_out, self.lane_bits = lanes_in, lanes_out, lane_bits
        super().__init__({
            "i": In(stream.Signature(unsigned(lanes_in * lane_bits))),
            "o": Out(stream.Signature(unsigned(lanes_out * lane_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        wi, wo = self.lanes_in * self.lane_bits, self.lanes_out * self.lane_bits
        if wi == wo:
            wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.o))
            return m
        if wo > wi:  # gather r input beats into one output beat
            r = wo // wi
            buf = Signal(wo)
            count = Signal(range(r))
            m.d.comb += [self.o.payload.eq(buf), self.i.ready.eq(~self.o.valid | self.o.ready)]
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += self.o.valid.eq(0)
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += buf.word_select(count, wi).eq(self.i.payload)
                with m.If(count == r - 1):
                    m.d.sync += [count.eq(0), self.o.valid.eq(1)]
                with m.Else():
                    m.d.sync += count.eq(count + 1)
            return m
        # split one input beat into r output beats
        r = wi // wo
        buf = Signal(wi)
        count = Signal(range(r))
        full = Signal()
        m.d.comb += [self.o.valid.eq(full), self.o.payload.eq(buf.word_select(count, wo)),
                     self.i.ready.eq(~full | (self.o.ready & (count == r - 1)))]
        with m.If(self.o.valid & self.o.ready):
            with m.If(count == r - 1):
                m.d.sync += [count.eq(0), full.eq(0)]
            with m.Else():
                m.d.sync += count.eq(count + 1)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [buf.eq(self.i.payload), full.eq(1)]
        return m
