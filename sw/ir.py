"""The integer network IR: the contract between quantizers and everything downstream.

A :class:`Network` is a chain of :class:`DenseLayer` objects holding integer weights,
integer biases, their formats and the requantization to the next layer's input format.
Quantizers only produce it; the golden model, the packer and the hardware generator only
consume it.

File format (``.npz``)
----------------------
``header``            a JSON document (UTF-8 bytes in a uint8 array)::

    {"format": "lowbit-ir", "version": 1, "name": ..., "input": {...}, "metadata": {...},
     "layers": [{"name", "in_features", "out_features", "weight_format", "in_format",
                 "requant": null | {"out_format", "rounding", "relu", "shift", "multiplier"}}]}

``layer{i}_weights``  int64 ``[out_features, in_features]``
``layer{i}_bias``     int64 ``[out_features]``

``input`` says how raw dataset pixels (uint8) become the first layer's integers
(see :func:`InputTransform.apply`). Per-channel shift/multiplier lists live in the header.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .formats import IntFormat, Kind, parse_format, signed_bits_for_range
from .requant import RequantParams

__all__ = ["DenseLayer", "Network", "InputTransform", "IRError", "accumulator_range"]

IR_FORMAT = "lowbit-ir"
IR_VERSION = 1


class IRError(ValueError):
    """An IR that does not validate (bad file, inconsistent layers)."""


def accumulator_range(weights, bias, in_format: IntFormat) -> tuple[int, int]:
    """Exact worst-case range of every partial and final accumulator of a dense layer.

    For each row the extremes of ``Σ w·x`` are reached with each ``x`` at an end of
    ``in_format``'s range; the bias is added once. Because every format's range holds 0
    or both signs, each term's max is ≥ 0 and min ≤ 0, so the partial sums of a folded
    computation stay within the bounds of the full sum too.
    """
    w = np.asarray(weights, dtype=np.int64)
    b = np.asarray(bias, dtype=np.int64)
    lo_x, hi_x = in_format.min, in_format.max
    hi = np.maximum(w * lo_x, w * hi_x).sum(axis=1)
    lo = np.minimum(w * lo_x, w * hi_x).sum(axis=1)
    return int(min(lo.min(), (lo + b).min())), int(max(hi.max(), (hi + b).max()))


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

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise IRError(f"input transform kind must be one of {', '.join(self.KINDS)}, not {self.kind!r}")

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
    def from_json(cls, d: dict) -> "InputTransform":
        return cls(d.get("kind", "shift"), int(d.get("amount", 0)), int(d.get("shift_amount", 0)))


@dataclass(frozen=True, eq=False)
class DenseLayer:
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

    @property
    def out_features(self) -> int:
        return self.weights.shape[0]

    @property
    def in_features(self) -> int:
        return self.weights.shape[1]

    @property
    def out_format(self) -> IntFormat | None:
        return None if self.requant is None else self.requant.out_format

    @property
    def acc_range(self) -> tuple[int, int]:
        return accumulator_range(self.weights, self.bias, self.in_format)

    @property
    def acc_bits(self) -> int:
        """Accumulator width needed by these weights over the whole input range."""
        return signed_bits_for_range(*self.acc_range)

    def macs(self) -> int:
        return self.out_features * self.in_features


@dataclass(eq=False)
class Network:
    """A chain of dense layers; the last may emit raw accumulators (logits)."""

    layers: list[DenseLayer]
    input: InputTransform = field(default_factory=InputTransform)
    name: str = "net"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if not self.layers:
            raise IRError("a network needs at least one layer")
        for i, (a, b) in enumerate(zip(self.layers, self.layers[1:])):
            if a.requant is None:
                raise IRError(f"layer {i} ({a.name}) has no requantization but is not the last layer")
            if a.out_features != b.in_features:
                raise IRError(
                    f"layer {i} ({a.name}) has {a.out_features} outputs but layer {i + 1} "
                    f"({b.name}) expects {b.in_features} inputs"
                )
            if a.requant.out_format != b.in_format:
                raise IRError(
                    f"layer {i} ({a.name}) outputs {a.requant.out_format} but layer {i + 1} "
                    f"({b.name}) takes {b.in_format}"
                )
        first = self.layers[0].in_format
        if self.input.kind == "threshold" and first.kind is not Kind.BIPOLAR:
            raise IRError(f"a threshold input transform needs a bipolar first layer, not {first}")

    @property
    def in_features(self) -> int:
        return self.layers[0].in_features

    @property
    def out_features(self) -> int:
        return self.layers[-1].out_features

    def describe(self) -> str:
        rows = [f"network {self.name!r}: {self.in_features} inputs, input transform {self.input.to_json()}"]
        for i, l in enumerate(self.layers):
            rq = "raw accumulators" if l.requant is None else (
                f"→ {l.requant.out_format}{' relu' if l.requant.relu else ''} "
                f"({l.requant.rounding.value}, shift {sorted(set(l.requant.shift.ravel().tolist()))[:4]}"
                f"{', multiplier' if l.requant.multiplier is not None else ''})")
            rows.append(f"  {i}: {l.name:10s} {l.in_features:5d}→{l.out_features:<5d} W {str(l.weight_format):7s} "
                        f"A {str(l.in_format):7s} acc {l.acc_bits:2d} b  {rq}")
        return "\n".join(rows)

    # ---- file I/O -------------------------------------------------------------------
    def to_header(self) -> dict:
        return {
            "format": IR_FORMAT,
            "version": IR_VERSION,
            "name": self.name,
            "input": self.input.to_json(),
            "metadata": self.metadata,
            "layers": [
                {
                    "name": l.name,
                    "in_features": l.in_features,
                    "out_features": l.out_features,
                    "weight_format": str(l.weight_format),
                    "in_format": str(l.in_format),
                    "acc_bits": l.acc_bits,
                    "requant": None if l.requant is None else l.requant.to_json(),
                }
                for l in self.layers
            ],
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ``.npz`` atomically (a failed write leaves no partial file)."""
        path = Path(path)
        arrays = {"header": np.frombuffer(json.dumps(self.to_header()).encode(), dtype=np.uint8)}
        for i, l in enumerate(self.layers):
            arrays[f"layer{i}_weights"] = l.weights
            arrays[f"layer{i}_bias"] = l.bias
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Network":
        path = Path(path)
        if not path.is_file():
            raise IRError(f"IR file {str(path)!r} does not exist")
        try:
            data = np.load(path, allow_pickle=False)
            header = json.loads(bytes(data["header"]).decode())
        except Exception as e:  # noqa: BLE001 - any failure here means "not an IR file"
            raise IRError(f"{str(path)!r} is not a lowbit IR file ({e})") from None
        if header.get("format") != IR_FORMAT:
            raise IRError(f"{str(path)!r} is not a lowbit IR file (format {header.get('format')!r})")
        if header.get("version") != IR_VERSION:
            raise IRError(f"{str(path)!r} has IR version {header.get('version')}, this lowbit reads {IR_VERSION}")
        layers = []
        for i, lh in enumerate(header["layers"]):
            try:
                w, b = data[f"layer{i}_weights"], data[f"layer{i}_bias"]
            except KeyError as e:
                raise IRError(f"{str(path)!r}: layer {i} lacks its array {e}") from None
            if w.shape != (lh["out_features"], lh["in_features"]):
                raise IRError(f"{str(path)!r}: layer {i} weights have shape {w.shape}, header says "
                              f"({lh['out_features']}, {lh['in_features']})")
            rq = None if lh["requant"] is None else RequantParams.from_json(lh["requant"])
            layers.append(DenseLayer(w, lh["weight_format"], lh["in_format"], b, rq, lh["name"]))
        return cls(layers, InputTransform.from_json(header.get("input", {})), header.get("name", "net"),
                   header.get("metadata", {}))
