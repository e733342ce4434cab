"""The PE×SIMD multiply-accumulate array."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from lowbit.sw.specs import MacArraySpec

from .arith import adder_tree, lane, popcount, product

__all__ = ["MacArray", "mac_input_layout", "LATENCY"]

LATENCY = 4  # cycles from the last accepted beat of a vector to its result on ``o``


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
    cycles; the result appears ``LATENCY`` (4) cycles after its last beat is accepted
    (products, half the adder tree, the rest of it, then the accumulator). While a result waits on a
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

    def row_terms(self, p: int) -> list[Value]:
        """The per-lane terms of row ``p`` for the current beat, registered by stage 1.

        The products ``w[p,s]·x[s]``; for bipolar × bipolar the XNOR word (one bit per lane),
        whose popcount :meth:`row_sum` takes.
        """
        spec = self._spec
        wf, af = spec.weight_format, spec.act_format
        wb, ab = wf.bits, af.bits
        w_row = self.i.payload.w[p * spec.simd * wb:(p + 1) * spec.simd * wb]
        x = self.i.payload.x
        if spec.product == "xnor":
            return [~(w_row ^ x[:spec.simd])]
        return [product(lane(w_row, s, wb), lane(x, s, ab), wf, af) for s in range(spec.simd)]

    def row_partials(self, terms: list[Value]) -> list[Value]:
        """Stage 2: partial sums over groups of ``spec.tree_split`` terms (popcounts for XNOR)."""
        g = self._spec.tree_split  # the first ⌈levels/2⌉ levels of the adder tree
        if self._spec.product == "xnor":
            agree = terms[0]
            return [popcount(agree[i:i + g]) for i in range(0, self._spec.simd, g)]
        return [adder_tree(terms[i:i + g]) for i in range(0, len(terms), g)]

    def row_total(self, partials: list[Value]) -> Value:
        """Stage 3: Σ_s w[p,s]·x[s] from the partial sums (for XNOR: 2·popcount − n)."""
        total = adder_tree(partials)
        if self._spec.product == "xnor":
            n = self._spec.simd
            doubled = Cat(total, Const(0, 2)).as_signed() << 1
            return doubled - Const(n, signed(n.bit_length() + 1))
        return total

    def row_sum(self, terms: list[Value]) -> Value:
        """Σ_s w[p,s]·x[s] from the terms of one row, combinationally."""
        return self.row_total(self.row_partials(terms))

    def row_dot(self, p: int) -> Value:
        """Σ_s w[p,s]·x[s] of row ``p`` for the current beat, combinationally."""
        return self.row_sum(self.row_terms(p))

    def elaborate(self, platform):
        m = Module()
        spec = self._spec
        # Four register stages, each with one kind of logic: the multipliers (1), the first
        # half of the adder tree (2), the rest of it (3), the accumulator (4, which doubles
        # as the output register). The product registers sit right behind the LUTs that
        # compute them, so they cost flip-flops, not LUTs.
        valid = [Signal(name=f"s{k}_valid") for k in (1, 2, 3)]
        first = [Signal(name=f"s{k}_first") for k in (1, 2, 3)]
        last = [Signal(name=f"s{k}_last") for k in (1, 2, 3)]
        rows = []
        for p in range(spec.pe):
            row = self.row_terms(p)
            terms = [Signal(t.shape(), name=f"term_{p}_{k}") for k, t in enumerate(row)]
            parts = [Signal(v.shape(), name=f"part_{p}_{k}") for k, v in enumerate(self.row_partials(terms))]
            dot = Signal(signed(spec.acc_bits), name=f"dot_{p}")
            rows.append((row, terms, parts, dot))
        fresh = Signal(init=1)  # the next accepted beat starts a new vector

        out_free = ~self.o.valid | self.o.ready
        free = [None, None, None]
        free[2] = ~valid[2] | out_free
        free[1] = ~valid[1] | free[2]
        free[0] = ~valid[0] | free[1]
        m.d.comb += self.i.ready.eq(free[0])

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [valid[0].eq(1), first[0].eq(fresh), last[0].eq(self.i.payload.last),
                         fresh.eq(self.i.payload.last)]
            for row, terms, _, _ in rows:
                m.d.sync += [r.eq(t) for r, t in zip(terms, row)]
        with m.Elif(free[1]):
            m.d.sync += valid[0].eq(0)

        for k in (1, 2):  # stage k+1 takes from stage k
            with m.If(valid[k - 1] & free[k]):
                m.d.sync += [valid[k].eq(1), first[k].eq(first[k - 1]), last[k].eq(last[k - 1])]
                for _, terms, parts, dot in rows:
                    if k == 1:
                        m.d.sync += [r.eq(v) for r, v in zip(parts, self.row_partials(terms))]
                    else:
                        # Width is safe to truncate: spec.acc_bits covers every partial sum.
                        m.d.sync += dot.eq(self.row_total(parts))
            with m.Elif(free[k + 1] if k + 1 < 3 else out_free):
                m.d.sync += valid[k].eq(0)

        with m.If(valid[2] & out_free):
            for p, (_, _, _, dot) in enumerate(rows):
                acc = self.o.payload[p]
                m.d.sync += acc.eq(dot + Mux(first[2], 0, acc))
            m.d.sync += self.o.valid.eq(last[2])
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
