"""The max-pool op: a :class:`~lowbit.sw.ir.MaxPool2dLayer` on the NHWC channel stream.

Streams: input ``H·W`` pixels (row-major), each ``C/PE`` beats of ``PE`` lanes (channels
``t·PE .. t·PE + PE − 1`` in beat ``t``); output ``OH·OW`` pixels the same way; lanes hold codes
of the layer's format (it passes through). Fold: ``PE``, a divisor of ``C``, the channels per
beat. Cycles per image: ``H·W·C/PE``, one input beat per cycle (the output has fewer beats);
the values are compared as they pass, in a small row buffer. No MAC lanes, no initialized
memories.

Hardware (``lowbit.hw.pool.MaxPoolUnit``) takes non-overlapping pools only: ``stride = kernel``
with at least 2 on both axes (:meth:`MaxPoolOp.check_hardware`, which the component and the
cost model call, so ``lowbit build`` refuses any other pool before generating anything). The IR
already refuses a pool that does not tile its input, so no remainder is ever dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import MaxPool2dLayer
from .base import FoldError, HardwareOp, OpResult, StreamShape, divisors

__all__ = ["MaxPoolOp", "PoolFold"]

_LUTRAM_DEPTH = 64  # see MaxPoolOp.row_buffer_transparent


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

    # ---- hardware limits, cost, manifest ---------------------------------------------------
    def check_hardware(self) -> None:
        """Refuse a pool the max-pool unit cannot build: it needs ``stride = kernel`` (windows that
        neither overlap nor leave gaps, so each input beat updates exactly one running maximum in
        the row buffer) and a kernel of at least 2×2 (a 1-wide axis pools nothing on that axis)."""
        layer = self.layer
        (kh, kw), (sh, sw) = layer.kernel, layer.stride
        if (sh, sw) != (kh, kw):
            raise FoldError(f"max-pool layer {self.name!r} has stride {(sh, sw)} with kernel {(kh, kw)}: the max-pool "
                            f"unit builds only stride = kernel (non-overlapping windows), e.g. stride {(kh, kw)}")
        if kh < 2 or kw < 2:
            raise FoldError(f"max-pool layer {self.name!r} has kernel {(kh, kw)}: the max-pool unit needs a kernel of "
                            f"at least 2 on both axes (KH, KW ≥ 2)")

    def row_buffer_shape(self) -> tuple[int, int]:
        """``(depth, width)`` of the row buffer: one ``PE``-lane word per beat of an output row,
        ``OW·C/PE`` words of ``PE·bits`` bits (the running maxima of the output row being pooled)."""
        f = self._need_fold("row buffer")
        _, ow, c = self.layer.out_shape
        return ow * c // f.pe, f.pe * self.layer.fmt.bits

    @property
    def row_buffer_transparent(self) -> bool:
        """Whether the row buffer's read port must see the write of the same cycle (transparent).

        Needed when ``C/PE = 1``: a window's neighbouring columns are consecutive beats on one
        word. Otherwise the two addresses of a cycle always differ and the choice is the cheaper
        one (yosys, measured): a block RAM emulates write-first (transparent) with one bypass word
        but read-first with more, so a deep buffer stays transparent; a shallow one, LUTRAM on
        Xilinx and ECP5, is cheaper without the bypass multiplexer. Deep: more than
        ``_LUTRAM_DEPTH`` words, the deepest buffer :func:`lowbit.sw.cost.weight_memory` puts in
        LUTRAM on any family.
        """
        depth, _ = self.row_buffer_shape()
        return self.layer.in_shape[2] == self.fold.pe or depth > _LUTRAM_DEPTH

    def cost(self, family: str, mem_family: str | None = None) -> dict:
        """LUTs, FFs and RAM of :class:`lowbit.hw.pool.MaxPoolUnit` for this fold.

        The row buffer (:meth:`row_buffer_shape`) is costed by :func:`lowbit.sw.cost.weight_memory`
        (``mem_family``, default ``family``): LUTRAM when shallow where the family has it, else
        block RAM. The logic LUTs are an **uncalibrated estimate** counted from the circuit, not
        fitted like the MAC array's coefficients: per lane a ``bits``-wide comparator and a
        ``bits``-wide select of the input or the stored maximum (``2·bits``; ``3·bits`` with the
        read bypass of a transparent row buffer), two LUTs per counter bit (increment, wrap
        compare) and 16 for the handshake. Checked by hand against yosys on lenet's pools (u4,
        PE 1, 4, 8): within 20% of iCE40's and ECP5's logic where yosys maps the buffer as
        ``weight_memory`` says; yosys sometimes maps it otherwise (LUTRAM for a few hundred words
        on Xilinx and ECP5, flip-flops for a 4-word buffer on iCE40), which this estimate does not
        follow. The FFs are counted from the circuit (equal to yosys's on those pools): the
        pipeline register (beat, address, first/last/valid), the output register and its valid
        bit, the five counters (channel beat, window column, output column, window row, address),
        and what the row buffer adds: its read register (LUTRAM), one bypass word (block RAM,
        transparent) or yosys's read-first emulation (block RAM, not transparent).
        """
        from ..cost import weight_memory

        self.check_hardware()
        f = self._need_fold("cost")
        layer, fmt = self.layer, self.layer.fmt
        (_, w, c), (kh, kw) = layer.in_shape, layer.kernel
        depth, width = self.row_buffer_shape()
        ow, cf = w // kw, c // f.pe
        transparent = self.row_buffer_transparent

        def bits(n: int) -> int:  # width of a counter over range(n), as Amaranth sizes Signal(range(max(n, 2)))
            return max(n - 1, 1).bit_length()

        counters = bits(cf) + bits(kw) + bits(ow) + bits(kh) + bits(depth)
        mem = weight_memory(depth, width, mem_family or family)
        logic = f.pe * (3 if transparent else 2) * fmt.bits + 2 * counters + 16
        ff = 2 * width + bits(depth) + 4 + counters
        if mem["bram"]:
            ff += width + 1 if transparent else 2 * width + bits(depth) + 2
        else:
            ff += width
        return {"lut": logic + mem["lutram_luts"], "ff": ff, "bram": mem["bram"], "dsp": 0,
                "lutram_luts": mem["lutram_luts"]}

    def manifest_entry(self) -> dict:
        f, layer = self._need_fold("manifest entry"), self.layer
        depth, width = self.row_buffer_shape()
        return {
            "index": self.index, "name": layer.name, "op": self.kind, "in_shape": list(layer.in_shape),
            "out_shape": list(layer.out_shape), "kernel": list(layer.kernel), "stride": list(layer.stride),
            "format": str(layer.fmt), "pe": f.pe, "expected_cycles_per_image": self.cycles(),
            "buffer_words": depth, "buffer_word_bits": width,
            "summary": f"max-pool {layer.kernel[0]}x{layer.kernel[1]}, PE {f.pe} = {self.cycles()} cycles/image",
            "in_stream": self.in_stream.to_json(), "out_stream": self.out_stream.to_json(),
        }
