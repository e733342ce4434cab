"""Arithmetic building blocks shared by the MAC lanes and the requantizer.

The decoding of stored codes to values follows :meth:`lowbit.sw.formats.IntFormat.decode`
exactly; :mod:`tests.test_hw_arith` checks every code against it.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Value, signed

from lowbit.sw.formats import IntFormat, Kind
from lowbit.sw.specs import ProductKind, product_kind, xnor_dot

__all__ = ["decode", "lane", "product", "activation_multiples", "digit_multiply", "adder_tree",
           "xnor_agree", "xnor_group_dot"]


def lane(word: Value, index: int, bits: int) -> Value:
    """Lane ``index`` of a packed word: bits ``[index·bits, (index+1)·bits)``, the one bit order."""
    return word[index * bits:(index + 1) * bits]


def decode(code: Value, fmt: IntFormat) -> Value:
    """A stored code as a (signed where needed) value, as ``IntFormat.decode`` defines it."""
    if fmt.kind is Kind.UNSIGNED:
        return code.as_unsigned()
    if fmt.kind in (Kind.SIGNED, Kind.TERNARY):
        return code.as_signed()
    if fmt.kind is Kind.BIPOLAR:
        return Mux(code[0], Const(1, signed(2)), Const(-1, signed(2)))
    raise ValueError(f"decode() takes no {fmt} code; pow2 weights go through product()")


def product(w_code: Value, x_code: Value, wf: IntFormat, xf: IntFormat) -> Value:
    """``w · x`` for one lane, with the circuit :func:`lowbit.sw.specs.product_kind` chooses.

    * bipolar × bipolar: ``±1`` like a bipolar weight here; the MAC array sums these lanes
      as XNOR bits instead (:func:`xnor_agree`, :func:`xnor_group_dot`)
    * bipolar weight: ``±x`` (a negation, no multiplier)
    * ternary weight: add / subtract / skip
    * pow2 weight: ``±(x << e)`` (a shifter, no multiplier)
    * otherwise a general multiplier
    """
    x = decode(x_code, xf)
    kind = product_kind(wf, xf)
    if kind in (ProductKind.XNOR, ProductKind.NEGATE):
        return Mux(w_code[0], x, -x)
    if kind is ProductKind.TERNARY:
        # two's complement codes: 01 = +1, 11 = -1, 00 (and the unused 10) = 0
        return Mux(w_code[0], Mux(w_code[1], -x, x), 0)
    if kind is ProductKind.SHIFT:
        e_bits = wf.bits - 1
        exp, sign = w_code[:e_bits], w_code[e_bits]
        # exponent field e encodes 2^(e-1); e == 0 is zero (the wrapped shift is masked out)
        magnitude = Mux(exp == 0, 0, x << (exp - 1)[:e_bits])
        return Mux(sign, -magnitude, magnitude)
    return digit_multiply(w_code, wf, activation_multiples(x_code, xf))


def activation_multiples(x_code: Value, xf: IntFormat) -> dict[int, Value]:
    """The multiples of an activation that weight digits select: ``{1: x, 3: 3x, -1: -x}``.

    (``2x`` and ``-2x`` are these shifted.) One activation lane feeds every PE row, so the
    MAC array computes these once per lane, before its operand register, and each of the
    PE·SIMD multipliers is left with muxes and one adder tree.
    """
    x = decode(x_code, xf)
    return {1: x, 3: x + (x << 1), -1: -x}


def digit_multiply(w_code: Value, wf: IntFormat, multiples: dict[int, Value]) -> Value:
    """``w · x`` for a signed or unsigned weight code, from the multiples of ``x``.

    The weight is split into radix-4 digits ``w[j:j+2]`` worth ``0..3`` (the top digit of a
    two's complement weight is worth ``0, 1, -2, -1``), each selects its multiple of ``x``
    with a 4:1 mux, and a balanced tree adds the digits shifted by ``j``. A general
    multiplier written as ``*`` became a compressor tree that ABC folded into five LUT levels
    before the carry chain: the MAC's critical path on ECP5. Here it is two mux levels.
    """
    x1, x3, xm1 = multiples[1], multiples[3], multiples[-1]
    n = wf.bits
    digits = []
    for j in range(0, n, 2):
        d = w_code[j:j + 2]
        top_signed = wf.is_signed and j + len(d) == n
        if len(d) == 1:
            digits.append(Mux(d[0], xm1 if top_signed else x1, 0) << j)
            continue
        # digit values of codes 00, 01, 10, 11
        o2, o3 = ((xm1 << 1), xm1) if top_signed else ((x1 << 1), x3)
        digits.append(Mux(d[1], Mux(d[0], o3, o2), Mux(d[0], x1, 0)) << j)
    total = adder_tree(digits)
    # The tree widens at every add; the product itself needs only the width of w · x.
    w = w_code.as_signed() if wf.is_signed else w_code.as_unsigned()
    exact = (w * x1).shape()
    bits = Value.cast(total)[:exact.width]
    return bits.as_signed() if exact.signed else bits.as_unsigned()


def adder_tree(values: list[Value]) -> Value:
    """Balanced sum: depth log2(n) instead of a chain of n adders."""
    if not values:
        return Const(0)
    level = list(values)
    while len(level) > 1:
        nxt = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def xnor_agree(w_word: Value, x_word: Value) -> Value:
    """One bit per bipolar × bipolar lane: 1 where the weight and activation codes agree
    (their product is +1; see :class:`lowbit.sw.specs.ProductKind`)."""
    return ~(w_word ^ x_word)


def xnor_group_dot(agree: Value) -> Value:
    """Σ w·x over the few bipolar × bipolar lanes of ``agree`` (their :func:`xnor_agree` bits):
    :func:`lowbit.sw.specs.xnor_dot` of the popcount, as a lookup table on the bits.

    For the 4 bits of a first adder-tree stage every output bit is one LUT4 of the bits, where
    a popcount of small adders followed by ``2·count − n`` took a carry chain more.
    """
    n = len(agree)
    if n > 6:
        raise ValueError(f"agree must have at most 6 bits (a 64-entry table), not {n}")
    shape = signed(n.bit_length() + 1)
    entries = [xnor_dot(bin(code).count("1"), n) for code in range(1 << n)]
    table = Cat(*(Const(e, shape) for e in entries))
    return table.word_select(agree, shape.width).as_signed()
