"""Arithmetic building blocks shared by the MAC lanes and the requantizer.

The decoding of stored codes to values follows :meth:`lowbit.sw.formats.IntFormat.decode`
exactly; :mod:`tests.test_hw_arith` checks every code against it.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Value, signed

from lowbit.sw.formats import IntFormat, Kind

__all__ = ["decode", "lane", "product", "adder_tree", "popcount", "xnor_dot", "xnor_agree_dot"]


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
    """``w · x`` for one lane, with the cheapest exact circuit for the formats.

    * bipolar × bipolar: XNOR gives +1/-1 (summed by :func:`popcount` instead, see MacArray)
    * bipolar weight: ``±x`` (a negation, no multiplier)
    * ternary weight: add / subtract / skip
    * pow2 weight: ``±(x << e)`` (a shifter, no multiplier)
    * otherwise a general multiplier
    """
    x = decode(x_code, xf)
    if wf.kind is Kind.BIPOLAR:
        return Mux(w_code[0], x, -x)
    if wf.kind is Kind.TERNARY:
        # two's complement codes: 01 = +1, 11 = -1, 00 (and the unused 10) = 0
        return Mux(w_code[0], Mux(w_code[1], -x, x), 0)
    if wf.kind is Kind.POW2:
        e_bits = wf.bits - 1
        exp, sign = w_code[:e_bits], w_code[e_bits]
        # exponent field e encodes 2^(e-1); e == 0 is zero (the wrapped shift is masked out)
        magnitude = Mux(exp == 0, 0, x << (exp - 1)[:e_bits])
        return Mux(sign, -magnitude, magnitude)
    w = decode(w_code, wf)
    return w * x


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


def popcount(bits: Value) -> Value:
    """Number of set bits, as a balanced tree of small adders."""
    return adder_tree([bits[i].as_unsigned() for i in range(len(bits))])


def xnor_dot(w_word: Value, x_word: Value, n: int) -> Value:
    """Σ w·x over ``n`` bipolar lanes: ``2·popcount(XNOR) − n`` (FINN's binary dot product)."""
    return xnor_agree_dot(~(w_word[:n] ^ x_word[:n]), n)


def xnor_agree_dot(agree: Value, n: int) -> Value:
    """``2·popcount(agree) − n``: the bipolar dot product from its XNOR word."""
    pc = popcount(agree[:n])
    # zero-extend before reinterpreting as signed, so a full count stays positive
    doubled = Cat(pc, Const(0, 2)).as_signed() << 1
    return doubled - Const(n, signed(n.bit_length() + 1))

