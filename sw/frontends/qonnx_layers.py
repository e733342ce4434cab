"""The tensors a QONNX graph walk passes from node to node, and the finishing of a read conv/dense
layer into a lowbit IR layer with its requantizer (:class:`LayerFinisher`).

Split out of :mod:`.qonnx_reader` so that neither module passes ~500 lines: the reader decides what
each node means; this module turns a layer read up to its activation (:class:`Pending`:
``z_c = α_c·acc_c + β_c``) into a :class:`~lowbit.sw.ir.Conv2dLayer`/:class:`~lowbit.sw.ir.DenseLayer`,
choosing the requantizer with :mod:`.qonnx_requant`, and records its report entry. :func:`fail` (the
error every refusal raises) and :data:`SUPPORTED_OPS` live here because both modules raise it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..formats import IntFormat, signed_bits_for_range
from ..ir import Conv2dLayer, DenseLayer, IRError
from ..requant import RequantParams
from .common import ModelImportError
from .qonnx_requant import ACT_ROUNDING, REL, direct_requant, fit_thresholds

__all__ = ["SUPPORTED_OPS", "fail", "Param", "Codes", "Raw", "Pending", "int_format", "LayerFinisher"]

SUPPORTED_OPS = ("Quant", "BipolarQuant", "Constant", "Conv", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div",
                 "BatchNormalization", "Relu", "MaxPool", "Flatten", "Reshape", "Transpose", "Identity", "Dropout")
_SUPPORTED = ", ".join(SUPPORTED_OPS)


def fail(node, what: str) -> ModelImportError:
    return ModelImportError(f"node {node.name!r} ({node.op_type}): {what} (supported ops: {_SUPPORTED})")


# ---- tensors met while walking the graph -------------------------------------------------------
@dataclass
class Param:
    """A quantized constant: ``codes · scale`` (both full-shape float64)."""

    codes: np.ndarray
    scale: np.ndarray
    fmt: IntFormat | None  # None: wider than any lowbit format (a 32-bit bias)

    @property
    def real(self) -> np.ndarray:
        return (self.codes.astype(np.float32) * self.scale.astype(np.float32)).astype(np.float64)


@dataclass
class Codes:
    """An activation tensor of integer codes: ``fmt`` values times ``scale``; ``shape`` is one sample in
    the source's layout, ``(C, H, W)`` or ``(F,)``; ``chw`` the NCHW shape it was flattened from."""

    fmt: IntFormat
    scale: float
    shape: tuple
    chw: tuple | None = None


@dataclass
class Raw:
    """The float graph input before its Quant: scalar float32 ops on it, in order."""

    shape: tuple
    ops: list = field(default_factory=list)
    chw: tuple | None = None


@dataclass
class Pending:
    """A conv/dense layer read up to its activation: ``z_c = alpha_c·acc_c + beta_c``."""

    node: object
    kind: str
    weights: np.ndarray  # lowbit layout: [OC, F] or [OC, KH, KW, IC]
    wfmt: IntFormat
    wscale: np.ndarray
    inp: Codes
    alpha: np.ndarray
    beta: np.ndarray
    out_shape: tuple
    conv: dict = field(default_factory=dict)
    relu: bool = False
    batchnorm: bool = False

    @property
    def channels(self) -> int:
        return self.weights.shape[0]


def _is_pow2(v) -> bool:
    v = np.abs(np.asarray(v, np.float64))
    return bool(np.all(v > 0) and np.all(np.log2(v) == np.round(np.log2(v))))


def int_format(node, signed: bool, bits: int) -> IntFormat:
    try:
        return IntFormat.signed(bits) if signed else IntFormat.unsigned(bits)
    except ValueError as e:
        kind = "signed" if signed else "unsigned"
        raise fail(node, f"a {kind} {bits}-bit Quant has no lowbit format ({e})") from None


class LayerFinisher:
    """The reader's layer-finishing half (a mixin of :class:`~.qonnx_reader.Reader`): it uses the host's
    ``quant_args``, ``bipolar_scale``, ``multiplier_bits`` and appends to its ``layers``, ``report_layers``,
    ``notes`` and ``counts``; :meth:`finish_logits` sets ``output_scale``."""

    # ---- finishing a layer -------------------------------------------------------------------
    def _flip(self, pend: Pending):
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

    def _make(self, pend: Pending, bias, requant):
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
            raise fail(pend.node, str(e)) from None
        self.layers.append(layer)
        return layer

    def _layer_report(self, pend, name, **kw) -> dict:
        per_channel = not np.all(pend.wscale == pend.wscale[0])
        return {"name": name, "source": pend.node.name, "op": "conv2d" if pend.kind == "conv" else "dense",
                "weight_format": str(pend.wfmt), "in_format": str(pend.inp.fmt),
                "weight_scale": "pow2" if _is_pow2(pend.wscale) else "float",
                "granularity": "channel" if per_channel else "tensor", "batchnorm": pend.batchnorm, **kw}

    def _acc_bounds(self, pend: Pending):
        """Per channel, the reachable accumulator range (without bias) over the input format."""
        w = pend.weights.reshape(pend.channels, -1)
        lo_x, hi_x = pend.inp.fmt.min, pend.inp.fmt.max
        return np.minimum(w * lo_x, w * hi_x).sum(1), np.maximum(w * lo_x, w * hi_x).sum(1)

    def finish_int(self, node, pend: Pending):
        scale, bits, signed, narrow, mode = self.quant_args(node)
        if mode.upper() not in ACT_ROUNDING:
            raise fail(node, f"rounding_mode {mode} is not supported for activations (supported: "
                              f"{', '.join(ACT_ROUNDING)})")
        if scale.size != 1:
            raise fail(node, "an activation Quant must have one scale for the tensor (the next layer's input)")
        if bits == 1 and signed:
            raise fail(node, "a 1-bit signed Quant: export bipolar activations as BipolarQuant")
        s_out = float(scale.reshape(()))
        fmt = int_format(node, signed, bits)
        from qonnx.custom_op.general.intquant import max_int, min_int

        qlo, qhi = min_int(signed, narrow, bits), max_int(signed, narrow, bits)
        if pend.relu:
            qlo = max(qlo, 0)
        flipped = self._flip(pend)
        if np.any(pend.alpha == 0):
            raise fail(pend.node, "a channel with scale 0 (constant output) is not supported")
        real_mode = mode.upper()
        r = pend.alpha / s_out
        b_star = pend.beta / pend.alpha
        relu = pend.relu or not signed
        rq, bias, info = direct_requant(r, b_star, fmt, qlo, qhi, ACT_ROUNDING[real_mode], relu, real_mode, signed,
                                 self.multiplier_bits)
        if rq is None:
            acc_lo, acc_hi = self._acc_bounds(pend)
            rq, bias, info = fit_thresholds(r, b_star, fmt, qlo, qhi, relu, real_mode, acc_lo, acc_hi,
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
                              f"with an integer bias and a product offset reproduces every threshold{why}; the one "
                              f"missing fewest is "
                              f"used: {info['thresholds_missed']} of {info['thresholds']} thresholds one accumulator "
                              f"step off, effective scale within {info['max_rel_scale_error']:.2e} (relative)")
        shape = pend.out_shape
        return Codes(fmt, s_out, shape)

    def finish_bipolar(self, node, pend: Pending):
        scale = self.bipolar_scale(node)
        if scale.size != 1:
            raise fail(node, "a BipolarQuant activation must have one scale for the tensor")
        if pend.relu:
            raise fail(node, "a Relu before a BipolarQuant is not supported (every output would be +1)")
        flipped = self._flip(pend)
        if np.any(pend.alpha == 0):
            raise fail(pend.node, "a channel with scale 0 (constant output) is not supported")
        # +1 iff alpha·acc + beta ≥ 0 iff acc ≥ ceil(−beta/alpha): the threshold is an integer bias
        acc_lo, acc_hi = self._acc_bounds(pend)
        t = np.clip(np.ceil(-pend.beta / pend.alpha), acc_lo, acc_hi + 1)
        bias = (-t).astype(np.int64)
        layer = self._make(pend, bias, RequantParams(IntFormat.bipolar(), 0, None, "floor", False))
        self.report_layers.append(self._layer_report(pend, layer.name, out_format="bipolar",
                                                     act_scale=float(scale.reshape(())), requant="sign",
                                                     multiplier_bits=0, flipped_channels=flipped, exact=True,
                                                     max_rel_scale_error=0.0))
        return Codes(IntFormat.bipolar(), float(scale.reshape(())), pend.out_shape)

    def finish_logits(self, pend: Pending):
        if pend.relu:
            raise fail(pend.node, "a Relu on the logits without a Quant is not supported")
        flipped = self._flip(pend)  # a negative output scale: negated weights give the same real logits
        if np.any(pend.alpha == 0):
            raise fail(pend.node, "an output with scale 0 (a constant logit) is not supported")
        alpha, b_star = pend.alpha, pend.beta / pend.alpha
        bias = np.round(b_star)
        bias_exact = bool(np.all(np.abs(bias - b_star) <= REL * np.maximum(1.0, np.abs(b_star))))
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
