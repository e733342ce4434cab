"""Number formats of the integer world: the one definition of how a value is stored.

Every other part of lowbit (golden model, packer, hardware generator, testbenches)
asks an :class:`IntFormat` for its range, its bit width and its encoding; none of them
re-derives those rules.

Kinds
-----
``signed``    two's complement, ``bits`` in 2..16 (1-bit signed is ``bipolar``).
``unsigned``  plain binary, ``bits`` in 1..16.
``bipolar``   1 bit: code 0 means -1, code 1 means +1 (FINN's XNOR-popcount encoding).
``ternary``   2 bits, two's complement codes of {-1, 0, +1} (``0b11`` is -1, ``0b10`` unused).
``pow2``      ``bits`` in 2..6: sign bit (MSB) and exponent field ``e`` (low ``bits-1`` bits);
              ``e == 0`` is zero, otherwise the magnitude is ``2**(e-1)``. Weights only:
              the multiplier becomes a shifter.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

__all__ = ["Kind", "IntFormat", "Rounding", "parse_format", "signed_bits_for_range", "signed_range",
           "to_twos_complement", "from_twos_complement"]

MAX_BITS = 16


class Kind(str, enum.Enum):
    SIGNED = "signed"
    UNSIGNED = "unsigned"
    BIPOLAR = "bipolar"
    TERNARY = "ternary"
    POW2 = "pow2"


class Rounding(str, enum.Enum):
    """Rounding of the requantizer's right shift (see :mod:`lowbit.sw.requant`)."""

    FLOOR = "floor"
    HALF_UP = "half_up"
    HALF_EVEN = "half_even"

    @classmethod
    def parse(cls, value: "Rounding | str", *, name: str = "rounding") -> "Rounding":
        if isinstance(value, Rounding):
            return value
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(r.value for r in cls)
            raise ValueError(f"{name} must be one of {allowed}, not {value!r}") from None


#: Allowed bit widths of each kind (inclusive).
BIT_RANGES = {
    Kind.SIGNED: (2, MAX_BITS),
    Kind.UNSIGNED: (1, MAX_BITS),
    Kind.BIPOLAR: (1, 1),
    Kind.TERNARY: (2, 2),
    # magnitudes up to 2^(2^(N-1)-2): pow2_6 reaches ±2^30; pow2_7's 2^62 would overflow int64 sums
    Kind.POW2: (2, 6),
}


def describe_formats(*, weights: bool = True) -> str:
    """The format names a parameter accepts, for error messages (pow2 only for weights)."""
    r = BIT_RANGES
    text = (f"sN (signed, N={r[Kind.SIGNED][0]}..{r[Kind.SIGNED][1]}), "
            f"uN (unsigned, N={r[Kind.UNSIGNED][0]}..{r[Kind.UNSIGNED][1]}), bipolar, ternary")
    return text + (f", pow2_N (N={r[Kind.POW2][0]}..{r[Kind.POW2][1]})" if weights else "")


@dataclass(frozen=True)
class IntFormat:
    """An integer number format.

    Parameters
    ----------
    kind : Kind or str
        One of ``signed``, ``unsigned``, ``bipolar``, ``ternary``, ``pow2``.
    bits : int
        Storage width in bits. ``bipolar`` is always 1 and ``ternary`` always 2.
    """

    kind: Kind
    bits: int

    def __post_init__(self):
        try:
            kind = Kind(self.kind)
        except ValueError:
            allowed = ", ".join(k.value for k in Kind)
            raise ValueError(f"format kind must be one of {allowed}, not {self.kind!r}") from None
        object.__setattr__(self, "kind", kind)
        bits = self.bits
        if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool):
            raise TypeError(f"format bits must be an integer, not {bits!r}")
        bits = int(bits)
        object.__setattr__(self, "bits", bits)
        allowed = BIT_RANGES[kind]
        if not allowed[0] <= bits <= allowed[1]:
            hint = " (a 1-bit signed format is 'bipolar')" if kind is Kind.SIGNED and bits == 1 else ""
            raise ValueError(
                f"{kind.value} format bits must be in {allowed[0]}..{allowed[1]}, not {bits}{hint}"
            )

    # ---- constructors -------------------------------------------------------------
    @classmethod
    def signed(cls, bits: int) -> "IntFormat":
        return cls(Kind.SIGNED, bits)

    @classmethod
    def unsigned(cls, bits: int) -> "IntFormat":
        return cls(Kind.UNSIGNED, bits)

    @classmethod
    def bipolar(cls) -> "IntFormat":
        return cls(Kind.BIPOLAR, 1)

    @classmethod
    def ternary(cls) -> "IntFormat":
        return cls(Kind.TERNARY, 2)

    @classmethod
    def pow2(cls, bits: int) -> "IntFormat":
        return cls(Kind.POW2, bits)

    # ---- range --------------------------------------------------------------------
    @property
    def max_exponent(self) -> int:
        """Largest power of two of a pow2 format: codes e = 1..2^(bits-1)-1 mean 2^(e-1)."""
        return (1 << (self.bits - 1)) - 2

    @property
    def min(self) -> int:
        if self.kind is Kind.SIGNED:
            return signed_range(self.bits)[0]
        if self.kind is Kind.UNSIGNED:
            return 0
        if self.kind is Kind.POW2:
            return -(1 << self.max_exponent)
        return -1  # bipolar, ternary

    @property
    def max(self) -> int:
        if self.kind is Kind.SIGNED:
            return signed_range(self.bits)[1]
        if self.kind is Kind.UNSIGNED:
            return (1 << self.bits) - 1
        if self.kind is Kind.POW2:
            return 1 << self.max_exponent
        return 1  # bipolar, ternary

    @property
    def is_signed(self) -> bool:
        """Whether the format holds negative values."""
        return self.kind is not Kind.UNSIGNED

    def values(self) -> np.ndarray:
        """Every representable value, ascending (int64)."""
        if self.kind is Kind.BIPOLAR:
            return np.array([-1, 1], dtype=np.int64)
        if self.kind is Kind.POW2:
            mags = [0] + [1 << k for k in range(self.max_exponent + 1)]
            return np.unique(np.array([-m for m in mags] + mags, dtype=np.int64))
        return np.arange(self.min, self.max + 1, dtype=np.int64)

    def contains(self, values) -> np.ndarray:
        """Element-wise: is each value representable in this format?"""
        v = np.asarray(values, dtype=np.int64)
        if self.kind in (Kind.BIPOLAR, Kind.POW2):
            return np.isin(v, self.values())
        return (v >= self.min) & (v <= self.max)

    def check(self, values, *, name: str) -> np.ndarray:
        """Return ``values`` as int64, or raise naming the first value out of format."""
        v = np.asarray(values)
        if v.dtype.kind == "f":
            if not np.all(np.isfinite(v)) or not np.all(v == np.round(v)):
                raise ValueError(f"{name} must hold integers, got non-integer values")
        v = v.astype(np.int64)
        ok = self.contains(v)
        if not np.all(ok):
            bad = int(v[~ok].flat[0])
            raise ValueError(
                f"{name} holds {bad}, which {self} cannot represent (allowed {self.describe_range()})"
            )
        return v

    @property
    def qonnx_datatype(self) -> str:
        """The QONNX ``DataType`` name of this format: ``INTn``, ``UINTn`` (``u1`` is ``BINARY``, qonnx's
        name for it), ``BIPOLAR``, ``TERNARY``. QONNX has no power-of-two type: ``pow2_N`` maps to the
        narrowest ``INTn`` holding its values (``pow2_4``, 0 and ±1..±64: ``INT8``), a superset."""
        if self.kind in (Kind.BIPOLAR, Kind.TERNARY):
            return self.kind.name
        if self.kind is Kind.UNSIGNED:
            return "BINARY" if self.bits == 1 else f"UINT{self.bits}"
        return f"INT{signed_bits_for_range(self.min, self.max)}"  # signed: its bits; pow2: its range

    def describe_range(self) -> str:
        if self.kind is Kind.BIPOLAR:
            return "{-1, +1}"
        if self.kind is Kind.POW2:
            return f"0 and ±2^0..±2^{self.max_exponent}"
        return f"{self.min}..{self.max}"

    # ---- encoding (the one bit-level definition) -------------------------------
    def encode(self, values) -> np.ndarray:
        """Values → unsigned codes of ``bits`` bits (uint64)."""
        v = self.check(values, name="value")
        if self.kind is Kind.BIPOLAR:
            return (v > 0).astype(np.uint64)
        if self.kind is Kind.POW2:
            mag = np.abs(v)
            exp = np.zeros_like(v)
            nz = mag > 0
            exp[nz] = np.log2(mag[nz]).astype(np.int64) + 1
            sign = (v < 0).astype(np.int64)
            return ((sign << (self.bits - 1)) | exp).astype(np.uint64)
        return to_twos_complement(v, self.bits)  # signed, ternary; unsigned codes are the values

    def decode(self, codes) -> np.ndarray:
        """Unsigned codes → values (int64). Inverse of :meth:`encode`."""
        c = np.asarray(codes).astype(np.int64) & ((1 << self.bits) - 1)
        if self.kind is Kind.BIPOLAR:
            return np.where(c == 1, 1, -1).astype(np.int64)
        if self.kind is Kind.POW2:
            exp = c & ((1 << (self.bits - 1)) - 1)
            mag = np.where(exp == 0, 0, np.left_shift(1, np.maximum(exp - 1, 0)))
            return np.where(c >> (self.bits - 1), -mag, mag).astype(np.int64)
        if self.kind is Kind.UNSIGNED:
            return c
        return from_twos_complement(c, self.bits)  # signed and ternary

    # ---- text form --------------------------------------------------------------
    def __str__(self) -> str:
        if self.kind in (Kind.BIPOLAR, Kind.TERNARY):
            return self.kind.value
        prefix = {Kind.SIGNED: "s", Kind.UNSIGNED: "u", Kind.POW2: "pow2_"}[self.kind]
        return f"{prefix}{self.bits}"

    def to_json(self) -> str:
        return str(self)


def parse_format(text: "str | IntFormat", *, name: str = "format") -> IntFormat:
    """Parse ``s4``, ``u8``, ``bipolar``, ``ternary``, ``pow2_4`` (also ``int4``/``uint4``)."""
    if isinstance(text, IntFormat):
        return text
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a format string like 's4', 'u8', 'bipolar', not {text!r}")
    t = text.strip().lower()
    try:
        if t in ("bipolar", "binary", "b1"):
            return IntFormat.bipolar()
        if t in ("ternary", "t2"):
            return IntFormat.ternary()
        if t.startswith("pow2_"):
            return IntFormat.pow2(int(t[5:]))
        if t.startswith("uint"):
            return IntFormat.unsigned(int(t[4:]))
        if t.startswith("int"):
            return IntFormat.signed(int(t[3:]))
        if t[:1] == "u":
            return IntFormat.unsigned(int(t[1:]))
        if t[:1] == "s":
            return IntFormat.signed(int(t[1:]))
    except ValueError as e:
        if "format" in str(e):
            raise ValueError(f"{name}: {e}") from None
    raise ValueError(f"{name} must be one of {describe_formats()}, not {text!r}")


def signed_bits_for_range(lo: int, hi: int) -> int:
    """Smallest two's complement width holding every integer in ``[lo, hi]``."""
    lo, hi = int(lo), int(hi)
    bits = 1
    while not (signed_range(bits)[0] <= lo and hi <= signed_range(bits)[1]):
        bits += 1
    return bits


# ---- two's complement: the one definition of signed codes ----------------------------------
# Python ints (any width: port words, logits) stay Python ints; arrays go through numpy and
# hold at most 64 bits (uint64 codes, int64 values).

def signed_range(bits: int) -> tuple[int, int]:
    """``(lo, hi)`` of a ``bits``-bit two's complement integer."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def to_twos_complement(values, bits: int):
    """Signed values → their ``bits``-bit two's complement codes (the low ``bits`` bits).

    No range check: a value outside :func:`signed_range` wraps. A Python int gives an int;
    anything else a uint64 array (``bits`` ≤ 64).
    """
    if _is_int(values):
        return values & ((1 << bits) - 1)
    v = np.asarray(values, dtype=np.int64, order="C")  # view() needs contiguous memory
    return v.view(np.uint64) & np.uint64((1 << bits) - 1)


def from_twos_complement(codes, bits: int):
    """``bits``-bit two's complement codes → signed values; bits above ``bits`` are ignored.

    Inverse of :func:`to_twos_complement`. A Python int gives an int; anything else an int64
    array (``bits`` ≤ 64).
    """
    if _is_int(codes):
        c = codes & ((1 << bits) - 1)
        return c - (1 << bits) if c >> (bits - 1) else c
    # in uint64, where every width up to 64 fits: copy the sign bit upwards, then reinterpret
    mask = (1 << bits) - 1
    c = np.asarray(codes).astype(np.uint64) & np.uint64(mask)
    negative = ((c >> np.uint64(bits - 1)) & np.uint64(1)).astype(bool)
    c = np.where(negative, c | np.uint64(((1 << 64) - 1) ^ mask), c)
    return np.asarray(c, dtype=np.uint64, order="C").view(np.int64)
