"""Random integer IR networks for tests and benchmarks (before or besides trained ones)."""

from __future__ import annotations

import re

import numpy as np

from .formats import IntFormat, parse_format
from .golden import conv2d_accumulate, maxpool2d
from .ir import Conv2dLayer, DenseLayer, InputTransform, MaxPool2dLayer, Network
from .requant import RequantParams, requantize

__all__ = ["random_network", "random_cnn", "LENET"]

#: WAGE's LeNet-5 variant on 28×28×1 images (valid padding: 28 → 24 → 12 → 8 → 4; 4.3 M MACs per image)
LENET = ("32C5", "MP2", "64C5", "MP2", "512", "10")


def _bias_and_requant(rng, acc, af: IntFormat, last: bool, *, rounding: str, multiplier: bool, per_channel: bool):
    """A random bias and (unless ``last``) the requantization mapping the 90th percentile of ``|acc|``
    (``[..., channels]``) per channel onto the top of ``af``'s range."""
    n_out = acc.shape[-1]
    spread = np.maximum(np.percentile(np.abs(acc.reshape(-1, n_out)), 90, axis=0), 1)
    bias = (rng.normal(0, 0.25, n_out) * spread).astype(np.int64)
    if last:
        return bias, None
    mult = rng.integers(1, 8, n_out) if multiplier else np.ones(n_out, np.int64)
    target = max(1, af.max)
    shifts = np.clip(np.ceil(np.log2(spread * mult / target)), 0, 48).astype(np.int64)
    if not per_channel:
        shifts = np.array(int(np.median(shifts)))
    relu = af.kind.value != "bipolar" and af.min == 0
    return bias, RequantParams(af, shift=shifts, multiplier=mult if multiplier else None, rounding=rounding, relu=relu)


def _input_transform(af: IntFormat) -> InputTransform:
    return InputTransform("threshold", 128) if af.kind.value == "bipolar" else (
        InputTransform("shift", max(0, 8 - af.bits)) if af.min == 0 else
        InputTransform("offset", 1 << (af.bits - 1), max(0, 8 - af.bits)))


def random_network(sizes: list[int], weight_format: str = "s4", act_format: str = "u4", *, seed: int = 0,
                   rounding: str = "half_even", multiplier: bool = False, per_channel: bool = True,
                   name: str = "random") -> Network:
    """A chain of dense layers with random weights in ``weight_format``, ReLU requantization
    to ``act_format`` sized so activations use their range (not all saturated or zero)."""
    rng = np.random.default_rng(seed)
    wf, af = parse_format(weight_format), parse_format(act_format)
    layers = []
    probe = rng.choice(af.values(), (256, sizes[0]))  # calibration inputs, to size the shifts
    for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        w = rng.choice(wf.values(), (n_out, n_in))
        acc = probe @ w.T
        bias, rq = _bias_and_requant(rng, acc, af, k == len(sizes) - 2, rounding=rounding, multiplier=multiplier,
                                     per_channel=per_channel)
        if rq is not None:
            probe = requantize(acc + bias, rq)
        layers.append(DenseLayer(w, wf, af, bias, rq, f"fc{k}"))
    return Network(layers, _input_transform(af), name)


_CONV = re.compile(r"(\d+)C(\d+)(?:s(\d+))?(?:p(\d+))?")
_POOL = re.compile(r"MP(\d+)")
_DENSE = re.compile(r"(\d+)(?:FC)?")


def random_cnn(in_shape: tuple[int, int, int], layers=LENET, weight_format: str = "s4", act_format: str = "u4", *,
               seed: int = 0, rounding: str = "half_even", multiplier: bool = False, per_channel: bool = True,
               probe: int = 32, name: str = "random_cnn") -> Network:
    """A convolutional network with random weights, requantized like :func:`random_network`.

    ``layers`` in the papers' notation, one string each: ``"32C5"`` a convolution of 32 output
    channels and a 5×5 kernel (``"32C3s2p1"``: stride 2, padding 1), ``"MP2"`` a 2×2 max-pool
    (stride 2), ``"512"`` or ``"512FC"`` a dense layer of 512 outputs; the last layer emits
    logits. ``probe`` random images size the shifts. A padded first layer with a signed
    ``act_format`` is refused (its offset input transform does not map pixel 0 to 0).
    """
    rng = np.random.default_rng(seed)
    wf, af = parse_format(weight_format), parse_format(act_format)
    shape = tuple(in_shape)
    x = rng.choice(af.values(), (probe, *shape))  # calibration inputs
    out = []
    for k, spec in enumerate(layers):
        last = k == len(layers) - 1
        if m := _POOL.fullmatch(spec):
            p = int(m[1])
            layer = MaxPool2dLayer(af, f"pool{k}", in_shape=shape, kernel=(p, p))
            x = maxpool2d(x, layer)
        elif m := _CONV.fullmatch(spec):
            oc, kk, s, p = int(m[1]), int(m[2]), int(m[3] or 1), int(m[4] or 0)
            w = rng.choice(wf.values(), (oc, kk, kk, shape[2]))
            geometry = dict(in_shape=shape, stride=(s, s), padding=(p, p))
            acc = conv2d_accumulate(x, Conv2dLayer(w, wf, af, name=f"conv{k}", **geometry))
            bias, rq = _bias_and_requant(rng, acc, af, last, rounding=rounding, multiplier=multiplier,
                                         per_channel=per_channel)
            layer = Conv2dLayer(w, wf, af, bias, rq, f"conv{k}", **geometry)
            x = None if rq is None else requantize(acc + bias, rq)
        elif m := _DENSE.fullmatch(spec):
            x = x.reshape(len(x), -1)
            w = rng.choice(wf.values(), (int(m[1]), x.shape[1]))
            acc = x @ w.T
            bias, rq = _bias_and_requant(rng, acc, af, last, rounding=rounding, multiplier=multiplier,
                                         per_channel=per_channel)
            layer = DenseLayer(w, wf, af, bias, rq, f"fc{k}")
            x = None if rq is None else requantize(acc + bias, rq)
        else:
            raise ValueError(f"layers must be like 32C5, 32C3s2p1, MP2 or 512FC, not {spec!r}")
        out.append(layer)
        shape = layer.out_shape
    return Network(out, _input_transform(af), name)
