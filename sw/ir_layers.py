"""The IR layer kinds: :class:`IRLayer`, the registry, and the dense, conv2d and maxpool2d kinds.

Part of :mod:`lowbit.sw.ir` (split out to keep each module under the project's size limit; import
these names from :mod:`lowbit.sw.ir`, which re-exports them). Each kind is a frozen dataclass
registered under its ``op`` name (:func:`register_layer`); it owns its header fields, its arrays
in the file, how it is read back (``from_header``) and its shapes. The header field checks and
:class:`~lowbit.sw.ir_fields.IRError` come from :mod:`lowbit.sw.ir_fields`; the
:class:`~lowbit.sw.ir.Network` that chains the layers stays in :mod:`lowbit.sw.ir`.
"""

from __future__ import annotations

import abc
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar, Mapping

import numpy as np

from .formats import IntFormat, Kind, parse_format, signed_bits_for_range
from .requant import RequantParams
from .ir_fields import (MAX_ACC_BITS, IRError, _check_keys, _is_int, accumulator_range, array_field, format_field,
                        header_field, int_field, ints_field, requant_field)

__all__ = ["IRLayer", "register_layer", "layer_kind", "LAYER_KINDS", "DenseLayer", "pad_value", "Conv2dLayer",
           "MaxPool2dLayer"]


# ---- layer kinds ------------------------------------------------------------------------
class IRLayer(abc.ABC):
    """What every IR layer kind provides (subclasses are frozen dataclasses).

    Class attributes: ``op`` (the header's name of the kind) and ``ARRAYS`` (the names of its
    arrays; layer ``i``'s array ``a`` is stored as ``layer{i}_{a}``). Instances have ``name``,
    ``in_format``, ``requant`` (``None``: the layer emits raw accumulators, or, for a layer
    without arithmetic such as a max-pool, whatever :attr:`out_format` says) and ``in_shape``,
    the shape of one input sample (NHWC without the batch axis). ``in_shape`` is a property
    or a dataclass field (a convolution is given its input shape), so it is not an abstract
    property here; :func:`register_layer` checks that a kind has it.
    """

    op: ClassVar[str]
    ARRAYS: ClassVar[tuple[str, ...]] = ()
    in_shape: tuple[int, ...]

    @property
    @abc.abstractmethod
    def out_shape(self) -> tuple[int, ...]:
        """Shape of one output sample."""

    @property
    def out_format(self) -> IntFormat | None:
        """Format of the outputs; ``None`` for raw accumulators (the last layer's logits)."""
        return None if self.requant is None else self.requant.out_format

    @property
    def pads_with(self) -> int | None:
        """The value this layer pads its input with (:func:`pad_value`), ``None`` if it does not pad."""
        return None

    @abc.abstractmethod
    def header_fields(self) -> dict:
        """This layer's header entry, without ``"op"`` (JSON-ready)."""

    @abc.abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """This layer's arrays by name (the keys of ``ARRAYS``)."""

    @classmethod
    @abc.abstractmethod
    def from_header(cls, fields: Mapping, arrays: Mapping[str, np.ndarray], *, version: int) -> "IRLayer":
        """Rebuild a layer from its header entry (without ``"op"``) and arrays, or raise
        :class:`IRError`/:class:`ValueError` naming the field, its value and what is allowed."""

    @abc.abstractmethod
    def macs(self) -> int:
        """Multiply-accumulates per sample."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for :meth:`Network.describe` (after the index)."""


def _describe_requant(rq: RequantParams | None) -> str:
    return "raw accumulators" if rq is None else (
        f"→ {rq.out_format}{' relu' if rq.relu else ''} "
        f"({rq.rounding.value}, shift {sorted(set(rq.shift.ravel().tolist()))[:4]}"
        f"{', multiplier' if rq.multiplier is not None else ''}{', offset' if rq.offset is not None else ''})")


#: op name → layer class; filled by :func:`register_layer`.
LAYER_KINDS: dict[str, type[IRLayer]] = {}


def register_layer(cls: type[IRLayer]) -> type[IRLayer]:
    """Class decorator: make ``cls`` readable from files under ``cls.op``."""
    op = getattr(cls, "op", None)
    if not isinstance(op, str) or not op:
        raise TypeError(f"{cls.__name__}.op must be a non-empty string, not {op!r}")
    if op in LAYER_KINDS and LAYER_KINDS[op] is not cls:
        raise ValueError(f"op {op!r} is already registered to {LAYER_KINDS[op].__name__}")
    if not hasattr(cls, "in_shape") and "in_shape" not in getattr(cls, "__dataclass_fields__", {}):
        raise TypeError(f"{cls.__name__} must have in_shape (a property or a dataclass field)")
    LAYER_KINDS[op] = cls
    return cls


def layer_kind(op) -> type[IRLayer]:
    """The layer class registered under ``op``."""
    if not isinstance(op, str) or op not in LAYER_KINDS:
        raise IRError(f"op must be one of {', '.join(sorted(LAYER_KINDS))}, not {op!r}")
    return LAYER_KINDS[op]


@register_layer
@dataclass(frozen=True, eq=False)
class DenseLayer(IRLayer):
    """One fully connected layer in integers.

    Parameters
    ----------
    weights : array of int, shape (out_features, in_features)
    weight_format, in_format : IntFormat or str
    bias : array of int, shape (out_features,), optional (zeros)
    requant : RequantParams or None
        ``None`` only for the last layer: it emits raw accumulators (logits).
    name : str
    """

    op: ClassVar[str] = "dense"
    ARRAYS: ClassVar[tuple[str, ...]] = ("weights", "bias")

    weights: np.ndarray
    weight_format: IntFormat
    in_format: IntFormat
    bias: np.ndarray | None = None
    requant: RequantParams | None = None
    name: str = "dense"

    def __post_init__(self):
        wf = parse_format(self.weight_format, name=f"{self.name}.weight_format")
        af = parse_format(self.in_format, name=f"{self.name}.in_format")
        if af.kind is Kind.POW2:
            raise IRError(f"{self.name}.in_format must not be pow2 (pow2 is a weight format)")
        object.__setattr__(self, "weight_format", wf)
        object.__setattr__(self, "in_format", af)
        w = np.asarray(self.weights)
        if w.ndim != 2 or 0 in w.shape:
            raise IRError(f"{self.name}.weights must be a non-empty 2-D array, not shape {w.shape}")
        w = wf.check(w, name=f"{self.name}.weights")
        object.__setattr__(self, "weights", w)
        b = np.zeros(w.shape[0], np.int64) if self.bias is None else np.asarray(self.bias)
        if b.shape != (w.shape[0],):
            raise IRError(f"{self.name}.bias must have shape ({w.shape[0]},), not {b.shape}")
        if b.dtype.kind not in "iu":
            raise IRError(f"{self.name}.bias must hold integers, not {b.dtype}")
        object.__setattr__(self, "bias", b.astype(np.int64))
        if self.requant is not None:
            if not isinstance(self.requant, RequantParams):
                raise IRError(f"{self.name}.requant must be RequantParams or None, not {self.requant!r}")
            self.requant.per_channel(w.shape[0])  # checks per-channel lengths
        try:
            lo, hi = accumulator_range(w, b, af)
        except IRError as e:
            raise IRError(f"{self.name}: {e}") from None
        object.__setattr__(self, "_acc_range", (lo, hi))  # computed once: folding asks for it often
        rq = self.requant
        if rq is not None and (rq.multiplier is not None or rq.offset is not None):
            m = 1 if rq.multiplier is None else int(np.max(rq.multiplier))
            c_lo, c_hi = (0, 0) if rq.offset is None else (int(np.min(rq.offset)), int(np.max(rq.offset)))
            bits = signed_bits_for_range(lo * m + min(c_lo, 0), hi * m + max(c_hi, 0))
            if bits > MAX_ACC_BITS + 1:
                what, offsets = (("(acc + bias)·multiplier", "") if rq.offset is None else
                                 ("(acc + bias)·multiplier + offset", f", offsets {c_lo}..{c_hi}"))
                raise IRError(f"{self.name}: {what} must fit {MAX_ACC_BITS + 1}-bit signed integers "
                              f"(the golden model's int64), not {bits} bits "
                              f"(accumulators {lo}..{hi}, multiplier up to {m}{offsets})")

    @property
    def out_features(self) -> int:
        return self.weights.shape[0]

    @property
    def in_features(self) -> int:
        return self.weights.shape[1]

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.in_features,)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.out_features,)

    @property
    def acc_range(self) -> tuple[int, int]:
        return self._acc_range

    @property
    def acc_bits(self) -> int:
        """Accumulator width needed by these weights over the whole input range."""
        return signed_bits_for_range(*self.acc_range)

    def macs(self) -> int:
        return self.out_features * self.in_features

    def describe(self) -> str:
        return (f"{self.name:10s} {self.in_features:5d}→{self.out_features:<5d} W {str(self.weight_format):7s} "
                f"A {str(self.in_format):7s} acc {self.acc_bits:2d} b  {_describe_requant(self.requant)}")

    # ---- file I/O -------------------------------------------------------------------
    def header_fields(self) -> dict:
        return {
            "name": self.name,
            "in_features": self.in_features,
            "out_features": self.out_features,
            "weight_format": str(self.weight_format),
            "in_format": str(self.in_format),
            "acc_bits": self.acc_bits,
            "requant": None if self.requant is None else self.requant.to_json(),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "bias": self.bias}

    FIELDS: ClassVar[tuple[str, ...]] = ("name", "in_features", "out_features", "weight_format", "in_format",
                                          "acc_bits", "requant")

    @classmethod
    def from_header(cls, fields: Mapping, arrays: Mapping[str, np.ndarray], *, version: int) -> "DenseLayer":
        _check_keys(fields, cls.FIELDS, "the layer")
        name = header_field(fields, "name", lambda v: isinstance(v, str) and v != "", "a non-empty string")
        n_in, n_out = int_field(fields, "in_features"), int_field(fields, "out_features")
        wf = format_field(fields, "weight_format", weights=True)
        af = format_field(fields, "in_format")
        # version 1's documented header had no acc_bits (lowbit wrote it anyway)
        acc_bits = int_field(fields, "acc_bits", **({} if version >= 2 else {"default": None}))
        rq = requant_field(fields, n_out, strict=version >= 2)
        w = array_field(arrays, "weights", (n_out, n_in), "(out_features, in_features)")
        b = array_field(arrays, "bias", (n_out,), "(out_features,)")
        return _check_acc_bits(cls(w, wf, af, b, rq, name), acc_bits)


def _check_acc_bits(layer, acc_bits: int | None):
    """``layer`` if a stored ``acc_bits`` covers its bound (wider is accepted, never used)."""
    if acc_bits is not None and acc_bits < layer.acc_bits:
        lo, hi = layer.acc_range
        raise IRError(f"acc_bits must be at least {layer.acc_bits}, the worst-case bound of these weights "
                      f"over the {layer.in_format} input range (accumulators {lo}..{hi}), not {acc_bits}")
    return layer


def _int_tuple(value, n: int, what: str, meaning: str, lo: int) -> tuple[int, ...]:
    try:
        t = tuple(value)
    except TypeError:
        t = None
    if t is None or len(t) != n or not all(_is_int(v) and v >= lo for v in t):
        raise IRError(f"{what} must be {n} integers ≥ {lo} {meaning}, not {value!r}")
    return tuple(int(v) for v in t)


def _input_format(fmt, what: str) -> IntFormat:
    f = parse_format(fmt, name=what)
    if f.kind is Kind.POW2:
        raise IRError(f"{what} must not be pow2 (pow2 is a weight format)")
    return f


def pad_value(fmt: IntFormat) -> int:
    """The value that stands for the real number 0 in ``fmt``: what zero padding pads with.

    Signed, unsigned and ternary values are symmetric (real = scale·value): 0. A bipolar
    value stands for ``{0, c}`` (real = ``c/2·(value + 1)``; the quantizers fold the offset
    ``c/2·ΣW`` into the bias): −1. Padding with −1 is exact because the bias carries the offset
    of every kernel position, the padded ones included.
    """
    return -1 if fmt.kind is Kind.BIPOLAR else 0


@register_layer
@dataclass(frozen=True, eq=False)
class Conv2dLayer(IRLayer):
    """A 2-D convolution in integers: NHWC, zero padding, no dilation, no groups.

    Output pixel ``(oy, ox)``, channel ``o``::

        a[oy, ox, o] = Σ_{ky, kx, c} W[o, ky, kx, c] · xp[oy·sh + ky, ox·sw + kx, c] + bias[o]

    where ``xp`` is the input padded by ``ph`` rows above and below and ``pw`` columns left and
    right with :func:`pad_value` of ``in_format`` (the value standing for real 0), and
    ``OH = (H + 2·ph − KH) // sh + 1``, ``OW`` likewise (rows and columns past the last whole
    window are not read, as in PyTorch). That is the dense layer :meth:`as_dense` (weights
    reshaped to ``[OC, KH·KW·IC]``, columns in ``(ky, kx, c)`` order) applied to each of the
    ``OH·OW`` im2col vectors (:func:`lowbit.sw.golden.im2col`); its accumulator range is that
    dense layer's, since padding values lie inside ``in_format``'s range.

    Parameters
    ----------
    weights : array of int, shape (OC, KH, KW, IC)
    weight_format, in_format : IntFormat or str
    bias : array of int, shape (OC,), optional (zeros)
    requant : RequantParams or None
        ``None`` only for a last layer emitting raw accumulators.
    name : str
    in_shape : (H, W, C), keyword only; ``C`` must equal ``IC``
    stride : (sh, sw), default (1, 1)
    padding : (ph, pw), default (0, 0); each below the kernel (no window lies wholly in padding)
    """

    op: ClassVar[str] = "conv2d"
    ARRAYS: ClassVar[tuple[str, ...]] = ("weights", "bias")

    weights: np.ndarray
    weight_format: IntFormat
    in_format: IntFormat
    bias: np.ndarray | None = None
    requant: RequantParams | None = None
    name: str = "conv"
    _: KW_ONLY
    in_shape: tuple[int, int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self):
        n = self.name
        shape = _int_tuple(self.in_shape, 3, f"{n}.in_shape", "(H, W, C)", 1)
        stride = _int_tuple(self.stride, 2, f"{n}.stride", "(sh, sw)", 1)
        padding = _int_tuple(self.padding, 2, f"{n}.padding", "(ph, pw)", 0)
        w = np.asarray(self.weights)
        if w.ndim != 4 or 0 in w.shape:
            raise IRError(f"{n}.weights must be a non-empty 4-D array [OC, KH, KW, IC], not shape {w.shape}")
        oc, kh, kw, ic = w.shape
        if ic != shape[2]:
            raise IRError(f"{n}.weights must have IC = {shape[2]} (the channels of in_shape {shape}) in "
                          f"[OC, KH, KW, IC], not shape {w.shape}")
        if padding[0] >= kh or padding[1] >= kw:
            raise IRError(f"{n}.padding must be below the {kh}×{kw} kernel on each axis (a window must not lie "
                          f"wholly in the padding), not {padding}")
        ph, pw = shape[0] + 2 * padding[0], shape[1] + 2 * padding[1]
        if kh > ph or kw > pw:
            raise IRError(f"{n}: the {kh}×{kw} kernel must fit the {ph}×{pw} padded input (in_shape {shape}, "
                          f"padding {padding})")
        dense = DenseLayer(w.reshape(oc, -1), self.weight_format, self.in_format, self.bias, self.requant, n)
        for key, value in (("weights", dense.weights.reshape(w.shape)), ("weight_format", dense.weight_format),
                           ("in_format", dense.in_format), ("bias", dense.bias), ("in_shape", shape),
                           ("stride", stride), ("padding", padding), ("_dense", dense)):
            object.__setattr__(self, key, value)

    @property
    def in_channels(self) -> int:
        return self.in_shape[2]

    @property
    def out_channels(self) -> int:
        return self.weights.shape[0]

    @property
    def kernel(self) -> tuple[int, int]:
        return tuple(self.weights.shape[1:3])

    @property
    def out_shape(self) -> tuple[int, int, int]:
        (h, w, _), (kh, kw), (sh, sw), (ph, pw) = self.in_shape, self.kernel, self.stride, self.padding
        return ((h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1, self.out_channels)

    @property
    def pad_value(self) -> int:
        return pad_value(self.in_format)

    @property
    def pads_with(self) -> int | None:
        return self.pad_value if any(self.padding) else None

    def as_dense(self) -> DenseLayer:
        """The matrix ``[OC, KH·KW·IC]`` (columns in ``(ky, kx, c)`` order) with this layer's formats,
        bias, requantization and name: what multiplies each im2col vector."""
        return self._dense

    @property
    def acc_range(self) -> tuple[int, int]:
        return self._dense.acc_range

    @property
    def acc_bits(self) -> int:
        return self._dense.acc_bits

    def macs(self) -> int:
        oh, ow, _ = self.out_shape
        return oh * ow * self._dense.macs()

    def describe(self) -> str:
        (h, w, c), (oh, ow, oc), (kh, kw) = self.in_shape, self.out_shape, self.kernel
        return (f"{self.name:10s} {h}x{w}x{c}→{oh}x{ow}x{oc} conv {kh}x{kw} stride {self.stride[0]}x{self.stride[1]} "
                f"pad {self.padding[0]}x{self.padding[1]} W {self.weight_format} A {self.in_format} "
                f"acc {self.acc_bits} b  {_describe_requant(self.requant)}")

    # ---- file I/O -------------------------------------------------------------------
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "in_shape", "out_channels", "kernel", "stride", "padding",
                                          "weight_format", "in_format", "acc_bits", "requant")

    def header_fields(self) -> dict:
        return {
            "name": self.name,
            "in_shape": list(self.in_shape),
            "out_channels": self.out_channels,
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "weight_format": str(self.weight_format),
            "in_format": str(self.in_format),
            "acc_bits": self.acc_bits,
            "requant": None if self.requant is None else self.requant.to_json(),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "bias": self.bias}

    @classmethod
    def from_header(cls, fields: Mapping, arrays: Mapping[str, np.ndarray], *, version: int) -> "Conv2dLayer":
        _check_keys(fields, cls.FIELDS, "the layer")
        name = header_field(fields, "name", lambda v: isinstance(v, str) and v != "", "a non-empty string")
        in_shape = ints_field(fields, "in_shape", 3, "(H, W, C)")
        oc = int_field(fields, "out_channels")
        kernel = ints_field(fields, "kernel", 2, "(KH, KW)")
        stride = ints_field(fields, "stride", 2, "(sh, sw)")
        padding = ints_field(fields, "padding", 2, "(ph, pw)", lo=0)
        wf = format_field(fields, "weight_format", weights=True)
        af = format_field(fields, "in_format")
        acc_bits = int_field(fields, "acc_bits")
        rq = requant_field(fields, oc, strict=True)
        w = array_field(arrays, "weights", (oc, *kernel, in_shape[2]), "(out_channels, *kernel, in_shape[2])")
        b = array_field(arrays, "bias", (oc,), "(out_channels,)")
        layer = cls(w, wf, af, b, rq, name, in_shape=in_shape, stride=stride, padding=padding)
        return _check_acc_bits(layer, acc_bits)


@register_layer
@dataclass(frozen=True, eq=False)
class MaxPool2dLayer(IRLayer):
    """Max-pooling over ``KH×KW`` windows of each channel (NHWC), on values.

    ``y[oy, ox, c] = max over ky < KH, kx < KW of x[oy·sh + ky, ox·sw + kx, c]``, with
    ``OH = (H − KH) / sh + 1`` and ``OW = (W − KW) / sw + 1``. The windows must tile the input
    exactly: ``(H − KH)`` a multiple of ``sh``, ``(W − KW)`` of ``sw``, and ``stride ≤ kernel`` so
    every input is read (with the default stride = kernel: KH divides H and KW divides W). No
    padding. The output has the input's format (``fmt``): no arithmetic, no requantization.
    Pooling values after requantization equals requantizing the pooled accumulators, since
    requantization is monotone non-decreasing per channel (ties and clipping included).

    Parameters
    ----------
    fmt : IntFormat or str
        Format of the inputs and outputs (not pow2).
    name : str
    in_shape : (H, W, C), keyword only
    kernel : (KH, KW), default (2, 2)
    stride : (sh, sw) or None (= kernel)
    """

    op: ClassVar[str] = "maxpool2d"
    ARRAYS: ClassVar[tuple[str, ...]] = ()
    requant: ClassVar[None] = None  # no requantization: the format passes through (out_format)

    fmt: IntFormat
    name: str = "pool"
    _: KW_ONLY
    in_shape: tuple[int, int, int]
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] | None = None

    def __post_init__(self):
        n = self.name
        fmt = _input_format(self.fmt, f"{n}.fmt")
        shape = _int_tuple(self.in_shape, 3, f"{n}.in_shape", "(H, W, C)", 1)
        kernel = _int_tuple(self.kernel, 2, f"{n}.kernel", "(KH, KW)", 1)
        stride = kernel if self.stride is None else _int_tuple(self.stride, 2, f"{n}.stride", "(sh, sw)", 1)
        (h, w, _), (kh, kw), (sh, sw) = shape, kernel, stride
        if kh > h or kw > w:
            raise IRError(f"{n}.kernel must fit the {h}×{w} input, not {kernel}")
        if sh > kh or sw > kw:
            raise IRError(f"{n}.stride must be at most the kernel {kernel} on each axis (every input is read), "
                          f"not {stride}")
        if (h - kh) % sh or (w - kw) % sw:
            raise IRError(f"{n}: a {kh}×{kw} pool with stride {stride} must tile the {h}×{w} input exactly: "
                          f"H − KH = {h - kh} must be a multiple of sh and W − KW = {w - kw} of sw (with stride = "
                          f"kernel: KH divides H and KW divides W)")
        for key, value in (("fmt", fmt), ("in_shape", shape), ("kernel", kernel), ("stride", stride)):
            object.__setattr__(self, key, value)

    @property
    def in_format(self) -> IntFormat:
        return self.fmt

    @property
    def out_format(self) -> IntFormat:
        return self.fmt

    @property
    def out_shape(self) -> tuple[int, int, int]:
        (h, w, c), (kh, kw), (sh, sw) = self.in_shape, self.kernel, self.stride
        return ((h - kh) // sh + 1, (w - kw) // sw + 1, c)

    def macs(self) -> int:
        return 0

    def describe(self) -> str:
        (h, w, c), (oh, ow, _), (kh, kw), (sh, sw) = self.in_shape, self.out_shape, self.kernel, self.stride
        return f"{self.name:10s} {h}x{w}x{c}→{oh}x{ow}x{c} maxpool {kh}x{kw} stride {sh}x{sw} {self.fmt}"

    # ---- file I/O -------------------------------------------------------------------
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "in_shape", "kernel", "stride", "format")

    def header_fields(self) -> dict:
        return {"name": self.name, "in_shape": list(self.in_shape), "kernel": list(self.kernel),
                "stride": list(self.stride), "format": str(self.fmt)}

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    @classmethod
    def from_header(cls, fields: Mapping, arrays: Mapping[str, np.ndarray], *, version: int) -> "MaxPool2dLayer":
        _check_keys(fields, cls.FIELDS, "the layer")
        name = header_field(fields, "name", lambda v: isinstance(v, str) and v != "", "a non-empty string")
        in_shape = ints_field(fields, "in_shape", 3, "(H, W, C)")
        kernel = ints_field(fields, "kernel", 2, "(KH, KW)")
        stride = ints_field(fields, "stride", 2, "(sh, sw)")
        fmt = format_field(fields, "format")
        return cls(fmt, name, in_shape=in_shape, kernel=kernel, stride=stride)
