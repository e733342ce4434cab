"""The float ONNX frontend: a user's ``.onnx`` classifier as a :class:`~.graph.FloatGraph`.

:func:`convert_onnx` reads the file (``onnx.load``, then ``onnx.checker``), walks the nodes in their
(topological) order and maps each to FloatGraph layers. The graph must be a chain — every node reads
the tensor the node before it made, plus constants — because a FloatGraph is one:

==========================  =====================================================================
``Gemm``                    Linear: ``alpha``, ``beta`` and ``transB`` folded into weight and bias
``MatMul`` (+ ``Add``)      Linear; an ``Add`` of a constant right after it (or after Gemm, Conv)
                            becomes that layer's bias
``Conv``                    Conv2d: group 1, dilation 1, any stride, symmetric pads, ``auto_pad``
                            NOTSET or VALID; the weight ``[OC, IC, KH, KW]`` is the FloatGraph's
``BatchNormalization``      BatchNorm with the running statistics, right after Conv/Gemm/MatMul
``Relu``                    ReLU
``MaxPool``                 MaxPool2d: no pads, dilation 1, ``ceil_mode`` 0
``Flatten`` (axis 1),       Flatten; ONNX flattens NCHW, lowbit NHWC, so the next dense layer's
``Reshape`` to ``[N, -1]``  input columns are permuted once (:func:`~.common.nchw_columns`)
``Dropout``, ``Identity``   nothing (inference: no value changes)
``Constant``                a weight (weights come from initializers or Constant nodes only)
==========================  =====================================================================

Anything else is refused naming the node, its op type and this list. Two families get their own
message: a QONNX model (``Quant``/``BipolarQuant``/``Trunc`` nodes, or the qonnx/finn custom-op
domains) is quantized already and goes through ``lowbit import``; a QCDQ model (QuantizeLinear /
DequantizeLinear, QLinear*, integer ops) is an export flavour lowbit does not read.

The FloatGraph takes NHWC images ``(H, W, C)`` for an ONNX input ``[N, C, H, W]``, or ``(F,)`` for
``[N, F]``. :attr:`Imported.reference` runs the original model in onnxruntime (one CPU thread); a
model exported with its batch fixed at 1 (torch and Brevitas exports often are) runs from a copy
whose batch dimension is symbolic, so that thousands of check images go through in a few calls.
That copy is safe to make because every op accepted here works per image; the only batch size
written into the graph, a Reshape's ``[1, -1]``, is rewritten to ``[-1, F]``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from .common import CHECK_TOLERANCE, Imported, ModelImportError, Preprocessing, finish_import, nchw_columns
from .graph import BatchNorm, Conv2d, Flatten, FloatGraph, GraphError, Layer, Linear, MaxPool2d, ReLU

__all__ = ["convert_onnx", "from_onnx", "SUPPORTED_OPS", "DEFAULT_CHECK_SEED"]

SUPPORTED_OPS = ("Gemm", "MatMul", "Add (a constant bias right after Gemm, MatMul or Conv)", "Conv",
                 "BatchNormalization", "Relu", "MaxPool", "Flatten", "Reshape (to [N, -1])", "Dropout", "Identity",
                 "Constant")
#: the random uint8 images :func:`from_onnx` checks on when it is given none
DEFAULT_CHECK_SEED = 0
DEFAULT_RANDOM_IMAGES = 256
_REFERENCE_BATCH = 256

QONNX_OPS = frozenset({"Quant", "BipolarQuant", "Trunc", "MultiThreshold"})
QONNX_DOMAINS = ("qonnx.custom_op", "finn", "onnx.brevitas")  # qonnx's, FINN's, older Brevitas exports
QCDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
                      "MatMulInteger", "ConvInteger", "QLinearAdd", "QLinearMul", "QLinearAveragePool",
                      "QLinearGlobalAveragePool", "QLinearLeakyRelu", "QLinearSigmoid", "QLinearConcat",
                      "QLinearSoftmax", "QGemm", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"})


#: what to do instead, for ops users often meet
_HINTS = {
    "Softmax": "drop the final softmax: lowbit's last layer emits the logits (the class is their argmax)",
    "LogSoftmax": "drop the final log-softmax: lowbit's last layer emits the logits (the class is their argmax)",
    "Shape": "a Reshape with a computed shape (torch's x.view(x.size(0), -1) exported with a dynamic batch): "
             "export with torch.flatten(x, 1) instead",
    "Transpose": "lowbit takes the model's own NCHW (or [N, F]) layout without transposes",
}


def _supported() -> str:
    return "supported: " + ", ".join(SUPPORTED_OPS)


def _where(node, index: int) -> str:
    """``node '/fc1/Gemm' (Gemm)``; an unnamed node by its position and first output."""
    if node.name:
        return f"node {node.name!r} ({node.op_type})"
    out = f" (output {node.output[0]!r})" if node.output else ""
    return f"node #{index}{out} ({node.op_type})"


# ---- reading -----------------------------------------------------------------------------
def _load(model) -> tuple[onnx.ModelProto, str]:
    """``(ModelProto, how to name it)`` for a path or a ModelProto; ModelImportError if unreadable."""
    if isinstance(model, onnx.ModelProto):
        return model, f"ONNX model {model.graph.name or '(in memory)'}"
    if not isinstance(model, (str, os.PathLike)):
        raise ModelImportError(f"the ONNX model must be a path or an onnx.ModelProto, not {type(model).__name__}")
    path = Path(model)
    if not path.is_file():
        raise ModelImportError(f"ONNX model {path}: no such file")
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # protobuf's DecodeError, external-data errors, OSError …
        raise ModelImportError(f"ONNX model {path} cannot be read (truncated or not an ONNX file?): "
                               f"{type(e).__name__}: {str(e).strip()[:300]}") from None
    return proto, f"ONNX model {path}"


def _refuse_quantized(model: onnx.ModelProto, what: str) -> None:
    """The two quantized flavours get a message of their own (before the checker, which may not
    know their custom domains)."""
    for i, node in enumerate(model.graph.node):
        domain = node.domain or ""
        if node.op_type in QONNX_OPS or domain.startswith(QONNX_DOMAINS):
            raise ModelImportError(f"{what} is a QONNX (quantized) model ({_where(node, i)}, domain "
                                   f"{domain or 'ai.onnx'!r}): its quantization is given, not lowbit's to choose: "
                                   "use `lowbit import FILE -o NET.npz`")
        if node.op_type in QCDQ_OPS:
            raise ModelImportError(f"{what} is a QCDQ export ({_where(node, i)}): lowbit does not read that "
                                   "flavour of quantized ONNX; export the quantized model with Brevitas's "
                                   "`export_qonnx` (QONNX) and read it with `lowbit import`, or export the float "
                                   "model")


def _check(model: onnx.ModelProto, what: str) -> None:
    if not len(model.graph.node):
        raise ModelImportError(f"{what} has no nodes (truncated, or not an ONNX model?)")
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # onnx.checker.ValidationError and friends
        raise ModelImportError(f"{what} is not a valid ONNX model: {type(e).__name__}: {str(e).strip()[:600]}") \
            from None


def _data_input(model: onnx.ModelProto, what: str):
    """The one graph input that is not an initializer (older exports list those as inputs too)."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if not inputs:
        raise ModelImportError(f"{what} has no graph input")
    return inputs[0], inputs[1:]


def _input_shape(value_info, what: str) -> tuple[tuple[int, ...], bool]:
    """``(source shape without the batch axis, batch fixed?)`` of the graph input."""
    tt = value_info.type.tensor_type
    if not value_info.type.HasField("tensor_type") or tt.elem_type != onnx.TensorProto.FLOAT:
        raise ModelImportError(f"{what}: input {value_info.name!r} must be a float32 tensor")
    dims = list(tt.shape.dim) if tt.HasField("shape") else []
    shown = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in dims]
    rest = dims[1:]
    if len(dims) not in (2, 4) or not all(d.HasField("dim_value") and d.dim_value > 0 for d in rest):
        raise ModelImportError(f"{what}: input {value_info.name!r} must be [N, C, H, W] or [N, F] with fixed C, H, "
                               f"W or F, not {shown}")
    return tuple(int(d.dim_value) for d in rest), dims[0].HasField("dim_value")


# ---- conversion ----------------------------------------------------------------------------
@dataclass
class _Walk:
    """The state of the node walk: the chain's current tensor and its shape (NCHW, no batch)."""

    what: str
    constants: dict
    graph_inputs: set
    current: str
    shape: tuple[int, ...]
    layers: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    pending_chw: tuple | None = None  # a flatten of a CxHxW tensor waits for its dense layer
    batch: int | None = None  # the input's batch size when fixed (often 1)
    rewrites: dict = field(default_factory=dict)  # Reshape node index -> [-1, F] for the reference copy
    where: str = ""  # the node being converted, for messages
    index: int = 0

    def refuse(self, why: str) -> ModelImportError:
        return ModelImportError(f"{self.what}: {self.where}: {why} ({_supported()})")

    def const(self, node, k: int, role: str, *, optional: bool = False):
        name = node.input[k] if k < len(node.input) else ""
        if not name:
            if optional:
                return None
            raise self.refuse(f"has no {role}")
        if name in self.constants:
            return self.constants[name]
        if name in self.graph_inputs:
            raise self.refuse(f"takes its {role} {name!r} from a graph input; lowbit needs weights as "
                              "initializers or Constant nodes")
        raise self.refuse(f"computes its {role} {name!r} in the graph; lowbit needs weights as initializers "
                          "or Constant nodes")

    def add(self, prefix: str, layer: Layer, node) -> None:
        """Append ``layer`` and move the chain on to the node's output, with the layer's shape."""
        k = self.counts.get(prefix, 0)
        self.counts[prefix] = k + 1
        nhwc = (*self.shape[1:], self.shape[0]) if len(self.shape) == 3 else self.shape
        try:
            out = tuple(int(d) for d in layer.out_shape(nhwc))
        except GraphError as e:
            layout = "[C, H, W]" if len(self.shape) == 3 else "[F]"
            raise self.refuse(f"{layer.describe()} {e}, but its input is {list(self.shape)}: {layout} without the "
                              "batch axis") from None
        self.layers.append((f"{prefix}{k}", layer))
        self.shape = (out[2], out[0], out[1]) if len(out) == 3 else out
        self.current = node.output[0]

    @property
    def last(self) -> Layer | None:
        return self.layers[-1][1] if self.layers else None


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _array(tensor) -> np.ndarray:
    return numpy_helper.to_array(tensor)


def _constant_node(node) -> np.ndarray:
    a = _attrs(node)
    if "value" in a:
        return _array(a["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in a:
            return np.array(a[key], dtype=dtype)
    raise ModelImportError(f"Constant node {node.name!r} has no numeric value (attributes {sorted(a)})")


def _weight(w: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(w, dtype=np.float32))  # a copy: initializer arrays are read-only


def _set(layer, **params) -> Layer:
    with torch.no_grad():
        for pname, value in params.items():
            if value is not None:  # a layer built without bias has none
                getattr(layer, pname).copy_(_weight(value))
    return layer


def _dense(walk: _Walk, node, weight: np.ndarray, bias: np.ndarray | None) -> None:
    """A Linear from ``weight [out, in]`` reading the chain (permuted if a CxHxW flatten came before)."""
    if len(walk.shape) != 1:
        raise walk.refuse(f"takes a [N, F] input, but its input is {list(walk.shape)} (no batch axis): flatten it "
                          "first (Flatten, or Reshape to [N, -1])")
    if weight.shape[1] != walk.shape[0]:
        raise walk.refuse(f"has {weight.shape[1]} inputs, but its input has {walk.shape[0]} features")
    if walk.pending_chw is not None:
        weight = nchw_columns(weight, walk.pending_chw)
        walk.pending_chw = None
    layer = Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    walk.add("fc", _set(layer, weight=weight, bias=bias), node)


def _gemm(walk, node, a):
    if a.get("transA", 0):
        raise walk.refuse("transA=1 would transpose the batch; lowbit takes Gemm with transA=0")
    b = walk.const(node, 1, "weight B").astype(np.float64)
    if b.ndim != 2:
        raise walk.refuse(f"weight B must be 2-D, not of shape {list(b.shape)}")
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    weight = alpha * (b if a.get("transB", 0) else b.T)  # Linear's [out, in]
    c = walk.const(node, 2, "bias C", optional=True)
    bias = None
    if c is not None:
        try:
            bias = beta * np.broadcast_to(c.astype(np.float64), (1, weight.shape[0]))[0]
        except ValueError:
            raise walk.refuse(f"bias C of shape {list(c.shape)} does not broadcast to one value per output "
                              f"([1, {weight.shape[0]}])") from None
    _dense(walk, node, weight, bias)


def _matmul(walk, node, a):
    b = walk.const(node, 1, "weight")  # the chain is the first input (x·W): checked for every node
    if b.ndim != 2:
        raise walk.refuse(f"the constant matrix must be 2-D [in, out], not of shape {list(b.shape)}")
    _dense(walk, node, b.astype(np.float64).T, None)


def _add(walk, node, a):
    others = [n for n in node.input if n != walk.current]
    if len(others) != 1 or others[0] not in walk.constants:
        raise walk.refuse("an Add of two computed tensors (a residual connection) is not supported; lowbit's "
                          "graphs are chains")
    layer = walk.last
    if not isinstance(layer, (Linear, Conv2d)):
        raise walk.refuse("an Add of a constant is supported only as the bias right after Gemm, MatMul or Conv")
    c = walk.constants[others[0]].astype(np.float64)
    channels = walk.shape[0]
    try:
        full = np.broadcast_to(c, (1, *walk.shape)).reshape(channels, -1)
    except ValueError:
        raise walk.refuse(f"the constant of shape {list(c.shape)} does not broadcast to the output "
                          f"{list(walk.shape)} (no batch axis)") from None
    if not np.all(full == full[:, :1]):
        raise walk.refuse(f"the constant of shape {list(c.shape)} is not one value per output channel, so it is "
                          "not a bias")
    bias = full[:, 0] + (layer.bias.detach().double().numpy() if layer.bias is not None else 0.0)
    with torch.no_grad():
        layer.bias = torch.nn.Parameter(_weight(bias))
    walk.current = node.output[0]


def _conv(walk, node, a):
    w = walk.const(node, 1, "weight W")
    if w.ndim != 4:
        raise walk.refuse(f"only 2-D convolutions (weight [OC, IC, KH, KW]) are supported, not weight of shape "
                          f"{list(w.shape)}")
    if a.get("group", 1) != 1:
        raise walk.refuse(f"grouped convolution (group={a['group']}) is not supported; lowbit takes group=1")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise walk.refuse(f"dilations {list(a['dilations'])} are not supported; lowbit takes dilation 1")
    kernel = tuple(int(k) for k in a.get("kernel_shape", w.shape[2:]))
    if kernel != tuple(w.shape[2:]):
        raise walk.refuse(f"kernel_shape {list(kernel)} does not match the weight's {list(w.shape[2:])}")
    top, left, bottom, right = _pads(walk, a)
    if (top, left) != (bottom, right):
        raise walk.refuse(f"asymmetric pads {[top, left, bottom, right]} (top, left, bottom, right) are not "
                          "supported: lowbit's convolution pads both sides of an axis alike")
    b = walk.const(node, 2, "bias B", optional=True)
    if len(walk.shape) != 3:
        raise walk.refuse(f"takes an [N, C, H, W] input, not {list(walk.shape)} (no batch axis)")
    layer = Conv2d(int(w.shape[1]), int(w.shape[0]), kernel, tuple(int(s) for s in a.get("strides", (1, 1))),
                   (top, left), bias=b is not None)
    walk.add("conv", _set(layer, weight=w, bias=b), node)


def _pads(walk, a) -> list[int]:
    """``[top, left, bottom, right]`` of a Conv or MaxPool (``auto_pad`` NOTSET or VALID only)."""
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto == "VALID":
        return [0, 0, 0, 0]
    if auto != "NOTSET":
        raise walk.refuse(f"auto_pad {auto} is not supported; lowbit takes NOTSET (explicit pads) or VALID")
    pads = [int(p) for p in a.get("pads", (0, 0, 0, 0))]
    if len(pads) != 4:
        raise walk.refuse(f"pads {pads} are not 2-D ([top, left, bottom, right])")
    return pads


def _batchnorm(walk, node, a):
    if len([o for o in node.output if o]) > 1 or a.get("training_mode", 0) or not a.get("spatial", 1):
        raise walk.refuse("only inference batch norm per channel (one output, training_mode=0, spatial=1) is "
                          "supported")
    if walk.last is None or not walk.last.weighted:
        prev = f"{walk.last.kind} {walk.layers[-1][0]!r}" if walk.layers else "the graph input"
        raise walk.refuse(f"batch norm must directly follow Conv, Gemm or MatMul (to be folded), not {prev}")
    scale, bias, mean, var = (walk.const(node, k, role).reshape(-1) for k, role in
                              ((1, "scale"), (2, "bias B"), (3, "mean"), (4, "variance")))
    if not all(len(v) == walk.shape[0] for v in (scale, bias, mean, var)):
        raise walk.refuse(f"needs {walk.shape[0]} values per statistic (one per channel), not "
                          f"{[len(v) for v in (scale, bias, mean, var)]}")
    layer = BatchNorm(walk.shape[0], float(a.get("epsilon", 1e-5)))
    with torch.no_grad():
        layer.weight.copy_(_weight(scale))
        layer.bias.copy_(_weight(bias))
        layer.running_mean.copy_(_weight(mean))
        layer.running_var.copy_(_weight(var))
    walk.add("bn", layer, node)


def _relu(walk, node, a):
    walk.add("relu", ReLU(), node)


def _maxpool(walk, node, a):
    if len([o for o in node.output if o]) > 1:
        raise walk.refuse("the Indices output is not supported")
    if a.get("ceil_mode", 0):
        raise walk.refuse("ceil_mode=1 is not supported; lowbit's max-pool rounds down (ceil_mode=0)")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise walk.refuse(f"dilations {list(a['dilations'])} are not supported; lowbit takes dilation 1")
    if any(pads := _pads(walk, a)):
        raise walk.refuse(f"pads {pads} are not supported; lowbit's max-pool does not pad")
    kernel = tuple(int(k) for k in a["kernel_shape"])
    if len(kernel) != 2:
        raise walk.refuse(f"only 2-D max-pool is supported, not kernel_shape {list(kernel)}")
    walk.add("pool", MaxPool2d(kernel, tuple(int(s) for s in a.get("strides", (1, 1)))), node)


def _flatten_to_rows(walk, node) -> None:
    if len(walk.shape) == 1:  # already [N, F]: nothing to do
        walk.current = node.output[0]
        return
    c, h, w = walk.shape
    if walk.pending_chw is not None:
        raise walk.refuse("a second flatten before a dense layer")
    walk.pending_chw = (c, h, w)
    walk.add("flatten", Flatten(), node)


def _flatten(walk, node, a):
    axis, rank = int(a.get("axis", 1)), len(walk.shape) + 1
    if (axis + rank if axis < 0 else axis) != 1:
        raise walk.refuse(f"axis {axis} is not supported; lowbit flattens to [N, -1] (axis 1)")
    _flatten_to_rows(walk, node)


def _reshape(walk, node, a):
    target = [int(v) for v in walk.const(node, 1, "shape").reshape(-1)]
    features = math.prod(walk.shape)
    ok = False
    if len(target) == 2:
        n, f = target
        keeps_batch = (n == 0 and not a.get("allowzero", 0)) or (n == -1 and f == features) or (
            walk.batch is not None and n == walk.batch)
        ok = keeps_batch and (f == features or f == -1 and n != -1)
    if not ok:
        fixed = f" or [{walk.batch}, -1]" if walk.batch is not None else ""
        raise walk.refuse(f"Reshape to {target} is not supported; lowbit takes a flatten to [N, -1] (here "
                          f"[-1, {features}], [0, -1]{fixed})")
    if target[0] > 0:  # the batch size written into the graph: the reference copy frees it
        walk.rewrites[walk.index] = [-1, features]
    _flatten_to_rows(walk, node)


def _identity(walk, node, a):
    walk.current = node.output[0]


def _dropout(walk, node, a):
    # inference: the identity, unless the graph itself switches training on
    training = walk.const(node, 2, "training_mode", optional=True)
    if training is not None and bool(np.asarray(training).reshape(-1)[0]):
        raise walk.refuse("training_mode is true: only inference dropout (the identity) is supported")
    _identity(walk, node, a)


_HANDLERS = {"Gemm": _gemm, "MatMul": _matmul, "Add": _add, "Conv": _conv, "BatchNormalization": _batchnorm,
             "Relu": _relu, "MaxPool": _maxpool, "Flatten": _flatten, "Reshape": _reshape, "Dropout": _dropout,
             "Identity": _identity}


def _walk_nodes(model: onnx.ModelProto, what: str, data, extra_inputs) -> tuple[_Walk, list[str]]:
    source_shape, fixed = _input_shape(data, what)
    g = model.graph
    walk = _Walk(what, {t.name: _array(t) for t in g.initializer}, {i.name for i in g.input}, data.name,
                 source_shape, batch=int(data.type.tensor_type.shape.dim[0].dim_value) if fixed else None)
    ops = []
    for i, node in enumerate(g.node):
        ops.append(node.op_type)
        walk.where, walk.index = _where(node, i), i
        if node.domain not in ("", "ai.onnx"):
            raise ModelImportError(f"{what}: {walk.where} is in domain {node.domain!r}, which lowbit does not "
                                   f"read; {_supported()}")
        if node.op_type == "Constant":
            walk.constants[node.output[0]] = _constant_node(node)
            continue
        if node.op_type in ("Identity", "Dropout") and node.input and node.input[0] in walk.constants:
            walk.constants[node.output[0]] = walk.constants[node.input[0]]  # a weight passed through
            continue
        handler = _HANDLERS.get(node.op_type)
        if handler is None:
            hint = f" ({_HINTS[node.op_type]})" if node.op_type in _HINTS else ""
            raise ModelImportError(f"{what}: {walk.where} is not supported{hint}; {_supported()}")
        if walk.current not in node.input:
            raise walk.refuse(f"reads {[n for n in node.input if n]}, not the output {walk.current!r} of the node "
                              "before it; lowbit's graphs are chains (one input, no branches)")
        if node.input[0] != walk.current and node.op_type != "Add":
            raise walk.refuse(f"reads the chain's tensor {walk.current!r} as a parameter, not as its data input")
        try:
            handler(walk, node, _attrs(node))
        except GraphError as e:  # a layer's own check of its arguments
            raise walk.refuse(str(e)) from None
    outputs = [o.name for o in g.output]
    if outputs != [walk.current]:
        raise ModelImportError(f"{what}: the graph's outputs {outputs} must be exactly the end of its chain of "
                               f"nodes, {walk.current!r}")
    if extra_inputs:
        raise ModelImportError(f"{what} has inputs {[i.name for i in extra_inputs]} besides its data input "
                               f"{data.name!r}; lowbit takes one input")
    if len(walk.shape) != 1:
        raise ModelImportError(f"{what} must end with [N, classes] logits, not an output of shape "
                               f"{list(walk.shape)} (no batch axis)")
    if walk.pending_chw is not None:
        raise ModelImportError(f"{what} ends with a flatten of a {walk.pending_chw} (CxHxW) tensor; lowbit's "
                               "graphs end with a dense layer")
    return walk, ops


# ---- the reference: onnxruntime on the original model ----------------------------------------
def _free_batch(model: onnx.ModelProto, data_name: str, rewrites: dict) -> onnx.ModelProto:
    """``model`` with a symbolic batch dimension on its input and output, and every Reshape that wrote
    the fixed batch size into the graph reshaping to ``[-1, F]`` instead."""
    free = onnx.ModelProto()
    free.CopyFrom(model)
    g = free.graph
    for value in [v for v in g.input if v.name == data_name] + list(g.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].dim_param = "batch"  # (clears dim_value: one of the two)
    del g.value_info[:]  # inferred shapes with the old batch size
    for index, target in rewrites.items():
        node = g.node[index]
        name = f"{node.output[0]}__lowbit_batch_free_shape"
        g.initializer.append(numpy_helper.from_array(np.array(target, dtype=np.int64), name))
        node.input[1] = name
    return free


def _reference(model: onnx.ModelProto, what: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelImportError(f"onnxruntime cannot run {what}: {type(e).__name__}: {str(e).strip()[:600]}") \
            from None
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        parts = [session.run(None, {name: x[i:i + _REFERENCE_BATCH]})[0] for i in range(0, len(x), _REFERENCE_BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0,), np.float32)

    return run


def convert_onnx(model, *, source: str | None = None) -> Imported:
    """A float ONNX classifier (a path or an ``onnx.ModelProto``) converted node by node into a
    FloatGraph taking the model's own float input, in NHWC (see the module docstring), before its
    preprocessing is folded; ``source`` names it in messages (default: the path).
    ModelImportError for an unreadable or invalid file and for any node outside :data:`SUPPORTED_OPS`."""
    proto, what = _load(model)
    what = source or what
    _refuse_quantized(proto, what)
    _check(proto, what)
    data, extra = _data_input(proto, what)
    with torch.random.fork_rng(devices=[]):  # building layers draws initial weights: leave the caller's RNG alone
        walk, ops = _walk_nodes(proto, what, data, extra)
    source_shape, _ = _input_shape(data, what)
    try:
        graph = FloatGraph(source_shape[1:] + source_shape[:1] if len(source_shape) == 3 else source_shape,
                           walk.layers)
    except GraphError as e:
        raise ModelImportError(f"{what}: {e}") from None
    graph.eval()
    if walk.batch is not None or walk.rewrites:
        proto = _free_batch(proto, data.name, walk.rewrites)
    return Imported(graph, source_shape, _reference(proto, what), what, ops)


def from_onnx(model, *, preprocessing: Preprocessing = Preprocessing(), check_pixels=None,
              tolerance: float = CHECK_TOLERANCE) -> FloatGraph:
    """A float ONNX classifier as a FloatGraph taking lowbit's ``pixel / 256`` NHWC input, checked
    against onnxruntime.

    ``preprocessing`` is how the model's input comes from uint8 pixels (default ``pixel / 255``).
    ``check_pixels`` (uint8 ``[n, H·W·C]`` rows, NHWC) are the images of the check; pass real images
    (e.g. the test set) for the real check: the default, 256 seeded random uint8 images of the input's
    size, only shows the conversion computes the same function. ModelImportError when the graph
    disagrees by more than ``tolerance · max|logit|``. The result carries
    ``graph.import_check = {"source", "images", "max_rel_diff"}``."""
    imported = convert_onnx(model)
    if check_pixels is None:
        rng = np.random.default_rng(DEFAULT_CHECK_SEED)
        check_pixels = rng.integers(0, 256, (DEFAULT_RANDOM_IMAGES, math.prod(imported.graph.input_shape)),
                                    dtype=np.uint8)
    check_pixels = np.asarray(check_pixels)
    graph, rel = finish_import(imported, check_pixels, preprocessing, tolerance=tolerance)
    graph.import_check = {"source": imported.source, "images": int(len(check_pixels)), "max_rel_diff": float(rel)}
    return graph
