"""Frontends: float networks as :class:`~lowbit.sw.frontends.graph.FloatGraph` (lowbit's presets today;
importers of users' models later). Everything that runs a float network goes through its one loop."""

from .graph import (LAYER_KINDS, ByName, Dropout, FloatGraph, GraphError, Layer, Linear, ReLU, Scale,  # noqa: F401
                    Stage)

__all__ = ["FloatGraph", "Layer", "Linear", "ReLU", "Dropout", "Scale", "Stage", "ByName", "GraphError",
           "LAYER_KINDS"]
