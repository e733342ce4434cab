"""binary: bipolar weights (W1A*), and W1A1 with bipolar activations as in FINN.

Weights become ``sign(W)·α`` with ``α = mean|W|`` per output channel (per layer for the
last layer). With ``act_bits = 1`` the activations are bipolar too: the input is
``pixel >= 128``, and each hidden unit outputs ``+1`` when its pre-activation reaches the
threshold ``c/2`` of a ``{0, c}`` ReLU quantizer (``c`` fitted to calibration data); that
threshold becomes the integer bias, so the requantizer only takes a sign (FINN's
XNOR-popcount-threshold); ``input_bits ≥ 2`` keeps unsigned pixels into the first layer
instead (FINN's networks take 8-bit pixels there). With ``act_bits ≥ 2`` activations are ``u{b}`` with a real
scale and per-channel multiplier requantization.
"""

from __future__ import annotations

import numpy as np

from ..formats import IntFormat
from .core import (ActSpec, QuantPlan, WeightQuant, calibration_activations, check_bits, check_input_bits,
                   check_layer_bits, input_spec, layer_widths, mse_scale, quant_stages)
from .scaled import real_act_scale

NAME = "binary"
WEIGHT_BITS = (1, 1)
ACT_BITS = (1, 16)


def binarize(w: np.ndarray, per_channel: bool) -> WeightQuant:
    """``α`` per output channel (axis 0: a row, or a filter of any shape) or one for the layer."""
    alpha = np.abs(w).reshape(len(w), -1).mean(1) if per_channel else np.full(w.shape[0], np.abs(w).mean())
    return WeightQuant("bipolar", IntFormat.bipolar(), np.maximum(alpha, 1e-12))


def bipolar_act(a: np.ndarray) -> ActSpec:
    amax = float(np.max(a)) or 1.0
    c = mse_scale(a, 0, 1, amax * np.linspace(0.02, 1.0, 50))
    return ActSpec("bipolar", 1, c / 2, c / 2)


def check(weight_bits=1, act_bits=1, *, multiplier_bits: int = 16, input_bits=None,
          layer_bits=None) -> tuple[int, int]:
    """The option check of :func:`plan` (no model needed): ``(act_bits, multiplier_bits)``."""
    if weight_bits is not None:
        check_bits(NAME, "weight_bits", weight_bits, *WEIGHT_BITS, " (binary weights take 1 bit)")
    ab = check_bits(NAME, "act_bits", act_bits, *ACT_BITS)
    mb = check_bits(NAME, "multiplier_bits", multiplier_bits, 2, 16)
    check_input_bits(NAME, input_bits)
    check_layer_bits(NAME, layer_bits, None, ACT_BITS)
    return ab, mb


def plan(model, weight_bits: int | None = 1, act_bits: int = 1, calib=None, *, multiplier_bits: int = 16,
         input_bits=None, layer_bits=None) -> QuantPlan:
    ab, mb = check(weight_bits, act_bits, multiplier_bits=multiplier_bits, input_bits=input_bits,
                   layer_bits=layer_bits)
    stages = quant_stages(model)
    _, a_bits = layer_widths(NAME, check_layer_bits(NAME, layer_bits, None, ACT_BITS), stages, 1, ab)
    acts_f = calibration_activations(model, calib)
    # W1A1's default input is bipolar (pixel ≥ 128); input_bits ≥ 2 gives the first layer
    # unsigned pixels against its bipolar weights (a product is the input or its negation)
    a_in, transform = input_spec(ab, bipolar=ab == 1, input_bits=input_bits)
    wqs, acts = {}, {}
    for st in stages:
        w, _ = st.float_params()
        last = st.act is None
        wqs[st.name] = binarize(w, not last)
        if not last:
            a, b = acts_f[st.act], a_bits[st.act]
            acts[st.act] = bipolar_act(a) if b == 1 else ActSpec("uint", b, real_act_scale(a, b))
    return QuantPlan(wqs, acts, a_in, transform, "multiplier", mb,
                     {"method": NAME, "weight_bits": 1, "act_bits": ab})
