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
    steps, which an integer bias cannot carry — floor rounding with a per-channel product offset
    ``c`` (``round_shift((acc + bias)·m + c, s)``: it places each threshold at 1/m of an
    accumulator step) is searched, from the smallest shift up, again checked on every threshold —
    exact where found (measured: every float-BN conv layer tried);
  - only when that fails too (e.g. a narrow ``multiplier_bits``) the ``(m, s, bias, c)`` missing the
    fewest thresholds (each one accumulator value off) is used and the report says so (``exact:
    false``, thresholds missed, the worst relative scale error): never silently. A narrow activation range
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

**lowbit's own export** (:mod:`lowbit.sw.export_qonnx`; metadata ``lowbit.input = pixels``, or producer
``lowbit``) is read back as written: the input scale defaults to 1 (raw pixels); weight initializers
annotated with an integer QONNX datatype and holding integers are codes of scale 1 (no Quant node); a
requantizer ``Mul m·2^-s`` → ``Add`` → ``Relu`` → ``Quant`` of unit scale gives back ``m`` (the widest of
``multiplier_bits``, lowbit's convention), ``s``, the bias added before the ``Mul``, the offset and the
rounding (FLOOR with ``+½`` is half_up); a ``Pad`` by the format's zero code becomes the Conv's padding;
a ``Cast`` between float32 and float64 is the identity; the layers' names and weight formats (``pow2_N``,
annotated as ``INTn``) come from metadata ``lowbit.layers``. A convolution the export lowered to a float64
MatMul (accumulators ≥ 2^24) is refused.

Everything else — nonzero zero points, grouped or dilated convolutions, residual (two-input)
``Add``, ``Trunc``, ops not listed in :data:`SUPPORTED_OPS` — is a :class:`~.common.ModelImportError`
naming the node, its op type and what is supported.

The importer is four modules (split to keep each under ~500 lines): this one, the public API
(loading, :func:`import_qonnx`, :func:`qonnx_agreement`, the report's lines);
:mod:`.qonnx_reader`, the graph walk (what each node means, every refusal); :mod:`.qonnx_layers`,
the tensors passed between nodes and the finishing of a layer into an IR layer; and
:mod:`.qonnx_requant`, the requantizer choice (exact shift/multiplier or threshold fitting).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..ir import IRError, Network
from ..requant import MAX_MULTIPLIER_BITS
from .common import ModelImportError
from .qonnx_layers import SUPPORTED_OPS
from .qonnx_reader import Reader, is_lowbit_export, source_x
from .qonnx_requant import ACT_ROUNDING

__all__ = ["import_qonnx", "qonnx_agreement", "load_qonnx", "SUPPORTED_OPS", "ACT_ROUNDING"]


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

# ---- public API --------------------------------------------------------------------------------
def import_qonnx(model, *, input_scale: float | None = None, multiplier_bits: int = 16,
                 name=None) -> tuple[Network, dict]:
    """The integer IR of a quantized QONNX ``model`` (path, bytes or ModelProto) and a report dict.

    ``input_scale``: the graph's float input is ``pixel · input_scale``; None (the default) is ``1/255``
    (torchvision's ``ToTensor``), or 1 for a file lowbit's own export wrote (metadata ``lowbit.input`` =
    ``pixels``: it takes the raw pixel values; its integer weights, requantizers and input transform are
    read back as written — see :mod:`lowbit.sw.export_qonnx`). ``multiplier_bits`` (2..16) bounds the requantizers' multipliers. The report has
    ``ops`` (the op types met), ``input``, ``layers`` (per layer: weight format, scale kind pow2/float
    and tensor/channel, requantizer, multiplier bits, exact or not, the worst relative scale error),
    ``exact``, ``output_scale`` (qonnx's logits = output_scale · lowbit's), ``notes`` and ``seconds``.
    """
    t0 = time.perf_counter()
    wrapper = load_qonnx(model)
    if input_scale is None:
        input_scale = 1.0 if is_lowbit_export(wrapper) else 1 / 255
    if not (isinstance(input_scale, (int, float)) and math.isfinite(input_scale) and input_scale > 0):
        raise ModelImportError(f"input_scale must be a positive number, not {input_scale!r}")
    if not isinstance(multiplier_bits, int) or not 2 <= multiplier_bits <= MAX_MULTIPLIER_BITS:
        raise ModelImportError(f"multiplier_bits must be an integer in 2..{MAX_MULTIPLIER_BITS}, not "
                               f"{multiplier_bits!r}")
    reader = Reader(wrapper, float(input_scale), multiplier_bits)
    layers = reader.run()
    exact = all(l.get("exact", True) for l in reader.report_layers) and reader.input_report.get("exact", True)
    source = str(model) if isinstance(model, (str, Path)) else "QONNX model"
    meta = {"source": "qonnx", "model": source, "input_scale": float(input_scale),
            "output_scale": reader.output_scale, "exact": exact, "multiplier_bits": multiplier_bits}
    if name is None:  # lowbit's export records the network's name
        name = {p.key: p.value for p in wrapper.model.metadata_props}.get("lowbit_network") if reader.lowbit_export \
            else None
        name = name or (Path(model).stem if isinstance(model, (str, Path)) else "qonnx")
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


def qonnx_agreement(model, net: Network, pixels, *, input_scale: float | None = None, batch: int = 512) -> dict:
    """Run qonnx's executor (batched) and lowbit's golden model on uint8 ``pixels`` (rows, NHWC order);
    ``input_scale`` None: the one ``net`` was imported with (``net.metadata["input_scale"]``).

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
    if input_scale is None:
        input_scale = net.metadata.get("input_scale", 1 / 255)
    wrapper = load_qonnx(model)
    iname, oname = wrapper.graph.input[0].name, wrapper.graph.output[0].name
    shape = tuple(wrapper.get_tensor_shape(iname))[1:]
    pixels = np.asarray(pixels)
    n = len(pixels)
    x = source_x(pixels, input_scale)
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
