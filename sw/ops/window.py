"""The sliding-window op: a convolution's im2col stream (FINN's ConvolutionInputGenerator).

It turns the NHWC pixel stream of a :class:`~lowbit.sw.ir.Conv2dLayer`'s input into the
im2col vectors of :func:`lowbit.sw.golden.im2col` for the layer's matrix-vector op, which
multiplies each by the unchanged ``[OC, KH·KW·C]`` matrix (``lower`` makes both ops).

Streams (``K = KH·KW·C``, ``L`` the input lanes):

* input: ``H·W`` pixels in row-major order, each ``C/L`` beats of ``L`` lanes (channels
  ``t·L .. t·L + L − 1`` in beat ``t``), codes of the layer's ``in_format``;
* output: ``OH·OW`` vectors (row-major output pixels), each ``K/SIMD`` beats of ``SIMD`` lanes,
  beat ``t`` carrying im2col elements ``t·SIMD .. t·SIMD + SIMD − 1`` in ``(ky, kx, c)`` order
  (channels innermost). Padding positions carry :func:`~lowbit.sw.ir.pad_value`, made inside
  the unit: they cost no input beats.

Fold: the window follows the layer's matrix-vector fold and takes its ``SIMD``: a divisor of
``C`` (then ``L = SIMD``), or, when ``C < SIMD``, FINN's parallel-window mode: a multiple of ``C``
dividing ``KW·C`` (then ``L = C``, one pixel per input beat, and an output beat spans
``SIMD/C`` kernel columns of one kernel row).

Cycles per image: ``max(H·W·C/L, OH·OW·K/SIMD)``, the larger of its input and output beats:
it moves at most one beat in and one beat out per cycle and overlaps the two (the line
buffer takes the next rows while windows leave). The matrix-vector op after it takes
``OH·OW·(OC/PE)·(K/SIMD)`` cycles, never fewer than the output beats, so the window limits a
layer only through its input (a large stride).

Line buffer: ``((KH − 1)·Wp + KW)·C/L`` words of ``L`` lanes, ``Wp = W + 2·pw`` the padded width
(:attr:`SlidingWindowOp.buffer_words`). No initialized memories. Its component and cost model
come with the hardware issue (13).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Conv2dLayer
from .base import FoldError, HardwareOp, OpResult, StreamShape, divisors

__all__ = ["SlidingWindowOp", "WindowFold"]


@dataclass(frozen=True)
class WindowFold:
    """The window's share of a convolution's fold: ``simd`` output lanes, ``in_lanes`` input lanes."""

    simd: int
    in_lanes: int
    in_beats: int
    out_beats: int

    @property
    def out_lanes(self) -> int:
        return self.simd

    @property
    def cycles(self) -> int:
        """Cycles per image: the larger of the input and output beats (see the module docstring)."""
        return max(self.in_beats, self.out_beats)

    @property
    def lanes(self) -> int:
        """MAC lanes: none (the window only moves values)."""
        return 0

    def __str__(self) -> str:
        return str(self.simd)


@dataclass(frozen=True, eq=False)
class SlidingWindowOp(HardwareOp):
    """The im2col stream of a :class:`~lowbit.sw.ir.Conv2dLayer` (see the module docstring).

    Parameters
    ----------
    layer : Conv2dLayer
    index : int
        Position of the layer in its network.
    fold : WindowFold or None
        ``None`` for an unfolded op; :meth:`with_fold` takes the layer's matrix-vector fold
        (a :class:`~lowbit.sw.ops.matvec.LayerFold`), a ``WindowFold`` or a SIMD.
    """

    layer: Conv2dLayer
    index: int = 0
    fold: WindowFold | None = None

    kind = "sliding_window"

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def vector_length(self) -> int:
        """``K = KH·KW·C``, the elements of one im2col vector."""
        kh, kw = self.layer.kernel
        return kh * kw * self.layer.in_channels

    # ---- golden ---------------------------------------------------------------------------
    def golden(self, x) -> OpResult:
        """The im2col vectors ``[batch, OH, OW, K]`` of ``x`` (``[batch, H, W, C]`` or flattened)."""
        from ..golden import im2col

        layer = self.layer
        x = np.asarray(x).reshape(-1, *layer.in_shape)
        return OpResult(im2col(x, layer.kernel, layer.stride, layer.padding, layer.pad_value))

    # ---- folding --------------------------------------------------------------------------
    def allowed_simd(self) -> list[int]:
        """Divisors of C, then (parallel-window mode, C < SIMD) multiples of C dividing KW·C."""
        c, kw = self.layer.in_channels, self.layer.kernel[1]
        return divisors(c) + [m * c for m in divisors(kw) if m > 1]

    def check_fold(self, fold) -> WindowFold:
        simd = getattr(fold, "simd", fold)
        if not isinstance(simd, (int, np.integer)) or isinstance(simd, bool):
            raise FoldError(f"fold of the sliding window of layer {self.name!r} must be the layer's fold (PExSIMD) "
                            f"or a SIMD, not {fold!r}")
        c, kw = self.layer.in_channels, self.layer.kernel[1]
        if simd not in self.allowed_simd():
            raise FoldError(f"simd must divide the {c} input channels of layer {self.name!r}, or (parallel window) "
                            f"be a multiple of them dividing KW·C = {kw * c} (allowed simd: "
                            f"{', '.join(map(str, self.allowed_simd()))}), not {simd!r}")
        (h, w, _), (oh, ow, _) = self.layer.in_shape, self.layer.out_shape
        in_lanes = min(int(simd), c)
        return WindowFold(int(simd), in_lanes, h * w * c // in_lanes, oh * ow * self.vector_length // int(simd))

    def fold_options(self) -> list:
        """None: the window follows its layer's matrix-vector fold (the layer's one foldable op)."""
        return []

    # ---- streams --------------------------------------------------------------------------
    @property
    def in_stream(self) -> StreamShape:
        f, layer = self._need_fold("input stream"), self.layer
        h, w, c = layer.in_shape
        return StreamShape(f.in_lanes, layer.in_format.bits, c // f.in_lanes, h * w, layer.in_format)

    @property
    def out_stream(self) -> StreamShape:
        f, layer = self._need_fold("output stream"), self.layer
        oh, ow, _ = layer.out_shape
        return StreamShape(f.simd, layer.in_format.bits, self.vector_length // f.simd, oh * ow, layer.in_format)

    @property
    def buffer_words(self) -> int:
        """Line-buffer words of ``in_lanes`` lanes: ``((KH − 1)·Wp + KW)·C/in_lanes``."""
        f, layer = self._need_fold("line buffer"), self.layer
        (kh, kw), wp = layer.kernel, layer.in_shape[1] + 2 * layer.padding[1]
        return ((kh - 1) * wp + kw) * layer.in_channels // f.in_lanes

    # ---- memories, cost, manifest ------------------------------------------------------------
    def cost(self, family: str, mem_family: str | None = None) -> dict:
        self._no_cost_model("sliding-window unit")

    def manifest_entry(self) -> dict:
        f, layer = self._need_fold("manifest entry"), self.layer
        return {
            "index": self.index, "name": layer.name, "op": self.kind, "in_shape": list(layer.in_shape),
            "out_shape": list(layer.out_shape), "kernel": list(layer.kernel), "stride": list(layer.stride),
            "padding": list(layer.padding), "pad_value": layer.pad_value, "format": str(layer.in_format),
            "simd": f.simd, "in_lanes": f.in_lanes, "buffer_words": self.buffer_words,
            "buffer_word_bits": f.in_lanes * layer.in_format.bits,
            "expected_cycles_per_image": self.cycles(),
            "summary": (f"window {layer.kernel[0]}x{layer.kernel[1]}, {f.in_lanes} -> {f.simd} lanes, max(in "
                        f"{f.in_beats}, out {f.out_beats}) = {self.cycles()} cycles/image, line buffer "
                        f"{self.buffer_words} words"),
            "in_stream": self.in_stream.to_json(), "out_stream": self.out_stream.to_json(),
        }
