"""The IR's file-format constants, its error, the accumulator bound and the header field checks.

Part of :mod:`lowbit.sw.ir` (split out to keep each module under the project's size limit; import
these names from :mod:`lowbit.sw.ir`, which re-exports them): the format name and versions, the
:class:`IRError` every bad IR raises, :func:`accumulator_range` (the exact worst-case accumulator
bound every layer kind is sized from), the checks every layer kind reads its header fields with
(each names the field, its value and what is allowed), and :class:`InputTransform`, the header's
``input`` entry. It depends on no layer kind, so :mod:`lowbit.sw.ir_layers` builds on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .formats import IntFormat, Kind, describe_formats, parse_format
from .requant import RequantParams

__all__ = ["IR_FORMAT", "IR_VERSION", "READ_VERSIONS", "IRError", "MAX_ACC_BITS", "accumulator_range",
           "header_field", "int_field", "ints_field", "format_field", "array_field", "requant_field",
           "InputTransform"]

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
