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
from ..requant import MAX_SHIFT, RequantParams
from .common import ModelImportError
from .qonnx_requant import ACT_ROUNDING, REL, direct_requant, dyadic, fit_thresholds

__all__ = ["SUPPORTED_OPS", "fail", "Param", "Codes", "Raw", "Pending", "int_format", "datatype_format",
           "LayerFinisher"]

SUPPORTED_OPS = ("Quant", "BipolarQuant", "Constant", "Conv", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div",
                 "BatchNormalization", "Relu", "MaxPool", "Flatten", "Reshape", "Transpose", "Identity", "Dropout",
                 "Pad")
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
    pad: tuple | None = None  # (ph, pw) of an explicit Pad with the format's zero code, for the next Conv


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
    bias_steps: np.ndarray | None = None  # beta at the first Mul (lowbit's export: the integer bias)

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


def datatype_format(name: str) -> IntFormat | None:
    """The lowbit format of a QONNX integer ``DataType`` name (``INT4``, ``UINT8``, ``BINARY``, ``BIPOLAR``,
    ``TERNARY``), or None (a float type, or no lowbit format)."""
    try:
        if name in ("BIPOLAR", "TERNARY"):
            return IntFormat.bipolar() if name == "BIPOLAR" else IntFormat.ternary()
        if name == "BINARY":
            return IntFormat.unsigned(1)
        if name.startswith("UINT"):
            return IntFormat.unsigned(int(name[4:]))
        if name.startswith("INT"):
            return IntFormat.signed(int(name[3:]))
    except ValueError:
        return None
    return None


def _widest(factor: float, bits: int):
    """``(m, s)`` with ``m·2^-s == factor`` exactly and ``m`` the widest of at most ``bits`` bits (lowbit's
    scaled quantizer normalises its multipliers so), or None when the factor is not such a dyadic."""
    found = dyadic(factor, bits)
    if found is None:
        return None
    m, s = int(found[0][0]), int(found[1][0])
    while m * 2 <= (1 << bits) - 1 and s < MAX_SHIFT:
        m, s = m * 2, s + 1
    return m, s


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
        name, wfmt = self.recorded_layer(name, pend.wfmt, pend.weights)
        pend.wfmt = wfmt
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
        if self.lowbit_export:
            done = self._finish_lowbit(node, pend, s_out, bits, signed, narrow, mode)
            if done is not None:
                return done
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

    def _finish_lowbit(self, node, pend: Pending, s_out, bits, signed, narrow, mode):
        """lowbit's own requantizer, read back as written (:mod:`lowbit.sw.export_qonnx`): ``acc + bias`` →
        ``Mul m·2^-s`` → ``Add (c + ½·2^s)·2^-s`` → ``Relu`` → ``Quant`` of unit scale, FLOOR or ROUND.

        Exact by construction: ``m`` and the offset are read off dyadic constants, the rounding from the
        Quant; ``m`` is taken the widest of ``multiplier_bits`` (lowbit's convention: ``m/2^s`` itself does
        not say). None when the layer is not of that shape (then the general path decides)."""
        if s_out != 1 or not np.all(pend.inp.scale * pend.wscale == 1):
            return None
        fmt = IntFormat.ternary() if (bits, signed, narrow) == (2, True, True) else (
            None if narrow else int_format(node, signed, bits))
        if fmt is None or mode.upper() not in ("FLOOR", "ROUND"):
            return None
        bias = pend.beta if pend.bias_steps is None else pend.bias_steps
        if not np.all(bias == np.round(bias)) or np.any(pend.alpha <= 0):
            return None
        found = [_widest(float(a), self.multiplier_bits) for a in pend.alpha]
        if any(f is None for f in found):
            return None
        m = np.array([f[0] for f in found], np.int64)
        s = np.array([f[1] for f in found], np.int64)
        if np.all(np.log2(pend.alpha) == np.round(np.log2(pend.alpha))):  # powers of two: a pure shift
            m, s = np.ones_like(m), (-np.log2(pend.alpha)).astype(np.int64)
            if np.any(s < 0):
                return None
        added = (pend.beta - bias * pend.alpha) * np.exp2(s.astype(np.float64))  # c (+ 2^(s-1)), in 2^-s steps
        if not np.all(added == np.round(added)):
            return None
        added = added.astype(np.int64)
        half = np.where(s > 0, np.int64(1) << np.maximum(s - 1, 0), 0)
        if mode.upper() == "ROUND":
            rounding, offset = "half_even", added
        elif np.all(added == half) and np.any(s > 0):
            rounding, offset = "half_up", np.zeros_like(added)
        else:
            rounding, offset = "floor", added
        offset = None if not np.any(offset) else (np.int64(offset[0]) if np.all(offset == offset[0]) else offset)
        shift = np.int64(s[0]) if np.all(s == s[0]) else s
        mult = None if np.all(m == 1) else (np.int64(m[0]) if np.all(m == m[0]) else m)
        relu = pend.relu or fmt.min >= 0
        try:
            rq = RequantParams(fmt, shift, mult, rounding, relu, offset)
        except ValueError:
            return None
        layer = self._make(pend, bias.astype(np.int64), rq)
        self.report_layers.append(self._layer_report(
            pend, layer.name, out_format=str(fmt), act_scale=s_out, flipped_channels=0,
            requant=("shift" if mult is None else "multiplier") + (" + offset" if offset is not None else ""),
            multiplier_bits=rq.multiplier_bits, exact=True, bias_exact=True, max_rel_scale_error=0.0))
        return Codes(fmt, s_out, pend.out_shape)

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
        t = np.ceil(-pend.beta / pend.alpha)
        if not self.lowbit_export:  # lowbit's own export keeps its bias as written, reachable or not
            t = np.clip(t, acc_lo, acc_hi + 1)
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
