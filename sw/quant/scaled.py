"""scaled: b-bit integer MACs with a real scale applied as integer multiplier + shift.

Weights are ``s{b}`` with a real scale per output channel (``granularity="channel"``) or
per layer (``"layer"``); activations are ``u{b}`` with a real per-layer scale; both are
chosen to minimise quantization error (weights directly, activations on calibration
data). The requantization ratio ``s_in·s_w / s_out`` is rounded to ``m / 2^s`` with ``m``
of ``multiplier_bits`` bits; the largest relative error of that rounding is recorded in
the IR metadata as ``multiplier_max_rel_error`` (Mauch & Yang's "2-bit integers plus a
few float32 operations per layer", with the float operation made an integer multiply).
The last layer always has one scale (argmax over raw logits).
"""

from __future__ import annotations

import numpy as np

from ..formats import IntFormat
from .core import (ActSpec, QuantError, QuantPlan, WeightQuant, calibration_activations, check_bits, check_input_bits,
                   check_layer_bits, input_spec, layer_widths, mse_scale, quant_stages)

NAME = "scaled"
WEIGHT_BITS = (2, 16)
ACT_BITS = (1, 16)
GRANULARITIES = ("channel", "layer")
_FRACTIONS = np.linspace(0.05, 1.0, 96)


def real_weight_scales(w: np.ndarray, fmt: IntFormat, per_channel: bool) -> np.ndarray:
    """MSE-optimal real scales (one per row, or one repeated)."""
    qmax = max(fmt.max, 1)
    if not per_channel:
        amax = float(np.max(np.abs(w))) or 1.0
        return np.full(w.shape[0], mse_scale(w, fmt.min, fmt.max, amax / qmax * _FRACTIONS))
    out = np.empty(w.shape[0])
    for c, row in enumerate(w):
        amax = float(np.max(np.abs(row))) or 1.0
        out[c] = mse_scale(row, fmt.min, fmt.max, amax / qmax * _FRACTIONS)
    return out


def real_act_scale(a: np.ndarray, bits: int) -> float:
    qmax = (1 << bits) - 1
    amax = float(np.max(a)) if np.size(a) else 0.0
    amax = amax or 1.0
    return mse_scale(a, 0, qmax, amax / qmax * _FRACTIONS)


def check(weight_bits=4, act_bits=4, *, granularity: str = "channel", multiplier_bits: int = 16, input_bits=None,
          layer_bits=None):
    """The option check of :func:`plan` (no model needed): ``(weight_bits, act_bits, multiplier_bits)``."""
    wb = check_bits(NAME, "weight_bits", weight_bits, *WEIGHT_BITS,
                    " (1-bit weights: method 'binary'; ternary weights: method 'ternary')")
    ab = check_bits(NAME, "act_bits", act_bits, *ACT_BITS)
    mb = check_bits(NAME, "multiplier_bits", multiplier_bits, 2, 16)
    check_input_bits(NAME, input_bits)
    check_layer_bits(NAME, layer_bits, WEIGHT_BITS, ACT_BITS)
    if granularity not in GRANULARITIES:
        raise QuantError(f"granularity for method {NAME!r} must be one of {', '.join(GRANULARITIES)}, "
                         f"not {granularity!r}")
    return wb, ab, mb


def plan(model, weight_bits: int = 4, act_bits: int = 4, calib=None, *, granularity: str = "channel",
         multiplier_bits: int = 16, input_bits=None, layer_bits=None) -> QuantPlan:
    wb, ab, mb = check(weight_bits, act_bits, granularity=granularity, multiplier_bits=multiplier_bits,
                       input_bits=input_bits, layer_bits=layer_bits)
    stages = quant_stages(model)
    w_bits, a_bits = layer_widths(NAME, check_layer_bits(NAME, layer_bits, WEIGHT_BITS, ACT_BITS), stages, wb, ab)
    acts_f = calibration_activations(model, calib)
    a_in, transform = input_spec(ab, input_bits=input_bits)
    wqs, acts = {}, {}
    for st in stages:
        w, _ = st.float_params()
        last = st.act is None
        fmt = IntFormat.signed(w_bits[st.name])
        wqs[st.name] = WeightQuant("int", fmt, real_weight_scales(w, fmt, granularity == "channel" and not last))
        if not last:
            b = a_bits[st.act]
            acts[st.act] = ActSpec("uint", b, real_act_scale(acts_f[st.act], b))
    return QuantPlan(wqs, acts, a_in, transform, "multiplier", mb,
                     {"method": NAME, "weight_bits": wb, "act_bits": ab, "granularity": granularity})
