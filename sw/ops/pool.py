"""The max-pool op: a :class:`~lowbit.sw.ir.MaxPool2dLayer` on the NHWC channel stream.

Streams: input ``H·W`` pixels (row-major), each ``C/PE`` beats of ``PE`` lanes (channels
``t·PE .. t·PE + PE − 1`` in beat ``t``); output ``OH·OW`` pixels the same way; lanes hold codes
of the layer's format (it passes through). Fold: ``PE``, a divisor of ``C``, the channels per
beat. Cycles per image: ``H·W·C/PE``, one input beat per cycle (the output has fewer beats);
the values are compared as they pass, in a small row buffer. No MAC lanes, no initialized
memories; its component and cost model come with the hardware issue (13).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import MaxPool2dLayer
from .base import FoldError, HardwareOp, OpResult, StreamShape, divisors

__all__ = ["MaxPoolOp", "PoolFold"]


@dataclass(frozen=True)
class PoolFold:
    """``pe`` channels per beat of a max-pool over ``pixels = H·W`` input pixels of ``channels`` channels."""

    pe: int
    channels: int
    pixels: int

    @property
    def cycles(self) -> int:
        """Cycles per image: ``H·W·C/PE`` input beats."""
        return self.pixels * self.channels // self.pe

    @property
    def lanes(self) -> int:
        """MAC lanes: none."""
        return 0

    @property
    def in_lanes(self) -> int:
        return self.pe

    @property
    def out_lanes(self) -> int:
        return self.pe

    def __str__(self) -> str:
        return str(self.pe)


@dataclass(frozen=True, eq=False)
class MaxPoolOp(HardwareOp):
    """A :class:`~lowbit.sw.ir.MaxPool2dLayer` as hardware (see the module docstring).

    ``fold``: a :class:`PoolFold`, or to :meth:`with_fold` its PE (an int, or a 1-tuple as
    :func:`lowbit.sw.fold.parse_fold` reads ``"16"``).
    """

    layer: MaxPool2dLayer
    index: int = 0
    fold: PoolFold | None = None

    kind = "max_pool"

    @property
    def name(self) -> str:
        return self.layer.name

    def golden(self, x) -> OpResult:
        from ..golden import maxpool2d

        return OpResult(maxpool2d(x, self.layer))

    # ---- folding --------------------------------------------------------------------------
    def check_fold(self, fold) -> PoolFold:
        c = self.layer.in_shape[2]
        pe = fold.pe if isinstance(fold, PoolFold) else fold
        if isinstance(pe, tuple) and len(pe) == 1:
            pe = pe[0]
        if not isinstance(pe, (int, np.integer)) or isinstance(pe, bool):
            raise FoldError(f"fold of max-pool layer {self.name!r} must be its PE alone (channels per beat, one number "
                            f"such as {c}), not {fold!r}")
        if pe < 1 or c % pe:
            raise FoldError(f"pe must be a divisor of the {c} channels of max-pool layer {self.name!r} (allowed pe: "
                            f"{', '.join(map(str, divisors(c)))}), not {pe!r}")
        h, w, _ = self.layer.in_shape
        return PoolFold(int(pe), c, h * w)

    def fold_options(self) -> list[PoolFold]:
        h, w, c = self.layer.in_shape
        return [PoolFold(pe, c, h * w) for pe in divisors(c)]

    # ---- streams --------------------------------------------------------------------------
    def _stream(self, shape) -> StreamShape:
        f, fmt = self._need_fold("streams"), self.layer.fmt
        h, w, c = shape
        return StreamShape(f.pe, fmt.bits, c // f.pe, h * w, fmt)

    @property
    def in_stream(self) -> StreamShape:
        return self._stream(self.layer.in_shape)

    @property
    def out_stream(self) -> StreamShape:
        return self._stream(self.layer.out_shape)

    # ---- memories, cost, manifest ------------------------------------------------------------
    def cost(self, family: str, mem_family: str | None = None) -> dict:
        self._no_cost_model("max-pool unit")

    def manifest_entry(self) -> dict:
        f, layer = self._need_fold("manifest entry"), self.layer
        return {
            "index": self.index, "name": layer.name, "op": self.kind, "in_shape": list(layer.in_shape),
            "out_shape": list(layer.out_shape), "kernel": list(layer.kernel), "stride": list(layer.stride),
            "format": str(layer.fmt), "pe": f.pe, "expected_cycles_per_image": self.cycles(),
            "summary": f"max-pool {layer.kernel[0]}x{layer.kernel[1]}, PE {f.pe} = {self.cycles()} cycles/image",
            "in_stream": self.in_stream.to_json(), "out_stream": self.out_stream.to_json(),
        }
