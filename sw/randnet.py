"""Random integer IR networks for tests and benchmarks (before or besides trained ones)."""

from __future__ import annotations

import numpy as np

from .formats import parse_format
from .ir import DenseLayer, InputTransform, Network
from .requant import RequantParams

__all__ = ["random_network"]


def random_network(sizes: list[int], weight_format: str = "s4", act_format: str = "u4", *, seed: int = 0,
                   rounding: str = "half_even", multiplier: bool = False, per_channel: bool = True,
                   name: str = "random") -> Network:
    """A chain of dense layers with random weights in ``weight_format``, ReLU requantization
    to ``act_format`` sized so activations use their range (not all saturated or zero)."""
    rng = np.random.default_rng(seed)
    wf, af = parse_format(weight_format), parse_format(act_format)
    layers = []
    in_fmt = af
    probe = rng.choice(af.values(), (256, sizes[0]))  # calibration inputs, to size the shifts
    for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        w = rng.choice(wf.values(), (n_out, n_in))
        last = k == len(sizes) - 2
        acc = probe @ w.T
        spread = np.maximum(np.percentile(np.abs(acc), 90, axis=0), 1)
        bias = (rng.normal(0, 0.25, n_out) * spread).astype(np.int64)
        rq = None
        if not last:
            mult = rng.integers(1, 8, n_out) if multiplier else np.ones(n_out, np.int64)
            # map the 90th percentile of |acc| onto the top of the output range
            target = max(1, af.max)
            shifts = np.clip(np.ceil(np.log2(spread * mult / target)), 0, 48).astype(np.int64)
            if not per_channel:
                shifts = np.array(int(np.median(shifts)))
            relu = af.kind.value != "bipolar" and af.min == 0
            rq = RequantParams(af, shift=shifts, multiplier=mult if multiplier else None, rounding=rounding,
                               relu=relu)
            from .requant import requantize
            probe = requantize(acc + bias, rq)
        layers.append(DenseLayer(w, wf, in_fmt, bias, rq, f"fc{k}"))
        in_fmt = af
    transform = InputTransform("threshold", 128) if af.kind.value == "bipolar" else (
        InputTransform("shift", max(0, 8 - af.bits)) if af.min == 0 else
        InputTransform("offset", 1 << (af.bits - 1), max(0, 8 - af.bits)))
    return Network(layers, transform, name)



