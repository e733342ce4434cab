"""Packing of memory images: the one implementation of the bit order.

Every memory word is a row of fields packed **LSB first**: lane ``k`` of a word whose
lanes are ``b`` bits wide occupies bits ``[k·b, (k+1)·b)``. The hardware (``lowbit.hw``)
slices its memories with the same rule, so an image written here is exactly what the
generated accelerator reads.

Weights (FINN's folded MVAU layout)
-----------------------------------
A dense layer with ``R`` rows (outputs) and ``C`` columns (inputs), folded onto ``PE``
rows and ``SIMD`` columns per cycle (``PE | R``, ``SIMD | C``), has ``NF = R/PE`` row
folds and ``SF = C/SIMD`` column folds. Bank ``p`` (one memory per PE) has depth
``NF·SF``; the word at address ``nf·SF + sf`` holds, in lane ``k``, the code of
``W[nf·PE + p, sf·SIMD + k]`` in the layer's weight format. Word width ``SIMD·b``.

The hardware holds the PE banks side by side in **one weight memory** per layer
(:func:`weight_image`): address ``nf·SF + sf``, lane ``p·SIMD + k``, word width ``PE·SIMD·b``
(bank 0 in the low bits). Every PE row reads the same address in the same cycle, so one
memory is the same circuit; it lets the synthesizer round the width up to whole block-RAM
ports once per layer instead of once per PE.

Per-channel parameters
----------------------
Bank ``p``, address ``nf`` holds the parameters of output channel ``nf·PE + p`` as the
fields ``bias`` (two's complement), ``multiplier`` (unsigned, absent when 0 bits wide)
and ``shift`` (unsigned), LSB first, in the widths of a :class:`ParamLayout`.

Words are Python ``int`` so they may be wider than 64 bits; the work is done by numpy
(uint64 arithmetic up to 64 bits, bit matrices through :func:`numpy.packbits` above).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from .formats import IntFormat, Kind, from_twos_complement, parse_format, signed_range, to_twos_complement
from .ir import DenseLayer
from .specs import MacArraySpec, RequantSpec, bias_bits_for

__all__ = [
    "layer_specs",
    "LANE_ORDER", "pack_words", "unpack_words", "pack_fields", "unpack_fields",
    "check_fold", "fold_weights", "weight_banks", "weights_from_banks", "weight_image", "weights_from_image",
    "ParamLayout", "ChannelParams", "param_banks", "params_from_banks", "describe_encoding",
]

#: The bit order, in the words the manifest uses.
LANE_ORDER = "lane k at bits [k*b,(k+1)*b), LSB first"


# ---- validation helpers ------------------------------------------------------------------
def _int_in(value, name: str, lo: int, hi: int | None = None) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lo or (
            hi is not None and value > hi):
        rng = f"{lo}.." if hi is None else f"{lo}..{hi}"
        raise ValueError(f"{name} must be an integer in {rng}, not {value!r}")
    return int(value)


def _codes_u64(codes, bits: int, name: str) -> np.ndarray:
    """``codes`` as uint64, refusing negatives, non-integers and values of more than ``bits`` bits."""
    c = np.asarray(codes)
    if c.dtype.kind not in "iu" and not (c.dtype == object or c.size == 0):
        raise ValueError(f"{name} must be an array of unsigned integer codes, not dtype {c.dtype}")
    if c.dtype == object:
        # Object arrays come from Python ints; go through int64/uint64 with an explicit check.
        flat = c.ravel().tolist()
        if any(not isinstance(v, (int, np.integer)) or isinstance(v, bool) for v in flat):
            raise ValueError(f"{name} must hold integer codes")
        if flat and (min(flat) < 0 or max(flat) >= (1 << 64)):
            bad = next(v for v in flat if v < 0 or v >= (1 << 64))
            raise ValueError(f"{name} must hold codes in 0..2^{bits}-1, not {bad!r}")
        c = np.array(flat, dtype=np.uint64).reshape(c.shape)
    if c.size:
        if c.dtype.kind == "i" and c.min() < 0:
            raise ValueError(
                f"{name} must hold unsigned codes in 0..2^{bits}-1 (encode values with "
                f"IntFormat.encode first), not {int(c.min())!r}")
        c = c.astype(np.uint64)
        if bits < 64 and c.max() >= np.uint64(1 << bits):
            raise ValueError(f"{name} must hold codes in 0..2^{bits}-1, not {int(c.max())!r}")
    return c.astype(np.uint64)


def _words_list(words, width: int, name: str = "words") -> list[int]:
    """``words`` as a list of Python ints in ``0..2^width-1`` (checked)."""
    if isinstance(words, np.ndarray):
        if words.dtype.kind not in "iuO":
            raise ValueError(f"{name} must hold integers, not dtype {words.dtype}")
        words = words.ravel().tolist()
    out = list(words)
    for i, w in enumerate(out):
        if not isinstance(w, (int, np.integer)) or isinstance(w, bool):
            raise ValueError(f"{name}[{i}] must be an integer, not {w!r}")
    out = [int(w) for w in out]
    if out:
        lo, hi = min(out), max(out)
        if lo < 0 or hi >> width:
            i = next(i for i, w in enumerate(out) if w < 0 or w >> width)
            raise ValueError(f"{name}[{i}] must fit in {width} unsigned bits, not {out[i]:#x}"
                             if out[i] >= 0 else
                             f"{name}[{i}] must be a non-negative {width}-bit word, not {out[i]!r}")
    return out


# ---- the bit order -------------------------------------------------------------------------
def pack_fields(columns: Sequence, widths: Sequence[int]) -> list[int]:
    """Pack per-word fields LSB first: field ``i`` of each word at bits ``[Σ_{j<i} w_j, …)``.

    Parameters
    ----------
    columns : sequence of 1-D arrays of unsigned codes, all of length ``n``
        Field ``i`` of every word.
    widths : sequence of int
        Bit width of each field (0 leaves the field out; its codes must then be 0).

    Returns
    -------
    list of int
        ``n`` words of ``sum(widths)`` bits.
    """
    if len(columns) != len(widths):
        raise ValueError(f"columns must have one entry per width ({len(widths)}), not {len(columns)}")
    widths = [_int_in(w, "field width", 0, 64) for w in widths]
    cols = [_codes_u64(c, w, f"field {i}").ravel() for i, (c, w) in enumerate(zip(columns, widths))]
    if not cols:
        return []
    n = len(cols[0])
    if any(len(c) != n for c in cols):
        raise ValueError(f"columns must all have the same length, not {[len(c) for c in cols]}")
    total = sum(widths)
    if total <= 64:
        acc = np.zeros(n, np.uint64)
        offset = 0
        for c, w in zip(cols, widths):
            if w:
                acc |= c << np.uint64(offset)
            offset += w
        return acc.tolist()
    bits = np.empty((n, total), np.uint8)
    offset = 0
    for c, w in zip(cols, widths):
        bits[:, offset:offset + w] = (c[:, None] >> np.arange(w, dtype=np.uint64)) & np.uint64(1)
        offset += w
    return _bits_to_ints(bits)


def _bits_to_ints(bits: np.ndarray) -> list[int]:
    """Rows of a ``[n, width]`` 0/1 matrix (bit 0 first) → Python ints."""
    n = bits.shape[0]
    packed = np.packbits(bits, axis=1, bitorder="little")
    nb = packed.shape[1]
    buf = packed.tobytes()
    # One int.from_bytes per word: the only per-word Python work, and it is C-speed.
    return [int.from_bytes(buf[i * nb:(i + 1) * nb], "little") for i in range(n)]


def _ints_to_bits(words: list[int], width: int) -> np.ndarray:
    """Python ints → ``[n, width]`` 0/1 matrix (bit 0 first)."""
    nb = (width + 7) // 8
    buf = b"".join(w.to_bytes(nb, "little") for w in words)
    raw = np.frombuffer(buf, np.uint8).reshape(len(words), nb)
    return np.unpackbits(raw, axis=1, bitorder="little")[:, :width]


def unpack_fields(words, widths: Sequence[int]) -> list[np.ndarray]:
    """Inverse of :func:`pack_fields`: one uint64 array of codes per field."""
    widths = [_int_in(w, "field width", 0, 64) for w in widths]
    total = sum(widths)
    words = _words_list(words, total)
    n = len(words)
    out = []
    if total <= 64:
        arr = np.array(words, dtype=np.uint64).reshape(n)
        offset = 0
        for w in widths:
            mask = np.uint64((1 << w) - 1)
            out.append((arr >> np.uint64(offset)) & mask if w else np.zeros(n, np.uint64))
            offset += w
        return out
    bits = _ints_to_bits(words, total).astype(np.uint64)
    offset = 0
    for w in widths:
        field = bits[:, offset:offset + w] << np.arange(w, dtype=np.uint64)
        out.append(np.bitwise_or.reduce(field, axis=1) if w else np.zeros(n, np.uint64))
        offset += w
    return out


def pack_words(codes, bits: int) -> list[int]:
    """Pack lanes of equal width into words: lane ``k`` at bits ``[k·bits, (k+1)·bits)``.

    Parameters
    ----------
    codes : array of unsigned int, shape (..., lanes)
        Codes (as from :meth:`IntFormat.encode`); leading axes are flattened in C order.
    bits : int
        Lane width, 1..64.

    Returns
    -------
    list of int
        One word of ``lanes·bits`` bits per row of ``codes``.
    """
    bits = _int_in(bits, "bits", 1, 64)
    c = _codes_u64(codes, bits, "codes")
    if c.ndim == 0:
        raise ValueError(f"codes must have a lane axis (shape (..., lanes)), not shape {c.shape}")
    lanes = c.shape[-1]
    c = c.reshape(-1, lanes)
    if lanes == 0:
        raise ValueError("codes must have at least one lane, not 0")
    if lanes * bits <= 64:
        shifts = (np.arange(lanes, dtype=np.uint64) * np.uint64(bits))
        return np.bitwise_or.reduce(c << shifts, axis=1).tolist()
    # Wider than a uint64: expand to a bit matrix and let packbits build the bytes.
    bitm = ((c[:, :, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    return _bits_to_ints(bitm.reshape(c.shape[0], lanes * bits))


def unpack_words(words, lanes: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_words`: uint64 codes of shape ``(len(words), lanes)``."""
    lanes = _int_in(lanes, "lanes", 1)
    bits = _int_in(bits, "bits", 1, 64)
    width = lanes * bits
    words = _words_list(words, width)
    n = len(words)
    if width <= 64:
        arr = np.array(words, dtype=np.uint64).reshape(n, 1)
        shifts = np.arange(lanes, dtype=np.uint64) * np.uint64(bits)
        return (arr >> shifts) & np.uint64((1 << bits) - 1) if bits < 64 else arr.copy()
    bitm = _ints_to_bits(words, width).reshape(n, lanes, bits).astype(np.uint64)
    return np.bitwise_or.reduce(bitm << np.arange(bits, dtype=np.uint64), axis=2)


# ---- weights -------------------------------------------------------------------------------
def divisors(n: int) -> list[int]:
    """The divisors of ``n``, ascending: the fold options of a dimension of ``n``."""
    return [d for d in range(1, n + 1) if n % d == 0]


def check_fold(rows: int, cols: int, pe: int, simd: int, *, name: str = "dense") -> tuple[int, int]:
    """Validate a folding and return ``(NF, SF)``.

    Raises
    ------
    ValueError
        When ``pe`` does not divide ``rows`` or ``simd`` does not divide ``cols``; the
        message names the parameter, its value, the layer size and the allowed values.
    """
    for pname, value, n, what in (("pe", pe, rows, "rows (outputs)"), ("simd", simd, cols, "columns (inputs)")):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1 or n % value:
            divs = ", ".join(map(str, divisors(n)))
            raise ValueError(
                f"{pname} must be a divisor of the {n} {what} of layer {name!r} "
                f"({rows}×{cols}; allowed {pname}: {divs}), not {value!r}")
    return rows // int(pe), cols // int(simd)


def fold_weights(weights, fmt: IntFormat | str, pe: int, simd: int, *, name: str = "dense") -> list[list[int]]:
    """Folded weight banks of a ``[rows, cols]`` value matrix (see the module docstring)."""
    fmt = parse_format(fmt, name="fmt")
    w = np.asarray(weights)
    if w.ndim != 2:
        raise ValueError(f"weights must be a 2-D array [rows, cols], not shape {w.shape}")
    rows, cols = w.shape
    nf, sf = check_fold(rows, cols, pe, simd, name=name)
    codes = fmt.encode(w)  # the one encoding (sw/formats.py); raises for out-of-format values
    # W[nf·PE + p, sf·SIMD + k]  →  bank p, address nf·SF + sf, lane k
    folded = codes.reshape(nf, pe, sf, simd).transpose(1, 0, 2, 3).reshape(pe * nf * sf, simd)
    words = pack_words(folded, fmt.bits)
    depth = nf * sf
    return [words[p * depth:(p + 1) * depth] for p in range(pe)]


def weight_banks(layer: DenseLayer, pe: int, simd: int) -> list[list[int]]:
    """PE weight memories of ``layer``: bank ``p`` holds ``NF·SF`` words of ``SIMD·b`` bits.

    Parameters
    ----------
    layer : DenseLayer
    pe : int
        Must divide ``layer.out_features``.
    simd : int
        Must divide ``layer.in_features``.
    """
    return fold_weights(layer.weights, layer.weight_format, pe, simd, name=layer.name)


def weights_from_banks(banks, rows: int, cols: int, pe: int, simd: int, fmt: IntFormat | str) -> np.ndarray:
    """Inverse of :func:`weight_banks`: the ``[rows, cols]`` int64 weight values."""
    fmt = parse_format(fmt, name="fmt")
    nf, sf = check_fold(rows, cols, pe, simd)
    if len(banks) != pe:
        raise ValueError(f"banks must hold pe={pe} memories, not {len(banks)}")
    for p, bank in enumerate(banks):
        if len(bank) != nf * sf:
            raise ValueError(f"bank {p} must hold NF·SF = {nf * sf} words, not {len(bank)}")
    codes = unpack_words([w for bank in banks for w in bank], simd, fmt.bits)
    codes = codes.reshape(pe, nf, sf, simd).transpose(1, 0, 2, 3).reshape(rows, cols)
    return fmt.decode(codes)


def weight_image(layer: DenseLayer, pe: int, simd: int) -> list[int]:
    """The one weight memory of ``layer`` folded at ``pe``×``simd``: ``NF·SF`` words of
    ``PE·SIMD·b`` bits, the banks of :func:`weight_banks` side by side (bank ``p`` in lanes
    ``p·SIMD .. p·SIMD + SIMD − 1``), so lane ``p·SIMD + k`` of address ``nf·SF + sf`` holds
    ``W[nf·PE + p, sf·SIMD + k]``.

    Why one memory and not PE: a block RAM port is at most 36 bits wide (ECP5 DP16KD, Xilinx
    RAMB18 in simple dual port), and PE memories of ``SIMD·b`` bits each round up to whole ports
    separately — SFC W1A1 at 2,048 lanes took 65 DP16KD as 8 + 2 + 2 + 1 memories, 56 (the
    port-width floor) as 4.
    """
    fmt = layer.weight_format
    w = np.asarray(layer.weights)
    rows, cols = w.shape
    nf, sf = check_fold(rows, cols, pe, simd, name=layer.name)
    codes = fmt.encode(w)  # the one encoding (sw/formats.py)
    # W[nf·PE + p, sf·SIMD + k]  →  address nf·SF + sf, lane p·SIMD + k
    folded = codes.reshape(nf, pe, sf, simd).transpose(0, 2, 1, 3).reshape(nf * sf, pe * simd)
    return pack_words(folded, fmt.bits)


def weights_from_image(words, rows: int, cols: int, pe: int, simd: int, fmt: IntFormat | str) -> np.ndarray:
    """Inverse of :func:`weight_image`: the ``[rows, cols]`` int64 weight values."""
    fmt = parse_format(fmt, name="fmt")
    nf, sf = check_fold(rows, cols, pe, simd)
    if len(words) != nf * sf:
        raise ValueError(f"words must hold NF·SF = {nf * sf} words, not {len(words)}")
    codes = unpack_words(list(words), pe * simd, fmt.bits)
    codes = codes.reshape(nf, sf, pe, simd).transpose(0, 2, 1, 3).reshape(rows, cols)
    return fmt.decode(codes)


# ---- per-channel parameters ---------------------------------------------------------------
@dataclass(frozen=True)
class ParamLayout:
    """Field widths of a per-channel parameter word (bias, multiplier, shift, offset; LSB first).

    Parameters
    ----------
    bias_bits : int
        Signed (two's complement) bias width, 1..64.
    mult_bits : int
        Unsigned multiplier width, 0 (no field) ..16.
    shift_bits : int
        Unsigned shift width, 0 (no field) ..6.
    offset_bits : int
        Signed (two's complement) product offset width, 0 (no field) ..62; last, so a layout
        without offsets is the one it was before offsets existed.
    """

    bias_bits: int
    mult_bits: int = 0
    shift_bits: int = 0
    offset_bits: int = 0

    def __post_init__(self):
        _int_in(self.bias_bits, "bias_bits", 1, 64)
        _int_in(self.mult_bits, "mult_bits", 0, 16)
        _int_in(self.shift_bits, "shift_bits", 0, 6)
        _int_in(self.offset_bits, "offset_bits", 0, 62)

    @classmethod
    def from_spec(cls, spec: "RequantSpec | ParamLayout") -> "ParamLayout":
        if isinstance(spec, ParamLayout):
            return spec
        if not isinstance(spec, RequantSpec):
            raise TypeError(f"spec must be a RequantSpec or ParamLayout, not {spec!r}")
        return cls(int(spec.bias_bits), int(spec.mult_bits), int(spec.shift_bits), int(spec.offset_bits))

    @classmethod
    def for_layer(cls, layer: DenseLayer) -> "ParamLayout":
        """The narrowest layout carrying ``layer``'s parameters (bias only for raw logits)."""
        bias_bits = bias_bits_for(layer.bias)
        if layer.requant is None:
            return cls(bias_bits)
        return cls(bias_bits, layer.requant.multiplier_bits, layer.requant.shift_bits, layer.requant.offset_bits)

    @property
    def width(self) -> int:
        return self.bias_bits + self.mult_bits + self.shift_bits + self.offset_bits

    @property
    def widths(self) -> tuple[int, int, int, int]:
        return self.bias_bits, self.mult_bits, self.shift_bits, self.offset_bits

    def fields(self) -> list[dict]:
        """Field descriptions for the manifest (absent fields left out)."""
        out, lsb = [], 0
        for fname, bits, enc in (("bias", self.bias_bits, "signed two's complement"),
                                 ("multiplier", self.mult_bits, "unsigned"),
                                 ("shift", self.shift_bits, "unsigned (right shift)"),
                                 ("offset", self.offset_bits, "signed two's complement (product offset)")):
            if bits:
                out.append({"name": fname, "lsb": lsb, "bits": bits, "encoding": enc})
            lsb += bits
        return out


class ChannelParams(NamedTuple):
    """Per-channel parameters read back from parameter banks (``None`` for absent fields)."""

    bias: np.ndarray
    multiplier: np.ndarray | None
    shift: np.ndarray | None
    offset: np.ndarray | None = None


def param_banks(layer: DenseLayer, pe: int, spec: "RequantSpec | ParamLayout") -> list[list[int]]:
    """PE parameter memories of ``layer``: bank ``p``, address ``nf`` = channel ``nf·PE + p``.

    Parameters
    ----------
    layer : DenseLayer
        Multipliers and shifts come from ``layer.requant.per_channel(rows)``; a layer with
        ``requant=None`` (raw logits) stores its bias, a multiplier of 1 and a shift of 0
        in whatever fields the layout has.
    pe : int
        Must divide ``layer.out_features``.
    spec : RequantSpec or ParamLayout
        Field widths; a RequantSpec's ``lanes`` must equal ``pe``.
    """
    rows = layer.out_features
    nf, _ = check_fold(rows, layer.in_features, pe, 1, name=layer.name)
    if isinstance(spec, RequantSpec) and spec.lanes != pe:
        raise ValueError(f"spec.lanes must equal pe={pe} (one requantizer lane per PE), not {spec.lanes!r}")
    lay = ParamLayout.from_spec(spec)
    bias = layer.bias
    lo, hi = signed_range(lay.bias_bits)
    if bias.min() < lo or bias.max() > hi:
        need = bias_bits_for(bias)
        raise ValueError(f"bias_bits must be at least {need} for the biases of layer {layer.name!r} "
                         f"({int(bias.min())}..{int(bias.max())}), not {lay.bias_bits}")
    offset = np.zeros(rows, np.int64)
    if layer.requant is None:
        mult, shift = np.ones(rows, np.int64), np.zeros(rows, np.int64)
    else:
        mult, shift = layer.requant.per_channel(rows)
        offset = layer.requant.offsets(rows)
        if layer.requant.offset is not None and (lay.offset_bits == 0 or np.any(
                offset != from_twos_complement(to_twos_complement(offset, lay.offset_bits), lay.offset_bits))):
            raise ValueError(f"offset_bits must be at least {layer.requant.offset_bits} for the "
                             f"offsets of layer {layer.name!r}, not {lay.offset_bits}")
        if lay.mult_bits == 0 and layer.requant.multiplier is not None and np.any(mult != 1):
            raise ValueError(f"mult_bits must be at least {layer.requant.multiplier_bits} for the "
                             f"multipliers of layer {layer.name!r}, not 0")
    if lay.mult_bits and int(mult.max()) >> lay.mult_bits:
        raise ValueError(f"mult_bits must be at least {int(mult.max()).bit_length()} for the "
                         f"multipliers of layer {layer.name!r} (max {int(mult.max())}), not {lay.mult_bits}")
    if int(shift.max()) >> lay.shift_bits:
        raise ValueError(f"shift_bits must be at least {int(shift.max()).bit_length()} for the "
                         f"shifts of layer {layer.name!r} (max {int(shift.max())}), not {lay.shift_bits}")
    cols = [to_twos_complement(bias, lay.bias_bits),
            mult.astype(np.uint64) if lay.mult_bits else np.zeros(rows, np.uint64),
            shift.astype(np.uint64) if lay.shift_bits else np.zeros(rows, np.uint64),
            to_twos_complement(offset, lay.offset_bits) if lay.offset_bits else np.zeros(rows, np.uint64)]
    # channel nf·PE + p → bank p, address nf
    order = np.arange(rows).reshape(nf, pe).T.ravel()
    words = pack_fields([c[order] for c in cols], lay.widths)
    return [words[p * nf:(p + 1) * nf] for p in range(pe)]


def params_from_banks(banks, rows: int, pe: int, spec: "RequantSpec | ParamLayout") -> ChannelParams:
    """Inverse of :func:`param_banks`: per-channel bias, multiplier and shift (int64)."""
    lay = ParamLayout.from_spec(spec)
    nf, _ = check_fold(rows, 1, pe, 1)
    if len(banks) != pe:
        raise ValueError(f"banks must hold pe={pe} memories, not {len(banks)}")
    for p, bank in enumerate(banks):
        if len(bank) != nf:
            raise ValueError(f"bank {p} must hold NF = {nf} words, not {len(bank)}")
    b, m, s, c = unpack_fields([w for bank in banks for w in bank], lay.widths)
    # bank-major (p, nf) back to channel order nf·PE + p
    unfold = lambda a: a.reshape(pe, nf).T.ravel()  # noqa: E731
    bias = from_twos_complement(unfold(b), lay.bias_bits)
    return ChannelParams(bias,
                         unfold(m).astype(np.int64) if lay.mult_bits else None,
                         unfold(s).astype(np.int64) if lay.shift_bits else None,
                         from_twos_complement(unfold(c), lay.offset_bits) if lay.offset_bits else None)


# ---- text for the manifest ---------------------------------------------------------------
def describe_encoding(fmt: IntFormat | str) -> str:
    """How a lane's code maps to its value (the rule of :meth:`IntFormat.encode`)."""
    fmt = parse_format(fmt, name="fmt")
    b = fmt.bits
    if fmt.kind is Kind.BIPOLAR:
        return "bipolar: bit 1 = +1, bit 0 = -1"
    if fmt.kind is Kind.TERNARY:
        return "ternary: two's complement 2-bit, 01=+1, 11=-1, 00=0 (10 unused)"
    if fmt.kind is Kind.SIGNED:
        return f"signed: two's complement {b}-bit, {fmt.min}..{fmt.max}"
    if fmt.kind is Kind.UNSIGNED:
        return f"unsigned: plain binary {b}-bit, 0..{fmt.max}"
    return (f"pow2: bit {b - 1} = sign (1 = negative), bits [{b - 2}:0] = exponent e; "
            f"e=0 is 0, otherwise the magnitude is 2**(e-1)")


def layer_specs(layer: DenseLayer, fold) -> tuple[MacArraySpec, RequantSpec | None, ParamLayout]:
    """The block specs of a dense layer folded by ``fold``: :attr:`lowbit.sw.ops.MatrixVectorOp.specs`."""
    from .ops import MatrixVectorOp  # the op owns them (it imports this module)

    return MatrixVectorOp(layer).with_fold(fold).specs
