import numpy as np
import pytest

from lowbit.sw.formats import IntFormat, Kind, Rounding, parse_format, signed_bits_for_range

ALL = [IntFormat.signed(b) for b in (2, 3, 4, 8, 16)] + [IntFormat.unsigned(b) for b in (1, 2, 5, 16)] + [
    IntFormat.bipolar(), IntFormat.ternary(), IntFormat.pow2(2), IntFormat.pow2(3), IntFormat.pow2(4)]


@pytest.mark.parametrize("fmt", ALL, ids=str)
def test_encode_decode_round_trip_every_value(fmt):
    values = fmt.values()
    codes = fmt.encode(values)
    assert codes.max() < (1 << fmt.bits)
    assert np.array_equal(fmt.decode(codes), values)
    assert values.min() == fmt.min and values.max() == fmt.max


def test_ranges_and_encodings_follow_the_contract():
    assert (IntFormat.signed(4).min, IntFormat.signed(4).max) == (-8, 7)
    assert (IntFormat.unsigned(3).min, IntFormat.unsigned(3).max) == (0, 7)
    assert list(IntFormat.bipolar().encode([-1, 1])) == [0, 1]
    assert list(IntFormat.ternary().encode([-1, 0, 1])) == [3, 0, 1]
    assert list(IntFormat.pow2(3).values()) == [-4, -2, -1, 0, 1, 2, 4]
    assert list(IntFormat.pow2(3).encode([-4, -1, 0, 1, 4])) == [0b111, 0b101, 0, 0b001, 0b011]


def test_parse_and_str_round_trip():
    for fmt in ALL:
        assert parse_format(str(fmt)) == fmt
    assert parse_format("int8") == IntFormat.signed(8)
    assert parse_format("uint4") == IntFormat.unsigned(4)


@pytest.mark.parametrize("kind, bits, message", [
    ("signed", 0, "signed format bits must be in 2..16, not 0"),
    ("signed", 17, "signed format bits must be in 2..16, not 17"),
    ("signed", 1, "a 1-bit signed format is 'bipolar'"),
    ("unsigned", 0, "unsigned format bits must be in 1..16, not 0"),
    ("ternary", 3, "ternary format bits must be in 2..2, not 3"),
    ("float", 4, "format kind must be one of signed, unsigned, bipolar, ternary, pow2, not 'float'"),
])
def test_invalid_formats_are_refused_with_the_rule(kind, bits, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        IntFormat(kind, bits)


def test_parse_rejects_unknown_text():
    with pytest.raises(ValueError, match=r"weight_format must be one of sN .* not 'x4'"):
        parse_format("x4", name="weight_format")
    with pytest.raises(ValueError, match="weight_format: signed format bits must be in 2..16, not 17"):
        parse_format("s17", name="weight_format")


def test_check_names_the_offending_value():
    with pytest.raises(ValueError, match=r"weights holds 8, which s4 cannot represent \(allowed -8..7\)"):
        IntFormat.signed(4).check([1, 8], name="weights")
    with pytest.raises(ValueError, match=r"holds 0, which bipolar cannot represent"):
        IntFormat.bipolar().check([0], name="w")


def test_rounding_parse():
    assert Rounding.parse("half_even") is Rounding.HALF_EVEN
    with pytest.raises(ValueError, match="rounding must be one of floor, half_up, half_even, not 'nearest'"):
        Rounding.parse("nearest")


@pytest.mark.parametrize("lo, hi, bits", [(0, 0, 1), (-1, 0, 1), (0, 1, 2), (-128, 127, 8), (-129, 0, 9), (0, 128, 9)])
def test_signed_bits_for_range(lo, hi, bits):
    assert signed_bits_for_range(lo, hi) == bits
    assert Kind.SIGNED.value == "signed"


def test_twos_complement_helpers_match_python_ints_at_every_width():
    from lowbit.sw.formats import from_twos_complement, signed_range, to_twos_complement

    assert signed_range(1) == (-1, 0) and signed_range(4) == (-8, 7) and signed_range(64) == (-2**63, 2**63 - 1)
    rng = np.random.default_rng(0)
    for bits in (1, 2, 5, 8, 31, 63, 64):
        lo, hi = signed_range(bits)
        v = np.concatenate([[lo, hi, 0, -1], rng.integers(lo, hi, 50, endpoint=True)]).astype(np.int64)
        codes = to_twos_complement(v, bits)
        assert codes.dtype == np.uint64
        # the reference: Python's unbounded ints
        assert [int(c) for c in codes] == [int(x) % (1 << bits) for x in v]
        assert [to_twos_complement(int(x), bits) for x in v] == [int(c) for c in codes]
        back = from_twos_complement(codes, bits)
        assert back.dtype == np.int64 and np.array_equal(back, v)
        assert [from_twos_complement(int(c), bits) for c in codes] == v.tolist()
    # wider than numpy: ports and logits stay Python ints
    assert to_twos_complement(-1, 100) == 2**100 - 1 and from_twos_complement(2**99, 100) == -2**99
    # bits above the width are ignored; shapes are kept
    assert from_twos_complement(0x1F, 4) == -1
    assert to_twos_complement(np.array(-3), 4).shape == ()
    assert np.array_equal(to_twos_complement(np.array([[-1, 2]]).T, 3), np.array([[7], [2]], np.uint64))
