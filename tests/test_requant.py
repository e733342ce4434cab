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
