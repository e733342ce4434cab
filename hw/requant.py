"""The shift/clip requantizer: ``y = clip(round_shift((acc + bias)·m + c, s), lo, hi)``.

The rule is defined once in :mod:`lowbit.sw.requant`; this is its circuit. The product offset
``c`` is a per-lane input only when ``spec.offset_bits`` is non-zero: a spec without one builds
exactly the circuit it did before offsets existed.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from lowbit.sw.formats import Kind, Rounding, signed_bits_for_range
from lowbit.sw.specs import RequantSpec

from .simmodel import behind_valid, check_model

__all__ = ["Requantizer", "requant_input_layout", "requant_output_layout", "out_shape", "requant_lane",
           "requant_product", "requant_round", "requant_clip_decide", "requant_clip_select", "CLIP_FIELDS", "requant_clip",
           "requant_round_clip", "LATENCY"]

LATENCY = 4  # cycles from an accepted input to its output beat


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
    if spec.offset_bits:
        fields["offset"] = data.ArrayLayout(signed(spec.offset_bits), spec.lanes)
    return data.StructLayout(fields)


def requant_output_layout(spec: RequantSpec) -> data.ArrayLayout:
    return data.ArrayLayout(out_shape(spec), spec.lanes)


def requant_product(acc: Value, bias: Value, mult: Value | None, offset: Value | None = None) -> Value:
    """Stage 1 of a lane: ``(acc + bias) · m + c``, exact (Amaranth widens every operation);
    no adder for the offset when there is none."""
    total = acc + bias
    v = total * mult if mult is not None else total      # signed × unsigned stays exact
    v = Value.cast(v).as_signed()
    return v + offset if offset is not None else v


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


# What stage 3 hands stage 4, per lane: whether ``floor`` fits the narrow window, its sign,
# the round-up bit, the window comparisons for either value of it, and the unclipped code.
CLIP_FIELDS = ("fits", "sign", "up", "under", "under_if_up", "over", "over_if_up", "inside")


def requant_clip_decide(spec: RequantSpec, floor: Value, up: Value) -> dict[str, Value]:
    """Stage 3 of a lane: the clip decisions for ``clip(floor + up, lo, hi)`` (see CLIP_FIELDS).

    The decisions compare ``floor`` (not the sum) against constants, beside the narrow add,
    so there is no add-then-compare chain: ``floor + up < lo`` is ``floor < lo - up`` and
    ``floor + up > hi`` is ``floor > hi - up``; both values of ``up`` are compared and stage 4
    picks. And they compare only a narrow window: ``floor`` is product-wide (17 bits for a
    4-bit layer), the bounds are output-wide. When ``floor`` fits the k-bit window its low k
    bits are its value; when it does not, its sign alone says which side it clips to. So each
    decision is one short carry chain straight into its register (a product-wide compare with
    muxes behind it was the ECP5 critical path). For a bipolar output ``inside`` is already
    the code.
    """
    fmt = spec.out_format
    up = up.as_unsigned()
    if fmt.kind is Kind.BIPOLAR:          # +1 (code 1) when the rounded value is >= 0; never clipped
        zero = Const(0, 1)
        return {"fits": Const(1, 1), "sign": zero, "up": zero, "under": zero, "under_if_up": zero,
                "over": zero, "over_if_up": zero, "inside": Mux(up, floor >= -1, floor >= 0)}
    lo, hi = _clip_bounds(spec)
    k = min(signed_bits_for_range(lo - 1, hi + 1), len(floor))
    high = floor[k - 1:]                                 # all equal ⇔ floor fits in k bits
    low = floor[:k].as_signed()
    return {"fits": ~high.any() | high.all(), "sign": floor[-1], "up": up,
            "under": low < lo, "under_if_up": low < lo - 1, "over": low > hi, "over_if_up": low > hi - 1,
            "inside": (floor[:fmt.bits] + up)[:fmt.bits]}   # only the low bits matter when not clipped


def requant_clip_select(spec: RequantSpec, d: dict[str, Value]) -> Value:
    """Stage 4 of a lane: the output code from the stage-3 decisions (a few LUTs per bit)."""
    fmt = spec.out_format
    if fmt.kind is Kind.BIPOLAR:
        return d["inside"]
    lo, hi = _clip_bounds(spec)
    # outside the window a negative floor clips low, a positive one high
    under = Mux(d["fits"], Mux(d["up"], d["under_if_up"], d["under"]), d["sign"])
    over = Mux(d["fits"], Mux(d["up"], d["over_if_up"], d["over"]), ~d["sign"])
    code = lambda c: Const(c, signed(fmt.bits + 1))[:fmt.bits]  # noqa: E731
    return Mux(under, code(lo), Mux(over, code(hi), d["inside"]))


def _clip_bounds(spec: RequantSpec) -> tuple[int, int]:
    """``(lo, hi)`` of the clip, as the rule in :mod:`lowbit.sw.requant` defines them."""
    rule = spec.params(mult=1, shift=0)
    return rule.lo, rule.hi


def requant_clip(spec: RequantSpec, floor: Value, up: Value) -> Value:
    """Stages 3 and 4 back to back: the output code of ``clip(floor + up, lo, hi)``."""
    return requant_clip_select(spec, requant_clip_decide(spec, floor, up))


def requant_round_clip(spec: RequantSpec, v: Value, shift: Value) -> Value:
    """Stages 2 to 4 back to back: rounding right shift and clip; returns the output code."""
    return requant_clip(spec, *requant_round(spec, v, shift))


def requant_lane(spec: RequantSpec, acc: Value, bias: Value, mult: Value | None, shift: Value,
                 offset: Value | None = None) -> Value:
    """The whole rule for one lane, combinationally (all stages back to back)."""
    return requant_round_clip(spec, requant_product(acc, bias, mult, offset), shift)


class Requantizer(wiring.Component):
    """Lane-parallel shift/clip unit: four register stages, stream handshakes, full rate.

    Parameters
    ----------
    spec : RequantSpec
    model : "synthesis" (default) or "simulation"
        See :data:`lowbit.hw.simmodel.MODELS`: the simulation model's stage registers hold in
        bubbles; the valid bits move exactly alike.
    backpressure : bool
        As for :class:`lowbit.hw.mac.MacArray`: False makes both streams ``always_ready``.

    Members
    -------
    i : ``In(stream.Signature(requant_input_layout(spec)))``
        Per lane: ``acc``, ``bias``, ``shift``, (when ``spec.mult_bits``) ``mult`` and (when
        ``spec.offset_bits``) ``offset``.
    o : ``Out(stream.Signature(requant_output_layout(spec)))``
        Per lane: the output code (bipolar: 1 ⇒ +1, 0 ⇒ -1).
    """

    def __init__(self, spec: RequantSpec, *, model: str = "synthesis", backpressure: bool = True):
        if not isinstance(spec, RequantSpec):
            raise TypeError(f"spec must be a RequantSpec, not {spec!r}")
        self._spec = spec
        self._model = check_model(model)
        self._backpressure = bool(backpressure)
        free = not self._backpressure
        super().__init__({
            "i": In(stream.Signature(requant_input_layout(spec), always_ready=free)),
            "o": Out(stream.Signature(requant_output_layout(spec), always_ready=free)),
        })

    @property
    def spec(self) -> RequantSpec:
        return self._spec

    def elaborate(self, platform):
        m = Module()
        spec = self._spec
        p = self.i.payload
        # Four register stages: (acc + bias)·m (+ c); the rounding shift (barrel shifter and the
        # round-up bit); the clip decisions (comparisons against constants beside a narrow
        # add); the clip mux. Each stage holds one carry chain at most.
        a_valid, b_valid, c_valid = Signal(), Signal(), Signal()
        a_prod = [Signal(signed(spec.product_bits + 1), name=f"prod_{k}") for k in range(spec.lanes)]
        a_shift = [Signal(unsigned(spec.shift_bits), name=f"shift_{k}") for k in range(spec.lanes)]
        b_floor = [Signal(signed(spec.product_bits + 1), name=f"floor_{k}") for k in range(spec.lanes)]
        b_up = [Signal(name=f"up_{k}") for k in range(spec.lanes)]
        c_clip = [{f: Signal(out_shape(spec) if f == "inside" else 1, name=f"{f}_{k}") for f in CLIP_FIELDS}
                  for k in range(spec.lanes)]
        # One stall signal for all stages (see MacArray: a per-stage ready chain fanned out to
        # every enable was the critical path); registers load in bubbles too.
        if self._backpressure:
            advance = ~self.o.valid | self.o.ready
            m.d.comb += self.i.ready.eq(advance)
        else:  # always_ready streams: every stage moves every cycle (see MacArray)
            advance = Const(1)

        with m.If(advance):
            m.d.sync += [a_valid.eq(self.i.valid), b_valid.eq(a_valid), c_valid.eq(b_valid),
                         self.o.valid.eq(c_valid)]
            when = behind_valid(m, self._model)  # the simulation model's data registers hold in bubbles
            for k in range(spec.lanes):
                mult = p.mult[k] if spec.mult_bits else None
                offset = p.offset[k] if spec.offset_bits else None
                floor, up = requant_round(spec, a_prod[k], a_shift[k])
                decided = requant_clip_decide(spec, b_floor[k], b_up[k])
                with when(self.i.valid):
                    m.d.sync += [a_prod[k].eq(requant_product(p.acc[k], p.bias[k], mult, offset)), a_shift[k].eq(p.shift[k])]
                with when(a_valid):
                    m.d.sync += [b_floor[k].eq(floor), b_up[k].eq(up)]
                with when(b_valid):
                    m.d.sync += [c_clip[k][f].eq(decided[f]) for f in CLIP_FIELDS]
                with when(c_valid):
                    m.d.sync += self.o.payload[k].eq(requant_clip_select(spec, c_clip[k]))
        return m
