"""Shared machinery of the quantizers: plans, fake quantization and export to the IR.

A quantizer turns a float :class:`~lowbit.sw.frontends.graph.FloatGraph` into a
:class:`QuantPlan`, keyed by layer name: for every layer with weights (``fc0`` …) a frozen
weight quantizer (integer grid, format and real scale per layer or per output channel) and
for every activation layer (``relu0`` …, the boundary between two IR layers) an activation
spec (format and real scale). An importer can hand in a plan of its own. The plan then

* runs a **fake-quantized** torch forward pass (:func:`fake_forward`, the graph's own loop
  with hooks) whose values are the integers of the hardware times their scales, with
  straight-through gradients, so the same plan serves post-training quantization and
  quantization-aware training;
* **exports** the integer IR (:func:`export_network`, one IR layer per
  :meth:`~lowbit.sw.frontends.graph.FloatGraph.stages` entry, named after its weighted layer,
  plus a max-pool layer on the codes where a max-pool follows the activation):
  integer weights, biases in the accumulator scale, and requantization by shift only (all
  scales powers of two) or by an integer multiplier of ``multiplier_bits`` bits plus a shift.

Layers with weights are dense (``[out, in]``) or convolutions (the IR's ``[OC, KH, KW, IC]``,
NHWC activations): a weight scale is per layer or per output channel (axis 0, a filter), an
activation scale per tensor (statistics over every position and channel). Batch norm never
reaches a plan: :func:`~lowbit.sw.frontends.passes.fold_batchnorm` folds it into the weights
first (:func:`lowbit.sw.quant.quantize` does; :func:`quant_stages` refuses an unfolded one).
Flatten and dropout produce no IR layer.

Real-valued conventions: the model input is ``pixels / 256``. An activation integer
``q`` stands for ``scale * q + offset``: unsigned formats have offset 0 (ReLU, clip at
``2^b - 1``); a bipolar activation ``±1`` stands for ``{0, c}`` (``scale = offset = c/2``),
i.e. a 1-bit ReLU quantizer whose threshold ``c/2`` becomes the integer bias. The last
layer keeps one weight scale for all outputs, so argmax over its raw accumulators is
argmax over the float logits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from ..formats import IntFormat
from ..frontends.graph import ByName, FloatGraph, GraphError, Stage
from ..ir import InputTransform, Network
from ..requant import MAX_SHIFT, RequantParams

__all__ = ["ActSpec", "WeightQuant", "QuantPlan", "fake_forward", "export_network", "input_spec",
           "check_input_bits", "INPUT_BITS", "calibration_activations", "quant_stages", "multiplier_shift",
           "requant_ratios", "rounded_ratios", "mse_scale", "pow2_mse_scale", "per_channel", "ste_round",
           "check_bits", "QuantError", "parse_layer_bits", "check_layer_bits", "layer_widths", "layer_bits_suffix"]


class QuantError(ValueError):
    """Bad quantizer parameters (method, bit widths, options)."""


def check_bits(method: str, name: str, value, lo: int, hi: int, hint: str = "") -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not lo <= value <= hi:
        raise QuantError(f"{name} for method {method!r} must be an integer in {lo}..{hi}, not {value!r}{hint}")
    return int(value)


# ---- activations ----------------------------------------------------------------------
@dataclass(frozen=True)
class ActSpec:
    """Format of the integers between two layers and the real value of one step.

    ``kind`` is ``"uint"`` (``bits`` ≥ 1, ReLU) or ``"bipolar"`` (±1 standing for {0, c}).
    """

    kind: str
    bits: int
    scale: float
    offset: float = 0.0

    @property
    def fmt(self) -> IntFormat:
        return IntFormat.bipolar() if self.kind == "bipolar" else IntFormat.unsigned(self.bits)

    @property
    def qmax(self) -> int:
        return 1 if self.kind == "bipolar" else (1 << self.bits) - 1

    def fake(self, z: torch.Tensor, margin: float = 0.0, step: torch.Tensor | None = None) -> torch.Tensor:
        """Quantize pre-activations ``z`` (real) the way the requantizer does; STE gradient.

        Both kinds are a ReLU quantizer onto ``{0, step, …, qmax·step}`` with ties rounded
        up (the requantizer's ``half_up``); the gradient passes where ``z`` is in range.
        ``margin`` (in steps) sends values within it below a tie up too (float round-off of
        an exact tie; :func:`fake_forward`'s ``exact`` mode). ``step`` (a tensor) replaces the
        spec's step (``scale``; bipolar ``c``) and receives LSQ's gradient
        (:mod:`lowbit.sw.quant.learned`): the same values, computed as ``round(z/step)·step``.
        """
        # bipolar: z − c/2 is a multiple of s_acc and hits 0 exactly often (sums of ±1);
        # a tiny margin keeps float32 round-off from flipping those ties
        eps = max(1e-4, margin) if self.kind == "bipolar" else margin
        if step is not None:
            v = torch.clamp(z / step, 0.0, float(self.qmax))
            return (v + (torch.clamp(torch.floor(v + 0.5 + eps), 0, self.qmax) - v).detach()) * step
        step = 2 * self.scale if self.kind == "bipolar" else self.scale
        zc = torch.clamp(z, 0.0, step * self.qmax)
        q = torch.clamp(torch.floor(zc / step + 0.5 + eps), 0, self.qmax) * step
        return zc + (q - zc).detach()


#: the first layer's input width: raw pixels are 8 bits
INPUT_BITS = (1, 8)


def check_input_bits(method: str, input_bits) -> int | None:
    """``input_bits`` checked (``None``: the method's default, ``min(act_bits, 8)``)."""
    if input_bits is None:
        return None
    return check_bits(method, "input_bits", input_bits, *INPUT_BITS, " (pixels have 8 bits)")


def input_spec(act_bits: int, bipolar: bool = False, input_bits: int | None = None) -> tuple[ActSpec, InputTransform]:
    """The first layer's input: ``pixel >> (8 - b)`` (unsigned) or ``pixel >= 128`` (bipolar).

    ``b`` is ``input_bits``, by default ``min(act_bits, 8)``: the first layer's input is as
    wide as the other layers' unless asked otherwise (FINN keeps 8-bit pixels). ``bipolar``
    (binary W1A1) makes a 1-bit input bipolar instead of ``u1``. The float model sees
    ``pixel / 256``; ``pixel >> (8 - b)`` times ``2^(8-b) / 256`` is that value truncated to
    b bits. A bipolar input stands for {0, 1}.
    """
    b = min(int(act_bits), 8) if input_bits is None else int(input_bits)
    if bipolar and b == 1:
        return ActSpec("bipolar", 1, 0.5, 0.5), InputTransform("threshold", 128)
    return ActSpec("uint", b, 2.0 ** (8 - b) / 256.0), InputTransform("shift", 8 - b)


# ---- per-layer widths -----------------------------------------------------------------------
def parse_layer_bits(text: str) -> dict:
    """``"fc3=w8,fc0=w4a8"`` → ``{"fc3": {"w": 8}, "fc0": {"w": 4, "a": 8}}`` (``""`` → ``{}``).

    ``w`` is that layer's weight width, ``a`` the width of its output codes (the activations
    its requantizer emits into the next layer; the last layer emits logits and has none).
    """
    import re

    out = {}
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        m = re.fullmatch(r"([A-Za-z_][\w.]*)=(?:w(\d+))?(?:a(\d+))?", part)
        if not m or not (m[2] or m[3]):
            raise QuantError(f"layer_bits entries must be LAYER=wN, LAYER=aN or LAYER=wNaN (e.g. fc3=w8, fc0=w4a8), "
                             f"not {part!r}")
        if m[1] in out:
            raise QuantError(f"layer_bits names layer {m[1]!r} twice")
        out[m[1]] = {k: int(v) for k, v in (("w", m[2]), ("a", m[3])) if v}
    return out


def check_layer_bits(method: str, layer_bits, weight_range, act_range) -> dict:
    """``layer_bits`` (a mapping or :func:`parse_layer_bits` text) checked against the method's widths;
    ``weight_range`` None: the method's weights have no width to choose (ternary, binary)."""
    lb = parse_layer_bits(layer_bits) if isinstance(layer_bits, str) else dict(layer_bits or {})
    for name, widths in lb.items():
        if not isinstance(widths, dict) or not widths or set(widths) - {"w", "a"}:
            raise QuantError(f"layer_bits[{name!r}] must map 'w' and/or 'a' to a width, not {widths!r}")
        if "w" in widths:
            if weight_range is None:
                raise QuantError(f"layer_bits[{name!r}]: method {method!r} has no weight width to choose "
                                 "(its weights are ternary or bipolar); give only 'a'")
            check_bits(method, f"layer_bits[{name!r}] weight width", widths["w"], *weight_range)
        if "a" in widths:
            check_bits(method, f"layer_bits[{name!r}] activation width", widths["a"], *act_range)
    return lb


def layer_widths(method: str, layer_bits: dict, stages, weight_bits: int, act_bits: int) -> tuple[dict, dict]:
    """``(weights, acts)``: weighted layer name → its weight width, activation layer name → its code width,
    ``layer_bits`` (checked by :func:`check_layer_bits`) over the method's ``weight_bits``/``act_bits``."""
    names = [st.name for st in stages]
    for name in layer_bits:
        if name not in names:
            raise QuantError(f"layer_bits names layer {name!r}, which this network does not have: its layers with "
                             f"weights are {', '.join(names)}")
    if "a" in layer_bits.get(stages[-1].name, {}):
        raise QuantError(f"layer_bits[{stages[-1].name!r}]: the last layer emits logits, it has no activation width "
                         "(give its weights a width with 'w')")
    weights = {st.name: layer_bits.get(st.name, {}).get("w", weight_bits) for st in stages}
    acts = {st.act: layer_bits.get(st.name, {}).get("a", act_bits) for st in stages if st.act}
    return weights, acts


def layer_bits_suffix(layer_bits: dict) -> str:
    """The network-name suffix of per-layer widths: ``_fc3w8_fc0w4a8``."""
    return "".join(f"_{n}" + "".join(f"{k}{v}" for k, v in sorted(w.items(), key=lambda kv: kv[0] != "w"))
                   for n, w in layer_bits.items())


# ---- weights ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class WeightQuant:
    """A frozen weight quantizer: ``W ≈ scale[o] * q`` with ``q`` on an integer grid.

    ``kind`` is ``"int"`` (round and clip to ``[qmin, qmax]``), ``"ternary"`` (``q = sign(W)``
    where ``|W| > threshold`` per channel, else 0) or ``"bipolar"`` (``q = sign(W)``, 0 → +1).
    ``scale`` and ``threshold`` are per output channel ``o`` (length ``out``): axis 0 of the
    weights, a dense ``[out, in]`` or a convolution's ``[OC, KH, KW, IC]`` (or torch's
    ``[OC, IC, KH, KW]``: the quantizer is elementwise but for that axis).
    """

    kind: str
    fmt: IntFormat
    scale: np.ndarray
    threshold: np.ndarray | None = None
    # per output channel, added to the float bias before it is rounded: the correction for the
    # mean error the quantized weights make (lowbit.sw.quant.bias); None: the bias as trained
    bias_shift: np.ndarray | None = None

    def integers(self, w: torch.Tensor) -> torch.Tensor:
        s = per_channel(self.scale, w)
        if self.kind == "int":
            return torch.clamp(torch.round(w / s), self.fmt.min, self.fmt.max)
        if self.kind == "ternary":
            t = per_channel(self.threshold, w)
            return torch.sign(w) * (w.abs() > t)
        if self.kind == "bipolar":
            return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
        raise AssertionError(self.kind)

    def fake(self, w: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """``scale * q`` with a straight-through gradient to ``w``.

        ``scale`` (a tensor, one or one per channel) replaces the frozen scale and receives
        LSQ's gradient (:mod:`lowbit.sw.quant.learned`; ``int`` and ``bipolar`` kinds): the
        same values, with the gradient to ``w`` cut where it is clipped.
        """
        if scale is None:
            q = self.integers(w) * per_channel(self.scale, w)
            return w + (q - w).detach()
        s = scale.reshape(-1, *([1] * (w.dim() - 1)))
        if self.kind == "int":
            v = torch.clamp(w / s, self.fmt.min, self.fmt.max)
            return (v + (torch.round(v) - v).detach()) * s
        if self.kind == "bipolar":
            sign = torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
            return (w + (sign - w).detach()) * s
        raise ValueError(f"a {self.kind} weight quantizer has no learned scale")


def per_channel(values, w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel ``values`` shaped to broadcast over weights ``w`` (channels on axis 0)."""
    return torch.as_tensor(values, dtype=w.dtype).reshape(-1, *([1] * (w.dim() - 1)))


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def mse_scale(x: np.ndarray, qmin: int, qmax: int, candidates: np.ndarray) -> float:
    """The candidate scale minimising ``‖x − s·clip(round(x/s))‖²``."""
    x = np.asarray(x, np.float64).ravel()
    if x.size > 200_000:  # a fixed subsample keeps calibration fast and deterministic
        x = x[np.linspace(0, x.size - 1, 200_000).astype(np.int64)]
    best, best_err = float(candidates[0]), math.inf
    for s in candidates:
        if s <= 0:
            continue
        err = float(np.sum((x - s * np.clip(np.round(x / s), qmin, qmax)) ** 2))
        if err < best_err:
            best, best_err = float(s), err
    return best


def pow2_mse_scale(x, qmin: int, qmax: int, min_scale: float = 0.0) -> float:
    """Power-of-two scale ``≥ min_scale`` minimising the quantization error of ``x``."""
    amax = float(np.max(np.abs(x))) if np.size(x) else 0.0
    if amax == 0:
        return max(min_scale, 2.0 ** -8)
    top = math.ceil(math.log2(amax / max(qmax, 1))) + 1
    cands = np.array([2.0 ** k for k in range(top - 8, top + 1) if 2.0 ** k >= min_scale * (1 - 1e-12)])
    if cands.size == 0:
        return float(min_scale)
    return mse_scale(x, qmin, qmax, cands)


# ---- the graph's stages, as the integer IR sees them ------------------------------------
def quant_stages(graph) -> tuple[Stage, ...]:
    """The graph's stages, checked for what the integer IR realises: every stage but the last
    ends in an activation (the requantizer's ReLU), the last emits raw logits."""
    if not isinstance(graph, FloatGraph):
        raise QuantError(f"the model must be a FloatGraph, not {type(graph).__name__}")
    try:
        stages = graph.stages()
    except GraphError as e:
        raise QuantError(f"this graph has no integer IR yet: {e}") from None
    for st in stages:
        if getattr(st, "bn", None) is not None:
            raise QuantError(f"layer {st.name!r} is followed by batch norm {st.bn!r}: fold it first "
                             "(lowbit.sw.frontends.passes.fold_batchnorm; quantize() does)")
    for st in stages[:-1]:
        if st.act is None:
            raise QuantError(f"layer {st.name!r} needs an activation (ReLU) before the next layer with weights: "
                             "the integer IR requantizes through one")
    if stages[-1].act is not None:
        raise QuantError(f"the last layer {stages[-1].name!r} must emit raw logits, not pass activation "
                         f"{stages[-1].act!r}")
    return stages


# ---- the plan --------------------------------------------------------------------------
@dataclass(frozen=True)
class QuantPlan:
    """Everything needed to fake-quantize or export a float graph.

    Attributes
    ----------
    weights : mapping weighted layer name → WeightQuant (``fc0`` …), in graph order
    acts : mapping activation layer name → ActSpec (``relu0`` …): the integers after it
    input : ActSpec
    transform : InputTransform
    requant : ``"shift"`` or ``"multiplier"``
    multiplier_bits : int
    metadata : dict
        Method, options and reports (e.g. multiplier error), copied into the IR.

    Both mappings also take a position (``plan.acts[-1]`` is the last boundary's spec).
    """

    weights: Mapping
    acts: Mapping
    input: ActSpec
    transform: InputTransform
    requant: str = "multiplier"
    multiplier_bits: int = 16
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        for fname in ("weights", "acts"):
            v = getattr(self, fname)
            if not isinstance(v, Mapping):
                raise QuantError(f"QuantPlan {fname} must be a mapping layer name → quantizer, not "
                                 f"{type(v).__name__}")
            object.__setattr__(self, fname, ByName(v))

    def check(self, stages) -> None:
        """Refuse a plan whose names are not the graph's weighted and activation layers."""
        for fname, want in (("weights", [st.name for st in stages]), ("acts", [st.act for st in stages if st.act])):
            have = list(getattr(self, fname))
            if have != want:
                raise QuantError(f"plan {fname} must be keyed by the graph's layers {want} (in order), not {have}")

    def boundaries(self, stages) -> dict[str, tuple[ActSpec, ActSpec | None]]:
        """Weighted layer name → (spec of its input, spec of its output or None for logits)."""
        self.check(stages)
        out, a_in = {}, self.input
        for st in stages:
            a_out = self.acts[st.act] if st.act else None
            out[st.name] = (a_in, a_out)
            a_in = a_out
        return out


def fake_forward(model, plan: QuantPlan, x: torch.Tensor, *, pixels: torch.Tensor | None = None,
                 exact: bool = False, scales: dict | None = None) -> torch.Tensor:
    """Fake-quantized logits. ``pixels`` (uint8 values) give the exact integer input.

    Runs the graph's loop with the plan's quantizers: each weighted layer computes with
    its fake-quantized weights and no bias, its output boundary adds the bias as the
    integer network sees it (:func:`_fake_bias`), and each activation layer becomes its
    quantizing ReLU (:meth:`ActSpec.fake`); max-pools and flattens run as they are (a
    max-pool of quantized values is the max-pool of the codes).

    ``exact`` computes what the integer IR computes, to the bit, when the graph runs in
    float64 (``model.double()``): requantization ratios rounded to the IR's multipliers
    (:func:`requant_ratios`) and exact ties sent up, as the requantizer's ``half_up`` does.
    Without it (training) the ratios are the real ones; they differ by < 2^-(multiplier_bits-1).

    ``scales`` (:meth:`lowbit.sw.quant.learned.LearnedScales.resolve`) replaces the plan's
    weight and activation scales by trained tensors (``{"weights": {name: s}, "acts": {name:
    step}}``; a name missing keeps the plan's): quantization-aware training with learned scales.
    """
    stages = quant_stages(model)
    if any(st.divisors for st in stages):
        raise QuantError("fake_forward does not take constant Scale layers (fold them into the weights first)")
    if exact and scales is not None:
        raise QuantError("fake_forward's exact mode computes a plan's integer network: export learned scales "
                         "into a plan first (LearnedScales.to_plan), not scales=")
    bounds = plan.boundaries(stages)
    w_scales = (scales or {}).get("weights", {})
    a_steps = (scales or {}).get("acts", {})
    if pixels is None:
        pixels = torch.round(x * 256.0)
    t = plan.transform
    if t.kind == "shift":
        xi = torch.floor(pixels / float(1 << t.amount))
    elif t.kind == "threshold":
        xi = torch.where(pixels >= t.amount, 1.0, -1.0)
    else:
        xi = torch.floor(pixels / float(1 << t.shift_amount)) - t.amount
    dtype = next(model.parameters()).dtype
    h = (plan.input.scale * xi + plan.input.offset).to(dtype)
    wqs = {}
    # exact: (rounded ratio / real ratio) per channel, applied to the biased accumulator
    corr = {}
    if exact:
        for st in stages:
            a_in, a_out = bounds[st.name]
            if a_out is not None and a_out.kind != "bipolar" and plan.requant == "multiplier":
                r = requant_ratios(a_in, plan.weights[st.name], a_out, model.shapes[st.name][-1])
                m, sh, _ = rounded_ratios(r, plan.multiplier_bits)
                corr[st.name] = torch.as_tensor(np.broadcast_to(m / 2.0 ** sh, r.shape) / r, dtype=dtype)
    # each weighted layer's input activation layer (None: the model input)
    act_in = dict(zip((st.name for st in stages), [None, *(st.act for st in stages[:-1])]))
    act_out = {st.name: st.act for st in stages}

    def real(spec: ActSpec, act_name):
        """(scale, offset) of an activation's integers: the plan's, or its learned step's."""
        if act_name not in a_steps:
            return spec.scale, spec.offset
        step = a_steps[act_name]
        return (step / 2, step / 2) if spec.kind == "bipolar" else (step, spec.offset)

    def params(name, layer):
        wqs[name] = wq = plan.weights[name].fake(layer.weight, w_scales.get(name))
        return wq, None

    def out(name, layer, y):
        if name not in wqs:
            return y
        b = layer.bias if layer.bias is not None else torch.zeros(y.shape[-1], dtype=y.dtype)
        a_in, a_out = bounds[name]
        wquant = plan.weights[name]
        if wquant.bias_shift is not None:
            b = b + torch.as_tensor(wquant.bias_shift, dtype=b.dtype)
        s_w = w_scales.get(name)
        s_w = torch.as_tensor(np.broadcast_to(wquant.scale, (b.shape[0],)).copy(), dtype=b.dtype) if s_w is None \
            else s_w.to(b.dtype).expand(b.shape[0])
        s_in, off_in = real(a_in, act_in[name])
        threshold = real(a_out, act_out[name])[1] if a_out is not None and a_out.kind == "bipolar" else None
        y = y + _fake_bias(b, wqs.pop(name), s_in, off_in, s_w, threshold)
        return y * corr[name] if name in corr else y

    margin = 1e-9 if exact else 0.0
    return model.run(h, params=params, out=out,
                     act=lambda name, layer, z: plan.acts[name].fake(z, margin, a_steps.get(name)))


def _fake_bias(b: torch.Tensor, wq: torch.Tensor, s_in, off_in, s_w: torch.Tensor, threshold) -> torch.Tensor:
    """The bias as the integer network sees it: rounded in the accumulator scale (STE).

    Mirrors :func:`export_network`: ``z = s_acc·(acc + bias_int) (+ threshold)`` with
    ``s_acc = s_in·s_w`` per channel; ``off_in`` is the input's offset (bipolar ``{0, c}``:
    ``c/2``), ``threshold`` a bipolar output's ``c/2`` (``None`` otherwise). The scales may be
    learned tensors; the whole correction is detached, so the gradient goes to ``b`` alone.
    """
    s_acc = s_in * s_w
    # an input offset reaches every weight of a channel (every kernel position of a filter)
    off = off_in * wq.detach().flatten(1).sum(1)
    if threshold is not None:
        exact = s_acc * torch.floor((b.detach() + off - threshold) / s_acc) + threshold - off
    else:
        exact = s_acc * torch.floor((b.detach() + off) / s_acc + 0.5) - off
    return b + (exact - b).detach()


def multiplier_shift(r: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Integers ``m < 2^bits`` and shifts ``s ≤ 48`` with ``m / 2^s ≈ r`` (per entry).

    Returns ``(m, s, max_relative_error)``. The shift is the largest that keeps ``m``
    within ``bits`` bits, which gives the smallest error.
    """
    r = np.atleast_1d(np.asarray(r, np.float64))
    if np.any(r <= 0):
        raise QuantError("requantization ratios must be positive")
    limit = (1 << bits) - 1
    s = np.floor(np.log2(limit / r)).astype(np.int64)
    s = np.clip(s, 0, MAX_SHIFT)
    m = np.round(r * 2.0 ** s).astype(np.int64)
    over = m > limit
    s[over] -= 1
    m[over] = np.round(r[over] * 2.0 ** s[over]).astype(np.int64)
    if np.any(s < 0) or np.any(m > limit):
        raise QuantError(f"a requantization ratio {float(r.max()):.4g} needs more than {bits} multiplier bits")
    err = float(np.max(np.abs(m / 2.0 ** s - r) / r))
    return m, s, err


def requant_ratios(a_in: ActSpec, wq: WeightQuant, a_out: ActSpec, channels: int) -> np.ndarray:
    """Per output channel, the real ratio ``s_in·s_w / s_out`` a requantizer applies."""
    return a_in.scale * np.broadcast_to(np.asarray(wq.scale, np.float64), (channels,)) / a_out.scale


def rounded_ratios(r: np.ndarray, bits: int):
    """``(m, s, max_relative_error)`` of the IR's requantizer for ratios ``r``: one multiplier and
    shift for the layer when every channel has the same ratio, else one per channel."""
    if np.allclose(r, r[0], rtol=0, atol=0):
        m, s, err = multiplier_shift(r[:1], bits)
        return m[0], s[0], err
    return multiplier_shift(r, bits)


def export_network(model, plan: QuantPlan, name: str = "net") -> Network:
    """The integer IR of ``model`` under ``plan``: per stage its weighted layer, then its max-pool
    (on the requantized codes) if it has one (see the module docstring)."""
    stages = quant_stages(model)
    bounds = plan.boundaries(stages)
    layers = []
    mult_err = 0.0
    for st in stages:
        w, b = st.float_params()
        a_in, a_out = bounds[st.name]
        wq = plan.weights[st.name]
        if wq.bias_shift is not None:
            b = b + wq.bias_shift
        q = wq.integers(torch.as_tensor(w)).numpy().astype(np.int64)
        sw = np.broadcast_to(np.asarray(wq.scale, np.float64), (w.shape[0],))
        s_acc = a_in.scale * sw
        # an activation offset (bipolar {0, c}) is a constant input: fold W·offset into the bias
        b_eff = b + a_in.offset * (q.reshape(len(q), -1) * sw[:, None]).sum(1)
        lname = st.name
        if a_out is None:
            if not np.allclose(sw, sw[0]):
                raise QuantError("the last layer needs one weight scale for all outputs (argmax of raw logits)")
            bias = np.floor(b_eff / s_acc + 0.5).astype(np.int64)
            layers += _stage_ir(st, q, wq.fmt, a_in.fmt, bias, None)
            continue
        if a_out.kind == "bipolar":
            # +1 iff s_acc·(acc + b_eff/s_acc) ≥ threshold c/2 ⇔ acc + floor((b_eff − c/2)/s_acc) ≥ 0
            bias = np.floor((b_eff - a_out.offset) / s_acc).astype(np.int64)
            rq = RequantParams(a_out.fmt, 0, None, "floor", False)
        else:
            bias = np.floor(b_eff / s_acc + 0.5).astype(np.int64)
            r = s_acc / a_out.scale
            if plan.requant == "shift":
                s = -np.log2(r)
                si = np.round(s).astype(np.int64)
                if not np.allclose(s, si) or si.min() < 0:
                    raise QuantError(f"layer {lname}: shift-only requantization needs ratios 2^-s with s ≥ 0, "
                                     f"got {r.min():.4g}..{r.max():.4g}")
                shift = si[0] if np.all(si == si[0]) else si
                rq = RequantParams(a_out.fmt, np.int64(shift) if np.ndim(shift) == 0 else shift, None,
                                   "half_up", True)
            else:
                m, s, err = rounded_ratios(r, plan.multiplier_bits)
                mult_err = max(mult_err, err)
                rq = RequantParams(a_out.fmt, s, m, "half_up", True)
        layers += _stage_ir(st, q, wq.fmt, a_in.fmt, bias, rq)
    meta = dict(plan.metadata)
    if plan.requant == "multiplier":
        meta["multiplier_bits"] = plan.multiplier_bits
        meta["multiplier_max_rel_error"] = mult_err
    return Network(layers, plan.transform, name, meta)


def _stage_ir(st, q, weight_format, in_format, bias, requant) -> list:
    """The IR layers of one stage (its weighted layer, then its max-pool if any)."""
    try:
        return list(st.to_ir(q, weight_format, in_format, bias, requant))
    except GraphError as e:
        raise QuantError(str(e)) from None


@torch.no_grad()
def calibration_activations(model, pixels) -> ByName:
    """Float activations (float64) after each activation layer on calibration pixels: ``relu0 -> array``."""
    from ..train import to_input

    stages = quant_stages(model)
    model.eval()
    outs = {}
    model.run(to_input(pixels), collect=outs)
    return ByName((st.act, outs[st.act].numpy().astype(np.float64)) for st in stages if st.act)
