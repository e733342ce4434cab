"""The shift/clip requantizer: ``y = clip(round_shift((acc + bias)·m, s), lo, hi)``.

The rule is defined once in :mod:`lowbit.sw.requant`; this is its circuit.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from lowbit.sw.formats import Kind, Rounding
from lowbit.sw.specs import RequantSpec

__all__ = ["Requantizer", "requant_input_layout", "requant_output_layout", "out_shape", "requant_lane",
           "requant_product", "requant_round", "requant_clip", "requant_round_clip", "LATENCY"]

LATENCY = 3  # cycles from an accepted input to its output beat


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


def requant_round(spec: RequantSpec, v: Value, shift: Value) -> tuple[Value, Value]:
    """Stage 2 of a lane: ``(floor(v / 2^s), up)`` where the rounded value is ``floor + up``.

    No comparator and no subtraction: with ``w = v << 1`` (so ``w[s] = v[s-1]`` and ``w[0] = 0``),
    the half bit is ``w >> s`` bit 0 and the bits below it are ``w`` under a thermometer mask of
    ``s``. half_up rounds up on the half bit; half_even on the half bit when any lower bit is
    set or ``floor`` is odd. (The earlier mask-and-compare form chained four carry chains and
    was the block's critical path on iCE40 and ECP5.)
    """
    floor = v >> shift                                   # arithmetic shift: floor division
    if spec.rounding is Rounding.FLOOR:
        return floor, Const(0, 1)
    w = Value.cast(v << 1).as_signed()
    half_bit = (w >> shift)[0]                           # v[s-1]; 0 when s == 0; sign beyond the width
    if spec.rounding is Rounding.HALF_UP:
        return floor, half_bit
    below = Cat(*(shift > j for j in range(len(w))))     # bit j set for j < s
    sticky = (w & below).any()                           # any of w[1 .. s-1] = v[0 .. s-2]
    return floor, half_bit & (sticky | floor[0])


def requant_clip(spec: RequantSpec, floor: Value, up: Value) -> Value:
    """Stage 3 of a lane: the output code of ``clip(floor + up, lo, hi)``.

    The clip decisions compare ``floor`` (not the sum) against constants, in parallel with the
    narrow add, so there is no add-then-compare chain: ``floor + up < lo`` is
    ``floor < lo - up`` and ``floor + up > hi`` is ``floor > hi - up``.
    """
    fmt = spec.out_format
    up = up.as_unsigned()
    if fmt.kind is Kind.BIPOLAR:
        return Mux(up, floor >= -1, floor >= 0)          # +1 (code 1) when the rounded value is ≥ 0
    lo, hi = (max(fmt.min, 0) if spec.relu else fmt.min), fmt.max
    under = Mux(up, floor < lo - 1, floor < lo)
    over = Mux(up, floor > hi - 1, floor > hi)
    inside = (floor[:fmt.bits] + up)[:fmt.bits]          # only the low bits matter when not clipped
    code = lambda c: Const(c, signed(fmt.bits + 1))[:fmt.bits]  # noqa: E731
    return Mux(under, code(lo), Mux(over, code(hi), inside))


def requant_round_clip(spec: RequantSpec, v: Value, shift: Value) -> Value:
    """Stages 2 and 3 back to back: rounding right shift and clip; returns the output code."""
    return requant_clip(spec, *requant_round(spec, v, shift))


def requant_lane(spec: RequantSpec, acc: Value, bias: Value, mult: Value | None, shift: Value) -> Value:
    """The whole rule for one lane, combinationally (all stages back to back)."""
    return requant_round_clip(spec, requant_product(acc, bias, mult), shift)


class Requantizer(wiring.Component):
    """Lane-parallel shift/clip unit: three register stages, stream handshakes, full rate.

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
        # Three register stages: (acc + bias)·m; the rounding shift (barrel shifter and the
        # round-up bit); the clip (comparisons against constants beside a narrow add). Each
        # stage holds one carry chain at most.
        a_valid, b_valid = Signal(), Signal()
        a_prod = [Signal(signed(spec.product_bits + 1), name=f"prod_{k}") for k in range(spec.lanes)]
        a_shift = [Signal(unsigned(spec.shift_bits), name=f"shift_{k}") for k in range(spec.lanes)]
        b_floor = [Signal(signed(spec.product_bits + 1), name=f"floor_{k}") for k in range(spec.lanes)]
        b_up = [Signal(name=f"up_{k}") for k in range(spec.lanes)]
        c_free = ~self.o.valid | self.o.ready
        b_free = ~b_valid | c_free
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
            m.d.sync += b_valid.eq(1)
            for k in range(spec.lanes):
                floor, up = requant_round(spec, a_prod[k], a_shift[k])
                m.d.sync += [b_floor[k].eq(floor), b_up[k].eq(up)]
        with m.Elif(c_free):
            m.d.sync += b_valid.eq(0)

        with m.If(b_valid & c_free):
            m.d.sync += self.o.valid.eq(1)
            for k in range(spec.lanes):
                m.d.sync += self.o.payload[k].eq(requant_clip(spec, b_floor[k], b_up[k]))
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
