"""The integer network IR: the contract between quantizers and everything downstream.

A :class:`Network` is a chain of IR layers (:class:`DenseLayer`, :class:`Conv2dLayer`,
:class:`MaxPool2dLayer`) holding integer weights, integer biases, their formats and the
requantization to the next layer's input format. Quantizers only produce it; the golden
model, the packer and the hardware generator only consume it.

Shapes are NHWC without the batch axis: a convolution or max-pool takes ``(H, W, C)``; a
dense layer after one takes the tensor flattened in ``(h, w, c)`` order (channels
innermost), so feature ``(h·W + w)·C + c`` is pixel ``(h, w)``, channel ``c``.

The arrays hold **values**, not codes: a bipolar weight is -1 or +1, a ternary one -1, 0
or +1, a pow2 one 0 or ±2^k, exactly the numbers the arithmetic multiplies. Only the
memory images (:mod:`lowbit.sw.pack`) hold codes (:meth:`IntFormat.encode`).

Layer kinds
-----------
Each kind is a class registered under its ``op`` name (:func:`register_layer`); it owns
its header fields, its arrays in the file and how it is read back (``from_header``), and
states its ``in_shape``/``out_shape``. The network only chains layers by shape and format.

File format (``.npz``, version 2; the full reference is ``docs/spec.md``)
--------------------------------------------------------------------------
``header``            a JSON document (UTF-8 bytes in a uint8 array)::

    {"format": "lowbit-ir", "version": 2, "name": ..., "input": {"kind", "amount", "shift_amount"},
     "metadata": {...},
     "layers": [{"op": "dense", "name", "in_features", "out_features", "weight_format",
                 "in_format", "acc_bits",
                 "requant": null | {"out_format", "rounding", "relu", "shift", "multiplier"}}]}

``layer{i}_{array}``  the arrays of layer ``i`` (dense: ``weights`` int64 ``[out_features,
                      in_features]`` and ``bias`` int64 ``[out_features]``; conv2d: ``weights``
                      ``[OC, KH, KW, IC]`` and ``bias`` ``[OC]``; maxpool2d: none)

Version 1 is the same without ``"op"`` (every layer dense) and with ``acc_bits`` optional;
it still loads. ``acc_bits`` is checked, never trusted: a value below the worst-case bound
of the weights is refused; a wider one is accepted, and lowbit sizes its accumulators from
the bound (:attr:`DenseLayer.acc_bits`) and writes the bound back on save.

``input`` says how raw dataset pixels (uint8) become the first layer's integers
(see :func:`InputTransform.apply`). Per-channel shift/multiplier lists live in the header.
"""

from __future__ import annotations

import abc
import json
import os
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import ClassVar, Mapping

import numpy as np

from .formats import IntFormat, Kind, describe_formats, parse_format, signed_bits_for_range
from .util import atomic_path
from .requant import RequantParams

__all__ = ["IRLayer", "DenseLayer", "Conv2dLayer", "MaxPool2dLayer", "Network", "InputTransform", "IRError",
           "accumulator_range", "pad_value", "register_layer", "layer_kind", "LAYER_KINDS", "IR_FORMAT", "IR_VERSION",
           "READ_VERSIONS", "header_field", "int_field", "ints_field", "format_field", "array_field",
           "requant_field"]

IR_FORMAT = "lowbit-ir"
IR_VERSION = 2
READ_VERSIONS = (1, 2)


class IRError(ValueError):
    """An IR that does not validate (bad file, inconsistent layers)."""


#: Widest accumulator (and requantizer product ``(acc + bias)·m``) the golden model computes
#: exactly: int64 with a bit to spare for the rounding constant.
MAX_ACC_BITS = 62


def accumulator_range(weights, bias, in_format: IntFormat) -> tuple[int, int]:
    """Exact worst-case range of every partial and final accumulator of a ``[rows, cols]`` matrix.

    For each row the extremes of ``Σ w·x`` are reached with each ``x`` at an end of
    ``in_format``'s range; the bias is added once. Because every format's range holds 0
    or both signs, each term's max is ≥ 0 and min ≤ 0, so the partial sums of a folded
    computation stay within the bounds of the full sum too.
    """
    w = np.asarray(weights, dtype=np.int64)
    b = np.asarray(bias, dtype=np.int64)
    lo_x, hi_x = in_format.min, in_format.max
    # The sums below are int64: refuse (never wrap) a layer whose bound does not fit. The float
    # estimate is within a few ulps of the exact magnitude, far from the 2^62 margin's edge.
    mag = (np.abs(w).astype(np.float64) * max(abs(lo_x), abs(hi_x))).sum(axis=1) + np.abs(b).astype(np.float64)
    if mag.size and mag.max() >= 2.0 ** MAX_ACC_BITS:
        raise IRError(f"the accumulator range of these weights, inputs and biases must fit {MAX_ACC_BITS + 1}-bit "
                      f"signed integers (the golden model's int64), not about ±2^{np.log2(mag.max()):.1f}")
    hi = np.maximum(w * lo_x, w * hi_x).sum(axis=1)
    lo = np.minimum(w * lo_x, w * hi_x).sum(axis=1)
    return int(min(lo.min(), (lo + b).min())), int(max(hi.max(), (hi + b).max()))


# ---- header field checks (shared by every layer kind) --------------------------------
_MISSING = object()


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_keys(fields: Mapping, allowed: tuple, what: str) -> None:
    unknown = [k for k in fields if k not in allowed]
    if unknown:
        raise IRError(f"{what} has an unknown field {unknown[0]!r}; allowed fields: {', '.join(allowed)}")


def header_field(fields: Mapping, key: str, ok, allowed: str, *, default=_MISSING):
    """``fields[key]`` if ``ok`` accepts it, else an :class:`IRError` saying what is allowed."""
    if key not in fields:
        if default is not _MISSING:
            return default
        raise IRError(f"{key} must be {allowed}, not missing")
    value = fields[key]
    if not ok(value):
        raise IRError(f"{key} must be {allowed}, not {value!r}")
    return value


def int_field(fields: Mapping, key: str, lo: int = 1, **kw) -> int:
    return header_field(fields, key, lambda v: _is_int(v) and v >= lo, f"an integer ≥ {lo}", **kw)


def ints_field(fields: Mapping, key: str, n: int, meaning: str, lo: int = 1) -> tuple[int, ...]:
    """A list of ``n`` integers ≥ ``lo`` (``meaning`` names them, e.g. ``"(sh, sw)"``), as a tuple."""
    value = header_field(fields, key, lambda v: isinstance(v, list) and len(v) == n and all(
        _is_int(x) and x >= lo for x in v), f"a list of {n} integers ≥ {lo} {meaning}")
    return tuple(int(x) for x in value)


def format_field(fields: Mapping, key: str, *, weights: bool = False) -> IntFormat:
    """A format string; ``weights=False`` refuses pow2 (a weight-only format)."""
    allowed = f"a format string: {describe_formats(weights=weights)}"
    text = header_field(fields, key, lambda v: isinstance(v, str), allowed)
    try:
        fmt = parse_format(text, name=key)
    except ValueError:
        raise IRError(f"{key} must be {allowed}, not {text!r}") from None
    if fmt.kind is Kind.POW2 and not weights:
        raise IRError(f"{key} must be {allowed} (pow2 is a weight format), not {text!r}")
    return fmt


def array_field(arrays: Mapping[str, np.ndarray], key: str, shape: tuple, names: str) -> np.ndarray:
    """An integer array of ``shape`` (``names`` says which header fields give it)."""
    a = arrays[key]
    if a.dtype.kind not in "iu":
        raise IRError(f"array {key} must hold integers (lowbit writes int64), not {a.dtype}")
    if a.shape != shape:
        raise IRError(f"array {key} must have shape {names} = {shape}, not {a.shape}")
    if a.dtype == np.uint64 and a.size and int(a.max()) > np.iinfo(np.int64).max:
        # every value is used as int64: refuse what would wrap (2^64 - 6 would read as -6)
        raise IRError(f"array {key} must hold values that fit int64, not {int(a.max())}")
    return a


def requant_field(fields: Mapping, channels: int, *, strict: bool) -> RequantParams | None:
    """The ``requant`` entry: null (raw accumulators) or the parameters of :class:`RequantParams`.

    ``shift`` and ``multiplier`` are one integer (per layer) or ``channels`` integers (per
    output). ``strict`` (version 2) requires every key; version 1 took defaults.
    """
    keys = ("out_format", "rounding", "relu", "shift", "multiplier")
    if "requant" not in fields:
        raise IRError("requant must be null or an object {" + ", ".join(keys) + "}, not missing")
    d = fields["requant"]
    if d is None:
        return None
    if not isinstance(d, dict):
        raise IRError("requant must be null or an object {" + ", ".join(keys) + f"}}, not {d!r}")
    _check_keys(d, keys + ("offset",), "requant")
    per = f"an integer or a list of {channels} integers (one per output)"
    # offset came later (absent = none, in every version)
    optional = {"offset": None} if strict else {"rounding": "floor", "relu": False, "shift": 0, "multiplier": None,
                                                "offset": None}

    def get(key, ok, allowed):
        return header_field(d, key, ok, allowed, **({"default": optional[key]} if key in optional else {}))

    def per_channel(v):
        return _is_int(v) or (isinstance(v, list) and len(v) == channels and all(map(_is_int, v)))

    try:
        out_format = get("out_format", lambda v: isinstance(v, str), "a format string (sN, uN, bipolar, ternary)")
        rounding = get("rounding", lambda v: isinstance(v, str), "one of floor, half_up, half_even")
        relu = get("relu", lambda v: isinstance(v, bool), "true or false")
        shift = get("shift", per_channel, per)
        mult = get("multiplier", lambda v: v is None or per_channel(v), f"null or {per}")
        offset = get("offset", lambda v: v is None or per_channel(v), f"null or {per}")
        return RequantParams(out_format, np.asarray(shift, np.int64),
                             None if mult is None else np.asarray(mult, np.int64), rounding, relu,
                             None if offset is None else np.asarray(offset, np.int64))
    except (ValueError, TypeError, OverflowError) as e:  # name the field inside requant
        raise IRError(f"requant.{e}") from None


@dataclass(frozen=True)
class InputTransform:
    """How uint8 pixels become first-layer integers (done by the host, before the stream).

    ``shift``      ``x = pixel >> amount`` (unsigned input format)
    ``threshold``  ``x = +1 if pixel >= amount else -1`` (bipolar input format)
    ``offset``     ``x = (pixel >> shift_amount) - amount`` (signed input format)
    """

    kind: str = "shift"
    amount: int = 0
    shift_amount: int = 0

    KINDS = ("shift", "threshold", "offset")
    #: allowed ``amount`` per kind (pixels are 0..255; a threshold of 256 makes every input -1)
    AMOUNTS = {"shift": (0, 8), "threshold": (0, 256), "offset": (-(1 << 16), 1 << 16)}
    SHIFT_AMOUNTS = (0, 8)  # offset only; the other kinds have 0

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise IRError(f"input transform kind must be one of {', '.join(self.KINDS)}, not {self.kind!r}")
        lo, hi = self.AMOUNTS[self.kind]
        if not _is_int(self.amount) or not lo <= self.amount <= hi:
            raise IRError(f"input transform amount must be an integer in {lo}..{hi} for kind {self.kind!r}, "
                          f"not {self.amount!r}")
        lo, hi = self.SHIFT_AMOUNTS if self.kind == "offset" else (0, 0)
        if not _is_int(self.shift_amount) or not lo <= self.shift_amount <= hi:
            raise IRError(f"input transform shift_amount must be an integer in {lo}..{hi} for kind "
                          f"{self.kind!r}, not {self.shift_amount!r}")
        object.__setattr__(self, "amount", int(self.amount))
        object.__setattr__(self, "shift_amount", int(self.shift_amount))

    def apply(self, pixels) -> np.ndarray:
        p = np.asarray(pixels).astype(np.int64)
        if self.kind == "shift":
            return p >> self.amount
        if self.kind == "threshold":
            return np.where(p >= self.amount, 1, -1).astype(np.int64)
        return (p >> self.shift_amount) - self.amount

    def to_json(self) -> dict:
        return {"kind": self.kind, "amount": int(self.amount), "shift_amount": int(self.shift_amount)}

    @classmethod
    def from_json(cls, d: dict, *, strict: bool = False) -> "InputTransform":
        """Read ``d``; ``strict`` (IR version 2) requires every key (version 1 had defaults)."""
        if not isinstance(d, dict):
            raise IRError(f"input must be an object {{kind, amount, shift_amount}}, not {d!r}")
        _check_keys(d, ("kind", "amount", "shift_amount"), "input")
        if strict:
            for key in ("kind", "amount", "shift_amount"):
                if key not in d:
                    raise IRError(f"input.{key} must be given (kinds: {', '.join(cls.KINDS)}), not missing")
        return cls(d.get("kind", "shift"), d.get("amount", 0), d.get("shift_amount", 0))


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


# ---- the network ------------------------------------------------------------------------
@dataclass(eq=False)
class Network:
    """A chain of IR layers; the last may emit raw accumulators (logits)."""

    layers: list[IRLayer]
    input: InputTransform = field(default_factory=InputTransform)
    name: str = "net"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Chain the layers: each output format (``out_format``; ``None`` = raw accumulators, so
        only the last layer may have none) is the next input format, and each output shape is
        the next input shape, or its NHWC flattening when the next layer takes a vector."""
        if not self.layers:
            raise IRError("a network needs at least one layer")
        for i, (a, b) in enumerate(zip(self.layers, self.layers[1:])):
            if a.out_format is None:
                raise IRError(f"layer {i} ({a.name}) has no requantization but is not the last layer")
            flattens = len(b.in_shape) == 1 and int(np.prod(a.out_shape)) == b.in_shape[0]
            if a.out_shape != b.in_shape and not flattens:
                if len(a.out_shape) == len(b.in_shape) == 1:
                    raise IRError(
                        f"layer {i} ({a.name}) has {a.out_shape[0]} outputs but layer {i + 1} "
                        f"({b.name}) expects {b.in_shape[0]} inputs")
                if len(b.in_shape) == 1:
                    raise IRError(f"layer {i} ({a.name}) outputs shape {a.out_shape}, {int(np.prod(a.out_shape))} "
                                  f"values flattened in (h, w, c) order, but layer {i + 1} ({b.name}) expects "
                                  f"{b.in_shape[0]} inputs")
                raise IRError(f"layer {i} ({a.name}) outputs shape {a.out_shape} but layer {i + 1} "
                              f"({b.name}) takes shape {b.in_shape}")
            if a.out_format != b.in_format:
                raise IRError(
                    f"layer {i} ({a.name}) outputs {a.out_format} but layer {i + 1} "
                    f"({b.name}) takes {b.in_format}"
                )
        first = self.layers[0]
        if self.input.kind == "threshold" and first.in_format.kind is not Kind.BIPOLAR:
            raise IRError(f"a threshold input transform needs a bipolar first layer, not {first.in_format}")
        pad = first.pads_with
        if pad is not None and self.input.kind == "offset" and self.input.amount != 0:
            # Padding stands for real 0 = pixel 0, which this transform maps to -amount, not to the pad value.
            raise IRError(f"layer 0 ({first.name}) pads its input with {pad}, which an offset input transform of "
                          f"amount {self.input.amount} gives pixel {self.input.amount << self.input.shift_amount}, "
                          f"not pixel 0 (real zero): padding must be (0, 0) with this transform, or the amount 0")

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.layers[0].in_shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.layers[-1].out_shape

    @property
    def in_features(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def out_features(self) -> int:
        return int(np.prod(self.out_shape))

    def describe(self) -> str:
        rows = [f"network {self.name!r}: {self.in_features} inputs, input transform {self.input.to_json()}"]
        rows += [f"  {i}: {layer.describe()}" for i, layer in enumerate(self.layers)]
        return "\n".join(rows)

    # ---- file I/O -------------------------------------------------------------------
    def to_header(self) -> dict:
        return {
            "format": IR_FORMAT,
            "version": IR_VERSION,
            "name": self.name,
            "input": self.input.to_json(),
            "metadata": self.metadata,
            "layers": [{"op": layer.op, **layer.header_fields()} for layer in self.layers],
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ``.npz`` atomically (a failed write leaves no partial file)."""
        path = Path(path)
        arrays = {"header": np.frombuffer(json.dumps(self.to_header()).encode(), dtype=np.uint8)}
        for i, layer in enumerate(self.layers):
            for key, a in layer.arrays().items():
                arrays[f"layer{i}_{key}"] = a
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        return path

    TOP_FIELDS: ClassVar[tuple[str, ...]] = ("format", "version", "name", "input", "metadata", "layers")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Network":
        """Read and validate an IR file; a bad file raises :class:`IRError` naming the layer
        (index and name), the field, its value and what is allowed."""
        path = Path(path)
        where = repr(str(path))
        if not path.is_file():
            raise IRError(f"IR file {where} does not exist")
        try:
            data = np.load(path, allow_pickle=False)
            header = json.loads(bytes(data["header"]).decode())
        except Exception as e:  # noqa: BLE001 - any failure here means "not an IR file"
            raise IRError(f"{where} is not a lowbit IR file ({e})") from None
        if not isinstance(header, dict) or header.get("format") != IR_FORMAT:
            got = header.get("format") if isinstance(header, dict) else header
            raise IRError(f"{where} is not a lowbit IR file (format {got!r})")
        version = header.get("version")
        if not _is_int(version) or version not in READ_VERSIONS:
            raise IRError(f"{where}: version must be one of {', '.join(map(str, READ_VERSIONS))} "
                          f"(the IR versions this lowbit reads), not {version!r}")
        strict = version >= 2
        try:
            _check_keys(header, cls.TOP_FIELDS, "the header")
            opt = {} if strict else {"default": None}
            name = header_field(header, "name", lambda v: isinstance(v, str), "a string", **opt)
            metadata = header_field(header, "metadata", lambda v: isinstance(v, dict), "an object", **opt)
            transform = header.get("input", {}) if not strict else header_field(
                header, "input", lambda v: True, "an object {kind, amount, shift_amount}")
            transform = InputTransform.from_json(transform, strict=strict)
            entries = header_field(header, "layers", lambda v: isinstance(v, list) and len(v) > 0
                                   and all(isinstance(e, dict) for e in v), "a non-empty list of objects")
        except IRError as e:
            raise IRError(f"{where}: {e}") from None
        owned = {"header"}
        layers = []
        for i, entry in enumerate(entries):
            lname = entry.get("name")
            lwhere = f"{where}: layer {i} ({lname if isinstance(lname, str) else 'unnamed'})"
            try:
                if strict:
                    op = header_field(entry, "op", lambda v: True, f"one of {', '.join(sorted(LAYER_KINDS))}")
                elif "op" in entry:
                    raise IRError(f"op must be absent in an IR version 1 file (every layer is dense), "
                                  f"not {entry['op']!r}")
                else:
                    op = "dense"
                kind = layer_kind(op)
                arrays = {}
                for a in kind.ARRAYS:
                    key = f"layer{i}_{a}"
                    if key not in data.files:
                        raise IRError(f"array {key} must be in the file (a {op} layer stores "
                                      f"{', '.join(kind.ARRAYS)}), not missing")
                    arrays[a] = data[key]
                    owned.add(key)
                fields = {k: v for k, v in entry.items() if k != "op"}
                layers.append(kind.from_header(fields, arrays, version=version))
            except (ValueError, TypeError) as e:  # IRError, and the checks of formats and requant
                raise IRError(f"{lwhere}: {e}") from None
        stray = sorted(set(data.files) - owned)
        if stray:
            raise IRError(f"{where} holds arrays no layer owns: {', '.join(stray)} "
                          f"(the header lists {len(entries)} layers)")
        try:
            return cls(layers, transform, "net" if name is None else name, {} if metadata is None else metadata)
        except IRError as e:
            raise IRError(f"{where}: {e}") from None
