"""The PE×SIMD multiply-accumulate array."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from lowbit.sw.specs import MacArraySpec

from .arith import adder_tree, lane, product, xnor_dot

__all__ = ["MacArray", "mac_input_layout", "LATENCY"]

LATENCY = 2  # cycles from the last accepted beat of a vector to its result on ``o``


def mac_input_layout(spec: MacArraySpec) -> data.StructLayout:
    """Beat of the input stream: SIMD activation codes, PE×SIMD weight codes, end-of-vector.

    Weight lane ``p·SIMD + s`` (row ``p``, column ``s``) and activation lane ``s`` follow
    the one bit order: lane k at bits ``[k·b, (k+1)·b)``.
    """
    return data.StructLayout({
        "x": spec.act_word_bits,
        "w": spec.weight_word_bits,
        "last": 1,
    })


class MacArray(wiring.Component):
    """PE rows of SIMD multiply-accumulate lanes with a stream in and a stream out.

    Every accepted beat adds, for each row ``p``, ``Σ_s w[p,s]·x[s]`` to accumulator ``p``;
    the beat flagged ``last`` completes the vector and the ``pe`` sums leave on ``o``. The
    accumulators double as the output register, so a vector of ``n`` beats costs ``n``
    cycles; the result appears ``LATENCY`` (2) cycles after its last beat is accepted
    (dot-product register, then accumulator). While a result waits on a
    stalled ``o``, ``i`` is not ready (backpressure passes through).

    Parameters
    ----------
    spec : MacArraySpec
        Formats, PE, SIMD and accumulator width (already checked against the worst case).

    Members
    -------
    i : ``In(stream.Signature(mac_input_layout(spec)))``
    o : ``Out(stream.Signature(ArrayLayout(signed(acc_bits), pe)))``
    """

    def __init__(self, spec: MacArraySpec):
        if not isinstance(spec, MacArraySpec):
            raise TypeError(f"spec must be a MacArraySpec, not {spec!r}")
        self._spec = spec
        super().__init__({
            "i": In(stream.Signature(mac_input_layout(spec))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(spec.acc_bits), spec.pe))),
        })

    @property
    def spec(self) -> MacArraySpec:
        return self._spec

    def row_dot(self, p: int):
        """Σ_s w[p,s]·x[s] of row ``p`` for the current beat."""
        spec = self._spec
        wf, af = spec.weight_format, spec.act_format
        wb, ab = wf.bits, af.bits
        w_row = self.i.payload.w[p * spec.simd * wb:(p + 1) * spec.simd * wb]
        x = self.i.payload.x
        if spec.product == "xnor":
            return xnor_dot(w_row, x, spec.simd)
        return adder_tree([product(lane(w_row, s, wb), lane(x, s, ab), wf, af) for s in range(spec.simd)])

    def elaborate(self, platform):
        m = Module()
        spec = self._spec
        # Stage 1 registers each row's dot product (multipliers + adder tree); stage 2
        # accumulates. Two short paths instead of one long multiply-tree-accumulate path.
        s1_valid, s1_first, s1_last = Signal(), Signal(), Signal()
        dots = [Signal(signed(spec.acc_bits), name=f"dot_{p}") for p in range(spec.pe)]
        fresh = Signal(init=1)  # the next accepted beat starts a new vector

        s2_free = ~self.o.valid | self.o.ready
        s1_free = ~s1_valid | s2_free
        m.d.comb += self.i.ready.eq(s1_free)

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [s1_valid.eq(1), s1_first.eq(fresh), s1_last.eq(self.i.payload.last),
                         fresh.eq(self.i.payload.last)]
            for p in range(spec.pe):
                # Width is safe to truncate: spec.acc_bits covers every partial sum.
                m.d.sync += dots[p].eq(self.row_dot(p))
        with m.Elif(s2_free):
            m.d.sync += s1_valid.eq(0)

        with m.If(s1_valid & s2_free):
            for p in range(spec.pe):
                acc = self.o.payload[p]
                m.d.sync += acc.eq(dots[p] + Mux(s1_first, 0, acc))
            m.d.sync += self.o.valid.eq(s1_last)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
