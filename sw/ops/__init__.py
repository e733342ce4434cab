"""Hardware ops: one frozen dataclass per hardware layer kind (no Amaranth here).

See :mod:`lowbit.sw.ops.base` for what an op owns and :mod:`lowbit.sw.ops.lower` for the
IR → ops mapping and the whole-network loops. Components: ``lowbit.hw.registry``.
"""

from .base import FoldError, HardwareOp, OpResult, StreamShape
from .lower import (LOWERINGS, check_neighbours, foldable_ops, initiation_interval, lower, mac_lanes, network_cost,
                    ops_by_layer, run_ops)
from .matvec import LayerFold, MatrixVectorOp
from .pool import MaxPoolOp, PoolFold
from .window import SlidingWindowOp, WindowFold

__all__ = ["HardwareOp", "StreamShape", "OpResult", "FoldError", "MatrixVectorOp", "LayerFold", "SlidingWindowOp",
           "WindowFold", "MaxPoolOp", "PoolFold", "LOWERINGS", "lower", "run_ops", "initiation_interval", "mac_lanes",
           "network_cost", "check_neighbours", "foldable_ops", "ops_by_layer"]
