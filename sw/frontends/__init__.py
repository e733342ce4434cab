"""Frontends: float networks as :class:`~lowbit.sw.frontends.graph.FloatGraph` — lowbit's presets and
users' own models (:mod:`.torch` via torch.export, :mod:`.onnx`; :mod:`.load` picks one by file suffix,
:mod:`.common` holds what they share: preprocessing fold, NCHW→NHWC, the check against the source) —
and the passes that rewrite them (:mod:`.passes`). Everything that runs a float network goes through
its one loop. An already quantized QONNX model skips the FloatGraph: :mod:`.qonnx` reads it straight
into the integer IR."""

from .graph import (LAYER_KINDS, BatchNorm, ByName, Conv2d, Dropout, Flatten, FloatGraph,  # noqa: F401
                    GraphError, Layer, Linear, MaxPool2d, ReLU, Scale, Stage)
from .passes import drop_dropout, fold_batchnorm  # noqa: F401

__all__ = ["FloatGraph", "Layer", "Linear", "Conv2d", "BatchNorm", "ReLU", "MaxPool2d", "Flatten", "Dropout",
           "Scale", "Stage", "ByName", "GraphError", "LAYER_KINDS", "fold_batchnorm", "drop_dropout"]
