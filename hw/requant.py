"""The shift/clip requantizer: ``y = clip(round_shift((acc + bias)·m, s), lo, hi)``.

The rule is defined once in :mod:`lowbit.sw.requant`; this is its circuit.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from lowbit.sw.formats import Kind, Rounding
from lowbit.sw.specs import RequantSpec

__all__ = ["Requantizer", "requant_input_layout", "requant_output_layout", "out_shape", "requant_lane",
           "requant_product", "requant_round_clip", "LATENCY"]

LATENCY = 2  # cycles from an accepted input to its output beat


def out_shape(spec: RequantSpec):
    """Shape of one output code: bipolar is 1 bit (1 = +1), others their two's complement."""
    f = spec.out_format
    if f.kind is Kind.BIPOLAR:
        return unsigned(1)
    return signed(f.bits) if f.is_signed else unsigned(f.bits)


def requant_input_layout(spec: RequantSpec) -> data.StructLayout:
    fields = {
        "acc": data.ArrayLayout(signed(spec.acc_bits), spec.lanes),
        "bias": data.ArrayLayout(signed(spec.bias_bits), spec.lanes),
        "shift": data.ArrayLayout(unsigned(spec.shift_bits), spec.lanes),
    }
    if spec.mult_bits:
        fields["mult"] = data.ArrayLayout(unsigned(spec.mult_bits), spec.lanes)
    return data.StructLayout(fields)


def requant_output_layout(spec: RequantSpec) -> data.ArrayLayout:
    return data.ArrayLayout(out_shape(spec), spec.lanes)


def requant_product(acc: Value, bias: Value, mult: Value | None) -> Value:
    """Stage 1 of a lane: ``(acc + bias) · m``, exact (Amaranth widens every operation)."""
    total = acc + bias
    v = total * mult if mult is not None else total      # signed × unsigned stays exact
    return Value.cast(v).as_signed()


def requant_round_clip(spec: RequantSpec, v: Value, shift: Value) -> Value:
    """Stage 2 of a lane: rounding right shift and clip; returns the output code."""
    floor = v >> shift                                   # arithmetic shift: floor division
    if spec.rounding is Rounding.FLOOR:
        q = floor
    else:
        half = (Const(1, 1) << shift) >> 1               # 2^(s-1), 0 when s == 0
        if spec.rounding is Rounding.HALF_UP:
            q = (v + half) >> shift
        else:  # HALF_EVEN
            # the bits shifted out, 0 ≤ rem < 2^s: a mask, not a shift back and subtract
            # (that chain was the critical path on iCE40 and ECP5)
            rem = (v & ((Const(1, 1) << shift) - 1)).as_unsigned()
            up = (shift != 0) & ((rem > half) | ((rem == half) & floor[0]))
            q = floor + up
    fmt = spec.out_format
    if fmt.kind is Kind.BIPOLAR:
        return ~q[-1]                                    # sign bit clear ⇒ +1 (code 1)
    lo, hi = (max(fmt.min, 0) if spec.relu else fmt.min), fmt.max
    clipped = Mux(q < lo, lo, Mux(q > hi, hi, q))
    return clipped[:fmt.bits]


def requant_lane(spec: RequantSpec, acc: Value, bias: Value, mult: Value | None, shift: Value) -> Value:
    """The whole rule for one lane, combinationally (both stages back to back)."""
    return requant_round_clip(spec, requant_product(acc, bias, mult), shift)


class Requantizer(wiring.Component):
    """Lane-parallel shift/clip unit: two register stages, stream handshakes, full rate.

    Parameters
    ----------
    spec : RequantSpec

    Members
    -------
    i : ``In(stream.Signature(requant_input_layout(spec)))``
        Per lane: ``acc``, ``bias``, ``shift`` and (when ``spec.mult_bits``) ``mult``.
    o : ``Out(stream.Signature(requant_output_layout(spec)))``
        Per lane: the output code (bipolar: 1 ⇒ +1, 0 ⇒ -1).
    """

    def __init__(self, spec: RequantSpec):
        if not isinstance(spec, RequantSpec):
            raise TypeError(f"spec must be a RequantSpec, not {spec!r}")
        self._spec = spec
        super().__init__({
            "i": In(stream.Signature(requant_input_layout(spec))),
            "o": Out(stream.Signature(requant_output_layout(spec))),
        })

    @property
    def spec(self) -> RequantSpec:
        return self._spec

    def elaborate(self, platform):
        m = Module()
        spec = self._spec
        p = self.i.payload
        # Two register stages: (acc + bias)·m, then shift/round/clip. Splitting the adder and
        # multiplier from the barrel shifter and comparators halves the longest path.
        a_valid = Signal()
        a_prod = [Signal(signed(spec.product_bits + 1), name=f"prod_{k}") for k in range(spec.lanes)]
        a_shift = [Signal(unsigned(spec.shift_bits), name=f"shift_{k}") for k in range(spec.lanes)]
        b_free = ~self.o.valid | self.o.ready
        a_free = ~a_valid | b_free
        m.d.comb += self.i.ready.eq(a_free)

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += a_valid.eq(1)
            for k in range(spec.lanes):
                mult = p.mult[k] if spec.mult_bits else None
                m.d.sync += [a_prod[k].eq(requant_product(p.acc[k], p.bias[k], mult)), a_shift[k].eq(p.shift[k])]
        with m.Elif(b_free):
            m.d.sync += a_valid.eq(0)

        with m.If(a_valid & b_free):
            m.d.sync += self.o.valid.eq(1)
            for k in range(spec.lanes):
                m.d.sync += self.o.payload[k].eq(requant_round_clip(spec, a_prod[k], a_shift[k]))
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
