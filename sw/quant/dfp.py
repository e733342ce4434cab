"""dfp: dynamic fixed point (Mellempudi et al.; Ristretto's integer/fractional lengths).

Each layer's weights and each layer's activations get their own fractional length
``FL``: the integer length is the smallest that holds the largest magnitude seen (the
weights themselves, or the calibration activations), and ``FL = bits − IL``. The scale
``2^-FL`` is a power of two, so requantization is shift and clip, as in :mod:`pow2`; the
difference is the range rule (cover the maximum) instead of an error-minimising search.
"""

from __future__ import annotations

import math

import numpy as np

from ..formats import IntFormat
from . import pow2

NAME = "dfp"
WEIGHT_BITS = pow2.WEIGHT_BITS
ACT_BITS = pow2.ACT_BITS


def weight_scale(w, fmt: IntFormat) -> float:
    amax = float(np.max(np.abs(w))) or 1.0
    # IL counts the sign bit: 2^(IL-1) > max; FL = bits − IL
    il = math.ceil(math.log2(amax)) + 1
    return 2.0 ** (il - fmt.bits)


def act_scale(a, bits: int, min_scale: float) -> float:
    amax = float(np.max(a)) if np.size(a) else 0.0
    amax = amax or 1.0
    il = math.ceil(math.log2(amax))  # unsigned: no sign bit
    s = 2.0 ** (il - bits)
    while s < min_scale * (1 - 1e-12):
        s *= 2
    return s


def check(weight_bits=8, act_bits=8, *, input_bits=None, layer_bits=None) -> tuple[int, int]:
    return pow2.check(weight_bits, act_bits, method=NAME, input_bits=input_bits, layer_bits=layer_bits)


def plan(model, weight_bits: int = 8, act_bits: int = 8, calib=None, *, input_bits=None, layer_bits=None):
    """Fractional lengths from the weights and the calibration activations."""
    return pow2.plan(model, weight_bits, act_bits, calib, method=NAME, weight_scale=weight_scale,
                     act_scale=act_scale, input_bits=input_bits, layer_bits=layer_bits)
