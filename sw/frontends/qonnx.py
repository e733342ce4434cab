"""QONNX import: an already-quantized QONNX model (Brevitas's ``export_qonnx``) → lowbit's integer IR.

The quantization is taken as given, never redone. Every tensor of a QONNX graph is ``code · scale``;
this importer reads the codes and scales off the graph and writes the same arithmetic in integers:

* **weights** — a ``Quant`` (or ``BipolarQuant``) on an initializer: codes ``round(clip(w / s))`` as
  qonnx computes them, format ``s{b}``/``u{b}`` (narrow range kept: the codes are what they are) or
  bipolar; the scale per tensor or per output channel;
* **input** — the graph takes ``x = pixel · input_scale``. An input ``Quant`` (Brevitas's
  ``QuantIdentity``, possibly after scalar ``Mul``/``Add``/``Sub``/``Div``) is emulated on all 256
  pixel values with qonnx's own arithmetic and must equal an :class:`~lowbit.sw.ir.InputTransform`
  (``pixel >> k``, ``(pixel >> k) − a`` or a bipolar threshold) on every one of them, else refused;
  without one the first layer takes the pixels (``u8``, scale ``input_scale``);
* **a layer** — ``Conv``/``MatMul``/``Gemm`` then any of bias ``Add``, scalar or per-channel
  ``Mul``/``Div``/``Sub``, float ``BatchNormalization``, ``Relu``, ending at the next activation
  ``Quant``/``BipolarQuant`` (or at the graph's output: raw logits). Its pre-activation is
  ``z_c = α_c·acc_c + β_c`` (``acc`` the integer accumulator, ``α = s_in·s_w[c]`` times the BN
  scale); the requantizer must give ``clip(round(z / s_out))``:

  - when ``α/s_out = m/2^s`` exactly and ``β/α`` is an integer (power-of-two scales, no BN) it is
    that shift (and multiplier), the bias ``β/α``, qonnx's own rounding — exact;
  - otherwise the integer staircase ``acc ↦ y`` has one threshold per output level; a per-channel
    ``m/2^s`` (``m`` of at most ``multiplier_bits`` bits, the widest that fits) and integer bias
    are searched that reproduce *every* threshold over the layer's whole accumulator range
    (checked level by level with :func:`~lowbit.sw.requant.requantize`) — exact too;
  - when none exists — a float BN or float bias whose shift is not a whole number of accumulator
    steps, which an integer bias cannot carry — the ``(m, s, bias)`` missing the fewest thresholds
    (each one accumulator value off) is used and the report says so (``exact: false``, thresholds
    missed, the worst relative scale error): never silently. A narrow activation range
    (``−2^(b−1)+1..``) has no lowbit format: reported when the accumulators reach the extra code;
  - a ``BipolarQuant`` output is a sign: ``acc ≥ ⌈−β/α⌉``, an exact integer threshold in the bias.

  A negative ``α_c`` (negative BN scale) flips that channel's weights (the multiplier is
  non-negative); a format that cannot hold the flipped codes grows by one bit.
* ``MaxPool`` on codes → :class:`~lowbit.sw.ir.MaxPool2dLayer` (it commutes with a positive scale);
  ``Flatten``/``Reshape`` of an NCHW tensor permutes the next dense layer's columns to NHWC
  (:func:`~.common.nchw_columns`).
* **the last layer** emits raw accumulators: its output scale ``α`` (per tensor, or recorded per
  channel) is ``metadata["output_scale"]``: qonnx's logits ``= α · (lowbit's logits)``. A trailing
  ``Quant`` on the logits becomes the last layer's requantizer.
* **biases** — float initializers or ``Quant``'d ones (Brevitas's ``Int16Bias``/``Int32Bias``, read
  as real values): ``bias / α`` in accumulator steps, exact when a whole number within 1e-6.

:func:`import_qonnx` returns the network and a report (``report["lines"]`` prints it);
:func:`qonnx_agreement` runs qonnx's executor (batched) beside the golden model.

Everything else — nonzero zero points, grouped or dilated convolutions, residual (two-input)
``Add``, ``Trunc``, ops not listed in :data:`SUPPORTED_OPS` — is a :class:`~.common.ModelImportError`
naming the node, its op type and what is supported.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..formats import IntFormat, Kind, Rounding, signed_bits_for_range
from ..ir import Conv2dLayer, DenseLayer, InputTransform, IRError, MaxPool2dLayer, Network
from ..requant import MAX_MULTIPLIER_BITS, MAX_SHIFT, RequantParams, requantize
from .common import ModelImportError, nchw_columns

__all__ = ["import_qonnx", "qonnx_agreement", "load_qonnx", "SUPPORTED_OPS", "ACT_ROUNDING"]

SUPPORTED_OPS = ("Quant", "BipolarQuant", "Constant", "Conv", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div",
                 "BatchNormalization", "Relu", "MaxPool", "Flatten", "Reshape", "Transpose", "Identity", "Dropout")
_SUPPORTED = ", ".join(SUPPORTED_OPS)
#: an activation Quant's rounding_mode → the requantizer's rounding (qonnx's ROUND is numpy's half-even)
ACT_ROUNDING = {"ROUND": Rounding.HALF_EVEN, "HALF_EVEN": Rounding.HALF_EVEN, "HALF_UP": Rounding.HALF_UP,
                "FLOOR": Rounding.FLOOR}
_REL = 1e-6  # "integral" / "equal" within this relative tolerance


def _fail(node, what: str) -> ModelImportError:
    return ModelImportError(f"node {node.name!r} ({node.op_type}): {what} (supported ops: {_SUPPORTED})")


# ---- loading -----------------------------------------------------------------------------------
def load_qonnx(model):
    """``model`` (a path, bytes or an ``onnx.ModelProto``) as a cleaned-up qonnx ``ModelWrapper``
    (qonnx's ``cleanup_model``: shapes inferred, constants folded, weight transposes folded)."""
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    where = "the model"
    try:
        if isinstance(model, (str, Path)):
            where = repr(str(model))
            if not Path(model).is_file():
                raise ModelImportError(f"QONNX file {where} does not exist")
            proto = onnx.load(str(model))
        elif isinstance(model, (bytes, bytearray)):
            proto = onnx.load_from_string(bytes(model))
        elif isinstance(model, onnx.ModelProto):
            proto = model
        else:
            raise ModelImportError(f"a QONNX model must be a path, bytes or an onnx.ModelProto, not "
                                   f"{type(model).__name__}")
        if not proto.graph.node or len(proto.graph.input) == 0 or len(proto.graph.output) == 0:
            raise ValueError("it has no graph (no nodes, inputs or outputs)")
        wrapper = cleanup_model(ModelWrapper(proto))
    except ModelImportError:
        raise
    except Exception as e:  # noqa: BLE001 - protobuf, onnx and qonnx raise many kinds: all mean "not readable"
        raise ModelImportError(f"{where} is not a readable QONNX/ONNX model ({type(e).__name__}: {e})") from None
    inputs = [i for i in wrapper.graph.input if wrapper.get_initializer(i.name) is None]
    if len(inputs) != 1 or len(wrapper.graph.output) != 1:
        raise ModelImportError(f"{where} must have one input and one output, not {len(inputs)} and "
                               f"{len(wrapper.graph.output)}")
    return wrapper


# ---- tensors met while walking the graph -------------------------------------------------------
@dataclass
class _Param:
    """A quantized constant: ``codes · scale`` (both full-shape float64)."""

    codes: np.ndarray
    scale: np.ndarray
    fmt: IntFormat | None  # None: wider than any lowbit format (a 32-bit bias)

    @property
    def real(self) -> np.ndarray:
        return (self.codes.astype(np.float32) * self.scale.astype(np.float32)).astype(np.float64)


@dataclass
class _Codes:
    """An activation tensor of integer codes: ``fmt`` values times ``scale``; ``shape`` is one sample in
    the source's layout, ``(C, H, W)`` or ``(F,)``; ``chw`` the NCHW shape it was flattened from."""

    fmt: IntFormat
    scale: float
    shape: tuple
    chw: tuple | None = None


@dataclass
class _Raw:
    """The float graph input before its Quant: scalar float32 ops on it, in order."""

    shape: tuple
    ops: list = field(default_factory=list)
    chw: tuple | None = None


@dataclass
class _Pending:
    """A conv/dense layer read up to its activation: ``z_c = alpha_c·acc_c + beta_c``."""

    node: object
    kind: str
    weights: np.ndarray  # lowbit layout: [OC, F] or [OC, KH, KW, IC]
    wfmt: IntFormat
    wscale: np.ndarray
    inp: _Codes
    alpha: np.ndarray
    beta: np.ndarray
    out_shape: tuple
    conv: dict = field(default_factory=dict)
    relu: bool = False
    batchnorm: bool = False

    @property
    def channels(self) -> int:
        return self.weights.shape[0]


def _attrs_raw(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _attrs(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _is_pow2(v) -> bool:
    v = np.abs(np.asarray(v, np.float64))
    return bool(np.all(v > 0) and np.all(np.log2(v) == np.round(np.log2(v))))


def _int_format(node, signed: bool, bits: int) -> IntFormat:
    try:
        return IntFormat.signed(bits) if signed else IntFormat.unsigned(bits)
    except ValueError as e:
        kind = "signed" if signed else "unsigned"
        raise _fail(node, f"a {kind} {bits}-bit Quant has no lowbit format ({e})") from None


class _Reader:
    """One walk over a cleaned QONNX chain, building IR layers and the report as it goes."""

    def __init__(self, wrapper, input_scale: float, multiplier_bits: int):
        self.m = wrapper
        self.input_scale = input_scale
        self.multiplier_bits = multiplier_bits
        self.params: dict[str, _Param] = {}
        self.constants: dict[str, np.ndarray] = {}
        self.layers: list = []
        self.report_layers: list[dict] = []
        self.notes: list[str] = []
        self.transform = InputTransform()
        self.input_report: dict = {}
        self.counts = {"conv": 0, "fc": 0, "pool": 0}

    # ---- constants ----------------------------------------------------------------------------
    def const(self, name):
        """A constant input's float64 value (initializer or quantized constant), or None."""
        if name in self.params:
            return self.params[name].real
        if name in self.constants:
            return self.constants[name]
        init = self.m.get_initializer(name)
        return None if init is None else np.asarray(init, np.float64)

    def quant_args(self, node, max_bits: int = 16):
        """``(scale array float32, bits, signed, narrow, rounding_mode)`` of a Quant; zero point must be 0."""
        a = _attrs(node)
        scale = self.const(node.input[1])
        zp = self.const(node.input[2])
        bits = self.const(node.input[3])
        if scale is None or zp is None or bits is None:
            raise _fail(node, "its scale, zero point and bit width must be constants")
        if np.any(np.asarray(zp) != 0):
            raise _fail(node, f"zero point {np.asarray(zp).ravel()[:4].tolist()} is not 0: lowbit's formats are "
                              "symmetric (zero point 0)")
        b = float(np.asarray(bits).reshape(-1)[0])
        if np.asarray(bits).size != 1 or b != int(b) or not 1 <= b <= max_bits:
            raise _fail(node, f"bit width {np.asarray(bits).ravel().tolist()} must be one integer in 1..{max_bits}")
        scale = np.asarray(scale, np.float32)
        if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
            raise _fail(node, "its scale must be positive and finite")
        return scale, int(b), bool(a.get("signed", 1)), bool(a.get("narrow", 0)), str(a.get("rounding_mode", "ROUND"))

    def bipolar_scale(self, node) -> np.ndarray:
        scale = self.const(node.input[1])
        if scale is None or np.any(~np.isfinite(scale)) or np.any(scale <= 0):
            raise _fail(node, "its scale must be a positive finite constant")
        return np.asarray(scale, np.float32)

    @staticmethod
    def int_quant_codes(x, scale, bits, signed, narrow, mode):
        """Codes exactly as qonnx's int_quant makes them (float32 divide, clip, round)."""
        from qonnx.custom_op.general.intquant import max_int, min_int, resolve_rounding_mode

        y = np.asarray(x, np.float32) / scale
        if bits == 1 and signed:
            return np.where(y >= 0, 1.0, -1.0)
        y = np.clip(y, min_int(signed, narrow, bits), max_int(signed, narrow, bits))
        return np.asarray(resolve_rounding_mode(mode)(y), np.float64)

    def weight_param(self, node, data: np.ndarray) -> _Param:
        if node.op_type == "BipolarQuant":
            scale = self.bipolar_scale(node)
            codes = np.where(data >= 0, 1.0, -1.0)
            return _Param(codes, np.broadcast_to(scale.astype(np.float64), data.shape).copy(), IntFormat.bipolar())
        scale, bits, signed, narrow, mode = self.quant_args(node, max_bits=32)  # biases: Int32Bias
        try:
            codes = self.int_quant_codes(data, scale, bits, signed, narrow, mode)
        except ValueError as e:  # an unknown rounding mode
            raise _fail(node, str(e)) from None
        # a constant wider than lowbit's formats can still be a bias (real values); never weights
        fmt = IntFormat.bipolar() if bits == 1 and signed else (
            _int_format(node, signed, bits) if bits <= 16 else None)
        return _Param(codes, np.broadcast_to(scale.astype(np.float64), data.shape).copy(), fmt)

    def weights_of(self, node, name) -> _Param:
        if name in self.params:
            if self.params[name].fmt is None:
                raise _fail(node, f"its weights {name!r} have more than 16 bits (lowbit's widest weight format)")
            return self.params[name]
        if self.m.get_initializer(name) is not None:
            raise _fail(node, f"its weights {name!r} are float (no Quant node): this importer takes quantized "
                              "QONNX models (Brevitas export_qonnx); use the ONNX importer for float models")
        raise _fail(node, f"its weights {name!r} are not a constant")

    # ---- the walk -----------------------------------------------------------------------------
    def run(self):
        graph = self.m.graph
        inp = next(i for i in graph.input if self.m.get_initializer(i.name) is None)
        shape = tuple(self.m.get_tensor_shape(inp.name))
        if len(shape) not in (2, 4) or shape[0] != 1:
            raise ModelImportError(f"the model's input {inp.name!r} must be [1, C, H, W] or [1, F] (batch 1, "
                                   f"as Brevitas exports), not {list(shape)}")
        self.source_shape = shape[1:]
        state, current = _Raw(shape[1:]), inp.name
        self.ops_met: list[str] = []
        for node in graph.node:
            if node.op_type not in self.ops_met:
                self.ops_met.append(node.op_type)
            if node.op_type == "Constant":
                from onnx import numpy_helper

                value = numpy_helper.to_array(_attrs_raw(node)["value"])
                self.constants[node.output[0]] = np.asarray(value, np.float64)
                continue
            if node.op_type in ("Quant", "BipolarQuant") and self.const(node.input[0]) is not None:
                self.params[node.output[0]] = self.weight_param(node, self.const(node.input[0]))
                continue
            if node.op_type == "Transpose" and node.input[0] in self.params:
                p, perm = self.params[node.input[0]], _attrs(node).get("perm")
                self.params[node.output[0]] = _Param(np.transpose(p.codes, perm), np.transpose(p.scale, perm), p.fmt)
                continue
            dynamic = [i for i in node.input if i and self.const(i) is None]
            if node.op_type == "Add" and len(dynamic) == 2:
                raise _fail(node, "a residual Add of two computed tensors: lowbit's networks are chains")
            if dynamic != [current] or len(node.output) != 1 and node.op_type not in ("Dropout", "BatchNormalization"):
                raise _fail(node, f"it must take the one computed tensor {current!r} (a chain of layers), "
                                  f"not {dynamic}")
            if node.op_type not in SUPPORTED_OPS or node.op_type == "Transpose":
                extra = (" (Brevitas writes it for a QuantAvgPool2d or a truncated accumulator; lowbit has neither)"
                         if node.op_type == "Trunc" else "")
                raise _fail(node, f"op {node.op_type} is not supported{extra}")
            state = self.step(node, state)
            current = node.output[0]
        if current != graph.output[0].name:
            raise ModelImportError(f"the graph's output {graph.output[0].name!r} is not the end of its chain "
                                   f"({current!r})")
        if isinstance(state, _Pending):
            self.finish_logits(state)
        elif isinstance(state, _Raw) or not self.layers:
            raise ModelImportError("the model has no Conv, MatMul or Gemm layer")
        else:
            self.output_scale = state.scale
            self.notes.append("the last layer's outputs are Quant codes (a trailing Quant on the logits)")
        return self.layers

    def step(self, node, state):
        op = node.op_type
        if op in ("Identity", "Dropout"):
            return state
        if isinstance(state, _Raw):
            return self.raw_step(node, state)
        if op in ("Conv", "MatMul", "Gemm"):
            if isinstance(state, _Pending):
                raise _fail(node, "it follows another Conv/MatMul without an activation Quant between them")
            return self.begin_layer(node, state)
        if isinstance(state, _Pending):
            return self.pending_step(node, state)
        return self.codes_step(node, state)

    # ---- input -----------------------------------------------------------------------------------
    def raw_step(self, node, state: _Raw):
        op = node.op_type
        if op in ("Flatten", "Reshape"):
            return _Raw((int(np.prod(state.shape)),), state.ops, state.shape if len(state.shape) == 3 else state.chw)
        if op in ("Mul", "Add", "Sub", "Div"):
            const = [i for i in node.input if self.const(i) is not None]
            reversed_op = op in ("Sub", "Div") and bool(const) and node.input[0] == const[0]  # c − x, c / x
            if len(const) != 1 or self.const(const[0]).size != 1 or reversed_op:
                raise _fail(node, "before the input Quant only x·c, x+c, x−c and x/c with one constant c are "
                                  "supported")
            state.ops.append((op, np.float32(self.const(const[0]).reshape(()))))
            return state
        if op in ("Quant", "BipolarQuant"):
            return self.input_quant(node, state)
        if op in ("Conv", "MatMul", "Gemm"):
            if state.ops:
                raise _fail(node, "the input is transformed by float ops without a Quant before the first layer")
            fmt = IntFormat.unsigned(8)
            self.input_report = {"quant": None, "transform": self.transform.to_json(), "format": str(fmt),
                                 "scale": self.input_scale}
            return self.begin_layer(node, _Codes(fmt, self.input_scale, state.shape, state.chw))
        raise _fail(node, "before the input's Quant only Flatten, Reshape and scalar Mul/Add/Sub/Div are supported")

    def input_quant(self, node, state: _Raw):
        pixels = np.arange(256)
        x = _source_x(pixels, self.input_scale)
        for op, c in state.ops:
            x = {"Mul": x * c, "Add": x + c, "Sub": x - c, "Div": x / c}[op].astype(np.float32)
        if node.op_type == "BipolarQuant":
            scale = self.bipolar_scale(node)
            codes = np.where(x >= 0, 1, -1)
            fmt = IntFormat.bipolar()
        else:
            scale, bits, signed, narrow, mode = self.quant_args(node)
            try:
                codes = self.int_quant_codes(x, scale, bits, signed, narrow, mode).astype(np.int64)
            except ValueError as e:  # an unknown rounding mode
                raise _fail(node, str(e)) from None
            fmt = IntFormat.bipolar() if bits == 1 and signed else None
        if scale.size != 1:
            raise _fail(node, "the input Quant must have one scale for the whole tensor")
        s = float(scale.reshape(()))
        transform = _find_transform(codes)
        if transform is None:
            desc = "".join(f" then {op} {float(c):g}" for op, c in state.ops)
            bad = _first_mismatch(codes)
            raise _fail(node, f"its codes round(pixel·{self.input_scale:g}{desc} / {s:g}) are no lowbit input "
                              f"transform (pixel >> k, (pixel >> k) − a, or pixel ≥ t → ±1) on all 256 pixel "
                              f"values (e.g. pixel {bad} → code {int(codes[bad])}); input scale "
                              f"{self.input_scale:g}, Quant scale {s:g}")
        if fmt is None:
            lo, hi = int(codes.min()), int(codes.max())
            fmt = IntFormat.unsigned(max(1, hi.bit_length())) if lo >= 0 else IntFormat.signed(
                max(2, signed_bits_for_range(lo, hi)))
        self.transform = transform
        self.input_report = {"quant": node.name, "transform": transform.to_json(), "format": str(fmt), "scale": s,
                             "exact": True}
        return _Codes(fmt, s, state.shape, state.chw)

    # ---- layers --------------------------------------------------------------------------------
    def begin_layer(self, node, inp: _Codes) -> _Pending:
        op, a = node.op_type, _attrs(node)
        if op == "Conv":
            if len(inp.shape) != 3:
                raise _fail(node, f"a convolution needs a [C, H, W] input, not {list(inp.shape)}")
            if a.get("group", 1) != 1:
                raise _fail(node, f"grouped convolution (group={a['group']}) is not supported: lowbit convolutions "
                                  "are dense over the input channels")
            if any(d != 1 for d in a.get("dilations", [1, 1])):
                raise _fail(node, f"dilations {a['dilations']} are not supported (only 1)")
            if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
                raise _fail(node, f"auto_pad {a['auto_pad']} is not supported (give explicit pads)")
            pads = list(a.get("pads", [0, 0, 0, 0]))
            if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
                raise _fail(node, f"pads {pads} must be symmetric 2-D [top, left, bottom, right]")
            if any(pads) and inp.fmt.kind is Kind.BIPOLAR:
                raise _fail(node, "zero padding of a bipolar (±scale) input has no code for 0")
            p = self.weights_of(node, node.input[1])
            if p.codes.ndim != 4 or p.codes.shape[1] != inp.shape[0]:
                raise _fail(node, f"weights of shape {list(p.codes.shape)} do not fit the input {list(inp.shape)}")
            w = p.codes.transpose(0, 2, 3, 1)
            scale = p.scale.transpose(0, 2, 3, 1)
            bias = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            out_shape = tuple(self.m.get_tensor_shape(node.output[0])[1:])
            conv = {"stride": tuple(a.get("strides", [1, 1])), "padding": (pads[0], pads[1]),
                    "in_shape": (inp.shape[1], inp.shape[2], inp.shape[0])}
            kind = "conv"
        else:
            if len(inp.shape) != 1:
                raise _fail(node, f"a dense layer needs a flat input (Flatten first), not {list(inp.shape)}")
            p = self.weights_of(node, node.input[1])
            w, scale, bias = p.codes, p.scale, None
            if op == "Gemm":
                if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                    raise _fail(node, "only Gemm with transA=0, alpha=1, beta=1 is supported")
                if not a.get("transB", 0):
                    w, scale = w.T, scale.T
                bias = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            else:
                w, scale = w.T, scale.T  # MatMul: x[1, in] @ W[in, out]
            if w.ndim != 2 or w.shape[1] != inp.shape[0]:
                raise _fail(node, f"weights of shape {list(w.shape)} (out, in) do not fit {inp.shape[0]} inputs")
            if inp.chw is not None:
                w, scale = nchw_columns(w, inp.chw), nchw_columns(scale, inp.chw)
            out_shape, conv, kind = (w.shape[0],), {}, "fc"
        rows = scale.reshape(scale.shape[0], -1)
        if not np.all(rows == rows[:, :1]):
            raise _fail(node, "its weight scale varies within an output channel: only per-tensor or per-output-"
                              "channel scales are supported")
        s_w = rows[:, 0].copy()
        alpha = inp.scale * s_w
        beta = np.zeros(w.shape[0])
        pend = _Pending(node, kind, w.astype(np.int64), p.fmt, s_w, inp, alpha, beta, out_shape, conv)
        if bias is not None:
            self.add_const(node, pend, bias, flat=True)
        return pend

    def channel_vector(self, node, pend: _Pending, c: np.ndarray, *, flat: bool = False) -> np.ndarray:
        """A constant that broadcasts over one output tensor, as one value per output channel."""
        c = np.asarray(c, np.float64)
        n = pend.channels
        if c.size == 1:
            return np.full(n, float(c.reshape(())))
        if flat and c.size == n and max(c.shape) == n:
            return c.reshape(n)
        axis = -3 if pend.kind == "conv" else -1  # the channel axis of an NCHW or [N, F] output
        if c.size == n and c.ndim >= -axis and c.shape[axis] == n:
            return c.reshape(n)
        raise _fail(node, f"a constant of shape {list(c.shape)} must be one value or one per output channel ({n})")

    def add_const(self, node, pend: _Pending, c, *, flat: bool = False, sign: float = 1.0):
        pend.beta = pend.beta + sign * self.channel_vector(node, pend, c, flat=flat)

    def pending_step(self, node, pend: _Pending):
        op = node.op_type
        const = [i for i in node.input if i and self.const(i) is not None]
        if op in ("Add", "Sub", "Mul", "Div"):
            if pend.relu:
                raise _fail(node, "arithmetic after the Relu (before its Quant) is not supported")
            c = self.const(const[0])
            if op in ("Sub", "Div") and node.input[0] == const[0]:
                raise _fail(node, "a constant minus (or divided by) the accumulator is not supported")
            if op == "Add":
                self.add_const(node, pend, c)
            elif op == "Sub":
                self.add_const(node, pend, c, sign=-1.0)
            else:
                k = self.channel_vector(node, pend, c)
                k = k if op == "Mul" else 1.0 / k
                pend.alpha, pend.beta = pend.alpha * k, pend.beta * k
            return pend
        if op == "BatchNormalization":
            if pend.relu:
                raise _fail(node, "batch norm after the Relu is not supported")
            a = _attrs(node)
            g, b, mean, var = (self.channel_vector(node, pend, self.const(i), flat=True) for i in node.input[1:5])
            k = g / np.sqrt(var + a.get("epsilon", 1e-5))
            pend.alpha, pend.beta = pend.alpha * k, (pend.beta - mean) * k + b
            pend.batchnorm = True
            return pend
        if op == "Relu":
            pend.relu = True
            return pend
        if op == "Quant":
            return self.finish_int(node, pend)
        if op == "BipolarQuant":
            return self.finish_bipolar(node, pend)
        raise _fail(node, f"{op} between a Conv/MatMul and its activation Quant is not supported (expected bias "
                          "Add, Mul, BatchNormalization, Relu, then Quant or BipolarQuant)")

    def codes_step(self, node, st: _Codes):
        op, a = node.op_type, _attrs(node)
        if op in ("Flatten", "Reshape"):
            out = self.m.get_tensor_shape(node.output[0])
            features = int(np.prod(st.shape))
            if out is None or len(out) != 2 or out[1] != features or (op == "Flatten" and a.get("axis", 1) != 1):
                raise _fail(node, f"only a flatten to [1, {int(np.prod(st.shape))}] is supported, not {out}")
            return _Codes(st.fmt, st.scale, (int(np.prod(st.shape)),), st.shape if len(st.shape) == 3 else st.chw)
        if op == "Relu":
            if st.fmt.kind is Kind.UNSIGNED:
                return st
            raise _fail(node, f"a Relu on {st.fmt} codes after their Quant is not supported (put it before the Quant)")
        if op == "MaxPool":
            if len(st.shape) != 3:
                raise _fail(node, f"a max-pool needs a [C, H, W] input, not {list(st.shape)}")
            kernel = tuple(a.get("kernel_shape", []))
            stride = tuple(a.get("strides", [1] * len(kernel)))
            if len(kernel) != 2 or any(a.get("pads", [0, 0, 0, 0])) or any(d != 1 for d in a.get("dilations", [1, 1])) \
                    or a.get("storage_order", 0) or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
                raise _fail(node, "only a 2-D max-pool without padding or dilation is supported")
            c, h, w = st.shape
            name = f"pool{self.counts['pool']}"
            self.counts["pool"] += 1
            try:
                layer = MaxPool2dLayer(st.fmt, name, in_shape=(h, w, c), kernel=kernel, stride=stride)
            except IRError as e:
                raise _fail(node, str(e)) from None
            self.layers.append(layer)
            self.report_layers.append({"name": name, "source": node.name, "op": "maxpool2d", "format": str(st.fmt),
                                       "exact": True})
            oh, ow, _ = layer.out_shape
            return _Codes(st.fmt, st.scale, (c, oh, ow))
        if op == "Quant":
            scale, bits, signed, narrow, mode = self.quant_args(node)
            from qonnx.custom_op.general.intquant import max_int, min_int

            if scale.size == 1 and float(scale.reshape(())) == st.scale and \
                    min_int(signed, narrow, bits) <= st.fmt.min and st.fmt.max <= max_int(signed, narrow, bits):
                return st  # re-quantizing codes to their own grid: the identity
            raise _fail(node, "a Quant of already quantized codes (a requantization without a layer) is not supported")
        raise _fail(node, f"{op} on quantized activations is not supported")

    # ---- finishing a layer -------------------------------------------------------------------
    def _flip(self, pend: _Pending):
        """Make every alpha non-negative by negating channels' weights (the multiplier is non-negative)."""
        neg = pend.alpha < 0
        if not neg.any():
            return 0
        w = pend.weights.copy()
        w[neg] = -w[neg]
        fmt = pend.wfmt
        if not np.all(fmt.contains(w)):
            lo, hi = int(w.min()), int(w.max())
            fmt = IntFormat.signed(signed_bits_for_range(min(lo, -1), hi))
            self.notes.append(f"{pend.node.name}: negated weights of {int(neg.sum())} channels (negative batch-norm "
                              f"scale) need {fmt}, not {pend.wfmt}")
        pend.weights, pend.wfmt, pend.alpha = w, fmt, np.abs(pend.alpha)
        return int(neg.sum())

    def _make(self, pend: _Pending, bias, requant):
        k = "conv" if pend.kind == "conv" else "fc"
        name = f"{k}{self.counts[k]}"
        self.counts[k] += 1
        bias = np.asarray(bias, np.int64)
        try:
            if pend.kind == "conv":
                layer = Conv2dLayer(pend.weights, pend.wfmt, pend.inp.fmt, bias, requant, name,
                                    in_shape=pend.conv["in_shape"], stride=pend.conv["stride"],
                                    padding=pend.conv["padding"])
            else:
                layer = DenseLayer(pend.weights, pend.wfmt, pend.inp.fmt, bias, requant, name)
        except (IRError, ValueError) as e:
            raise _fail(pend.node, str(e)) from None
        self.layers.append(layer)
        return layer

    def _layer_report(self, pend, name, **kw) -> dict:
        per_channel = not np.all(pend.wscale == pend.wscale[0])
        return {"name": name, "source": pend.node.name, "op": "conv2d" if pend.kind == "conv" else "dense",
                "weight_format": str(pend.wfmt), "in_format": str(pend.inp.fmt),
                "weight_scale": "pow2" if _is_pow2(pend.wscale) else "float",
                "granularity": "channel" if per_channel else "tensor", "batchnorm": pend.batchnorm, **kw}

    def _acc_bounds(self, pend: _Pending):
        """Per channel, the reachable accumulator range (without bias) over the input format."""
        w = pend.weights.reshape(pend.channels, -1)
        lo_x, hi_x = pend.inp.fmt.min, pend.inp.fmt.max
        return np.minimum(w * lo_x, w * hi_x).sum(1), np.maximum(w * lo_x, w * hi_x).sum(1)

    def finish_int(self, node, pend: _Pending):
        scale, bits, signed, narrow, mode = self.quant_args(node)
        if mode.upper() not in ACT_ROUNDING:
            raise _fail(node, f"rounding_mode {mode} is not supported for activations (supported: "
                              f"{', '.join(ACT_ROUNDING)})")
        if scale.size != 1:
            raise _fail(node, "an activation Quant must have one scale for the tensor (the next layer's input)")
        if bits == 1 and signed:
            raise _fail(node, "a 1-bit signed Quant: export bipolar activations as BipolarQuant")
        s_out = float(scale.reshape(()))
        fmt = _int_format(node, signed, bits)
        from qonnx.custom_op.general.intquant import max_int, min_int

        qlo, qhi = min_int(signed, narrow, bits), max_int(signed, narrow, bits)
        if pend.relu:
            qlo = max(qlo, 0)
        flipped = self._flip(pend)
        if np.any(pend.alpha == 0):
            raise _fail(pend.node, "a channel with scale 0 (constant output) is not supported")
        real_mode = mode.upper()
        r = pend.alpha / s_out
        b_star = pend.beta / pend.alpha
        relu = pend.relu or not signed
        rq, bias, info = _direct(r, b_star, fmt, qlo, qhi, ACT_ROUNDING[real_mode], relu, real_mode, signed,
                                 self.multiplier_bits)
        if rq is None:
            acc_lo, acc_hi = self._acc_bounds(pend)
            rq, bias, info = _fit_thresholds(r, b_star, fmt, qlo, qhi, relu, real_mode, acc_lo, acc_hi,
                                             self.multiplier_bits)
        layer = self._make(pend, bias, rq)
        self.report_layers.append(self._layer_report(pend, layer.name, out_format=str(fmt), act_scale=s_out,
                                                     flipped_channels=flipped, **info))
        if info.get("narrow_range_reached"):
            self.notes.append(f"{layer.name} ({pend.node.name}): the narrow range {qlo}..{qhi} of {node.name} has no "
                              f"lowbit format: accumulators beyond it give {fmt}'s end codes")
        elif not info["exact"]:
            why = " (batch-norm shifts are not whole accumulator steps)" if pend.batchnorm else ""
            self.notes.append(f"{layer.name} ({pend.node.name}): no multiplier of ≤ {self.multiplier_bits} bits "
                              f"with an integer bias reproduces every threshold{why}; the one missing fewest is "
                              f"used: {info['thresholds_missed']} of {info['thresholds']} thresholds one accumulator "
                              f"step off, effective scale within {info['max_rel_scale_error']:.2e} (relative)")
        shape = pend.out_shape
        return _Codes(fmt, s_out, shape)

    def finish_bipolar(self, node, pend: _Pending):
        scale = self.bipolar_scale(node)
        if scale.size != 1:
            raise _fail(node, "a BipolarQuant activation must have one scale for the tensor")
        if pend.relu:
            raise _fail(node, "a Relu before a BipolarQuant is not supported (every output would be +1)")
        flipped = self._flip(pend)
        if np.any(pend.alpha == 0):
            raise _fail(pend.node, "a channel with scale 0 (constant output) is not supported")
        # +1 iff alpha·acc + beta ≥ 0 iff acc ≥ ceil(−beta/alpha): the threshold is an integer bias
        acc_lo, acc_hi = self._acc_bounds(pend)
        t = np.clip(np.ceil(-pend.beta / pend.alpha), acc_lo, acc_hi + 1)
        bias = (-t).astype(np.int64)
        layer = self._make(pend, bias, RequantParams(IntFormat.bipolar(), 0, None, "floor", False))
        self.report_layers.append(self._layer_report(pend, layer.name, out_format="bipolar",
                                                     act_scale=float(scale.reshape(())), requant="sign",
                                                     multiplier_bits=0, flipped_channels=flipped, exact=True,
                                                     max_rel_scale_error=0.0))
        return _Codes(IntFormat.bipolar(), float(scale.reshape(())), pend.out_shape)

    def finish_logits(self, pend: _Pending):
        if pend.relu:
            raise _fail(pend.node, "a Relu on the logits without a Quant is not supported")
        flipped = self._flip(pend)  # a negative output scale: negated weights give the same real logits
        if np.any(pend.alpha == 0):
            raise _fail(pend.node, "an output with scale 0 (a constant logit) is not supported")
        alpha, b_star = pend.alpha, pend.beta / pend.alpha
        bias = np.round(b_star)
        bias_exact = bool(np.all(np.abs(bias - b_star) <= _REL * np.maximum(1.0, np.abs(b_star))))
        per_tensor = bool(np.all(alpha == alpha[0]))
        if not bias_exact:
            self.notes.append(f"{pend.node.name}: the logits' bias is not a whole number of accumulator steps "
                              f"(up to {float(np.abs(bias - b_star).max()):.3g} steps off): rounded")
        if not per_tensor:
            self.notes.append(f"{pend.node.name}: the logits have a scale per output (e.g. a batch norm after the "
                              "last layer); it is recorded as metadata output_scale: lowbit's argmax over raw "
                              "accumulators can differ from the source's")
        layer = self._make(pend, bias, None)
        self.output_scale = float(alpha[0]) if per_tensor else alpha.tolist()
        self.report_layers.append(self._layer_report(pend, layer.name, out_format=None, requant=None,
                                                     flipped_channels=flipped, multiplier_bits=0,
                                                     exact=bias_exact and per_tensor,
                                                     bias_exact=bias_exact, max_rel_scale_error=0.0,
                                                     output_scale=self.output_scale))


# ---- requantizer choice ------------------------------------------------------------------------
def _dyadic(r: np.ndarray, bits: int):
    """``(m, s)`` per entry with ``m/2^s == r`` exactly (m < 2^bits, the smallest shift), or None."""
    limit = (1 << bits) - 1
    ms, ss = [], []
    for v in np.atleast_1d(r):
        for s in range(MAX_SHIFT + 1):
            m = v * 2.0 ** s
            if m == math.floor(m):
                break
        else:
            return None
        if not 1 <= m <= limit:
            return None
        ms.append(int(m))
        ss.append(s)
    return np.array(ms, np.int64), np.array(ss, np.int64)


def _pack(m, s):
    """Scalars when every channel agrees; no multiplier when every m is 1."""
    m, s = np.asarray(m, np.int64).copy(), np.asarray(s, np.int64).copy()
    while True:  # m/2^s in lowest terms: a power-of-two m is a shift
        even = (m % 2 == 0) & (s > 0) & (m > 0)
        if not even.any():
            break
        m[even] //= 2
        s[even] -= 1
    s_out = np.int64(s[0]) if np.all(s == s[0]) else s
    if np.all(m == 1):
        return None, s_out
    return (np.int64(m[0]) if np.all(m == m[0]) else m), s_out


def _direct(r, b_star, fmt, qlo, qhi, rounding, relu, mode, signed, bits):
    """The requantizer when the ratio is exactly ``m/2^s`` and the bias integral (qonnx's own rounding)."""
    bias = np.round(b_star)
    if not np.all(np.abs(bias - b_star) <= _REL * np.maximum(1.0, np.abs(b_star))):
        return None, None, None
    lo = max(fmt.min, 0) if relu else fmt.min
    if (lo, fmt.max) != (qlo, qhi):
        return None, None, None  # a narrow range: lowbit clips at the format's ends
    if mode == "HALF_UP" and signed and not relu:
        return None, None, None  # qonnx's HALF_UP rounds negative ties away from zero, lowbit's up
    found = _dyadic(r, bits)
    if found is None:
        return None, None, None
    m, s = _pack(*found)
    rq = RequantParams(fmt, s, m, rounding, relu)
    return rq, bias.astype(np.int64), {"requant": "shift" if m is None else "multiplier",
                                       "multiplier_bits": rq.multiplier_bits, "exact": True, "bias_exact": True,
                                       "max_rel_scale_error": 0.0}


def _real_thresholds(r, c0, k, mode):
    """Smallest integer acc with ``R(r·acc + c0) ≥ k`` (qonnx's rounding R), as float (may be huge)."""
    t = (k - (0.0 if mode == "FLOOR" else 0.5) - c0) / r
    T = np.ceil(t)
    tie = T == t
    if mode in ("ROUND", "HALF_EVEN"):
        strict = (k % 2) != 0  # a tie rounds to the even neighbour: reaching odd k needs more than the tie
    elif mode == "HALF_UP":
        strict = k <= 0  # away from zero: a negative tie goes down
    else:
        strict = False
    return np.where(tie & strict, T + 1, T)


def _fit_thresholds(r, b_star, fmt, qlo, qhi, relu, mode, acc_lo, acc_hi, bits):
    """Per channel ``(m, s, bias)`` whose half-up requantizer equals the real one at every threshold."""
    # the levels the source's staircase climbs; a narrow range's missing end (−2^(b−1), or 2^b − 1) is a clip
    # lowbit's formats do not have: checked afterwards at the ends of the accumulator range
    levels = np.arange(qlo + 1, qhi + 1)
    limit = (1 << bits) - 1
    ms, ss, bs = [], [], []
    exact = True
    worst, missed, narrow_missed = 0.0, 0, False
    for c in range(len(r)):
        rc, lo_a, hi_a = float(r[c]), int(acc_lo[c]), int(acc_hi[c])
        T = _real_thresholds(rc, b_star[c] * rc, levels, mode)
        T = np.clip(T, lo_a, hi_a + 1).astype(np.int64)  # thresholds outside the reachable range: any beyond it
        sol, misses = _search(rc, b_star[c], levels, T, lo_a, hi_a, limit, fmt, relu)
        if sol is None:  # a ratio beyond any multiplier of these bits
            raise ModelImportError(f"a requantization ratio {rc:.4g} needs more than {bits} multiplier bits")
        ends = requantize(np.array([lo_a, hi_a]) + sol[2], RequantParams(fmt, sol[1], sol[0], "half_up", relu))
        if ends[0] < qlo or ends[1] > qhi:  # reaches a code the source's narrow range never gives
            misses += 1
            narrow_missed = True
        missed += misses
        exact = exact and misses == 0
        worst = max(worst, abs(sol[0] / 2.0 ** sol[1] - rc) / rc)
        ms.append(sol[0])
        ss.append(sol[1])
        bs.append(sol[2])
    m, s = _pack(ms, ss)
    rq = RequantParams(fmt, s, m, "half_up", relu)
    return rq, np.array(bs, np.int64), {"requant": "multiplier" if m is not None else "shift",
                                        "multiplier_bits": rq.multiplier_bits, "exact": exact,
                                        "bias_exact": bool(np.all(np.abs(np.round(b_star) - b_star)
                                                                  <= _REL * np.maximum(1.0, np.abs(b_star)))),
                                        "max_rel_scale_error": float(worst),
                                        "max_bias_error": float(np.max(np.abs(np.array(bs) - b_star))),
                                        "thresholds_missed": int(missed), "thresholds": int(len(r) * len(levels)),
                                        "narrow_range_reached": narrow_missed}


def _misses(m, s, b, levels, T, lo_a, hi_a, fmt, relu) -> int:
    """How many accumulators at (or just below) a real threshold ``T`` ``requantize(acc + b)`` puts on
    another level than the real requantizer (0: they agree on the whole range, both being monotone)."""
    rq = RequantParams(fmt, s, m, "half_up", relu)
    below = T - 1
    probe = np.concatenate([T[T <= hi_a], below[below >= lo_a], [lo_a, hi_a]])
    y = requantize(probe + b, rq)
    want = levels[0] - 1 + np.sum(T[None, :] <= probe[:, None], axis=1)  # T rises with the level
    return int(np.sum(y != want))


def _level_bounds(s: int, b: int, levels, T, lo_a: int, hi_a: int, limit: int):
    """Per level ``k``, the multipliers ``[L, U]`` with which ``round_half_up((acc + b)·m / 2^s)`` steps to
    ``k`` exactly at the real threshold ``T_k``: acc = T reaches it, acc = T − 1 does not."""
    num = (levels - 0.5) * 2.0 ** s
    lo = np.ones(len(levels))
    hi = np.full(len(levels), float(limit))
    reach = T <= hi_a  # (T + b)·m ≥ num
    v = (T + b).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(reach & (v > 0), np.maximum(lo, np.ceil(num / v)), lo)
        hi = np.where(reach & (v < 0), np.minimum(hi, np.floor(num / v)), hi)
        hi = np.where(reach & (v == 0) & (num > 0), 0, hi)
        stay = T > lo_a  # (T − 1 + b)·m < num
        v = (T - 1 + b).astype(np.float64)
        hi = np.where(stay & (v > 0), np.minimum(hi, np.ceil(num / v) - 1), hi)
        lo = np.where(stay & (v < 0), np.maximum(lo, np.floor(num / v) + 1), lo)
        hi = np.where(stay & (v == 0) & (num <= 0), 0, hi)
    return lo, hi


def _search(r, b_star, levels, T, lo_a, hi_a, limit, fmt, relu):
    """``((m, s, b), misses)``: the widest ``m ≤ limit`` (largest shift) and an integer bias near ``b_star``
    reproducing every threshold (misses 0), else the triple missing the fewest."""
    s_top = min(MAX_SHIFT, int(math.floor(math.log2(limit / r))))
    b0 = int(np.round(b_star))
    best, best_misses = None, None
    for s in range(s_top, -1, -1):
        ideal = r * 2.0 ** s
        for b in (b0, b0 - 1, b0 + 1, b0 - 2, b0 + 2):
            lo, hi = _level_bounds(s, b, levels, T, lo_a, hi_a, limit)
            # the m inside the most levels' bounds (an optimum sits on a lower bound), nearest the real ratio
            cands = np.unique(np.clip(np.concatenate([lo, [np.round(ideal)]]), 1, limit))
            inside = ((lo[None, :] <= cands[:, None]) & (cands[:, None] <= hi[None, :])).sum(1)
            order = np.lexsort((np.abs(cands - ideal), -inside))
            m = int(cands[order[0]])
            misses = _misses(m, s, b, levels, T, lo_a, hi_a, fmt, relu)
            if misses == 0:
                return (m, s, b), 0
            if best_misses is None or misses < best_misses:
                best, best_misses = (m, s, b), misses
    return best, best_misses


def _find_transform(codes: np.ndarray) -> InputTransform | None:
    """The :class:`InputTransform` giving ``codes`` (one per pixel value 0..255), or None."""
    p = np.arange(256)
    if set(np.unique(codes)) <= {-1, 1}:
        up = np.nonzero(codes == 1)[0]
        t = int(up[0]) if up.size else 256
        if np.array_equal(codes, np.where(p >= t, 1, -1)):
            return InputTransform("threshold", t)
    for k in range(9):
        d = (p >> k) - codes
        if np.all(d == d[0]):
            if d[0] == 0:
                return InputTransform("shift", k)
            if abs(int(d[0])) <= InputTransform.AMOUNTS["offset"][1]:
                return InputTransform("offset", int(d[0]), k)
    return None


def _first_mismatch(codes: np.ndarray) -> int:
    p = np.arange(256)
    d = p - codes
    return int(np.nonzero(d != d[0])[0][0]) if np.any(d != d[0]) else 0


def _source_x(pixels, input_scale: float) -> np.ndarray:
    """The source graph's float32 input for uint8 pixels (the one definition: import and agreement)."""
    return (np.asarray(pixels, np.float64) * input_scale).astype(np.float32)


# ---- public API --------------------------------------------------------------------------------
def import_qonnx(model, *, input_scale: float = 1 / 255, multiplier_bits: int = 16, name=None) -> tuple[Network, dict]:
    """The integer IR of a quantized QONNX ``model`` (path, bytes or ModelProto) and a report dict.

    ``input_scale``: the graph's float input is ``pixel · input_scale`` (``1/255``: torchvision's
    ``ToTensor``). ``multiplier_bits`` (2..16) bounds the requantizers' multipliers. The report has
    ``ops`` (the op types met), ``input``, ``layers`` (per layer: weight format, scale kind pow2/float
    and tensor/channel, requantizer, multiplier bits, exact or not, the worst relative scale error),
    ``exact``, ``output_scale`` (qonnx's logits = output_scale · lowbit's), ``notes`` and ``seconds``.
    """
    t0 = time.perf_counter()
    if not (isinstance(input_scale, (int, float)) and math.isfinite(input_scale) and input_scale > 0):
        raise ModelImportError(f"input_scale must be a positive number, not {input_scale!r}")
    if not isinstance(multiplier_bits, int) or not 2 <= multiplier_bits <= MAX_MULTIPLIER_BITS:
        raise ModelImportError(f"multiplier_bits must be an integer in 2..{MAX_MULTIPLIER_BITS}, not "
                               f"{multiplier_bits!r}")
    wrapper = load_qonnx(model)
    reader = _Reader(wrapper, float(input_scale), multiplier_bits)
    layers = reader.run()
    exact = all(l.get("exact", True) for l in reader.report_layers) and reader.input_report.get("exact", True)
    source = str(model) if isinstance(model, (str, Path)) else "QONNX model"
    meta = {"source": "qonnx", "model": source, "input_scale": float(input_scale),
            "output_scale": reader.output_scale, "exact": exact, "multiplier_bits": multiplier_bits}
    if name is None:
        name = Path(model).stem if isinstance(model, (str, Path)) else "qonnx"
    try:
        net = Network(layers, reader.transform, name, meta)
    except IRError as e:
        raise ModelImportError(f"the imported layers do not chain: {e}") from None
    report = {"source": source, "ops": reader.ops_met, "input": reader.input_report, "layers": reader.report_layers,
              "exact": exact, "output_scale": reader.output_scale, "source_shape": list(reader.source_shape),
              "notes": reader.notes, "seconds": time.perf_counter() - t0}
    report["lines"] = _report_lines(report)
    return net, report


def _report_lines(report: dict) -> list[str]:
    """The report in printable lines (what ``lowbit import`` prints)."""
    inp = report["input"]
    lines = [f"QONNX ops: {', '.join(report['ops'])}; {'exact' if report['exact'] else 'approximate'} import",
             f"input: {inp.get('transform')} → {inp.get('format')} codes of scale {inp.get('scale', 0):.6g}"
             + (f" (Quant {inp['quant']})" if inp.get("quant") else " (the pixels: no input Quant)")]
    for l in report["layers"]:
        if l["op"] == "maxpool2d":
            lines.append(f"{l['name']} ({l['source']}): max-pool on {l['format']} codes")
            continue
        rq = l.get("requant")
        what = ("raw logits, output scale " + (f"{l['output_scale']:.6g}" if isinstance(l["output_scale"], float)
                                               else "per channel")) if rq is None else (
            f"→ {l['out_format']} by {rq}"
            + (f" ({l['multiplier_bits']}-bit multiplier)" if l["multiplier_bits"] else ""))
        extra = f", {l['thresholds_missed']}/{l['thresholds']} thresholds off by one step" if l.get(
            "thresholds_missed") else ""
        lines.append(f"{l['name']} ({l['source']}): W {l['weight_format']} ({l['weight_scale']} scale per "
                     f"{l['granularity']}){' + BN' if l['batchnorm'] else ''} {what}; "
                     f"{'exact' if l['exact'] else 'approximate'}{extra}")
    return lines + [f"note: {n}" for n in report["notes"]]


def qonnx_agreement(model, net: Network, pixels, *, input_scale: float = 1 / 255, batch: int = 512) -> dict:
    """Run qonnx's executor (batched) and lowbit's golden model on uint8 ``pixels`` (rows, NHWC order).

    Returns ``images``, ``class_agreement`` (share of equal argmax), ``class_agreement_rounded`` (the same
    with qonnx's logits rounded to lowbit's integer grid first: ties broken alike), ``logits_equal`` (share of logits
    equal after dividing qonnx's by ``net.metadata["output_scale"]`` and rounding), ``logits_exact``
    (share equal without rounding) and ``max_abs_diff`` (in lowbit's logit units)."""
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    from ..golden import run_network

    if "output_scale" not in net.metadata:
        raise ModelImportError("the network has no metadata output_scale: import it with import_qonnx")
    wrapper = load_qonnx(model)
    iname, oname = wrapper.graph.input[0].name, wrapper.graph.output[0].name
    shape = tuple(wrapper.get_tensor_shape(iname))[1:]
    pixels = np.asarray(pixels)
    n = len(pixels)
    x = _source_x(pixels, input_scale)
    if len(shape) == 3:  # rows are NHWC (h, w, c); the graph takes NCHW
        c, h, w = shape
        x = x.reshape(n, h, w, c).transpose(0, 3, 1, 2)
    x = np.ascontiguousarray(x.reshape(n, *shape))
    sized = {}
    outs = []
    for i in range(0, n, batch):
        chunk = x[i:i + batch]
        if len(chunk) not in sized:
            sized[len(chunk)] = wrapper.transform(ChangeBatchSize(len(chunk))).transform(InferShapes())
        out = np.asarray(execute_onnx(sized[len(chunk)], {iname: chunk})[oname], np.float64)
        if out.ndim == 4:  # a convolutional last layer: NCHW → lowbit's NHWC order
            out = out.transpose(0, 2, 3, 1)
        outs.append(out.reshape(len(chunk), -1))
    theirs = np.concatenate(outs) / np.asarray(net.metadata["output_scale"], np.float64)
    ours = run_network(net, pixels, raw_pixels=True, keep="logits").logits.reshape(n, -1).astype(np.float64)
    diff = np.abs(theirs - ours)
    # qonnx's float32 logits break ties between equal integer logits by round-off (e.g. 0.1·k); the
    # rounded ones break them as lowbit does (lowest index)
    return {"images": n, "class_agreement": float(np.mean(theirs.argmax(1) == ours.argmax(1))),
            "class_agreement_rounded": float(np.mean(np.round(theirs).argmax(1) == ours.argmax(1))),
            "logits_equal": float(np.mean(np.round(theirs) == ours)), "logits_exact": float(np.mean(theirs == ours)),
            "max_abs_diff": float(diff.max()) if diff.size else 0.0}
