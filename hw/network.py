"""The network top: every op's component chained by streams, argmax at the end.

Generic over ops (:mod:`lowbit.sw.ops`): each op's component comes from
:mod:`lowbit.hw.registry`; between neighbours a width converter re-cuts the lanes of one op's
output stream to the next op's input lanes, and a FIFO holds a whole input vector of the next
op; the last op's raw logits go through an :class:`ArgmaxCollector`.

I/O protocol (also written into ``manifest.json`` by ``lowbit build``)
-------------------------------------------------------------------
``i`` (input stream): one image is ``in_features / SIMD_0`` beats; beat ``b`` carries inputs
``b·SIMD_0 … b·SIMD_0 + SIMD_0 − 1`` of the first layer, already in its input format
(lane k at bits ``[k·b, (k+1)·b)``; the host applies the IR's input transform to pixels).
No end-of-image flag: the top counts beats.

``o`` (output stream): one beat per image: ``cls`` (argmax, lowest index wins ties) and
``logits`` (the last layer's ``acc + bias``, signed, lane j = output j).

``stat_cycles``, ``stat_images``, ``stat_in_stalls``, ``stat_out_stalls``: 32-bit counters
since reset (cycles; images delivered; cycles with input valid but not ready; cycles with
output valid but not ready).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from lowbit.sw.ir import Network
from lowbit.sw.ops import lower

from .registry import component_for
from .streams import WidthConverter

__all__ = ["NetworkTop", "output_layout", "ArgmaxCollector"]

STAT_BITS = 32


def output_layout(classes: int, logit_bits: int) -> data.StructLayout:
    return data.StructLayout({
        "cls": unsigned(max(1, (classes - 1).bit_length())),
        "logits": data.ArrayLayout(signed(logit_bits), classes),
    })


class ArgmaxCollector(wiring.Component):
    """Collect NF beats of PE logits into one output beat with the class index.

    Strictly-greater comparisons in index order make the lowest index win ties, as
    :func:`lowbit.sw.golden.argmax_lowest` does. Beats are accepted while ``o`` holds the
    previous result; only the beat that completes an image waits for ``o`` to be free.
    """

    def __init__(self, classes: int, pe: int, logit_bits: int):
        self.classes, self.pe, self.logit_bits = classes, pe, logit_bits
        super().__init__({
            "i": In(stream.Signature(unsigned(pe * logit_bits))),
            "o": Out(stream.Signature(output_layout(classes, logit_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        nf = self.classes // self.pe
        lb = self.logit_bits
        beat_bits = self.pe * lb
        # base (the index of this beat's lane 0), first (base == 0) and last (the beat completes
        # the image) are registers, and the running best is kept in offset binary (sign bit
        # flipped) so that the signed comparison is one unsigned carry chain: the chain and one
        # LUT are all the logic in front of the running best
        base = Signal(range(max(self.classes, 2)))
        first, last = Signal(init=1), Signal(init=int(nf == 1))
        best_val = Signal(unsigned(lb))
        best_idx = Signal(range(max(self.classes, 2)))
        # A beat that completes an image needs o free. With more than one beat per image that is
        # asked of a register, o_free (o.valid will be low in this cycle), so no path runs from
        # o.ready into the running best: the result leaves at least one cycle before the next
        # image's last beat comes, so no throughput is lost. One beat per image keeps the
        # combinational ready (~o.valid | o.ready), or a result per cycle could not pass.
        o_free = Signal(init=1)
        taken = self.o.valid & self.o.ready
        if nf == 1:
            m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        else:
            m.d.comb += self.i.ready.eq(~last | o_free)
        with m.If(taken):
            m.d.sync += self.o.valid.eq(0)
        completes = self.i.valid & self.i.ready & last
        m.d.sync += o_free.eq(~completes & (~self.o.valid | taken))

        # running best through this beat's lanes, in index order
        cur_val, cur_idx = best_val, best_idx
        for p in range(self.pe):
            v = self.i.payload[p * lb:(p + 1) * lb] ^ (1 << (lb - 1))  # offset binary
            idx = base + p
            take = (v > cur_val) if p else (first | (v > cur_val))
            nv, ni = Signal(unsigned(lb), name=f"val_{p}"), Signal(range(max(self.classes, 2)), name=f"idx_{p}")
            m.d.comb += [nv.eq(cur_val), ni.eq(cur_idx)]
            with m.If(take):
                m.d.comb += [nv.eq(v), ni.eq(idx)]
            cur_val, cur_idx = nv, ni

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [best_val.eq(cur_val), best_idx.eq(cur_idx)]
            # an image's earlier beats wait in a shift register of their own (o may still hold
            # the previous result), beat 0 lowest: logit c·PE + p is lane p of beat c
            held = self.i.payload
            if nf > 1:
                held = Signal((nf - 1) * beat_bits)
                m.d.sync += held.eq(Cat(held[beat_bits:], self.i.payload))
                held = Cat(held, self.i.payload)
            with m.If(last):
                m.d.sync += [base.eq(0), first.eq(1), last.eq(nf == 1), self.o.valid.eq(1),
                             self.o.payload.cls.eq(cur_idx), self.o.payload.logits.as_value().eq(held)]
            with m.Else():
                m.d.sync += [base.eq(base + self.pe), first.eq(0), last.eq(base == (nf - 2) * self.pe)]
        return m


class NetworkTop(wiring.Component):
    """A whole integer network as a streaming accelerator (see the module docstring).

    Parameters
    ----------
    ops : sequence of folded ops (from :func:`lowbit.sw.ops.lower`), or a :class:`Network`
        With a network, ``plan`` (a :class:`~lowbit.sw.fold.FoldPlan`) folds it.
    plan : FoldPlan, only with a network
    model : "synthesis" (default) or "simulation" (see :data:`lowbit.hw.simmodel.MODELS`)
    """

    def __init__(self, ops, plan=None, *, model: str = "synthesis"):
        if isinstance(ops, Network):
            if plan is None:
                raise ValueError("plan must be a FoldPlan when NetworkTop is given a network, not None")
            ops = lower(ops, plan)
        elif plan is not None:
            raise ValueError(f"plan must be None when NetworkTop is given ops (they are folded), not {plan!r}")
        self._ops = tuple(ops)
        if not self._ops:
            raise ValueError("ops must hold at least one op, not 0")
        last = self._ops[-1].out_stream
        if last.format is not None:
            raise ValueError(f"the last op ({self._ops[-1].name!r}) must emit raw logits, not {last.format} codes")
        self._units = [component_for(op, model=model) for op in self._ops]
        self.logit_bits = last.lane_bits
        self.classes = last.elements
        super().__init__({
            "i": In(stream.Signature(unsigned(self._ops[0].in_stream.width))),
            "o": Out(stream.Signature(output_layout(self.classes, self.logit_bits))),
            "stat_cycles": Out(STAT_BITS),
            "stat_images": Out(STAT_BITS),
            "stat_in_stalls": Out(STAT_BITS),
            "stat_out_stalls": Out(STAT_BITS),
        })

    @property
    def ops(self) -> tuple:
        return self._ops

    @property
    def units(self) -> list:
        """The ops' components, in order."""
        return self._units

    mvus = units  # the name from when every unit was a matrix-vector unit

    def elaborate(self, platform):
        m = Module()
        for k, unit in enumerate(self._units):
            m.submodules[f"layer{k}"] = unit
        wiring.connect(m, wiring.flipped(self.i), self._units[0].i)
        for k in range(len(self._units) - 1):
            a, b = self._units[k], self._units[k + 1]
            sa, sb = self._ops[k].out_stream, self._ops[k + 1].in_stream
            conv = WidthConverter(sa.lanes, sb.lanes, sa.lane_bits)
            # as deep as the next op asks (HardwareOp.input_fifo_beats): at least a whole input
            # vector, so an op never waits on a neighbour busy replaying its previous vector
            fifo = SyncFIFOBuffered(width=sb.width, depth=self._ops[k + 1].input_fifo_beats)
            m.submodules[f"recut{k}"] = conv
            m.submodules[f"fifo{k}"] = fifo
            wiring.connect(m, a.o, conv.i)
            wiring.connect(m, conv.o, fifo.w_stream)
            wiring.connect(m, fifo.r_stream, b.i)
        last = self._ops[-1].out_stream
        m.submodules.argmax = argmax = ArgmaxCollector(self.classes, last.lanes, self.logit_bits)
        wiring.connect(m, self._units[-1].o, argmax.i)
        wiring.connect(m, argmax.o, wiring.flipped(self.o))

        m.d.sync += self.stat_cycles.eq(self.stat_cycles + 1)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.stat_images.eq(self.stat_images + 1)
        with m.If(self.i.valid & ~self.i.ready):
            m.d.sync += self.stat_in_stalls.eq(self.stat_in_stalls + 1)
        with m.If(self.o.valid & ~self.o.ready):
            m.d.sync += self.stat_out_stalls.eq(self.stat_out_stalls + 1)
        return m
