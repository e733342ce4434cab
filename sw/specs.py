"""Frozen specs of the hardware blocks.

One spec object drives the Amaranth component (``lowbit.hw``), its golden function, the
packer and the testbench, so those cannot drift apart. Specs live in ``sw`` because they
are plain data: the golden model and the testbench load them without Amaranth.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass

import numpy as np

from .formats import IntFormat, Kind, Rounding, parse_format, signed_bits_for_range
from .requant import MAX_MULTIPLIER_BITS, MAX_OFFSET_BITS, MAX_SHIFT, RequantParams, requantize

__all__ = ["MacArraySpec", "RequantSpec", "ProductKind", "product_kind", "xnor_dot", "bias_bits_for", "MAX_LANES",
           "TREE_LEVELS_PER_STAGE"]

MAX_LANES = 1024


def _positive_int(value, name: str, upper: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 1 <= value <= upper:
        raise ValueError(f"{name} must be an integer in 1..{upper}, not {value!r}")
    return int(value)


class ProductKind(enum.StrEnum):
    """The multiplier of a MAC lane (:func:`product_kind` chooses it).

    A ``StrEnum``: a member equals its value (``ProductKind.XNOR == "xnor"``) and prints and
    serialises as it, so manifests and reports read as before.
    """

    #: bipolar × bipolar. Codes c (value 2c − 1) multiply to +1 exactly when they agree, so
    #: w·x = 2·XNOR(c_w, c_x) − 1 and a dot product over n lanes is 2·popcount(XNOR) − n
    #: (FINN's binary dot product; :func:`xnor_dot` is the rule, ``hw.arith`` builds it).
    XNOR = "xnor"
    NEGATE = "negate"       # bipolar weight: ±x
    TERNARY = "ternary"     # ternary weight: add / subtract / skip
    SHIFT = "shift"         # pow2 weight: ±(x << e)
    MULTIPLY = "multiply"   # general b×b multiplier


def product_kind(weight: IntFormat, act: IntFormat) -> ProductKind:
    """Which multiplier a lane gets: the cheapest exact one for the pair of formats."""
    if weight.kind is Kind.BIPOLAR and act.kind is Kind.BIPOLAR:
        return ProductKind.XNOR
    if weight.kind is Kind.BIPOLAR:
        return ProductKind.NEGATE
    if weight.kind is Kind.TERNARY:
        return ProductKind.TERNARY
    if weight.kind is Kind.POW2:
        return ProductKind.SHIFT
    return ProductKind.MULTIPLY


def xnor_dot(agree_count, n: int):
    """Σ w·x over ``n`` bipolar × bipolar lanes from the number of lanes whose codes agree
    (the popcount of their XNOR): ``2·count − n``. The one statement of the XNOR rule."""
    return 2 * agree_count - n


def _product_range(weight: IntFormat, act: IntFormat) -> tuple[int, int]:
    corners = [w * x for w in (weight.min, weight.max, 0) for x in (act.min, act.max)]
    return min(corners), max(corners)


TREE_LEVELS_PER_STAGE = 2  # adder levels between two registers of a MAC row's tree


@dataclass(frozen=True)
class MacArraySpec:
    """A PE×SIMD multiply-accumulate array.

    Each input beat carries SIMD activations and PE×SIMD weights; PE accumulators add the
    SIMD products of their row; after ``beats`` beats (the beat flagged ``last``) the PE
    sums leave on the output stream and the accumulators restart.

    Parameters
    ----------
    pe : int
        Parallel outputs (rows), 1..1024.
    simd : int
        Parallel inputs (columns) per beat, 1..1024.
    weight_format, act_format : IntFormat or str
    beats : int
        Most beats accumulated into one output (the column fold); sets the width bound.
    acc_bits : int or None
        Accumulator width; ``None`` takes the worst-case bound. Narrower is refused.
    known_range : (int, int) or None
        Exact accumulator range over the *actual* weights of a layer (see
        :func:`lowbit.sw.ir.accumulator_range`); replaces the all-weights worst case.
    """

    pe: int
    simd: int
    weight_format: IntFormat
    act_format: IntFormat
    beats: int = 1
    acc_bits: int | None = None
    known_range: tuple[int, int] | None = None

    def __post_init__(self):
        _positive_int(self.pe, "pe", MAX_LANES)
        if self.known_range is not None:
            lo, hi = (int(v) for v in self.known_range)
            if lo > hi:
                raise ValueError(f"known_range must be (lo, hi) with lo <= hi, not {self.known_range!r}")
            object.__setattr__(self, "known_range", (lo, hi))
        _positive_int(self.simd, "simd", MAX_LANES)
        _positive_int(self.beats, "beats", 1 << 20)
        object.__setattr__(self, "weight_format", parse_format(self.weight_format, name="weight_format"))
        af = parse_format(self.act_format, name="act_format")
        if af.kind is Kind.POW2:
            raise ValueError("act_format must be signed, unsigned, bipolar or ternary, not pow2")
        object.__setattr__(self, "act_format", af)
        bound = self.min_acc_bits
        if self.acc_bits is None:
            object.__setattr__(self, "acc_bits", bound)
        else:
            a = self.acc_bits
            if not isinstance(a, (int, np.integer)) or isinstance(a, bool) or a > 64:
                raise ValueError(f"acc_bits must be an integer in {bound}..64, not {a!r}")
            if a < bound:
                lo, hi = self.acc_range
                what = ("these weights" if self.known_range is not None else f"{self.weight_format} weights")
                raise ValueError(
                    f"acc_bits must be at least {bound} for {what} × "
                    f"{self.act_format} activations over {self.simd * self.beats} terms "
                    f"(worst case {lo}..{hi}), not {a}")

    @property
    def acc_range(self) -> tuple[int, int]:
        if self.known_range is not None:
            return self.known_range
        lo, hi = _product_range(self.weight_format, self.act_format)
        n = self.simd * self.beats
        return lo * n, hi * n

    @property
    def min_acc_bits(self) -> int:
        return signed_bits_for_range(*self.acc_range)

    @property
    def product(self) -> ProductKind:
        return product_kind(self.weight_format, self.act_format)

    @property
    def tree_fanins(self) -> tuple[int, ...]:
        """Fan-in of each registered stage of a row's adder tree, first stage first.

        A register every :data:`TREE_LEVELS_PER_STAGE` levels of the ``simd``-leaf tree (the
        last stage takes what is left), so no stage holds more than two adder levels: on
        ECP5 a stage of three or four levels was the whole network's critical path. The
        product of the fan-ins covers ``simd``.
        """
        levels = max(1, (self.simd - 1).bit_length())
        full, rest = divmod(levels, TREE_LEVELS_PER_STAGE)
        return (1 << TREE_LEVELS_PER_STAGE,) * full + ((1 << rest,) if rest else ())

    @property
    def latency(self) -> int:
        """Cycles from the last accepted beat of a vector to its result on the MAC's output:
        the operand register, the product register, one per adder-tree stage
        (:attr:`tree_fanins`) and the accumulator."""
        return 3 + len(self.tree_fanins)

    @property
    def weight_word_bits(self) -> int:
        return self.pe * self.simd * self.weight_format.bits

    @property
    def act_word_bits(self) -> int:
        return self.simd * self.act_format.bits

    def golden(self, x_beats, w_beats) -> np.ndarray:
        """PE accumulators for one vector: ``x_beats [n, simd]``, ``w_beats [n, pe, simd]`` values."""
        x = self.act_format.check(x_beats, name="activations")
        w = self.weight_format.check(w_beats, name="weights")
        return np.einsum("bps,bs->p", w, x)

    def to_json(self) -> dict:
        d = asdict(self)
        d["weight_format"], d["act_format"] = str(self.weight_format), str(self.act_format)
        d["known_range"] = None if self.known_range is None else list(self.known_range)
        return d

    @classmethod
    def from_json(cls, d: dict | str) -> "MacArraySpec":
        d = dict(json.loads(d) if isinstance(d, str) else d)
        if d.get("known_range") is not None:
            d["known_range"] = tuple(d["known_range"])
        return cls(**d)


@dataclass(frozen=True)
class RequantSpec:
    """A lane-parallel shift/clip requantizer (see :mod:`lowbit.sw.requant` for the rule).

    Per lane and per beat it takes an accumulator, a bias, a multiplier (when
    ``mult_bits > 0``) and a shift, so per-channel parameters can stream in from memory;
    a top that ties them to constants lets synthesis fold them away.

    Parameters
    ----------
    lanes : int
        Lanes processed in parallel (the PE count), 1..1024.
    acc_bits : int
        Signed accumulator width, 2..64.
    out_format : IntFormat or str
        Signed, unsigned, ternary or bipolar.
    bias_bits : int
        Signed bias width, 1..64 (the bias is added before the multiplier).
    mult_bits : int
        Unsigned multiplier width, 0 (no multiplier: pure shift) ..16.
    shift_bits : int
        Unsigned shift width, 1..6 (shifts up to 48).
    rounding : Rounding or str
    relu : bool
    offset_bits : int
        Signed product offset width, 0 (no offset: the circuit has no offset input, as before
        offsets existed) ..62; the offset is added to ``(acc + bias)·m`` before the shift.
    """

    lanes: int
    acc_bits: int
    out_format: IntFormat
    bias_bits: int = 1
    mult_bits: int = 0
    shift_bits: int = 4
    rounding: Rounding = Rounding.FLOOR
    relu: bool = False
    offset_bits: int = 0

    def __post_init__(self):
        _positive_int(self.lanes, "lanes", MAX_LANES)
        if not isinstance(self.acc_bits, (int, np.integer)) or not 2 <= self.acc_bits <= 64:
            raise ValueError(f"acc_bits must be an integer in 2..64, not {self.acc_bits!r}")
        if not isinstance(self.bias_bits, (int, np.integer)) or not 1 <= self.bias_bits <= 64:
            raise ValueError(f"bias_bits must be an integer in 1..64, not {self.bias_bits!r}")
        if not isinstance(self.mult_bits, (int, np.integer)) or not 0 <= self.mult_bits <= MAX_MULTIPLIER_BITS:
            raise ValueError(f"mult_bits must be an integer in 0..{MAX_MULTIPLIER_BITS}, not {self.mult_bits!r}")
        max_shift_bits = MAX_SHIFT.bit_length()
        if not isinstance(self.shift_bits, (int, np.integer)) or not 1 <= self.shift_bits <= max_shift_bits:
            raise ValueError(f"shift_bits must be an integer in 1..{max_shift_bits}, not {self.shift_bits!r}")
        if not isinstance(self.offset_bits, (int, np.integer)) or not 0 <= self.offset_bits <= MAX_OFFSET_BITS:
            raise ValueError(f"offset_bits must be an integer in 0..{MAX_OFFSET_BITS}, not {self.offset_bits!r}")
        object.__setattr__(self, "rounding", Rounding.parse(self.rounding))
        # RequantParams validates out_format and relu together.
        params = RequantParams(self.out_format, 0, None, self.rounding, self.relu)
        object.__setattr__(self, "out_format", params.out_format)
        object.__setattr__(self, "relu", bool(self.relu))

    @property
    def max_shift(self) -> int:
        return min(MAX_SHIFT, (1 << self.shift_bits) - 1)

    @property
    def sum_bits(self) -> int:
        """Width of ``acc + bias``."""
        return max(self.acc_bits, self.bias_bits) + 1

    @property
    def product_bits(self) -> int:
        """Width of ``(acc + bias) · m`` (signed × unsigned), plus one carry bit for the offset
        ``(acc + bias)·m + c`` when there is one."""
        if self.offset_bits:
            return max(self.sum_bits + self.mult_bits, self.offset_bits) + 1
        return self.sum_bits + self.mult_bits

    def params(self, mult, shift, offset=None) -> RequantParams:
        return RequantParams(self.out_format, np.asarray(shift, np.int64),
                             None if self.mult_bits == 0 else np.asarray(mult, np.int64),
                             self.rounding, self.relu,
                             None if self.offset_bits == 0 or offset is None else np.asarray(offset, np.int64))

    def golden(self, acc, bias, mult, shift, offset=None) -> np.ndarray:
        """Outputs for arrays ``[..., lanes]`` of acc, bias, mult (ignored if none), shift and
        offset (ignored when ``offset_bits`` is 0)."""
        acc = np.asarray(acc, np.int64)
        total = acc + np.asarray(bias, np.int64)
        m = np.ones_like(total) if self.mult_bits == 0 else np.broadcast_to(np.asarray(mult, np.int64), total.shape)
        s = np.broadcast_to(np.asarray(shift, np.int64), total.shape)
        c = None
        if self.offset_bits and offset is not None:
            c = np.broadcast_to(np.asarray(offset, np.int64), total.shape).ravel()
        # Element-wise parameters: flatten so each element is its own "channel".
        flat = RequantParams(self.out_format, s.ravel(), m.ravel(), self.rounding, self.relu, c)
        return requantize(total.ravel(), flat).reshape(total.shape)

    def to_json(self) -> dict:
        d = asdict(self)
        d["out_format"], d["rounding"] = str(self.out_format), self.rounding.value
        if not self.offset_bits:  # specs without an offset read as they did before it existed
            del d["offset_bits"]
        return d

    @classmethod
    def from_json(cls, d: dict | str) -> "RequantSpec":
        return cls(**(json.loads(d) if isinstance(d, str) else d))

    @classmethod
    def for_params(cls, lanes: int, acc_bits: int, params: RequantParams, bias_bits: int = 1) -> "RequantSpec":
        """The smallest spec that can carry ``params``."""
        return cls(lanes=lanes, acc_bits=acc_bits, out_format=params.out_format, bias_bits=bias_bits,
                   mult_bits=params.multiplier_bits, shift_bits=params.shift_bits,
                   rounding=params.rounding, relu=params.relu, offset_bits=params.offset_bits)


def bias_bits_for(bias) -> int:
    """The bias width rule: the narrowest two's complement width holding every bias and 0
    (1 bit for no bias at all). The parameter memories and the requantizer use it."""
    b = np.asarray(bias, np.int64)
    return signed_bits_for_range(min(0, int(b.min())), max(0, int(b.max()))) if b.size else 1
