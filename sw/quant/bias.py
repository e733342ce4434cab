"""Bias correction after post-training quantization (Nagel et al. 2019's empirical correction).

Quantized weights move a channel's mean pre-activation, and batch norm folded into the weights
leaves a large bias that cancelled the float mean exactly; at 2 bits post-training this is most
of the loss. :func:`bias_corrected` records, per layer, the mean error on the calibration images
as :attr:`~lowbit.sw.quant.core.WeightQuant.bias_shift`, which export and the fake-quantized pass
both add to the float bias. :func:`~lowbit.sw.quant.make_plan` applies it to every method.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import torch

from .core import QuantError, QuantPlan, fake_forward

BIAS_CORRECTION = (True, False, "auto")


def check_bias_correction(value) -> None:
    if value not in BIAS_CORRECTION:
        raise QuantError(f"bias_correction must be True, False or 'auto', not {value!r}")


@torch.no_grad()
def bias_shifts(model, weights: Mapping, pixels) -> dict:
    """Weighted layer name → per-channel mean pre-activation of the float network minus that of
    the network with ``weights`` (WeightQuants), on ``pixels``: Nagel et al. 2019's empirical bias
    correction, layer by layer, each earlier layer already quantized and corrected, activations float."""
    from ..train import to_input

    x = to_input(pixels)
    model.eval()
    ref, shifts = {}, {}
    model.run(x, collect=ref)

    def params(name, layer):
        return (weights[name].fake(layer.weight), layer.bias) if name in weights else None

    def out(name, layer, y):
        if name not in weights:
            return y
        axes = tuple(range(y.dim() - 1))  # every axis but the channels (last: NHWC)
        d = ref[name].double().mean(axes) - y.double().mean(axes)
        shifts[name] = d.numpy()
        return y + d.to(y.dtype)

    model.run(x, params=params, out=out)
    return shifts


def bias_corrected(model, plan: QuantPlan, pixels, mode="auto") -> QuantPlan:
    """``plan`` with each layer's :attr:`WeightQuant.bias_shift` from :func:`bias_shifts` on the
    calibration ``pixels`` (``mode=True``), as it is (``False``), or (``"auto"``) whichever of the two
    agrees more often with the float network's class on those images (no labels needed).

    Quantized weights move a channel's mean pre-activation, and batch norm folded into the weights
    leaves a large bias that cancelled the float mean exactly; at 2 bits post-training this is
    most of the loss (digits TFC with batch norm: pow2 W2A2 49% -> 95%, scaled W2A2 50% -> 93%,
    ternary A4 85% -> 98%, binary W1A4 26% -> 88%). Without batch norm it can hurt (binary W1A4
    54% -> 21%), hence "auto". The metadata records what was used."""
    check_bias_correction(mode)
    plain = replace(plan, metadata={**plan.metadata, "bias_correction": False})
    if mode is False:
        return plain
    shifts = bias_shifts(model, plan.weights, pixels)
    corrected = replace(
        plan, weights={n: replace(wq, bias_shift=shifts[n]) for n, wq in plan.weights.items()},
        metadata={**plan.metadata, "bias_correction": True})
    if mode is True:
        return corrected
    from ..train import to_input

    with torch.no_grad():
        float_class = model(to_input(pixels)).argmax(1)
        px = torch.as_tensor(np.asarray(pixels), dtype=torch.float32)
        agree = [float((fake_forward(model, p, None, pixels=px).argmax(1) == float_class).float().mean())
                 for p in (plain, corrected)]
    return corrected if agree[1] > agree[0] else plain
