"""The PE×SIMD multiply-accumulate array."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from lowbit.sw.specs import MacArraySpec

from .arith import adder_tree, lane, product, xnor_dot

__all__ = ["MacArray", "mac_input_layout"]


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
    cycles and the result appears one cycle after its last beat. While a result waits on a
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
        fresh = Signal(init=1)  # the next beat starts a new vector

        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        accept = self.i.valid & self.i.ready

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(accept):
            m.d.sync += fresh.eq(self.i.payload.last)
            for p in range(spec.pe):
                acc = self.o.payload[p]
                # Width is safe to truncate: spec.acc_bits covers every partial sum.
                m.d.sync += acc.eq(self.row_dot(p) + Mux(fresh, 0, acc))
            with m.If(self.i.payload.last):
                m.d.sync += self.o.valid.eq(1)
        return m
