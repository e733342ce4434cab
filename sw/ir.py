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

Where the parts live
--------------------
This module keeps :class:`Network` (chaining, ``save``/``load``) and re-exports everything below,
so ``lowbit.sw.ir`` stays the one import path. The file-format constants, :class:`IRError`,
:func:`accumulator_range`, the header field checks and :class:`InputTransform` live in
:mod:`lowbit.sw.ir_fields`; the layer kinds and their registry live in :mod:`lowbit.sw.ir_layers`
(split to keep each module under the project's size limit; ``ir_layers`` imports ``ir_fields``,
this module imports both).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from .formats import Kind
from .util import atomic_path
# Everything below is re-exported (the names not used here too: importers keep ``lowbit.sw.ir``).
from .ir_fields import (IR_FORMAT, IR_VERSION, MAX_ACC_BITS, READ_VERSIONS, IRError, InputTransform, _check_keys,
                        _is_int, _MISSING, accumulator_range, array_field, format_field, header_field, int_field,
                        ints_field, requant_field)  # noqa: F401
from .ir_layers import (LAYER_KINDS, Conv2dLayer, DenseLayer, IRLayer, MaxPool2dLayer, _check_acc_bits,
                        _describe_requant, _input_format, _int_tuple, layer_kind, pad_value, register_layer)  # noqa: F401

__all__ = ["IRLayer", "DenseLayer", "Conv2dLayer", "MaxPool2dLayer", "Network", "InputTransform", "IRError",
           "accumulator_range", "pad_value", "register_layer", "layer_kind", "LAYER_KINDS", "IR_FORMAT", "IR_VERSION",
           "READ_VERSIONS", "header_field", "int_field", "ints_field", "format_field", "array_field",
           "requant_field"]


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
