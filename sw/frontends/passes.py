"""Passes: FloatGraph → FloatGraph rewrites that keep what the graph computes in eval mode.

``fold_batchnorm(graph)``  each BatchNorm folded into the Linear or Conv2d right before it,
                           with its eval statistics, exactly once: output channel ``o``'s
                           weights times ``γ/√(σ² + ε)`` (a negative scale flips their signs),
                           ``bias·scale + β − μ·scale`` its bias (a layer without bias gains
                           one). The quantizers run it before calibration; the integer IR
                           never sees a batch norm.
``drop_dropout(graph)``    the graph without its Dropout layers (the identity in eval mode).

Both return a new graph (the input is left as it was) whose other layers keep their names,
parameters and order, in the input's training/eval mode; neither draws from torch's RNG.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .graph import BatchNorm, Dropout, FloatGraph, GraphError

__all__ = ["fold_batchnorm", "drop_dropout"]


def _rebuild(graph: FloatGraph, copied: FloatGraph, drop: set[str]) -> FloatGraph:
    out = FloatGraph(copied.input_shape, [(n, l) for n, l in copied.layers.items() if n not in drop])
    return out.train(graph.training)


def fold_batchnorm(graph: FloatGraph) -> FloatGraph:
    """``graph`` with every BatchNorm folded into the weighted layer it directly follows (see the
    module docstring); GraphError for a batch norm after anything else."""
    if not isinstance(graph, FloatGraph):
        raise GraphError(f"fold_batchnorm takes a FloatGraph, not {type(graph).__name__}")
    folded = copy.deepcopy(graph)
    names = list(folded.layers)
    bns = set()
    for i, (name, layer) in enumerate(folded.layers.items()):
        if not isinstance(layer, BatchNorm):
            continue
        prev = folded.layers[names[i - 1]] if i else None
        if prev is None or not prev.weighted:
            after = f"layer {names[i - 1]!r} ({prev.kind})" if prev is not None else "the graph input"
            raise GraphError(f"batch norm {name!r} must directly follow a Linear or Conv2d layer to be folded, "
                             f"not {after}")
        w, b = layer.fold(prev.weight, prev.bias)
        with torch.no_grad():
            prev.weight.copy_(w)
            if prev.bias is None:
                prev.bias = nn.Parameter(b.to(prev.weight.dtype))
            else:
                prev.bias.copy_(b)
        bns.add(name)
    return _rebuild(graph, folded, bns)


def drop_dropout(graph: FloatGraph) -> FloatGraph:
    """``graph`` without its Dropout layers."""
    if not isinstance(graph, FloatGraph):
        raise GraphError(f"drop_dropout takes a FloatGraph, not {type(graph).__name__}")
    copied = copy.deepcopy(graph)
    return _rebuild(graph, copied, {n for n, l in copied.layers.items() if isinstance(l, Dropout)})
