"""The golden model: exact integer inference in int64 numpy, vectorized over a batch.

Everything here follows :mod:`lowbit.sw.requant` and :mod:`lowbit.sw.ir`; the hardware
must equal these functions to the bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ir import DenseLayer, Network
from .requant import requantize, rounded

__all__ = ["dense_accumulate", "dense_forward", "run_network", "NetworkResult", "mac_array_golden",
           "argmax_lowest"]


def dense_accumulate(x, layer: DenseLayer) -> np.ndarray:
    """``acc = x @ Wᵀ + b`` exactly, for ``x`` of shape ``[batch, in_features]``."""
    x = layer.in_format.check(np.atleast_2d(x), name=f"input of {layer.name}")
    if x.shape[-1] != layer.in_features:
        raise ValueError(f"input of {layer.name} has {x.shape[-1]} features, the layer takes {layer.in_features}")
    lo, hi = layer.acc_range
    if max(-lo, hi) < (1 << 52):
        # Every product and partial sum is an integer below 2^53, so float64 BLAS is exact
        # (and ~50x faster than numpy's int64 matmul, which has no BLAS path).
        acc = (x.astype(np.float64) @ layer.weights.T.astype(np.float64)).astype(np.int64)
        return acc + layer.bias
    return x @ layer.weights.T + layer.bias  # int64: exact for any acc below 2^63


def dense_forward(x, layer: DenseLayer) -> np.ndarray:
    acc = dense_accumulate(x, layer)
    return acc if layer.requant is None else requantize(acc, layer.requant)


def argmax_lowest(values) -> np.ndarray:
    """Class index per row; the lowest index wins ties (numpy's argmax already does)."""
    return np.argmax(np.asarray(values), axis=-1)


@dataclass
class NetworkResult:
    activations: list[np.ndarray]  # output of each layer (last: logits or codes)
    accumulators: list[np.ndarray]  # biased accumulators of each layer

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


def run_network(net: Network, x, *, raw_pixels: bool = False) -> NetworkResult:
    """Run ``x`` (``[batch, in_features]`` integers, or uint8 pixels with ``raw_pixels``)."""
    x = np.asarray(x)
    x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x[None, :]
    if x.shape[1] == int(np.prod(net.in_shape)):
        x = x.reshape(x.shape[0], *net.in_shape)  # else the first op refuses it, naming its layer
    if raw_pixels:
        x = net.input.apply(x)
    from .ops import lower, run_ops  # the ops' golden functions, one loop (ops import this module)

    ops = lower(net)
    results = run_ops(ops, x)
    # one entry per IR layer: its last op's output and the accumulators of the op that has them
    acts, accs = {}, {}
    for op, r in zip(ops, results):
        acts[op.index] = r.out
        if r.acc is not None:
            accs[op.index] = r.acc
    return NetworkResult([acts[k] for k in sorted(acts)], [accs.get(k) for k in sorted(acts)])


def mac_array_golden(x_beats, w_beats) -> np.ndarray:
    """Accumulators of a PE×SIMD MAC array over one vector.

    ``x_beats``: ``[beats, simd]`` activation values; ``w_beats``: ``[beats, pe, simd]``
    weight values. Returns ``[pe]`` = Σ_beats Σ_simd w·x.
    """
    x = np.asarray(x_beats, dtype=np.int64)
    w = np.asarray(w_beats, dtype=np.int64)
    return np.einsum("bps,bs->p", w, x)
