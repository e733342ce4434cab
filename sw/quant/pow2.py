"""pow2: uniform symmetric b-bit weights and activations with power-of-two scales.

Every scale is a power of two, so the requantization ``s_in·s_w / s_out`` is ``2^-s``: a
right shift and a clip, no multiplier (Mauch & Yang's "3-bit integers with binary shift
and clipping"). Weight scales are chosen per layer to minimise the weight quantization
error; activation scales minimise the error on calibration activations, and are never
below ``s_in·s_w`` so that every shift is ≥ 0.

Weights are two's complement ``s{b}`` (b = 2..16), activations unsigned ``u{b}``
(b = 1..16) after ReLU; the input is ``pixel >> (8 - min(b, 8))``, or ``pixel >> (8 -
input_bits)``.
"""

from __future__ import annotations

import numpy as np

from ..formats import IntFormat
from .core import (ActSpec, QuantPlan, WeightQuant, calibration_activations, check_bits, check_input_bits,
                   check_layer_bits, input_spec, layer_widths, pow2_mse_scale, quant_stages)

NAME = "pow2"
WEIGHT_BITS = (2, 16)
ACT_BITS = (1, 16)
HINT = " (1-bit weights: method 'binary'; ternary weights: method 'ternary')"


def weight_scale(w, fmt: IntFormat) -> float:
    return pow2_mse_scale(w, fmt.min, fmt.max)


def act_scale(a, bits: int, min_scale: float) -> float:
    return pow2_mse_scale(a, 0, (1 << bits) - 1, min_scale)


def check(weight_bits=4, act_bits=4, *, method: str = NAME, input_bits=None, layer_bits=None) -> tuple[int, int]:
    """The option check of :func:`plan` (no model needed): ``(weight_bits, act_bits)``."""
    wb = check_bits(method, "weight_bits", weight_bits, *WEIGHT_BITS, HINT)
    ab = check_bits(method, "act_bits", act_bits, *ACT_BITS)
    check_input_bits(method, input_bits)
    check_layer_bits(method, layer_bits, WEIGHT_BITS, ACT_BITS)
    return wb, ab


def plan(model, weight_bits: int = 4, act_bits: int = 4, calib=None, *, method: str = NAME,
         weight_scale=weight_scale, act_scale=act_scale, input_bits=None, layer_bits=None) -> QuantPlan:
    """Build the plan (see the module docstring); ``calib`` are uint8 pixels."""
    wb, ab = check(weight_bits, act_bits, method=method, input_bits=input_bits, layer_bits=layer_bits)
    stages = quant_stages(model)
    w_bits, a_bits = layer_widths(method, check_layer_bits(method, layer_bits, WEIGHT_BITS, ACT_BITS), stages, wb, ab)
    acts_f = calibration_activations(model, calib)
    a_in, transform = input_spec(ab, input_bits=input_bits)
    input_act = a_in
    wqs, acts = {}, {}
    for st in stages:
        w, _ = st.float_params()
        fmt = IntFormat.signed(w_bits[st.name])
        sw = weight_scale(w, fmt)
        wqs[st.name] = WeightQuant("int", fmt, np.full(w.shape[0], sw))
        if st.act:
            b = a_bits[st.act]
            spec = ActSpec("uint", b, act_scale(acts_f[st.act], b, a_in.scale * sw))
            acts[st.act] = spec
            a_in = spec
    return QuantPlan(wqs, acts, input_act, transform, "shift", 0,
                     {"method": method, "weight_bits": wb, "act_bits": ab})
