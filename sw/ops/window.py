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

Line buffer (the hardware of :mod:`lowbit.hw.window`): a circular buffer of
:attr:`SlidingWindowOp.buffer_pixels` ``D`` pixels, each ``C/L`` words of ``L`` lanes, that holds
the input pixels from the oldest one a window still needs to the newest one written. The
largest span a window needs is ``(KH − 1)·W + KW`` pixels (its first to its last pixel in
raster order; padding is made, not stored), so ``D`` is that span plus ``min(KW, span // 4)``
pixels of slack (at most 1.25× the span; the slack lets the writer run ahead of a stride-1
window, so windows leave back to back), rounded up to a multiple of the ``SIMD/L`` banks a
parallel-window beat reads from at once (pixel ``q`` in bank ``q mod banks``).

Cycles per image: the unit moves at most one beat in and one beat out per cycle and overlaps
the two, so it takes at least ``max(in_beats, out_beats)``. Within an image the writer runs
ahead of the windows, but at a change of window the next window may need pixels more than
``D − 1`` past the release point of the one before (above all the first window of the next
image, which needs its first ``(KH − 1 − ph)·W + KW − pw`` pixels); those arrive while no
window leaves: ``stall_beats`` per image. With the output side bounding (stride 1) the
cycles are ``out_beats + stall_beats``; in general :meth:`SlidingWindowOp.cycles` follows the
unit's schedule window by window (:meth:`SlidingWindowOp._schedule_cycles`: the writer takes a
word per cycle while the pixel fits, a window leaves once its last pixel is in), exact at full
rate. The matrix-vector op after the window takes ``OH·OW·(OC/PE)·(K/SIMD)`` cycles, never
fewer than the output beats, and replays each vector ``OC/PE`` times, so the window rarely
limits a layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Conv2dLayer
from .base import FoldError, HardwareOp, OpResult, StreamShape, divisors

__all__ = ["SlidingWindowOp", "WindowFold"]


@dataclass(frozen=True)
class WindowFold:
    """The window's share of a convolution's fold: ``simd`` output lanes, ``in_lanes`` input lanes,
    and the beats of one image (``stall_beats``: cycles no window can leave while the writer
    fills pixels the buffer could not take earlier, see the module docstring)."""

    simd: int
    in_lanes: int
    in_beats: int
    out_beats: int
    stall_beats: int = 0
    schedule_cycles: int = 0

    @property
    def out_lanes(self) -> int:
        return self.simd

    @property
    def cycles(self) -> int:
        """Cycles per image of the unit's schedule at full rate (module docstring): at least
        ``max(in_beats, out_beats + stall_beats)``, and equal to ``out_beats + stall_beats`` when the
        output side bounds (a stride-1 convolution)."""
        return self.schedule_cycles

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
        buffer = self._buffer_pixels(int(simd) // in_lanes)
        stall = self._stall_pixels(buffer) * (c // in_lanes)
        out_beats = oh * ow * self.vector_length // int(simd)
        schedule = self._schedule_cycles(buffer, c // in_lanes, self.vector_length // int(simd))
        return WindowFold(int(simd), in_lanes, h * w * c // in_lanes, out_beats, stall, schedule)

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

    # ---- the line buffer (module docstring) ------------------------------------------------
    def window_tables(self) -> dict:
        """The release point and the pixels needed of window ``(oy, ox)``, split by output row and
        column (raster indices within the image, one definition for :meth:`_windows`, the cycle
        model and the hardware, which looks them up instead of multiplying by ``W``):

        ``release = rel_row[oy] + (rel_flag[oy] ? rel_col[ox] : 0)`` — the oldest pixel this or a
        later window needs: ``(top, left)`` clipped to the image, or column 0 while the next
        output row still starts on the same clipped row (``rel_flag`` false);
        ``need = need_row[oy] + need_col[ox]`` — one past the newest pixel the window reads,
        ``(bottom, right)`` clipped. All int64 arrays."""
        layer = self.layer
        (h, w, _), (oh, ow, _) = layer.in_shape, layer.out_shape
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
        top, left = np.arange(oh) * sh - ph, np.arange(ow) * sw - pw
        flag = top + sh > 0
        return {"rel_row": np.where(flag, np.maximum(top, 0) * w, 0).astype(np.int64), "rel_flag": flag,
                "rel_col": np.maximum(left, 0).astype(np.int64),
                "need_row": (np.minimum(top + kh - 1, h - 1) * w).astype(np.int64),
                "need_col": (np.minimum(left + kw - 1, w - 1) + 1).astype(np.int64)}

    def _windows(self):
        """Per window, in the order windows leave (raster over ``(oy, ox)``): its release point and
        the pixels it needs (:meth:`window_tables`); the last window needs the whole image, so the
        unit never moves on to the next image before the writer has left this one."""
        t = self.window_tables()
        h, w, _ = self.layer.in_shape
        release = (t["rel_row"][:, None] + t["rel_flag"][:, None] * t["rel_col"][None, :]).ravel()
        need = (t["need_row"][:, None] + t["need_col"][None, :]).ravel()
        need[-1] = h * w
        return release, need

    @property
    def span_pixels(self) -> int:
        """The most pixels the buffer must hold at once: from a window's release point to the
        last pixel it needs (``(KH − 1)·W + KW`` for a window inside the image)."""
        release, need = self._windows()
        return int(np.max(need - release))

    def _buffer_pixels(self, banks: int) -> int:
        (kw, pw, sw) = self.layer.kernel[1], self.layer.padding[1], self.layer.stride[1]
        span = self.span_pixels
        slack = min(max(kw - pw, sw), span // 4)
        return -(-(span + slack) // banks) * banks

    def _stall_pixels(self, buffer_pixels: int) -> int:
        """Pixels per image the writer can only take after a window has left (so no window
        leaves meanwhile): at each change of window, those of the next window's pixels that lie
        ``buffer_pixels`` or more past the release point of the window before."""
        release, need = self._windows()
        h, w, _ = self.layer.in_shape
        nxt = np.append(need[1:], need[0] + h * w)  # the last window's successor: the next image's first
        return int(np.maximum(0, nxt - release - buffer_pixels).sum())

    def _schedule_cycles(self, buffer_pixels: int, words_per_pixel: int, beats_per_window: int,
                         images: int = 4) -> int:
        """Cycles per image of the unit's schedule with the input always valid and the output
        always ready, window by window (not cycle by cycle): while window ``n`` is the current
        one, the writer takes one word per cycle up to the pixel ``D − 1`` past its release
        point (and never the last pixel of the image after the readers'); window ``n`` leaves,
        ``K/SIMD`` beats back to back, from the cycle after the later of the previous window's
        last beat and the last word of the last pixel it needs. The steady state is the
        difference between the last windows of the last two of ``images`` images."""
        release, need = self._windows()
        h, w, _ = self.layer.in_shape
        hw, cb, windows = h * w, words_per_pixel, len(release)
        written, end, ends = 0, 0, []  # words written by edge `end`; `end`: last beat of the previous window
        for img in range(images):
            base = img * hw
            for n in range(windows):
                limit = min(base + int(release[n]) + buffer_pixels, base + 2 * hw - 1) * cb
                needed = (base + int(need[n])) * cb
                ready_edge = end if needed <= written else end + (needed - written)
                start = max(end, ready_edge) + 1
                new_end = start + beats_per_window - 1
                written = min(limit, written + (new_end - end))
                end = new_end
            ends.append(end)
        return ends[-1] - ends[-2]

    @property
    def banks(self) -> int:
        """Line-buffer banks: ``SIMD/L`` (a parallel-window beat reads that many pixels at once), else 1."""
        f = self._need_fold("line buffer")
        return f.simd // f.in_lanes

    @property
    def channel_beats(self) -> int:
        """Words (input beats) per pixel: ``C/L``."""
        return self.layer.in_channels // self._need_fold("line buffer").in_lanes

    @property
    def buffer_pixels(self) -> int:
        """``D``: pixels the circular line buffer holds (the span, its slack, rounded up to the banks)."""
        return self._buffer_pixels(self.banks)

    @property
    def buffer_words(self) -> int:
        """Line-buffer words of ``in_lanes`` lanes: ``D·C/L`` (over all banks)."""
        return self.buffer_pixels * self.channel_beats

    @property
    def min_buffer_words(self) -> int:
        """The least any window unit can hold: ``((KH − 1)·W + KW)·C/L`` words (the span; padding is made, not stored)."""
        return self.span_pixels * self.channel_beats

    @property
    def input_fifo_beats(self) -> int:
        """The FIFO before the window holds the pixels the next image's first window needs
        (``(KH − 1 − ph)·W + KW − pw``, times ``C/L`` words): the op before it can deliver them
        while the last windows of the previous image still hold the line buffer, so the window
        then fills at one word per cycle (``stall_beats``) instead of at the rate its producer
        makes new rows. Without it, a producer one line buffer behind idles the whole pipeline
        at every image boundary."""
        _, need = self._windows()
        return max(super().input_fifo_beats, int(need[0]) * self.channel_beats + 2)

    @property
    def pad_code(self) -> int:
        """The code a padding lane carries: :func:`~lowbit.sw.ir.pad_value` of the input format, encoded."""
        return int(self.layer.in_format.encode(np.array([self.layer.pad_value]))[0])

    # ---- memories, cost, manifest ------------------------------------------------------------
    def cost(self, family: str, mem_family: str | None = None) -> dict:
        """The line-buffer banks (block RAM or LUTRAM, :func:`lowbit.sw.cost.weight_memory`) and the
        control of :mod:`lowbit.hw.window`, counted structurally: not yet calibrated against yosys
        (the block coefficients are fitted for MAC arrays only). Control: about 14 adders and
        comparators on pixel indices (``log2(H·W)`` bits) and pointers (``log2 D``), one register
        bit per counter bit; output: a padding multiplexer per output bit and, with several banks,
        a rotation multiplexer (``banks``-way, ``log2(banks)`` LUT levels) per output bit."""
        from ..cost import weight_memory

        f, layer = self._need_fold("cost"), self.layer
        bits_pix = (layer.in_shape[0] * layer.in_shape[1] + self.buffer_pixels).bit_length() + 3
        bits_ptr = max(1, (self.buffer_pixels // self.banks).bit_length()) + max(1, (self.banks - 1).bit_length())
        mem = weight_memory(self.buffer_pixels // self.banks * self.channel_beats, f.in_lanes * layer.in_format.bits,
                            mem_family or family)
        lut_per_bit = 1.0 if family == "xilinx" else 1.5  # LUT6 vs LUT4 for an adder/comparator bit
        out_bits = f.simd * layer.in_format.bits
        rotate = out_bits * max(0, (self.banks - 1).bit_length())
        control = int(round(lut_per_bit * 14 * bits_pix + 6 * bits_ptr))
        lutram = mem["lutram_luts"] * self.banks
        return {"lut": control + out_bits + rotate + lutram, "ff": 4 * bits_pix + 6 * bits_ptr + self.banks + 1,
                "bram": mem["bram"] * self.banks, "dsp": 0, "lutram_luts": lutram}

    def manifest_entry(self) -> dict:
        f, layer = self._need_fold("manifest entry"), self.layer
        return {
            "index": self.index, "name": layer.name, "op": self.kind, "in_shape": list(layer.in_shape),
            "out_shape": list(layer.out_shape), "kernel": list(layer.kernel), "stride": list(layer.stride),
            "padding": list(layer.padding), "pad_value": layer.pad_value, "format": str(layer.in_format),
            "simd": f.simd, "in_lanes": f.in_lanes, "buffer_words": self.buffer_words,
            "buffer_word_bits": f.in_lanes * layer.in_format.bits, "buffer_banks": self.banks,
            "buffer_pixels": self.buffer_pixels, "min_buffer_words": self.min_buffer_words,
            "stall_beats": f.stall_beats, "input_fifo_beats": self.input_fifo_beats,
            "expected_cycles_per_image": self.cycles(),
            "summary": (f"window {layer.kernel[0]}x{layer.kernel[1]}, {f.in_lanes} -> {f.simd} lanes, max(in "
                        f"{f.in_beats}, out {f.out_beats} + stall {f.stall_beats}) = {self.cycles()} cycles/image, "
                        f"line buffer {self.buffer_words} words ({self.buffer_words / self.min_buffer_words:.2f}x "
                        f"the minimum)"),
            "in_stream": self.in_stream.to_json(), "out_stream": self.out_stream.to_json(),
        }
