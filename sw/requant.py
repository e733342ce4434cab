"""Requantization: the one definition of the shift/clip rule.

``y = clip(round_shift((acc + bias) · m + c, s), lo, hi)``

* ``acc + bias`` is the exact accumulator (the bias is added in the requantizer stage
  in hardware, but the accumulator width bound covers it);
* ``m`` is an optional non-negative integer multiplier (absent ⇒ 1: pure shift-and-clip);
* ``c`` is an optional signed integer product offset (absent ⇒ 0), added after the multiply
  and before the rounding shift. With ``floor`` rounding it places each threshold
  ``y ≥ k ⇔ acc ≥ T_k`` at a resolution of ``1/m`` accumulator steps (the bias alone moves
  them by whole steps), which is what a float BatchNorm folded into thresholds needs;
* ``s ≥ 0`` is a right shift; negative numbers shift arithmetically (floor) and the
  rounding correction is then added:

  - ``floor``     ``v >> s``
  - ``half_up``   ``(v + 2^(s-1)) >> s``  (ties go towards +∞)
  - ``half_even`` ``v >> s`` plus one when the remainder is above half, or exactly half
    and the floor is odd (ties go to the even neighbour)

* ``lo/hi`` come from the output format, with ``lo = 0`` under ReLU. A bipolar output
  format has no clip: the sign is taken, ``y = +1`` if the rounded value is ≥ 0 else ``-1``.

Parameters may be per layer (scalars) or per output channel (arrays of length
``channels``); :meth:`RequantParams.per_channel` broadcasts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .formats import IntFormat, Kind, Rounding, parse_format, signed_bits_for_range

__all__ = ["RequantParams", "round_shift", "rounded", "requantize", "MAX_SHIFT", "MAX_MULTIPLIER_BITS",
           "MAX_OFFSET_BITS"]

MAX_SHIFT = 48
MAX_MULTIPLIER_BITS = 16
#: ``|offset| < 2^MAX_OFFSET_BITS`` (62, the golden model's widest product, as
#: :data:`lowbit.sw.ir.MAX_ACC_BITS`): ``2^MAX_SHIFT·2^MAX_MULTIPLIER_BITS`` would not fit int64;
#: the IR then checks that ``(acc + bias)·m + c`` as a whole fits.
MAX_OFFSET_BITS = 62
OFFSET_LIMIT = (1 << MAX_OFFSET_BITS) - 1


def round_shift(v, s, rounding: Rounding | str) -> np.ndarray:
    """Arithmetic right shift of int64 ``v`` by ``s`` (broadcast) with the given rounding."""
    rounding = Rounding.parse(rounding)
    v = np.asarray(v, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    q = np.right_shift(v, s)
    if rounding is Rounding.FLOOR:
        return q
    half = np.right_shift(np.left_shift(np.int64(1), s), 1)  # 2^(s-1), and 0 when s == 0
    if rounding is Rounding.HALF_UP:
        return np.right_shift(v + half, s)
    rem = v - np.left_shift(q, s)
    up = (s > 0) & ((rem > half) | ((rem == half) & ((q & 1) == 1)))
    return q + up.astype(np.int64)


@dataclass(frozen=True, eq=False)
class RequantParams:
    """Parameters of one requantization step.

    Parameters
    ----------
    out_format : IntFormat or str
        Output format (signed, unsigned, ternary or bipolar).
    shift : int or array of int
        Right shift ``s`` in 0..48, per layer or per output channel.
    multiplier : None, int or array of int
        Integer multiplier ``m`` in 0..2^16-1, or ``None`` for a pure shift.
    offset : None, int or array of int
        Signed product offset ``c``, ``|c| < 2^62`` (:data:`MAX_OFFSET_BITS`), added to
        ``(acc + bias)·m`` before the shift; ``None`` (the default) for none.
    rounding : Rounding or str
        ``floor``, ``half_up`` or ``half_even``.
    relu : bool
        Clip at 0 from below.
    """

    out_format: IntFormat
    shift: np.ndarray = field(default_factory=lambda: np.zeros((), np.int64))
    multiplier: np.ndarray | None = None
    rounding: Rounding = Rounding.FLOOR
    relu: bool = False
    offset: np.ndarray | None = None

    def __post_init__(self):
        fmt = parse_format(self.out_format, name="out_format")
        if fmt.kind is Kind.POW2:
            raise ValueError("out_format must be signed, unsigned, ternary or bipolar, not pow2")
        object.__setattr__(self, "out_format", fmt)
        object.__setattr__(self, "rounding", Rounding.parse(self.rounding))
        shift = np.asarray(self.shift)
        if shift.ndim > 1 or shift.dtype.kind not in "iu":
            raise ValueError(f"shift must be an integer or a 1-D integer array, not {self.shift!r}")
        shift = shift.astype(np.int64)
        if shift.size and (shift.min() < 0 or shift.max() > MAX_SHIFT):
            bad = int(shift[(shift < 0) | (shift > MAX_SHIFT)].flat[0])
            raise ValueError(f"shift must be in 0..{MAX_SHIFT}, not {bad}")
        object.__setattr__(self, "shift", shift)
        if self.multiplier is not None:
            m = np.asarray(self.multiplier)
            if m.ndim > 1 or m.dtype.kind not in "iu":
                raise ValueError(
                    f"multiplier must be None, an integer or a 1-D integer array, not {self.multiplier!r}"
                )
            m = m.astype(np.int64)
            limit = (1 << MAX_MULTIPLIER_BITS) - 1
            if m.size and (m.min() < 0 or m.max() > limit):
                bad = int(m[(m < 0) | (m > limit)].flat[0])
                raise ValueError(f"multiplier must be in 0..{limit}, not {bad}")
            object.__setattr__(self, "multiplier", m)
        if self.offset is not None:
            c = np.asarray(self.offset)
            if c.ndim > 1 or c.dtype.kind not in "iu":
                raise ValueError(f"offset must be None, an integer or a 1-D integer array, not {self.offset!r}")
            if c.dtype.kind == "u" and c.size and int(c.max()) > np.iinfo(np.int64).max:
                raise ValueError(f"offset must be in {-OFFSET_LIMIT}..{OFFSET_LIMIT}, not {int(c.max())}")
            c = c.astype(np.int64)
            if c.size and np.abs(c).max() > OFFSET_LIMIT:
                bad = int(c[np.abs(c) > OFFSET_LIMIT].flat[0])
                raise ValueError(f"offset must be in {-OFFSET_LIMIT}..{OFFSET_LIMIT}, not {bad}")
            object.__setattr__(self, "offset", c)
        if self.relu and fmt.kind is Kind.BIPOLAR:
            raise ValueError("relu cannot be combined with a bipolar out_format (it has no 0)")
        object.__setattr__(self, "relu", bool(self.relu))

    # ---- derived ------------------------------------------------------------------
    @property
    def lo(self) -> int:
        return max(self.out_format.min, 0) if self.relu else self.out_format.min

    @property
    def hi(self) -> int:
        return self.out_format.max

    @property
    def multiplier_bits(self) -> int:
        """Unsigned width of the largest multiplier (0 when there is none)."""
        if self.multiplier is None:
            return 0
        return max(1, int(self.multiplier.max()).bit_length())

    @property
    def offset_bits(self) -> int:
        """Signed (two's complement) width of the widest offset (0 when there is none)."""
        if self.offset is None:
            return 0
        return signed_bits_for_range(int(self.offset.min()), int(self.offset.max()))

    @property
    def shift_bits(self) -> int:
        return max(1, int(self.shift.max()).bit_length()) if self.shift.size else 1

    def channels(self) -> int | None:
        """Number of channels implied by per-channel arrays (None when all scalars)."""
        sizes = {a.shape[0] for a in (self.shift, self.multiplier, self.offset) if a is not None and a.ndim == 1}
        if len(sizes) > 1:
            raise ValueError(f"per-channel shift, multiplier and offset lengths differ: {sorted(sizes)}")
        return sizes.pop() if sizes else None

    def per_channel(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """``(multiplier, shift)`` broadcast to ``channels`` entries (multiplier 1 if absent)."""
        n = self.channels()
        if n is not None and n != channels:
            raise ValueError(f"requantization has {n} channels, the layer has {channels}")
        m = np.ones(channels, np.int64) if self.multiplier is None else np.broadcast_to(
            self.multiplier, (channels,)).astype(np.int64)
        return m, np.broadcast_to(self.shift, (channels,)).astype(np.int64)

    def offsets(self, channels: int) -> np.ndarray:
        """The offset broadcast to ``channels`` entries (zeros if absent)."""
        self.per_channel(channels)  # checks the channel count
        if self.offset is None:
            return np.zeros(channels, np.int64)
        return np.broadcast_to(self.offset, (channels,)).astype(np.int64)

    def to_json(self) -> dict:
        d = {
            "out_format": str(self.out_format),
            "rounding": self.rounding.value,
            "relu": self.relu,
            "shift": self.shift.tolist(),
            "multiplier": None if self.multiplier is None else self.multiplier.tolist(),
        }
        if self.offset is not None:  # absent = none: files without offsets stay as they were
            d["offset"] = self.offset.tolist()
        return d

    @classmethod
    def from_json(cls, d: dict) -> "RequantParams":
        return cls(
            out_format=d["out_format"],
            shift=np.asarray(d.get("shift", 0), dtype=np.int64),
            multiplier=None if d.get("multiplier") is None else np.asarray(d["multiplier"], np.int64),
            rounding=d.get("rounding", "floor"),
            relu=d.get("relu", False),
            offset=None if d.get("offset") is None else np.asarray(d["offset"], np.int64),
        )

    def __eq__(self, other):
        if not isinstance(other, RequantParams):
            return NotImplemented
        return self.to_json() == other.to_json()


def rounded(acc, params: RequantParams, *, channel_axis: int = -1) -> np.ndarray:
    """``round_shift(acc·m + c, s)`` per channel: the value :func:`requantize` then clips (or takes
    the sign of, for a bipolar output); saturation reports compare it with the bounds."""
    acc = np.asarray(acc, dtype=np.int64)
    channels = acc.shape[channel_axis] if acc.ndim else 1
    m, s = params.per_channel(channels)
    c = params.offsets(channels)
    shape = [1] * acc.ndim
    if acc.ndim:
        shape[channel_axis] = channels
        m, s, c = m.reshape(shape), s.reshape(shape), c.reshape(shape)
    else:
        m, s, c = m[0], s[0], c[0]
    return round_shift(acc * m + c, s, params.rounding)


def requantize(acc, params: RequantParams, *, channel_axis: int = -1) -> np.ndarray:
    """Apply ``params`` to int64 accumulators (bias already added), channels on ``channel_axis``."""
    v = rounded(acc, params, channel_axis=channel_axis)
    if params.out_format.kind is Kind.BIPOLAR:
        return np.where(v >= 0, 1, -1).astype(np.int64)
    return np.clip(v, params.lo, params.hi)
