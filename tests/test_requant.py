"""The requantization rule against an independent reference written with fractions."""

import math
from fractions import Fraction

import numpy as np
import pytest

from lowbit.sw.requant import RequantParams, requantize, round_shift


def reference_round(v: int, s: int, mode: str) -> int:
    x = Fraction(v, 1 << s)
    if mode == "floor":
        return math.floor(x)
    if mode == "half_up":
        return math.floor(x + Fraction(1, 2))
    return round(x)  # Python rounds half to even


@pytest.mark.parametrize("mode", ["floor", "half_up", "half_even"])
def test_round_shift_equals_reference_exhaustively(mode):
    v = np.arange(-300, 301)
    for s in range(0, 7):
        got = round_shift(v, s, mode)
        assert got.tolist() == [reference_round(int(a), s, mode) for a in v], (mode, s)


def test_ties_round_as_named():
    v = np.array([-5, -3, -1, 1, 3, 5])  # all exact halves at s=1
    assert round_shift(v, 1, "floor").tolist() == [-3, -2, -1, 0, 1, 2]
    assert round_shift(v, 1, "half_up").tolist() == [-2, -1, 0, 1, 2, 3]
    assert round_shift(v, 1, "half_even").tolist() == [-2, -2, 0, 0, 2, 2]


def test_requantize_clips_and_relu():
    p = RequantParams("s4", shift=1)
    assert requantize([-100, -17, -16, 14, 15, 100], p).tolist() == [-8, -8, -8, 7, 7, 7]
    p = RequantParams("u4", shift=0, relu=True)
    assert requantize([-3, 0, 9, 15, 16], p).tolist() == [0, 0, 9, 15, 15]
    p = RequantParams("bipolar", shift=3)
    assert requantize([-9, -8, -1, 0, 5], p).tolist() == [-1, -1, -1, 1, 1]


def test_per_channel_multiplier_and_shift():
    p = RequantParams("s8", shift=np.array([0, 1, 2]), multiplier=np.array([3, 5, 7]), rounding="half_up")
    acc = np.array([[10, 10, 10], [-10, -10, -10]])
    assert requantize(acc, p).tolist() == [[30, 25, 18], [-30, -25, -17]]


@pytest.mark.parametrize("kwargs, message", [
    (dict(out_format="s4", shift=-1), "shift must be in 0..48, not -1"),
    (dict(out_format="s4", shift=49), "shift must be in 0..48, not 49"),
    (dict(out_format="s4", multiplier=70000), "multiplier must be in 0..65535, not 70000"),
    (dict(out_format="s4", rounding="nearest"), "rounding must be one of floor, half_up, half_even, not 'nearest'"),
    (dict(out_format="pow2_3"), "out_format must be signed, unsigned, ternary or bipolar, not pow2"),
    (dict(out_format="bipolar", relu=True), "relu cannot be combined with a bipolar out_format"),
])
def test_invalid_params_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RequantParams(**kwargs)


def test_channel_count_mismatch():
    p = RequantParams("s4", shift=np.array([1, 2]))
    with pytest.raises(ValueError, match="requantization has 2 channels, the layer has 3"):
        requantize(np.zeros((1, 3)), p)


# ---- the product offset: round_shift((acc + bias)·m + c, s) ------------------------------------
@pytest.mark.parametrize("mode", ["floor", "half_up", "half_even"])
def test_offset_is_added_after_the_multiply_per_channel(mode):
    """Every accumulator -200..200 through three channels with their own m, s and (negative,
    zero, positive) offsets, against the Fraction reference; s8 and s4 (which clips)."""
    m, s, c = np.array([3, 1, 7]), np.array([2, 0, 5]), np.array([-5, 0, 77])
    acc = np.arange(-200, 201)[:, None].repeat(3, 1)
    for fmt, lo, hi in (("s8", -128, 127), ("s4", -8, 7)):
        p = RequantParams(fmt, shift=s, multiplier=m, rounding=mode, offset=c)
        want = [[min(max(reference_round(int(a) * int(m[k]) + int(c[k]), int(s[k]), mode), lo), hi)
                 for k, a in enumerate(row)] for row in acc]
        assert requantize(acc, p).tolist() == want, (fmt, mode)
    # a scalar offset is every channel's; no multiplier means m = 1
    p = RequantParams("s8", shift=2, offset=-3, rounding=mode)
    v = np.arange(-60, 61)
    assert requantize(v, p).tolist() == [min(max(reference_round(int(a) - 3, 2, mode), -128), 127) for a in v]


def test_offset_places_floor_thresholds_at_a_fraction_of_a_step():
    """floor((acc·m + c)/2^s) ≥ k ⇔ acc ≥ ceil((k·2^s − c)/m): with m = 5 the threshold of each
    level moves by 1/5 step per 2^s of offset, which no integer bias can do."""
    acc = np.arange(-40, 41)
    for c in range(-20, 21):
        y = requantize(acc, RequantParams("s8", shift=2, multiplier=5, offset=c))
        for k in range(-3, 4):
            first = acc[np.argmax(y >= k)]
            assert first == -((c - (k << 2)) // 5), (c, k)  # ceil((4k − c)/5)


def test_offset_none_zero_and_json():
    acc = np.arange(-50, 50)
    plain = RequantParams("s4", shift=3, multiplier=5, rounding="half_even")
    zero = RequantParams("s4", shift=3, multiplier=5, rounding="half_even", offset=0)
    assert np.array_equal(requantize(acc, plain), requantize(acc, zero))
    assert "offset" not in plain.to_json() and plain.offset is None and plain.offset_bits == 0
    p = RequantParams("u4", shift=[1, 2], multiplier=[3, 4], offset=[-9, 300], relu=True)
    assert p.to_json()["offset"] == [-9, 300] and RequantParams.from_json(p.to_json()) == p
    assert p.offset_bits == 10 and p.offsets(2).tolist() == [-9, 300] and plain.offsets(3).tolist() == [0, 0, 0]
    assert p != RequantParams.from_json({**p.to_json(), "offset": None})


@pytest.mark.parametrize("offset, message", [
    (1 << 62, r"offset must be in -4611686018427387903\.\.4611686018427387903, not 4611686018427387904"),
    (-(1 << 62), r"offset must be in -4611686018427387903\.\.4611686018427387903, not -4611686018427387904"),
    (np.array([1, 2], np.uint64) << np.uint64(63),
     r"offset must be in -4611686018427387903\.\.4611686018427387903, not 9223372036854775808"),
    (0.5, r"offset must be None, an integer or a 1-D integer array, not 0\.5"),
    ([[1]], r"offset must be None, an integer or a 1-D integer array, not \[\[1\]\]"),
])
def test_invalid_offsets_are_refused(offset, message):
    with pytest.raises(ValueError, match=message):
        RequantParams("s4", shift=1, offset=offset)


def test_offset_channel_count_must_agree():
    with pytest.raises(ValueError, match=r"per-channel shift, multiplier and offset lengths differ: \[2, 3\]"):
        RequantParams("s4", shift=[1, 2], offset=[0, 1, 2]).channels()
    with pytest.raises(ValueError, match="requantization has 3 channels, the layer has 2"):
        requantize(np.zeros((1, 2)), RequantParams("s4", shift=1, offset=[0, 1, 2]))
