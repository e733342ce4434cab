"""The matrix-vector op: a dense layer folded onto a PE×SIMD MAC array (FINN's MVAU).

A layer of R outputs (rows) and C inputs (columns) folded at ``PE | R`` rows and
``SIMD | C`` columns per cycle has ``NF = R/PE`` row folds and ``SF = C/SIMD`` column folds:
it takes ``NF·SF`` cycles per vector, streaming the vector's SF beats once and replaying
them from its input buffer for each later row fold. Its input stream is SIMD lanes of the
layer's input format, SF beats per vector; its output stream is PE lanes, NF beats per
vector, of the output format's codes (a hidden layer) or of raw ``acc + bias`` accumulators
(the last layer's logits). Weights sit in PE banks (address ``nf·SF + sf``), per-channel
bias/multiplier/shift in PE parameter banks (address ``nf``), exactly as :mod:`lowbit.sw.pack`
packs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..ir import DenseLayer
from ..pack import LANE_ORDER, ParamLayout, check_fold, describe_encoding, param_banks, weight_image
from ..specs import MacArraySpec, RequantSpec
from .base import FoldError, HardwareOp, OpResult, StreamShape, divisors

__all__ = ["MatrixVectorOp", "LayerFold"]


@dataclass(frozen=True)
class LayerFold:
    """A matrix-vector fold: ``pe`` parallel rows and ``simd`` parallel columns of a
    ``rows × cols`` layer; ``NF·SF`` cycles per vector."""

    pe: int
    simd: int
    rows: int
    cols: int

    @property
    def nf(self) -> int:
        return self.rows // self.pe

    @property
    def sf(self) -> int:
        return self.cols // self.simd

    @property
    def cycles(self) -> int:
        """Cycles per vector: NF·SF beats through the MAC array."""
        return self.nf * self.sf

    @property
    def lanes(self) -> int:
        return self.pe * self.simd

    @property
    def in_lanes(self) -> int:
        """Lanes of the input stream (SIMD)."""
        return self.simd

    @property
    def out_lanes(self) -> int:
        """Lanes of the output stream (PE)."""
        return self.pe

    def __str__(self) -> str:
        return f"{self.pe}x{self.simd}"


@dataclass(frozen=True, eq=False)
class MatrixVectorOp(HardwareOp):
    """A :class:`~lowbit.sw.ir.DenseLayer` as hardware (see the module docstring).

    Parameters
    ----------
    layer : DenseLayer
    index : int
        Position of the layer in its network (names its memories ``layer{index}_*``).
    fold : LayerFold or None
        ``None`` for an unfolded op (golden model, fold options only).
    vectors : int
        Input vectors per image, each multiplied by the same matrix (1 for a dense layer;
        OH·OW for a convolution's im2col vectors).
    """

    layer: DenseLayer
    index: int = 0
    fold: LayerFold | None = None
    vectors: int = 1

    kind = "matrix_vector"

    @property
    def name(self) -> str:
        return self.layer.name

    # ---- golden ---------------------------------------------------------------------------
    def golden(self, x) -> OpResult:
        from ..golden import dense_accumulate
        from ..requant import requantize

        x = np.asarray(x)
        batch = x.shape[0] if x.ndim > 1 else 1
        acc = dense_accumulate(x.reshape(batch * self.vectors, self.layer.in_features), self.layer)
        out = acc if self.layer.requant is None else requantize(acc, self.layer.requant)
        shape = (batch, self.layer.out_features) if self.vectors == 1 else (batch, self.vectors, self.layer.out_features)
        return OpResult(out.reshape(shape), acc.reshape(shape))

    # ---- folding --------------------------------------------------------------------------
    def check_fold(self, fold) -> LayerFold:
        if isinstance(fold, LayerFold):
            pe, simd = fold.pe, fold.simd
        else:
            try:
                pe, simd = fold
            except (TypeError, ValueError):
                raise FoldError(f"fold of layer {self.name!r} must be (pe, simd), not {fold!r}") from None
        check_fold(self.layer.out_features, self.layer.in_features, pe, simd, name=self.name)
        return LayerFold(int(pe), int(simd), self.layer.out_features, self.layer.in_features)

    def cycles(self, fold=None) -> int:
        """NF·SF cycles per vector (the MAC array takes one beat per cycle), for each vector."""
        return self.vectors * (fold if fold is not None else self._need_fold("cycles")).cycles

    @property
    def macs(self) -> int:
        """``vectors · rows · cols`` per image (each lane does one MAC a cycle, so at full rate
        ``cycles · lanes`` of any fold equals it)."""
        return self.vectors * self.layer.out_features * self.layer.in_features

    def fold_options(self) -> list[LayerFold]:
        rows, cols = self.layer.out_features, self.layer.in_features
        return [LayerFold(pe, simd, rows, cols) for pe in divisors(rows) for simd in divisors(cols)]

    def mac_format_pairs(self) -> tuple:
        return ((self.layer.weight_format, self.layer.in_format),)

    # ---- the blocks it is made of ------------------------------------------------------------
    @cached_property
    def specs(self) -> tuple[MacArraySpec, RequantSpec | None, ParamLayout]:
        """The blocks of this fold: the MAC array (accumulator width from the layer's actual
        weights), the requantizer (``None`` for raw logits) and the parameter word layout."""
        fold, layer = self._need_fold("block specs"), self.layer
        mac = MacArraySpec(pe=fold.pe, simd=fold.simd, weight_format=layer.weight_format,
                           act_format=layer.in_format, beats=fold.sf, known_range=layer.acc_range)
        params = ParamLayout.for_layer(layer)
        rq = None
        if layer.requant is not None:
            rq = RequantSpec(lanes=fold.pe, acc_bits=mac.acc_bits, out_format=layer.requant.out_format,
                             bias_bits=params.bias_bits, mult_bits=params.mult_bits,
                             shift_bits=max(1, params.shift_bits), rounding=layer.requant.rounding,
                             relu=layer.requant.relu, offset_bits=params.offset_bits)
        return mac, rq, params

    @property
    def out_lane_bits(self) -> int:
        mac, rq, _ = self.specs
        return rq.out_format.bits if rq is not None else mac.acc_bits

    # ---- streams --------------------------------------------------------------------------
    @property
    def in_stream(self) -> StreamShape:
        f = self._need_fold("input stream")
        fmt = self.layer.in_format
        return StreamShape(f.simd, fmt.bits, f.sf, self.vectors, fmt)

    @property
    def out_stream(self) -> StreamShape:
        f = self._need_fold("output stream")
        rq = self.layer.requant
        return StreamShape(f.pe, self.out_lane_bits, f.nf, self.vectors, None if rq is None else rq.out_format)

    # ---- memories -------------------------------------------------------------------------
    def memories(self) -> tuple:
        return self._memories

    @cached_property
    def _memories(self) -> tuple:
        return self.pack_memories()

    def pack_memories(self, spec: "ParamLayout | RequantSpec | None" = None, *, params: bool = True) -> tuple:
        """The weight memory (one, bank 0) and (``params``) the PE parameter banks as :class:`~lowbit.sw.memimage.Memory`
        records with their manifest descriptions; ``spec`` overrides the parameter word layout
        (default: :attr:`param_layout`, the narrowest). :meth:`memories` is this, built once."""
        from ..memimage import Memory

        f, l = self._need_fold("memories"), self.layer
        spec = self.param_layout if spec is None else spec
        layout = ParamLayout.from_spec(spec)
        fold = {"rows": f.rows, "cols": f.cols, "pe": f.pe, "simd": f.simd, "nf": f.nf, "sf": f.sf}
        b = l.weight_format.bits
        info = {  # one memory for the PE rows, which all read the same address (see pack.weight_image)
            "lanes": f.pe * f.simd, "lane_bits": b, "lane_order": LANE_ORDER,
            "value_format": str(l.weight_format), "encoding": describe_encoding(l.weight_format),
            "addressing": f"address nf*SF + sf (SF={f.sf}) holds W[nf*PE + p, sf*SIMD + k] in lane p*SIMD + k "
                          f"(PE={f.pe}, SIMD={f.simd})",
            "fold": fold,
        }
        out = [Memory(self.index, l.name, "weights", 0, f.pe * f.simd * b, weight_image(l, f.pe, f.simd), info)]
        for p, words in enumerate(param_banks(l, f.pe, spec) if params else ()):
            info = {
                "lanes": None, "lane_bits": None, "lane_order": "fields LSB first, in the order listed",
                "fields": layout.fields(),
                "addressing": f"address nf holds output channel nf*PE + {p} (PE={f.pe})",
                "requant": None if l.requant is None else l.requant.to_json(),
                "fold": fold,
            }
            out.append(Memory(self.index, l.name, "params", p, layout.width, words, info))
        return tuple(out)

    def weight_words(self) -> list[int]:
        """The words of the layer's one weight memory (:func:`~lowbit.sw.pack.weight_image`)."""
        return next(list(m.words) for m in self._memories if m.kind == "weights")

    def param_words(self) -> list[list[int]]:
        return [list(m.words) for m in self._memories if m.kind == "params"]

    @property
    def param_layout(self) -> ParamLayout:
        return self.specs[2]

    # ---- cost -----------------------------------------------------------------------------
    def cost(self, family: str, mem_family: str | None = None) -> dict:
        """MAC array + requantizer (block model) and the weight and parameter memories.

        ``family`` picks the LUT coefficients, ``mem_family`` (default ``family``) the block-RAM
        and LUTRAM shapes: ECP5 borrows iCE40's LUT4 coefficients but has its own RAMs.
        """
        from ..cost import estimate_block, rom_memory

        f = self._need_fold("cost")
        mac, rq, params = self.specs
        blk = estimate_block(mac, rq, family)
        wmem = rom_memory(f.nf * f.sf, mac.weight_word_bits, mem_family or family)
        pmem = rom_memory(f.nf, f.pe * params.width, mem_family or family, sync=False)  # read combinationally
        lutram = wmem["lutram_luts"] + pmem["lutram_luts"]
        return {"lut": blk["lut"] + lutram, "ff": blk["ff"], "bram": wmem["bram"] + pmem["bram"], "dsp": 0,
                "lutram_luts": lutram}

    # ---- manifest -------------------------------------------------------------------------
    def manifest_entry(self) -> dict:
        f, l = self._need_fold("manifest entry"), self.layer
        mac, rq, _ = self.specs
        return {
            "index": self.index, "name": l.name, "op": self.kind, "rows": l.out_features, "cols": l.in_features,
            "weight_format": str(l.weight_format), "in_format": str(l.in_format),
            "out": "logits" if rq is None else str(rq.out_format),
            "pe": f.pe, "simd": f.simd, "nf": f.nf, "sf": f.sf, "vectors": self.vectors,
            "acc_bits": mac.acc_bits, "product": mac.product,
            "expected_cycles_per_image": self.cycles(),
            "summary": (f"PE {f.pe} x SIMD {f.simd}, NF {f.nf} x SF {f.sf}"
                        + (f" x {self.vectors} vectors" if self.vectors > 1 else "")
                        + f" = {self.cycles()} cycles/image, {mac.acc_bits}-bit accumulators, {mac.product} lanes"),
            "in_stream": self.in_stream.to_json(), "out_stream": self.out_stream.to_json(),
        }
