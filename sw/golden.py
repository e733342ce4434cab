"""The golden model: exact integer inference in int64 numpy, vectorized over a batch.

Everything here follows :mod:`lowbit.sw.requant` and :mod:`lowbit.sw.ir`; the hardware
must equal these functions to the bit.

Tensors are NHWC (``[batch, H, W, C]``). A convolution is :func:`im2col` (the one definition
of the ``(ky, kx, c)`` order that packing and hardware use) followed by the dense matrix
product of :func:`exact_matmul`; a max-pool takes the maximum of values after
requantization, which equals requantizing the maximum accumulator because requantization
is monotone non-decreasing in the accumulator (per channel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numpy.lib.stride_tricks import sliding_window_view

from .formats import Kind
from .ir import Conv2dLayer, DenseLayer, MaxPool2dLayer, Network
from .requant import requantize, rounded

__all__ = ["dense_accumulate", "dense_forward", "exact_matmul", "im2col", "conv2d_accumulate", "maxpool2d",
           "run_network", "NetworkResult", "mac_array_golden", "argmax_lowest", "GOLDEN_CHUNK"]


def exact_matmul(x, weights, acc_range: tuple[int, int]) -> np.ndarray:
    """``x @ weightsᵀ`` exactly (int64), for ``x`` ``[n, cols]`` and ``weights`` ``[rows, cols]`` whose every
    product and partial sum lies in ``acc_range`` (:func:`lowbit.sw.ir.accumulator_range`).

    BLAS in floating point where that is exact: when the bound is below 2^24 (float32) or 2^52
    (float64), every product and partial sum, in any order, is an integer the float type holds
    exactly, so no step rounds (and BLAS is ~50x faster than numpy's int64 matmul, which has no
    BLAS path; float32 twice as fast again). Otherwise int64, exact for any accumulator below 2^63.
    """
    lo, hi = acc_range
    bound = max(-lo, hi)
    if bound < (1 << 52):
        dtype = np.float32 if bound < (1 << 24) else np.float64
        return (np.asarray(x, dtype) @ np.asarray(weights, dtype).T).astype(np.int64)
    return np.asarray(x, np.int64) @ np.asarray(weights, np.int64).T


def _checked(x, fmt, name: str) -> np.ndarray:
    """``x`` (any integer array) if every value is in ``fmt``, else ``fmt.check``'s error; a range
    format is checked by its extremes (no int64 copy of a large im2col array)."""
    x = np.asarray(x)
    if x.dtype.kind in "iu" and fmt.kind in (Kind.SIGNED, Kind.UNSIGNED, Kind.TERNARY):
        if x.size == 0 or (fmt.min <= x.min() and x.max() <= fmt.max):
            return x
    return fmt.check(x, name=name)


def dense_accumulate(x, layer: DenseLayer) -> np.ndarray:
    """``acc = x @ Wᵀ + b`` exactly, for ``x`` of shape ``[batch, in_features]``."""
    x = _checked(np.atleast_2d(x), layer.in_format, f"input of {layer.name}")
    if x.shape[-1] != layer.in_features:
        raise ValueError(f"input of {layer.name} has {x.shape[-1]} features, the layer takes {layer.in_features}")
    return exact_matmul(x, layer.weights, layer.acc_range) + layer.bias


def im2col(x, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
           pad_value: int = 0) -> np.ndarray:
    """The im2col vectors of ``x`` ``[B, H, W, C]``: ``[B, OH, OW, KH·KW·C]``, the one definition of their order.

    Vector ``(oy, ox)`` holds the window at rows ``oy·sh + ky``, columns ``ox·sw + kx`` of the
    input padded by ``padding`` (``ph`` rows above and below, ``pw`` columns left and right)
    with ``pad_value``, element ``(ky·KW + kx)·C + c`` = input channel ``c`` at ``(ky, kx)``:
    channels innermost, then kernel columns, then kernel rows (FINN's order).
    ``OH = (H + 2·ph − KH) // sh + 1``, ``OW`` likewise. Vectorized: one strided view, one copy.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be a [batch, H, W, C] array, not shape {x.shape}")
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=pad_value)
    b, _, _, c = x.shape
    win = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # [B, OH, OW, C, KH, KW]
    return win.transpose(0, 1, 2, 4, 5, 3).reshape(b, win.shape[1], win.shape[2], kh * kw * c)


def conv2d_accumulate(x, layer: Conv2dLayer) -> np.ndarray:
    """Accumulators ``[B, OH, OW, OC]`` of ``layer`` for ``x`` ``[B, H, W, C]``: im2col, then the dense product."""
    x = _checked(np.asarray(x).reshape(-1, *layer.in_shape), layer.in_format, f"input of {layer.name}")
    cols = im2col(x, layer.kernel, layer.stride, layer.padding, layer.pad_value)
    dense = layer.as_dense()
    acc = exact_matmul(cols.reshape(-1, cols.shape[-1]), dense.weights, dense.acc_range) + dense.bias
    return acc.reshape(*cols.shape[:3], layer.out_channels)


def maxpool2d(x, layer: MaxPool2dLayer) -> np.ndarray:
    """``[B, OH, OW, C]`` maxima over each window of ``x`` ``[B, H, W, C]`` (values of ``layer.fmt``)."""
    x = _checked(np.asarray(x).reshape(-1, *layer.in_shape), layer.fmt, f"input of {layer.name}")
    (sh, sw) = layer.stride
    return np.asarray(sliding_window_view(x, layer.kernel, axis=(1, 2))[:, ::sh, ::sw].max(axis=(-2, -1)), np.int64)


def dense_forward(x, layer: DenseLayer) -> np.ndarray:
    acc = dense_accumulate(x, layer)
    return acc if layer.requant is None else requantize(acc, layer.requant)


def argmax_lowest(values) -> np.ndarray:
    """Class index per row; the lowest index wins ties (numpy's argmax already does)."""
    return np.argmax(np.asarray(values), axis=-1)


@dataclass
class NetworkResult:
    activations: list[np.ndarray | None]  # output of each layer (last: logits or values); None: not kept
    accumulators: list[np.ndarray | None]  # biased accumulators of each layer; None: a max-pool, or not kept

    @property
    def logits(self) -> np.ndarray:
        return self.activations[-1]

    @property
    def classes(self) -> np.ndarray:
        return argmax_lowest(self.logits)

    def _rounded(self, net: Network):
        """Per layer ``(requant, values before the clip)``, or None for raw logits and bipolar
        outputs (which take a sign and never clip)."""
        out = []
        for layer, acc in zip(net.layers, self.accumulators):
            rq = getattr(layer, "requant", None)
            ok = rq is not None and acc is not None and rq.out_format.kind.value != "bipolar"
            out.append((rq, rounded(acc, rq)) if ok else None)
        return out

    def clip_rates(self, net: Network) -> list[tuple[float, float] | None]:
        """Per layer ``(share of outputs clipped at hi, share clipped at lo)``; None where nothing clips."""
        return [None if r is None else (float(np.mean(r[1] > r[0].hi)), float(np.mean(r[1] < r[0].lo)))
                for r in self._rounded(net)]

    def saturation(self, net: Network) -> list[float]:
        """Share of each layer's outputs sitting on the clip bounds (NaN for raw logits)."""
        return [float("nan") if r is None else float(np.mean((r[1] < r[0].lo) | (r[1] > r[0].hi)))
                for r in self._rounded(net)]


#: Images per golden-model pass: bounds the memory of the intermediates (an im2col of ``lenet``'s
#: second convolution is 0.4 MB per image in int64); the results do not depend on it.
GOLDEN_CHUNK = 256


def run_network(net: Network, x, *, raw_pixels: bool = False, keep: str = "all") -> NetworkResult:
    """Run ``x``: ``[batch, in_features]`` integers (or uint8 pixels with ``raw_pixels``), each image
    flattened in ``(h, w, c)`` order, or ``[batch, *net.in_shape]``.

    Each IR layer's outputs and accumulators have the shape ``[batch, *layer.out_shape]`` (NHWC).
    ``keep="all"`` keeps every layer's; ``keep="logits"`` only the last layer's (the others are
    ``None``), for large batches of convolutional networks whose intermediates would fill memory.
    Images go through the ops :data:`GOLDEN_CHUNK` at a time.
    """
    if keep not in ("all", "logits"):
        raise ValueError(f"keep must be 'all' or 'logits', not {keep!r}")
    x = np.asarray(x)
    x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x[None, :]
    if x.shape[1] == int(np.prod(net.in_shape)):
        x = x.reshape(x.shape[0], *net.in_shape)  # else the first op refuses it, naming its layer
    from .ops import lower, run_ops  # the ops' golden functions, one loop (ops import this module)

    ops = lower(net)
    kept = range(len(net.layers)) if keep == "all" else [len(net.layers) - 1]
    acts: list = [None] * len(net.layers)
    accs: list = [None] * len(net.layers)

    def put(into: list, k: int, start: int, values: np.ndarray) -> None:
        # filled in place (allocated at the first chunk): no second copy of large results
        values = values.reshape(len(values), *net.layers[k].out_shape)
        if into[k] is None:
            into[k] = np.empty((len(x), *values.shape[1:]), values.dtype)
        into[k][start:start + len(values)] = values

    for start in range(0, max(len(x), 1), GOLDEN_CHUNK):
        chunk = x[start:start + GOLDEN_CHUNK]
        results = run_ops(ops, net.input.apply(chunk) if raw_pixels else chunk)
        # one entry per IR layer: its last op's output and the accumulators of the op that has them
        out, acc = {}, {}
        for op, r in zip(ops, results):
            out[op.index] = r.out
            if r.acc is not None:
                acc[op.index] = r.acc
        for k in kept:
            put(acts, k, start, out[k])
            if k in acc:
                put(accs, k, start, acc[k])
    return NetworkResult(acts, accs)


def mac_array_golden(x_beats, w_beats) -> np.ndarray:
    """Accumulators of a PE×SIMD MAC array over one vector.

    ``x_beats``: ``[beats, simd]`` activation values; ``w_beats``: ``[beats, pe, simd]``
    weight values. Returns ``[pe]`` = Σ_beats Σ_simd w·x.
    """
    x = np.asarray(x_beats, dtype=np.int64)
    w = np.asarray(w_beats, dtype=np.int64)
    return np.einsum("bps,bs->p", w, x)
