"""The walk over a cleaned QONNX chain (:class:`Reader`): node by node, what each op means for the
integer IR — constants and quantized weights, the input Quant as an :class:`~lowbit.sw.ir.InputTransform`,
a layer's Conv/MatMul/Gemm and the bias/scale/BN/Relu ops up to its activation Quant, max-pools and
flattens of codes — and every refusal (:func:`~.qonnx_layers.fail`).

Split out of :mod:`.qonnx` (the public API; its docstring describes the whole importer) to keep each
module under ~500 lines. The tensors passed between nodes and the finishing of a layer into an IR
layer with its requantizer are in :mod:`.qonnx_layers` (mixed into :class:`Reader`); the requantizer
arithmetic is in :mod:`.qonnx_requant`.
"""

from __future__ import annotations

import numpy as np

from ..formats import IntFormat, Kind, signed_bits_for_range
from ..ir import InputTransform, IRError, MaxPool2dLayer
from .common import ModelImportError, nchw_columns
from .qonnx_layers import SUPPORTED_OPS, Codes, LayerFinisher, Param, Pending, Raw, datatype_format, fail, int_format

__all__ = ["Reader", "source_x", "is_lowbit_export", "LOWBIT_INPUT_KEY"]

#: the metadata key lowbit's export writes: its graph takes the raw pixel values (input scale 1)
LOWBIT_INPUT_KEY = "lowbit.input"
#: and the IR layers' names and weight formats (JSON ``[[name, format or null], ...]``)
LOWBIT_LAYERS_KEY = "lowbit.layers"


def is_lowbit_export(wrapper) -> bool:
    """Whether the model was written by :func:`lowbit.sw.export_qonnx.export_qonnx` (its metadata key, or
    the producer name of files written before the key): integer weights without Quant nodes, raw pixels."""
    props = {p.key: p.value for p in wrapper.model.metadata_props}
    return props.get(LOWBIT_INPUT_KEY) == "pixels" or wrapper.model.producer_name == "lowbit"


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


class Reader(LayerFinisher):
    """One walk over a cleaned QONNX chain, building IR layers and the report as it goes."""

    def __init__(self, wrapper, input_scale: float, multiplier_bits: int):
        self.m = wrapper
        self.input_scale = input_scale
        self.multiplier_bits = multiplier_bits
        self.params: dict[str, Param] = {}
        self.constants: dict[str, np.ndarray] = {}
        self.layers: list = []
        self.report_layers: list[dict] = []
        self.notes: list[str] = []
        self.transform = InputTransform()
        self.input_report: dict = {}
        self.counts = {"conv": 0, "fc": 0, "pool": 0}
        self.lowbit_export = is_lowbit_export(wrapper)
        self.recorded = _recorded_layers(wrapper) if self.lowbit_export else None

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
            raise fail(node, "its scale, zero point and bit width must be constants")
        if np.any(np.asarray(zp) != 0):
            raise fail(node, f"zero point {np.asarray(zp).ravel()[:4].tolist()} is not 0: lowbit's formats are "
                              "symmetric (zero point 0)")
        b = float(np.asarray(bits).reshape(-1)[0])
        if np.asarray(bits).size != 1 or b != int(b) or not 1 <= b <= max_bits:
            raise fail(node, f"bit width {np.asarray(bits).ravel().tolist()} must be one integer in 1..{max_bits}")
        scale = np.asarray(scale, np.float32)
        if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
            raise fail(node, "its scale must be positive and finite")
        return scale, int(b), bool(a.get("signed", 1)), bool(a.get("narrow", 0)), str(a.get("rounding_mode", "ROUND"))

    def bipolar_scale(self, node) -> np.ndarray:
        scale = self.const(node.input[1])
        if scale is None or np.any(~np.isfinite(scale)) or np.any(scale <= 0):
            raise fail(node, "its scale must be a positive finite constant")
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

    def weight_param(self, node, data: np.ndarray) -> Param:
        if node.op_type == "BipolarQuant":
            scale = self.bipolar_scale(node)
            codes = np.where(data >= 0, 1.0, -1.0)
            return Param(codes, np.broadcast_to(scale.astype(np.float64), data.shape).copy(), IntFormat.bipolar())
        scale, bits, signed, narrow, mode = self.quant_args(node, max_bits=32)  # biases: Int32Bias
        try:
            codes = self.int_quant_codes(data, scale, bits, signed, narrow, mode)
        except ValueError as e:  # an unknown rounding mode
            raise fail(node, str(e)) from None
        # a constant wider than lowbit's formats can still be a bias (real values); never weights
        fmt = IntFormat.bipolar() if bits == 1 and signed else (
            int_format(node, signed, bits) if bits <= 16 else None)
        return Param(codes, np.broadcast_to(scale.astype(np.float64), data.shape).copy(), fmt)

    def weights_of(self, node, name) -> Param:
        if name in self.params:
            if self.params[name].fmt is None:
                raise fail(node, f"its weights {name!r} have more than 16 bits (lowbit's widest weight format)")
            return self.params[name]
        init = self.m.get_initializer(name)
        fmt = None if init is None else datatype_format(self.m.get_tensor_datatype(name).name)
        if fmt is not None:  # lowbit's export: integer codes annotated with their QONNX datatype, scale 1
            codes = np.asarray(init, np.float64)
            if not np.all(fmt.contains(codes.astype(np.int64))) or not np.all(codes == np.round(codes)):
                raise fail(node, f"its weights {name!r} are annotated {fmt.qonnx_datatype} but hold other values")
            return Param(codes, np.ones_like(codes), fmt)
        if init is not None:
            raise fail(node, f"its weights {name!r} are float (no Quant node): this importer takes quantized "
                              "QONNX models (Brevitas export_qonnx); use the ONNX importer for float models")
        raise fail(node, f"its weights {name!r} are not a constant")

    # ---- the walk -----------------------------------------------------------------------------
    def run(self):
        graph = self.m.graph
        inp = next(i for i in graph.input if self.m.get_initializer(i.name) is None)
        shape = tuple(self.m.get_tensor_shape(inp.name))
        if len(shape) not in (2, 4) or shape[0] != 1:
            raise ModelImportError(f"the model's input {inp.name!r} must be [1, C, H, W] or [1, F] (batch 1, "
                                   f"as Brevitas exports), not {list(shape)}")
        self.source_shape = shape[1:]
        state, current = Raw(shape[1:]), inp.name
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
                self.params[node.output[0]] = Param(np.transpose(p.codes, perm), np.transpose(p.scale, perm), p.fmt)
                continue
            dynamic = [i for i in node.input if i and self.const(i) is None]
            if node.op_type == "Add" and len(dynamic) == 2:
                raise fail(node, "a residual Add of two computed tensors: lowbit's networks are chains")
            if dynamic != [current] or len(node.output) != 1 and node.op_type not in ("Dropout", "BatchNormalization"):
                raise fail(node, f"it must take the one computed tensor {current!r} (a chain of layers), "
                                  f"not {dynamic}")
            if node.op_type == "Cast" and self.lowbit_export:
                # lowbit's export computes a layer in float64 when float32 cannot hold its integers exactly:
                # the values stay the same integers, so a Cast between FLOAT and DOUBLE is the identity
                from onnx import TensorProto

                if _attrs(node).get("to") not in (TensorProto.FLOAT, TensorProto.DOUBLE):
                    raise fail(node, "only a Cast between float32 and float64 is supported")
                current = node.output[0]
                continue
            if node.op_type not in SUPPORTED_OPS or node.op_type == "Transpose":
                extra = (" (Brevitas writes it for a QuantAvgPool2d or a truncated accumulator; lowbit has neither)"
                         if node.op_type == "Trunc" else "")
                if self.lowbit_export and node.op_type == "Transpose":
                    extra = (": re-import of an export that computes a convolution in float64 (lowered to "
                             "im2col and a float64 MatMul: its accumulators reach 2^24) is not supported")
                raise fail(node, f"op {node.op_type} is not supported{extra}")
            state = self.step(node, state)
            current = node.output[0]
        if current != graph.output[0].name:
            raise ModelImportError(f"the graph's output {graph.output[0].name!r} is not the end of its chain "
                                   f"({current!r})")
        if isinstance(state, Pending):
            self.finish_logits(state)
        elif isinstance(state, Raw) or not self.layers:
            raise ModelImportError("the model has no Conv, MatMul or Gemm layer")
        else:
            self.output_scale = state.scale
            self.notes.append("the last layer's outputs are Quant codes (a trailing Quant on the logits)")
        return self.layers

    def step(self, node, state):
        op = node.op_type
        if op in ("Identity", "Dropout"):
            return state
        if isinstance(state, Raw):
            return self.raw_step(node, state)
        if op in ("Conv", "MatMul", "Gemm"):
            if isinstance(state, Pending):
                raise fail(node, "it follows another Conv/MatMul without an activation Quant between them")
            return self.begin_layer(node, state)
        if isinstance(state, Pending):
            return self.pending_step(node, state)
        return self.codes_step(node, state)

    # ---- input -----------------------------------------------------------------------------------
    def raw_step(self, node, state: Raw):
        op = node.op_type
        if op in ("Flatten", "Reshape"):
            return Raw((int(np.prod(state.shape)),), state.ops, state.shape if len(state.shape) == 3 else state.chw)
        if op in ("Mul", "Add", "Sub", "Div"):
            const = [i for i in node.input if self.const(i) is not None]
            reversed_op = op in ("Sub", "Div") and bool(const) and node.input[0] == const[0]  # c − x, c / x
            if len(const) != 1 or self.const(const[0]).size != 1 or reversed_op:
                raise fail(node, "before the input Quant only x·c, x+c, x−c and x/c with one constant c are "
                                  "supported")
            state.ops.append((op, np.float32(self.const(const[0]).reshape(()))))
            return state
        if op in ("Quant", "BipolarQuant"):
            return self.input_quant(node, state)
        if op in ("Conv", "MatMul", "Gemm"):
            if state.ops:  # lowbit's ``offset`` transform without a shift: integer codes without a Quant
                codes = self._emulate(state)
                transform = _find_transform(codes) if np.all(codes == np.round(codes)) else None
                if transform is None:
                    raise fail(node, "the input is transformed by float ops without a Quant before the first "
                                      "layer")
                return self.begin_layer(node, self._set_transform(transform, codes.astype(np.int64), None,
                                                                  self.input_scale,
                                                                  state))
            fmt = IntFormat.unsigned(8)
            self.input_report = {"quant": None, "transform": self.transform.to_json(), "format": str(fmt),
                                 "scale": self.input_scale}
            return self.begin_layer(node, Codes(fmt, self.input_scale, state.shape, state.chw))
        raise fail(node, "before the input's Quant only Flatten, Reshape and scalar Mul/Add/Sub/Div are supported")

    def recorded_layer(self, name: str, fmt, weights):
        """The name and weight format lowbit's export recorded for the next layer (metadata
        ``lowbit.layers``), else ``name`` and ``fmt``: the file's INTn annotation cannot say ``pow2_N``; a
        recorded format must hold the codes read."""
        i = len(self.layers)
        if not self.recorded or i >= len(self.recorded):
            return name, fmt
        rec_name, rec_fmt = self.recorded[i]
        if rec_fmt is not None and fmt is not None:
            from ..formats import parse_format

            try:
                cand = parse_format(rec_fmt)
            except ValueError:
                cand = None
            if cand is not None and cand.kind is not Kind.BIPOLAR and np.all(cand.contains(weights)):
                fmt = cand
        return (rec_name if isinstance(rec_name, str) and rec_name.isidentifier() else name), fmt

    def _pad(self, node, st: Codes, a: dict) -> Codes:
        """A Pad before a Conv (lowbit's export pads a bipolar input with −1, its code for 0): folded into
        the Conv's padding."""
        pad = _pad_of(self, node, st, a)
        if pad is None:
            raise fail(node, f"only a constant Pad of H and W (symmetric) by the zero code "
                             f"of {st.fmt} before a Conv is supported")
        c, h, w = st.shape
        return Codes(st.fmt, st.scale, (c, h + 2 * pad[0], w + 2 * pad[1]), st.chw, pad)

    def _emulate(self, state: Raw) -> np.ndarray:
        """The source's float32 values for all 256 pixel values after the scalar ops so far."""
        x = source_x(np.arange(256), self.input_scale)
        for op, c in state.ops:
            x = {"Mul": x * c, "Add": x + c, "Sub": x - c, "Div": x / c}[op].astype(np.float32)
        return x

    def _set_transform(self, transform, codes, quant, s, state) -> Codes:
        lo, hi = int(codes.min()), int(codes.max())
        fmt = IntFormat.bipolar() if transform.kind == "threshold" else (
            IntFormat.unsigned(max(1, hi.bit_length())) if lo >= 0 else IntFormat.signed(
                max(2, signed_bits_for_range(lo, hi))))
        self.transform = transform
        self.input_report = {"quant": quant, "transform": transform.to_json(), "format": str(fmt), "scale": s,
                             "exact": True}
        return Codes(fmt, s, state.shape, state.chw)

    def input_quant(self, node, state: Raw):
        x = self._emulate(state)
        if node.op_type == "BipolarQuant":
            scale = self.bipolar_scale(node)
            codes = np.where(x >= 0, 1, -1)
            fmt = IntFormat.bipolar()
        else:
            scale, bits, signed, narrow, mode = self.quant_args(node)
            try:
                codes = self.int_quant_codes(x, scale, bits, signed, narrow, mode).astype(np.int64)
            except ValueError as e:  # an unknown rounding mode
                raise fail(node, str(e)) from None
            fmt = IntFormat.bipolar() if bits == 1 and signed else None
        if scale.size != 1:
            raise fail(node, "the input Quant must have one scale for the whole tensor")
        s = float(scale.reshape(()))
        transform = _find_transform(codes)
        if transform is None:
            desc = "".join(f" then {op} {float(c):g}" for op, c in state.ops)
            bad = _first_mismatch(codes)
            raise fail(node, f"its codes round(pixel·{self.input_scale:g}{desc} / {s:g}) are no lowbit input "
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
        return Codes(fmt, s, state.shape, state.chw)

    # ---- layers --------------------------------------------------------------------------------
    def begin_layer(self, node, inp: Codes) -> Pending:
        op, a = node.op_type, _attrs(node)
        if op == "Conv":
            if len(inp.shape) != 3:
                raise fail(node, f"a convolution needs a [C, H, W] input, not {list(inp.shape)}")
            if a.get("group", 1) != 1:
                raise fail(node, f"grouped convolution (group={a['group']}) is not supported: lowbit convolutions "
                                  "are dense over the input channels")
            if any(d != 1 for d in a.get("dilations", [1, 1])):
                raise fail(node, f"dilations {a['dilations']} are not supported (only 1)")
            if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
                raise fail(node, f"auto_pad {a['auto_pad']} is not supported (give explicit pads)")
            pads = list(a.get("pads", [0, 0, 0, 0]))
            if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
                raise fail(node, f"pads {pads} must be symmetric 2-D [top, left, bottom, right]")
            explicit_pad = inp.pad is not None
            if explicit_pad:  # an explicit Pad with the format's zero code (lowbit's export)
                if any(pads):
                    raise fail(node, "a padded input must not be padded again by the Conv")
                pads = [inp.pad[0], inp.pad[1], inp.pad[0], inp.pad[1]]
                inp = Codes(inp.fmt, inp.scale, (inp.shape[0], inp.shape[1] - 2 * pads[0],
                                                 inp.shape[2] - 2 * pads[1]), inp.chw)
            if any(pads) and inp.fmt.kind is Kind.BIPOLAR and not explicit_pad:
                raise fail(node, "zero padding of a bipolar (±scale) input has no code for 0")
            p = self.weights_of(node, node.input[1])
            if p.codes.ndim != 4 or p.codes.shape[1] != inp.shape[0]:
                raise fail(node, f"weights of shape {list(p.codes.shape)} do not fit the input {list(inp.shape)}")
            w = p.codes.transpose(0, 2, 3, 1)
            scale = p.scale.transpose(0, 2, 3, 1)
            bias = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            out_shape = tuple(self.m.get_tensor_shape(node.output[0])[1:])
            conv = {"stride": tuple(a.get("strides", [1, 1])), "padding": (pads[0], pads[1]),
                    "in_shape": (inp.shape[1], inp.shape[2], inp.shape[0])}
            kind = "conv"
        else:
            if len(inp.shape) != 1:
                raise fail(node, f"a dense layer needs a flat input (Flatten first), not {list(inp.shape)}")
            p = self.weights_of(node, node.input[1])
            w, scale, bias = p.codes, p.scale, None
            if op == "Gemm":
                if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                    raise fail(node, "only Gemm with transA=0, alpha=1, beta=1 is supported")
                if not a.get("transB", 0):
                    w, scale = w.T, scale.T
                bias = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            else:
                w, scale = w.T, scale.T  # MatMul: x[1, in] @ W[in, out]
            if w.ndim != 2 or w.shape[1] != inp.shape[0]:
                raise fail(node, f"weights of shape {list(w.shape)} (out, in) do not fit {inp.shape[0]} inputs")
            if inp.chw is not None:
                w, scale = nchw_columns(w, inp.chw), nchw_columns(scale, inp.chw)
            out_shape, conv, kind = (w.shape[0],), {}, "fc"
        rows = scale.reshape(scale.shape[0], -1)
        if not np.all(rows == rows[:, :1]):
            raise fail(node, "its weight scale varies within an output channel: only per-tensor or per-output-"
                              "channel scales are supported")
        s_w = rows[:, 0].copy()
        alpha = inp.scale * s_w
        beta = np.zeros(w.shape[0])
        pend = Pending(node, kind, w.astype(np.int64), p.fmt, s_w, inp, alpha, beta, out_shape, conv)
        if bias is not None:
            self.add_const(node, pend, bias, flat=True)
        return pend

    def channel_vector(self, node, pend: Pending, c: np.ndarray, *, flat: bool = False) -> np.ndarray:
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
        raise fail(node, f"a constant of shape {list(c.shape)} must be one value or one per output channel ({n})")

    def add_const(self, node, pend: Pending, c, *, flat: bool = False, sign: float = 1.0):
        pend.beta = pend.beta + sign * self.channel_vector(node, pend, c, flat=flat)

    def pending_step(self, node, pend: Pending):
        op = node.op_type
        const = [i for i in node.input if i and self.const(i) is not None]
        if op in ("Add", "Sub", "Mul", "Div"):
            if pend.relu:
                raise fail(node, "arithmetic after the Relu (before its Quant) is not supported")
            c = self.const(const[0])
            if op in ("Sub", "Div") and node.input[0] == const[0]:
                raise fail(node, "a constant minus (or divided by) the accumulator is not supported")
            if op == "Add":
                self.add_const(node, pend, c)
            elif op == "Sub":
                self.add_const(node, pend, c, sign=-1.0)
            else:
                k = self.channel_vector(node, pend, c)
                k = k if op == "Mul" else 1.0 / k
                if pend.bias_steps is None and np.all(pend.alpha == 1):
                    pend.bias_steps = pend.beta.copy()  # what was added before the scaling: lowbit's bias
                pend.alpha, pend.beta = pend.alpha * k, pend.beta * k
            return pend
        if op == "BatchNormalization":
            if pend.relu:
                raise fail(node, "batch norm after the Relu is not supported")
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
        raise fail(node, f"{op} between a Conv/MatMul and its activation Quant is not supported (expected bias "
                          "Add, Mul, BatchNormalization, Relu, then Quant or BipolarQuant)")

    def codes_step(self, node, st: Codes):
        op, a = node.op_type, _attrs(node)
        if op in ("Flatten", "Reshape"):
            out = self.m.get_tensor_shape(node.output[0])
            features = int(np.prod(st.shape))
            if out is None or len(out) != 2 or out[1] != features or (op == "Flatten" and a.get("axis", 1) != 1):
                raise fail(node, f"only a flatten to [1, {int(np.prod(st.shape))}] is supported, not {out}")
            return Codes(st.fmt, st.scale, (int(np.prod(st.shape)),), st.shape if len(st.shape) == 3 else st.chw)
        if op == "Relu":
            if st.fmt.kind is Kind.UNSIGNED:
                return st
            raise fail(node, f"a Relu on {st.fmt} codes after their Quant is not supported (put it before the Quant)")
        if op == "Pad":
            return self._pad(node, st, a)
        if op in ("Add", "Sub") and not self.layers and self.transform.kind == "shift" and st.scale == 1:
            c = self.const(node.input[1])  # lowbit's offset transform: (pixel >> k) − a after the shift's Quant
            if c is not None and c.size == 1 and float(c.reshape(())) == round(float(c.reshape(()))):
                a_ = -int(round(float(c.reshape(())))) * (1 if op == "Add" else -1)
                codes = (np.arange(256) >> self.transform.amount) - a_
                transform = _find_transform(codes)
                if transform is not None:
                    return self._set_transform(transform, codes, self.input_report.get("quant"), 1.0, st)
        if op == "MaxPool":
            if len(st.shape) != 3:
                raise fail(node, f"a max-pool needs a [C, H, W] input, not {list(st.shape)}")
            kernel = tuple(a.get("kernel_shape", []))
            stride = tuple(a.get("strides", [1] * len(kernel)))
            if len(kernel) != 2 or any(a.get("pads", [0, 0, 0, 0])) or any(d != 1 for d in a.get("dilations", [1, 1])) \
                    or a.get("storage_order", 0) or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
                raise fail(node, "only a 2-D max-pool without padding or dilation is supported")
            c, h, w = st.shape
            name = f"pool{self.counts['pool']}"
            self.counts["pool"] += 1
            name, _ = self.recorded_layer(name, None, None)
            try:
                layer = MaxPool2dLayer(st.fmt, name, in_shape=(h, w, c), kernel=kernel, stride=stride)
            except IRError as e:
                raise fail(node, str(e)) from None
            self.layers.append(layer)
            self.report_layers.append({"name": name, "source": node.name, "op": "maxpool2d", "format": str(st.fmt),
                                       "exact": True})
            oh, ow, _ = layer.out_shape
            return Codes(st.fmt, st.scale, (c, oh, ow))
        if op == "Quant":
            scale, bits, signed, narrow, mode = self.quant_args(node)
            from qonnx.custom_op.general.intquant import max_int, min_int

            if scale.size == 1 and float(scale.reshape(())) == st.scale and \
                    min_int(signed, narrow, bits) <= st.fmt.min and st.fmt.max <= max_int(signed, narrow, bits):
                return st  # re-quantizing codes to their own grid: the identity
            raise fail(node, "a Quant of already quantized codes (a requantization without a layer) is not supported")
        raise fail(node, f"{op} on quantized activations is not supported")


def _recorded_layers(wrapper) -> list | None:
    """``[[name, weight format or None], ...]`` per IR layer from the export's metadata, or None."""
    import json

    props = {p.key: p.value for p in wrapper.model.metadata_props}
    try:
        layers = json.loads(props.get(LOWBIT_LAYERS_KEY, "null"))
    except ValueError:
        return None
    ok = isinstance(layers, list) and all(isinstance(l, list) and len(l) == 2 for l in layers)
    return layers if ok else None


def _pad_of(reader, node, st: Codes, a: dict):
    """``(ph, pw)`` of a constant ``Pad`` of a [C, H, W] tensor by its format's zero code, symmetric in H, W."""
    from ..ir import pad_value

    mode = a.get("mode", "constant")
    pads = reader.const(node.input[1]) if len(node.input) > 1 else None
    value = reader.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(())
    if mode != "constant" or pads is None or value is None or len(st.shape) != 3 or st.pad is not None:
        return None
    p = [int(v) for v in np.asarray(pads).ravel()]
    if len(p) != 8 or any(p[i] for i in (0, 1, 4, 5)) or p[2] != p[6] or p[3] != p[7] or min(p) < 0:
        return None
    if float(np.asarray(value).reshape(-1)[0]) != pad_value(st.fmt):
        return None
    return p[2], p[3]


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


def source_x(pixels, input_scale: float) -> np.ndarray:
    """The source graph's float32 input for uint8 pixels (the one definition: import and agreement)."""
    return (np.asarray(pixels, np.float64) * input_scale).astype(np.float32)
