"""Integer IR network → QONNX model that qonnx's own executor runs to the golden model's outputs.

:func:`export_qonnx` writes a lowbit :class:`~lowbit.sw.ir.Network` as an ONNX graph of standard
ops plus QONNX's ``Quant``/``BipolarQuant`` (domain ``qonnx.custom_op.general``), with QONNX
datatype annotations; :func:`qonnx_outputs` runs a file with
``qonnx.core.onnx_exec.execute_onnx`` on uint8 pixels. The outputs are lowbit's raw integer
logits, equal to :func:`lowbit.sw.golden.run_network`'s on every output (the tests check it).

Graph (NCHW, as ONNX convolutions want; batch 1 in the file, FINN's convention)
-------------------------------------------------------------------------------
* input ``pixels``: uint8 pixel values as float32, ``[1, C, H, W]`` (a network starting with a
  convolution or max-pool) or ``[1, F]``. :func:`qonnx_outputs` sets the batch to its images.
* input transform: ``shift k`` = ``Mul 2^-k`` → ``Quant`` FLOOR (unit scale), ``threshold t`` =
  ``Add -t`` → ``BipolarQuant`` (x ≥ 0 → +1), ``offset`` = the shift, then ``Add -amount``.
* weighted layer: ``Conv`` (weights ``[OC, IC, KH, KW]``, from lowbit's ``[OC, KH, KW, IC]``; a
  bipolar input is padded by an explicit ``Pad`` with −1, the value standing for real 0) or
  ``MatMul`` (weights ``[in, out]``); ``Add`` the integer bias; then the requantizer:
  ``Mul m·2^-s`` (per channel) → ``Add ½`` (half_up only; with a product offset ``c`` one ``Add``
  of ``c·2^-s`` (+ ½) instead) → ``Relu`` (only for a signed or ternary
  output under ReLU) → ``Quant`` with unit scale, zero point 0, the output format's bits and
  ``rounding_mode`` FLOOR (floor, half_up as ⌊x + ½⌋: qonnx's HALF_UP rounds ties away from
  zero, lowbit's towards +∞) or ROUND (numpy's half-to-even = half_even). A bipolar output is
  ``BipolarQuant`` of the scaled value (+ ½ for the two half modes): the sign of the rounded value.
* max-pool: ``MaxPool`` on the codes. Conv → dense: ``Flatten`` of NCHW, with the dense weight
  columns permuted from lowbit's (h, w, c) order to (c, h, w) once here (the graph then looks
  like a PyTorch export; no Transpose node).
* the last layer without requantization: its biased accumulators are the output ``logits``
  (NCHW for a convolution; :func:`qonnx_outputs` returns lowbit's NHWC).

Why it is exact
---------------
Every tensor between layers holds integers. A float type adds, multiplies and sums integers
exactly while every operand, product and partial sum stays below 2^24 (float32) or 2^53
(float64), in any order, so accumulators are exact when the layer's worst-case accumulator
bound (:func:`lowbit.sw.ir.accumulator_range`, bias included) is below that. ``v·m·2^-s`` is
exact when ``|v·m| + |c| + 2^(s-1)`` is (a power-of-two scale only moves the exponent) and so is
``+ (c + 2^(s-1))·2^-s`` (= ``(v·m + c + 2^(s-1))·2^-s``: every operand and the sum are integers
below the bound times the same power of two); then ⌊·⌋ and half-to-even rounding of the exact quotient
are lowbit's ``round_shift``; the clip commutes with them (integer bounds). A layer computes
in float32 when its bounds allow, else in float64 (``Cast`` to DOUBLE: onnxruntime's ``MatMul``,
``Add``, ``Mul`` and qonnx's numpy ``Quant`` run float64; the ``Quant`` output is float32 again,
exact for ≤ 16-bit codes). onnxruntime has no float64 ``Conv``: a convolution whose bound
reaches 2^24 is written lowered: its im2col vectors (a float32 ``Conv`` with one-hot kernels,
exact), ``Transpose``, float64 ``MatMul``, ``Transpose`` back. A layer past 2^53 is refused with a
:class:`ValueError` naming it, never approximated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .formats import IntFormat, Kind, Rounding, signed_bits_for_range
from .ir import Conv2dLayer, DenseLayer, MaxPool2dLayer, Network, pad_value
from .util import atomic_path

__all__ = ["export_qonnx", "qonnx_outputs", "QONNX_DOMAIN", "ONNX_OPSET", "INPUT_NAME", "OUTPUT_NAME"]

QONNX_DOMAIN = "qonnx.custom_op.general"
ONNX_OPSET = 13
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"
#: every integer below these magnitudes is exact in float32 / float64, and so is any sum of them that is too
EXACT = {"FLOAT": 1 << 24, "DOUBLE": 1 << 53}
#: images per executor call in :func:`qonnx_outputs` (bounds the memory of the intermediates)
EXEC_CHUNK = 1000


class _Graph:
    """Nodes, initializers and value infos (every tensor gets one: qonnx's executor needs them)."""

    def __init__(self):
        from onnx import TensorProto

        self.tp = TensorProto
        self.nodes, self.inits, self.infos, self.datatypes = [], [], {}, {}
        self.names: set[str] = set()

    def fresh(self, name: str) -> str:
        base, k = name, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def const(self, name: str, value, elem: str = "FLOAT", datatype: str | None = None) -> str:
        from onnx import numpy_helper

        name = self.fresh(name)
        dtype = {"FLOAT": np.float32, "DOUBLE": np.float64, "INT64": np.int64}[elem]
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        if datatype:
            self.datatypes[name] = datatype
        return name

    def node(self, op: str, inputs: list[str], out: str, shape, elem: str = "FLOAT", *,
             datatype: str | None = None, domain: str = "", **attrs) -> str:
        from onnx import helper

        out = self.fresh(out)
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{out}", domain=domain, **attrs))
        self.infos[out] = (elem, tuple(shape))
        if datatype:
            self.datatypes[out] = datatype
        return out


class _Tensor:
    """The running activation: its name, shape (batch 1, NCHW or [1, F]) and float type."""

    def __init__(self, name: str, shape, elem: str = "FLOAT"):
        self.name, self.shape, self.elem = name, tuple(shape), elem


def _quant(g: _Graph, x: _Tensor, fmt: IntFormat, rounding: str, out: str) -> _Tensor:
    """QONNX ``Quant`` with unit scale to the integers of ``fmt`` (not bipolar): clip, then round."""
    signed, narrow, bits = {Kind.SIGNED: (1, 0, fmt.bits), Kind.UNSIGNED: (0, 0, fmt.bits),
                            Kind.TERNARY: (1, 1, 2)}[fmt.kind]
    ins = [x.name, g.const(f"{out}_scale", 1.0), g.const(f"{out}_zeropt", 0.0), g.const(f"{out}_bits", bits)]
    name = g.node("Quant", ins, out, x.shape, domain=QONNX_DOMAIN, datatype=fmt.qonnx_datatype,
                  signed=signed, narrow=narrow, rounding_mode=rounding)
    return _Tensor(name, x.shape)


def _bipolar(g: _Graph, x: _Tensor, out: str) -> _Tensor:
    """QONNX ``BipolarQuant`` with unit scale: +1 where ``x ≥ 0``, else −1, as float32 (qonnx's op keeps
    its input's float type, unlike ``Quant``: a float64 input is cast back)."""
    name = g.node("BipolarQuant", [x.name, g.const(f"{out}_scale", 1.0)], f"{out}_{x.elem.lower()}"
                  if x.elem != "FLOAT" else out, x.shape, x.elem, domain=QONNX_DOMAIN, datatype="BIPOLAR")
    return _cast(g, _Tensor(name, x.shape, x.elem), "FLOAT", out)


def _binary(g: _Graph, op: str, x: _Tensor, value, out: str, datatype: str | None = None, *,
            const_datatype: str | None = None) -> _Tensor:
    """``op`` (Add, Mul) of ``x`` and a constant of ``x``'s float type."""
    c = g.const(f"{out}_c", value, x.elem, const_datatype)
    return _Tensor(g.node(op, [x.name, c], out, x.shape, x.elem, datatype=datatype), x.shape, x.elem)


def _cast(g: _Graph, x: _Tensor, elem: str, out: str) -> _Tensor:
    if x.elem == elem:
        return x
    to = getattr(g.tp, elem)
    return _Tensor(g.node("Cast", [x.name], out, x.shape, elem, datatype=g.datatypes.get(x.name), to=to),
                   x.shape, elem)


def _input_transform(g: _Graph, net: Network, x: _Tensor) -> _Tensor:
    t = net.input
    if t.kind == "threshold":
        return _bipolar(g, _binary(g, "Add", x, -t.amount, "in_minus_threshold"), "in_codes")
    k = t.amount if t.kind == "shift" else t.shift_amount
    if k:  # pixel >> k: the quotient by 2^k is exact in float32, its floor is the shift
        bits = max(1, 8 - k)
        x = _quant(g, _binary(g, "Mul", x, 2.0 ** -k, "in_scaled"), IntFormat.unsigned(bits), "FLOOR", "in_shifted")
    if t.kind == "offset" and t.amount:
        lo, hi = -t.amount, (255 >> k) - t.amount
        x = _binary(g, "Add", x, -t.amount, "in_codes", f"INT{signed_bits_for_range(lo, hi)}")
    return x


def _bound(acc_range) -> int:
    return max(-int(acc_range[0]), int(acc_range[1]))


def _float_type(what: str, bound: int) -> str:
    """The narrowest float type holding every integer of magnitude ≤ ``bound`` exactly, or the refusal."""
    if bound < EXACT["FLOAT"]:
        return "FLOAT"
    if bound < EXACT["DOUBLE"]:
        return "DOUBLE"
    raise ValueError(f"{what} reaches ±{bound} (about 2^{np.log2(bound):.1f}), which the QONNX export cannot "
                     f"compute exactly: it must stay below 2^53 (float64)")


def _conv(g: _Graph, tag: str, layer: Conv2dLayer, x: _Tensor, oihw: np.ndarray, weight_dt: str,
          acc_dt: str) -> _Tensor:
    """ONNX ``Conv`` in float32 by ``oihw`` with ``layer``'s kernel, stride and padding; a bipolar input is
    padded by a ``Pad`` with −1, the value standing for real 0 (``Conv`` pads with 0)."""
    (ph, pw), (sh, sw) = layer.padding, layer.stride
    oh, ow, _ = layer.out_shape
    if (ph or pw) and pad_value(layer.in_format) != 0:
        pads = g.const(f"{tag}_pads", [0, 0, ph, pw, 0, 0, ph, pw], "INT64")
        shape = (1, x.shape[1], x.shape[2] + 2 * ph, x.shape[3] + 2 * pw)
        x = _Tensor(g.node("Pad", [x.name, pads, g.const(f"{tag}_padval", pad_value(layer.in_format))],
                           f"{tag}_padded", shape, datatype=layer.in_format.qonnx_datatype, mode="constant"), shape)
        ph = pw = 0
    w = g.const(f"{tag}_weights", oihw, "FLOAT", weight_dt)
    shape = (1, oihw.shape[0], oh, ow)
    return _Tensor(g.node("Conv", [x.name, w], f"{tag}_acc", shape, datatype=acc_dt, kernel_shape=list(layer.kernel),
                          strides=[sh, sw], pads=[ph, pw, ph, pw]), shape)


def _lowered_conv(g: _Graph, tag: str, layer: Conv2dLayer, x: _Tensor, acc_dt: str) -> _Tensor:
    """A convolution whose accumulators float32 cannot hold, in float64: its im2col vectors, then a float64
    ``MatMul`` by the ``[KH·KW·IC, OC]`` matrix of :meth:`Conv2dLayer.as_dense`.

    The im2col vectors come from a float32 ``Conv`` with one-hot kernels (output channel
    ``(ky·KW + kx)·IC + c`` copies input channel ``c`` at ``(ky, kx)``: one product by 1, exact), so
    they are lowbit's (ky, kx, c) order for any batch (qonnx's ``Im2Col`` op mixes up batches > 1)."""
    oh, ow, oc = layer.out_shape
    (kh, kw), ic = layer.kernel, layer.in_channels
    k = kh * kw * ic
    onehot = np.zeros((kh, kw, ic, ic, kh, kw), np.float32)  # [(ky, kx, c), c', ky', kx'] = 1 where all agree
    for ky in range(kh):
        for kx in range(kw):
            onehot[ky, kx, np.arange(ic), np.arange(ic), ky, kx] = 1
    fmt = layer.in_format.qonnx_datatype
    cols = _conv(g, f"{tag}_im2col", layer, x, onehot.reshape(k, ic, kh, kw), "BINARY", fmt)
    shape = (1, oh, ow, k)
    cols = _Tensor(g.node("Transpose", [cols.name], f"{tag}_im2col_nhwc", shape, datatype=fmt, perm=[0, 2, 3, 1]),
                   shape)
    cols = _cast(g, cols, "DOUBLE", f"{tag}_im2col_double")
    wmat = g.const(f"{tag}_weights", layer.as_dense().weights.T, "DOUBLE", layer.weight_format.qonnx_datatype)
    acc = g.node("MatMul", [cols.name, wmat], f"{tag}_acc_nhwc", (1, oh, ow, oc), "DOUBLE", datatype=acc_dt)
    return _Tensor(g.node("Transpose", [acc], f"{tag}_acc", (1, oc, oh, ow), "DOUBLE", datatype=acc_dt,
                          perm=[0, 3, 1, 2]), (1, oc, oh, ow), "DOUBLE")


def _weighted(g: _Graph, i: int, layer, x: _Tensor, last: bool) -> tuple[_Tensor, list[str]]:
    """Accumulate, add the bias, requantize (or not, for the logits); returns the float types used."""
    tag = f"l{i}_{layer.name}"
    what = f"layer {i} ({layer.name})"
    bound = _bound(layer.acc_range)
    acc_dt = f"INT{layer.acc_bits}"
    if isinstance(layer, Conv2dLayer) and bound < EXACT["FLOAT"]:
        acc = _conv(g, tag, layer, x, layer.weights.transpose(0, 3, 1, 2), layer.weight_format.qonnx_datatype,
                    acc_dt)
        channel_shape = (1, layer.out_channels, 1, 1)
    elif isinstance(layer, Conv2dLayer):  # onnxruntime has no float64 Conv: im2col, then a float64 MatMul
        _float_type(f"{what}: the accumulator range", bound)
        acc = _lowered_conv(g, tag, layer, x, acc_dt)
        channel_shape = (1, layer.out_channels, 1, 1)
    else:
        wmat = layer.weights
        if len(x.shape) == 4:  # lowbit flattens (h, w, c); ONNX's Flatten of NCHW gives (c, h, w)
            _, c, h, wd = x.shape
            wmat = wmat.reshape(-1, h, wd, c).transpose(0, 3, 1, 2).reshape(wmat.shape[0], -1)
            x = _Tensor(g.node("Flatten", [x.name], f"{tag}_flat", (1, c * h * wd),
                               datatype=g.datatypes.get(x.name), axis=1), (1, c * h * wd))
        elem = _float_type(f"{what}: the accumulator range", bound)
        x = _cast(g, x, elem, f"{tag}_in_{elem.lower()}")
        w = g.const(f"{tag}_weights", wmat.T, elem, layer.weight_format.qonnx_datatype)
        shape = (1, layer.out_features)
        acc = _Tensor(g.node("MatMul", [x.name, w], f"{tag}_acc", shape, elem, datatype=acc_dt), shape, elem)
        channel_shape = (layer.out_features,)
    b = layer.bias
    bias_dt = f"INT{signed_bits_for_range(min(b.min(), 0), max(b.max(), 0))}"
    acc = _binary(g, "Add", acc, b.reshape(channel_shape), f"{tag}_biased", acc_dt, const_datatype=bias_dt)
    if last and layer.requant is None:
        return acc, [acc.elem]
    rq = layer.requant
    m, s = rq.per_channel(int(np.prod(channel_shape)))
    offset = rq.offsets(int(np.prod(channel_shape)))
    half_mode = rq.rounding is not Rounding.FLOOR
    # |v·m| plus the offset and the rounding constant 2^(s-1) that ⌊x + ½⌋ adds, as Python integers
    vbound = bound * int(m.max()) + int(np.abs(offset).max()) + (
        1 << (int(s.max()) - 1) if half_mode and s.max() > 0 else 0)
    rq_elem = _float_type(f"{what}: (acc + bias)·multiplier" + (" + offset" if rq.offset is not None else ""),
                          vbound)
    rq_elem = "DOUBLE" if acc.elem == "DOUBLE" else rq_elem  # never cast float64 accumulators down
    v = _cast(g, acc, rq_elem, f"{tag}_biased_{rq_elem.lower()}")
    factor = m.astype(np.float64) * np.exp2(-s.astype(np.float64))
    if np.any(factor != 1):
        v = _binary(g, "Mul", v, factor.reshape(channel_shape), f"{tag}_scaled")
    fmt = rq.out_format
    # ⌊x + ½⌋ is half_up; a bipolar output takes the sign of the rounded value, and round(x) ≥ 0 ⇔ x + ½ ≥ 0
    plus_half = rq.rounding is Rounding.HALF_UP or (fmt.kind is Kind.BIPOLAR and half_mode)
    half = np.where(s > 0, 0.5, 0.0) if plus_half else np.zeros(len(s))  # no shift: nothing to round
    if rq.offset is not None and np.any(offset != 0):  # (v·m + c)·2^-s: c·2^-s is exact (|c| < the bound)
        added = offset.astype(np.float64) * np.exp2(-s.astype(np.float64)) + half
        v = _binary(g, "Add", v, added.reshape(channel_shape), f"{tag}_plus_offset")
    elif np.any(half != 0):
        v = _binary(g, "Add", v, half.reshape(channel_shape), f"{tag}_plus_half")
    if fmt.kind is Kind.BIPOLAR:
        return _bipolar(g, v, f"{tag}_out"), [acc.elem, rq_elem]
    if rq.relu and fmt.min < 0:
        v = _Tensor(g.node("Relu", [v.name], f"{tag}_relu", v.shape, v.elem), v.shape, v.elem)
    mode = "ROUND" if rq.rounding is Rounding.HALF_EVEN else "FLOOR"
    return _quant(g, v, fmt, mode, f"{tag}_out"), [acc.elem, rq_elem]


def _maxpool(g: _Graph, i: int, layer: MaxPool2dLayer, x: _Tensor) -> _Tensor:
    oh, ow, c = layer.out_shape
    shape = (1, c, oh, ow)
    name = g.node("MaxPool", [x.name], f"l{i}_{layer.name}_out", shape, x.elem, datatype=layer.fmt.qonnx_datatype,
                  kernel_shape=list(layer.kernel), strides=list(layer.stride))
    return _Tensor(name, shape, x.elem)


def build_model(net: Network):
    """The QONNX ``ModelWrapper`` of ``net`` (batch 1) and a summary (see :func:`export_qonnx`)."""
    from onnx import helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper

    g = _Graph()
    h_w_c = net.in_shape
    in_shape = (1, h_w_c[2], h_w_c[0], h_w_c[1]) if len(h_w_c) == 3 else (1, h_w_c[0])
    g.names.add(INPUT_NAME)
    x = _input_transform(g, net, _Tensor(INPUT_NAME, in_shape))
    float_types = {}
    for i, layer in enumerate(net.layers):
        last = i == len(net.layers) - 1
        if isinstance(layer, MaxPool2dLayer):
            x = _maxpool(g, i, layer, x)
        elif isinstance(layer, (Conv2dLayer, DenseLayer)):
            x, used = _weighted(g, i, layer, x, last)
            float_types[layer.name] = "float64" if "DOUBLE" in used else "float32"
        else:
            raise ValueError(f"layer {i} ({layer.name}) is a {layer.op} layer, which the QONNX export does not "
                             f"support (supported: conv2d, dense, maxpool2d)")
    # the last tensor is the graph's output under the name ``logits``
    g.infos[OUTPUT_NAME] = g.infos.pop(x.name)
    for n in g.nodes:
        n.output[:] = [OUTPUT_NAME if o == x.name else o for o in n.output]
    if x.name in g.datatypes:
        g.datatypes[OUTPUT_NAME] = g.datatypes.pop(x.name)
    elem, out_shape = g.infos.pop(OUTPUT_NAME)

    def info(name, elem_, shape):
        return helper.make_tensor_value_info(name, getattr(g.tp, elem_), list(shape))

    graph = helper.make_graph(g.nodes, net.name, [info(INPUT_NAME, "FLOAT", in_shape)],
                              [info(OUTPUT_NAME, elem, out_shape)], initializer=g.inits,
                              value_info=[info(n, e, s) for n, (e, s) in g.infos.items()])
    model = helper.make_model(graph, producer_name="lowbit", opset_imports=[
        helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)])
    model.ir_version = 8  # what onnxruntime and qonnx's tools read
    # lowbit.input = pixels: the graph takes raw pixel values (a Brevitas model takes pixel/255); the
    # importer reads it to re-import this file with input scale 1; lowbit.layers keeps the layers' names and
    # weight formats (a pow2_N format is annotated as the INTn holding it)
    helper.set_model_props(model, {"lowbit_network": net.name, "lowbit_layout": "NCHW" if len(h_w_c) == 3 else "NF",
                                   "lowbit.input": "pixels", "lowbit.layers": json.dumps(
                                       [[l.name, str(l.weight_format) if hasattr(l, "weight_format") else None]
                                        for l in net.layers])})
    wrapper = ModelWrapper(model)
    wrapper.set_tensor_datatype(INPUT_NAME, DataType["UINT8"])
    for name, dt in g.datatypes.items():
        wrapper.set_tensor_datatype(name, DataType[dt])
    ops = list(dict.fromkeys(n.op_type for n in g.nodes))
    summary = {"ops": ops, "opset": {"": ONNX_OPSET, QONNX_DOMAIN: 1}, "nodes": len(g.nodes),
               "input": {"name": INPUT_NAME, "shape": list(in_shape), "dtype": "float32"},
               "output": {"name": OUTPUT_NAME, "shape": list(out_shape),
                          "dtype": {"FLOAT": "float32", "DOUBLE": "float64"}[elem]},
               "float_types": float_types}
    return wrapper, summary


def export_qonnx(net: Network, path: str | os.PathLike) -> dict:
    """Write ``net`` as a QONNX model at ``path`` (atomically) and return a summary: ``ops`` (op types in
    graph order), ``opset``, ``nodes``, ``input``/``output`` (name, shape with batch 1, dtype),
    ``float_types`` (per weighted layer: ``float64`` if its accumulation or requantization needs it, else
    ``float32``) and ``bytes`` (the file's size).

    Raises :class:`ValueError` naming the layer when a value would not be exact (module docstring)."""
    wrapper, summary = build_model(net)
    path = Path(path)
    with atomic_path(path) as tmp:
        wrapper.save(str(tmp))
    summary["bytes"] = path.stat().st_size
    return summary


def _with_batch(wrapper, n: int):
    """A copy of ``wrapper`` whose activations (the value infos of non-initializers: all are batch-first)
    have batch ``n``."""
    import copy

    from qonnx.core.modelwrapper import ModelWrapper

    proto = copy.deepcopy(wrapper.model)
    g = proto.graph
    constants = {t.name for t in g.initializer}
    for vi in [*g.input, *g.output, *g.value_info]:
        if vi.name not in constants:
            vi.type.tensor_type.shape.dim[0].dim_value = n
    return ModelWrapper(proto)


def qonnx_outputs(path: str | os.PathLike, pixels, *, chunk: int = EXEC_CHUNK) -> np.ndarray:
    """Run the QONNX file at ``path`` with qonnx's ``execute_onnx`` on uint8 ``pixels`` (``[N, features]``
    rows in lowbit's (h, w, c) order, or ``[N, H, W, C]``), ``chunk`` images per call.

    Returns the output values as the executor gives them (float32 or float64, not rounded), ``[N, F]``
    or, for a convolutional last layer, NHWC ``[N, OH, OW, C]`` like the golden model's logits."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    wrapper = ModelWrapper(str(path))
    in_vi, out_vi = wrapper.graph.input[0], wrapper.graph.output[0]
    in_shape = [d.dim_value for d in in_vi.type.tensor_type.shape.dim]
    px = np.asarray(pixels)
    n = len(px)
    features = int(np.prod(in_shape[1:]))
    px = px.reshape(n, -1)
    if px.shape[1] != features:
        raise ValueError(f"pixels have {px.shape[1]} features per image, the model takes {features} "
                         f"(input shape {in_shape[1:]})")
    x = px.astype(np.float32)
    if len(in_shape) == 4:
        _, c, h, w = in_shape
        x = x.reshape(n, h, w, c).transpose(0, 3, 1, 2)
    outs, models = [], {}
    for start in range(0, n, chunk):
        xs = np.ascontiguousarray(x[start:start + chunk])
        if len(xs) not in models:
            models[len(xs)] = _with_batch(wrapper, len(xs))
        outs.append(execute_onnx(models[len(xs)], {in_vi.name: xs})[out_vi.name])
    y = np.concatenate(outs) if outs else np.zeros((0, *[d.dim_value for d in out_vi.type.tensor_type.shape.dim][1:]))
    return y.transpose(0, 2, 3, 1) if y.ndim == 4 else y
