"""From the integer IR to hardware ops, and the whole-network loops over ops.

:func:`lower` maps each IR layer to its ops through :data:`LOWERINGS` (IR layer class →
function), so a new layer kind adds one entry there; a Dense layer becomes one
:class:`~lowbit.sw.ops.matvec.MatrixVectorOp`, a Conv2d layer a
:class:`~lowbit.sw.ops.window.SlidingWindowOp` and a matrix-vector op over its ``OH·OW``
im2col vectors, a MaxPool2d layer a :class:`~lowbit.sw.ops.pool.MaxPoolOp`. Each IR layer has
exactly one op that takes a fold (:func:`foldable_ops`); its other ops follow that fold (the
window takes the matrix-vector fold's SIMD). Everything that concerns a whole network —
the golden run, the initiation interval, the MAC lanes, the cost, the stream checks between
neighbours — is a loop over ops here, never a loop over dense layers elsewhere.
"""

from __future__ import annotations

from typing import Callable

from ..ir import Conv2dLayer, DenseLayer, MaxPool2dLayer, Network
from .base import HardwareOp, OpResult
from .matvec import MatrixVectorOp
from .pool import MaxPoolOp
from .window import SlidingWindowOp

__all__ = ["LOWERINGS", "lower", "run_ops", "initiation_interval", "mac_lanes", "network_cost",
           "check_neighbours", "foldable_ops", "ops_by_layer"]


def folded(ops: tuple[HardwareOp, ...], fold) -> tuple[HardwareOp, ...]:
    """``ops`` (one IR layer's) each folded by the layer's ``fold``, or unfolded for ``None``."""
    return ops if fold is None else tuple(op.with_fold(fold) for op in ops)


#: IR layer class → ``f(layer, index, fold) -> tuple of ops``; ``fold`` is the layer's entry
#: of a :class:`~lowbit.sw.fold.FoldPlan` or ``None`` (unfolded ops).
LOWERINGS: dict[type, Callable[..., tuple[HardwareOp, ...]]] = {
    DenseLayer: lambda layer, index, fold: folded((MatrixVectorOp(layer, index),), fold),
    Conv2dLayer: lambda layer, index, fold: folded(
        (SlidingWindowOp(layer, index),
         MatrixVectorOp(layer.as_dense(), index, vectors=layer.out_shape[0] * layer.out_shape[1])), fold),
    MaxPool2dLayer: lambda layer, index, fold: folded((MaxPoolOp(layer, index),), fold),
}


def lower(net: Network, plan=None) -> tuple[HardwareOp, ...]:
    """The network's ops, folded by ``plan`` (one fold per IR layer), or unfolded without it."""
    if plan is not None and len(plan.layers) != len(net.layers):
        raise ValueError(f"plan must fold every layer ({len(net.layers)}), not {len(plan.layers)}")
    ops = []
    for k, layer in enumerate(net.layers):
        lowering = LOWERINGS.get(type(layer))
        if lowering is None:
            kinds = ", ".join(c.__name__ for c in LOWERINGS)
            raise TypeError(f"layer {k} ({getattr(layer, 'name', '?')}) must be one of {kinds} to be lowered to "
                            f"hardware, not {type(layer).__name__}")
        ops.extend(lowering(layer, k, None if plan is None else plan.layers[k]))
    ops = tuple(ops)
    if plan is not None:
        check_neighbours(ops)
    return ops


def ops_by_layer(ops) -> list[tuple[HardwareOp, ...]]:
    """The ops of each IR layer, in layer order (each layer's in stream order)."""
    by_layer: dict[int, list[HardwareOp]] = {}
    for op in ops:
        by_layer.setdefault(op.index, []).append(op)
    return [tuple(by_layer[k]) for k in sorted(by_layer)]


def foldable_ops(ops) -> list[HardwareOp]:
    """The op of each IR layer that takes the layer's fold (a plan has one fold per IR layer:
    the other ops of a layer follow that fold), in layer order."""
    out = []
    for group in ops_by_layer(ops):
        foldable = [op for op in group if op.fold_options()]
        if len(foldable) != 1:
            raise ValueError(f"layer {group[0].index} must lower to exactly one op that takes a fold (a plan holds "
                             f"one fold per layer), not {len(foldable)}")
        out.append(foldable[0])
    return out


def check_neighbours(ops) -> None:
    """Each stream between two ops must carry the same values, re-cut from one lane count
    to another that divides or is divided by it (the width converter's rule)."""
    for k, (a, b) in enumerate(zip(ops, ops[1:])):
        sa, sb = a.out_stream, b.in_stream
        if sa.lanes % sb.lanes and sb.lanes % sa.lanes:
            raise ValueError(
                f"layer {a.index} output lanes ({sa.lanes}: its PE) and layer {b.index} input lanes ({sb.lanes}: its "
                f"SIMD) must divide one another (the stream between them is re-cut from {sa.lanes} to {sb.lanes} "
                f"lanes)")
        if sa.elements != sb.elements:
            raise ValueError(f"op {a.name!r} emits {sa.elements} values per image but op {b.name!r} takes "
                             f"{sb.elements}")
        if sa.format != sb.format:
            raise ValueError(f"op {a.name!r} emits {sa.format} lanes but op {b.name!r} takes {sb.format}")


def run_ops(ops, x) -> list[OpResult]:
    """The golden model as a loop over ops: ``x`` is ``[batch, ...]`` first-layer input values."""
    results = []
    for op in ops:
        r = op.golden(x)
        results.append(r)
        x = r.out
    return results


def initiation_interval(ops) -> int:
    """Cycles per image of the pipeline: its slowest op."""
    return max(op.cycles() for op in ops)


def mac_lanes(ops) -> int:
    return sum(op.lanes() for op in ops)


def network_cost(ops, family: str, mem_family: str | None = None) -> dict:
    """The cost model of a folded network: the sum of its ops' estimates."""
    total = {"lut": 0, "ff": 0, "bram": 0, "dsp": 0, "lutram_luts": 0}
    for op in ops:
        c = op.cost(family, mem_family)
        for k in total:
            total[k] += c.get(k, 0)
    return total
