"""Max-pool unit: a non-overlapping ``KH×KW`` max-pool on the NHWC channel stream.

The input is ``H·W`` pixels row-major, each ``C/PE`` beats of ``PE`` lanes; the output is
``OH·OW`` pixels the same way. Every input pixel belongs to exactly one window (``stride =
kernel``, checked by :meth:`lowbit.sw.ops.MaxPoolOp.check_hardware`), so each input beat updates
exactly one running maximum: that of its output pixel's beat, ``ox·C/PE + t`` in a row buffer
of ``OW·C/PE`` words. A window's first beat (``ky = kx = 0``) overwrites the word, its last
(``ky = KH−1``, ``kx = KW−1``) leaves as an output beat instead of being written back.

The row buffer is an :class:`amaranth.lib.memory.Memory` with a synchronous read port, so
yosys can put a deep one into block RAM (lenet's first pool at PE 1: 12·32 words) and a
shallow one into LUTRAM, where a register file would cost a wide read multiplexer. Its read
is issued when a beat is accepted and the write-back happens a cycle later, in the same cycle
as the next beat's read. Two consecutive beats share a word only when a pixel is one beat
(``C/PE = 1``: a window's neighbouring columns); then the read port is transparent for the
write port, so the second reads the value just written. Otherwise transparency is only a
matter of cost (:attr:`lowbit.sw.ops.MaxPoolOp.row_buffer_transparent`). One beat per cycle,
no bubbles: ``H·W·C/PE`` cycles per image.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from lowbit.sw.ops import MaxPoolOp

from .arith import decode, lane
from .simmodel import check_model

__all__ = ["MaxPoolUnit"]


def _counter(n: int, name: str) -> Signal:
    return Signal(range(max(n, 2)), name=name)


class MaxPoolUnit(wiring.Component):
    """One max-pool layer: ``PE``-lane beats in, the pooled ``PE``-lane beats out.

    Two register stages: the accepted beat (with its row-buffer address and whether it opens
    or closes its window) while its stored maximum is read, then the output register. While a
    window's result waits on a stalled ``o``, ``i`` is not ready (backpressure passes through);
    beats that do not close a window never wait.

    Parameters
    ----------
    op : MaxPoolOp
        Folded, and a pool the unit can build (:meth:`MaxPoolOp.check_hardware`).
    model : "synthesis" (default) or "simulation"
        Both are the same circuit here (no multipliers, registers load only behind beats).

    Members
    -------
    i : ``In(stream.Signature(unsigned(PE·bits)))``
    o : ``Out(stream.Signature(unsigned(PE·bits)))``
    """

    def __init__(self, op: MaxPoolOp, *, model: str = "synthesis"):
        if not isinstance(op, MaxPoolOp) or not op.folded:
            raise TypeError(f"op must be a folded MaxPoolOp, not {op!r}")
        op.check_hardware()
        self._op, self._model = op, check_model(model)
        super().__init__({
            "i": In(stream.Signature(unsigned(op.in_stream.width))),
            "o": Out(stream.Signature(unsigned(op.out_stream.width))),
        })

    def elaborate(self, platform):
        m = Module()
        op = self._op
        layer, pe, fmt = op.layer, op.fold.pe, op.layer.fmt
        (_, w, c), (kh, kw) = layer.in_shape, layer.kernel
        cf, ow = c // pe, w // kw
        depth, width = op.row_buffer_shape()
        b = fmt.bits

        m.submodules.row_buffer = mem = Memory(shape=unsigned(width), depth=depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=(wr,) if op.row_buffer_transparent else ())

        # ---- position of the next input beat: channel beat t, window column kx, output column
        # ox, window row ky (the output row needs no counter: H is a multiple of KH) ----
        t, kx, ox, ky = _counter(cf, "t"), _counter(kw, "kx"), _counter(ow, "ox"), _counter(kh, "ky")
        addr = _counter(depth, "addr")  # ox·C/PE + t

        # ---- stage 1: the accepted beat, while the row buffer reads its word ----
        s1_valid, s1_first, s1_last = Signal(), Signal(), Signal()
        s1_x = Signal(width)
        s1_addr = _counter(depth, "s1_addr")
        out_free = ~self.o.valid | self.o.ready
        s1_done = s1_valid & (~s1_last | out_free)  # stage 1 empties this cycle
        accept = self.i.valid & self.i.ready
        m.d.comb += [self.i.ready.eq(~s1_valid | s1_done), rd.addr.eq(addr), rd.en.eq(accept)]

        with m.If(accept):
            m.d.sync += [s1_x.eq(self.i.payload), s1_addr.eq(addr),
                         s1_first.eq((ky == 0) & (kx == 0)), s1_last.eq((ky == kh - 1) & (kx == kw - 1))]
            with m.If(t == cf - 1):
                m.d.sync += t.eq(0)
                with m.If(kx == kw - 1):
                    m.d.sync += kx.eq(0)
                    with m.If(ox == ow - 1):
                        m.d.sync += [ox.eq(0), addr.eq(0), ky.eq(Mux(ky == kh - 1, 0, ky + 1))]
                    with m.Else():
                        m.d.sync += [ox.eq(ox + 1), addr.eq(addr + 1)]
                with m.Else():
                    m.d.sync += [kx.eq(kx + 1), addr.eq(addr - (cf - 1))]  # back to this output column's first beat
            with m.Else():
                m.d.sync += [t.eq(t + 1), addr.eq(addr + 1)]
        with m.If(accept):
            m.d.sync += s1_valid.eq(1)
        with m.Elif(s1_done):
            m.d.sync += s1_valid.eq(0)

        # ---- the new running maximum, per lane on decoded values ----
        lanes = []
        for k in range(pe):
            x_code, kept_code = lane(s1_x, k, b), lane(rd.data, k, b)
            lanes.append(Mux(s1_first | (decode(x_code, fmt) > decode(kept_code, fmt)), x_code, kept_code))
        new = Signal(width)
        m.d.comb += new.eq(Cat(*lanes))
        m.d.comb += [wr.addr.eq(s1_addr), wr.data.eq(new), wr.en.eq(s1_valid & ~s1_last)]

        # ---- stage 2: the output register ----
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(s1_done & s1_last):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(new)]
        return m
