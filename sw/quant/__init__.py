"""Quantizers: float32 FloatGraphs (:mod:`lowbit.sw.frontends.graph`) → integer IR networks.

MLPs and CNNs alike: dense and conv layers (weight scales per layer or per output channel,
i.e. per filter), max-pools on the codes, batch norm folded first (:func:`folded`). See
:mod:`lowbit.sw.quant.core` for the conventions.

Public API
----------
``quantize(model, method, weight_bits=None, act_bits=None, calib_data=None, *, qat=False,
train_data=None, qat_epochs=3, seed=0, **opts) -> Network``
    One call for every post-training method, optionally with quantization-aware
    fine-tuning (``qat=True`` with ``train_data=(x_uint8, y)``). ``calib_data`` is uint8
    pixels (a few thousand training images is plenty). The returned
    :class:`~lowbit.sw.ir.Network`'s golden-model accuracy is the method's accuracy.
``make_plan(model, method, weight_bits, act_bits, calib_data, **opts) -> QuantPlan``
``check_options(method, weight_bits=None, act_bits=None, **opts)``
    The option checks of :func:`quantize` alone (no model, no data): commands call it before
    any training or data loading. Raises :class:`QuantError` with the same messages.
``METHODS``           name → module for the IR-producing post-training methods
``wage``              :func:`lowbit.sw.quant.wage.train_wage` trains a WAGE network, then
                      :func:`~lowbit.sw.quant.wage.export_wage` gives its IR
``minifloat``         custom narrow floats (emulation, no IR) and Hill et al.'s fast
                      precision search

Methods and their options (``opts``):

============  ==========  ========  ==============================================
method        weights     acts      options
============  ==========  ========  ==============================================
``pow2``      s2..s16     u1..u16   —  (shift-only requantization)
``scaled``    s2..s16     u1..u16   ``granularity`` channel|layer, ``multiplier_bits``
``dfp``       s2..s16     u1..u16   —  (shift-only requantization)
``ternary``   ternary     u1..u16   ``cluster`` 1|4|16|64|layer, ``multiplier_bits``
``binary``    bipolar     bipolar   ``multiplier_bits`` (act_bits ≥ 2: unsigned)
                          or u2..
============  ==========  ========  ==============================================

Every method also takes ``input_bits`` (1..8): the width of the first layer's input,
``pixel >> (8 - input_bits)``, independent of ``act_bits``. By default it is
``min(act_bits, 8)`` (binary W1A1: the bipolar ``pixel >= 128``); ``input_bits=8`` keeps the
raw pixels, as FINN's networks do. When given it is recorded in the IR metadata and the
network's name (``…_in8``).

Every method also takes ``layer_bits``: per-layer widths over ``weight_bits``/``act_bits``, a
mapping ``{"fc3": {"w": 8}, "fc0": {"w": 4, "a": 8}}`` or the text ``"fc3=w8,fc0=w4a8"``
(:func:`~lowbit.sw.quant.core.parse_layer_bits`): ``w`` a layer's weight width (pow2, scaled,
dfp; ternary and binary weights have none), ``a`` the width of the codes it emits into the
next layer (not the last layer: it emits logits). Recorded in the metadata and the name
(``…_fc3w8``).

Every method also takes ``bias_correction`` (``"auto"`` by default, ``True``, ``False``): each
layer's bias corrected for the mean error its quantized weights make on the calibration images
(:func:`~lowbit.sw.quant.bias.bias_corrected`); "auto" keeps the correction when the integer
network then agrees more often with the float network's classes. Recorded in the metadata.
"""

from __future__ import annotations

from . import binary, dfp, pow2, scaled, ternary
from .bias import bias_corrected, check_bias_correction
from .core import QuantError, QuantPlan, export_network, layer_bits_suffix, parse_layer_bits

__all__ = ["METHODS", "ALL_METHODS", "quantize", "make_plan", "check_options", "folded", "QuantError", "DEFAULT_BITS"]

METHODS = {"pow2": pow2, "scaled": scaled, "dfp": dfp, "ternary": ternary, "binary": binary}
ALL_METHODS = (*METHODS, "wage", "minifloat")
# (weight_bits, act_bits) when not given
DEFAULT_BITS = {"pow2": (4, 4), "scaled": (4, 4), "dfp": (8, 8), "ternary": (2, 8), "binary": (1, 1)}


def _module(method: str):
    if method in ("wage", "minifloat"):
        raise QuantError(f"method {method!r} is not a post-training quantizer: use "
                         f"{'lowbit.sw.quant.wage.train_wage' if method == 'wage' else 'lowbit.sw.quant.minifloat'}"
                         f" (CLI: lowbit quantize --method {method})")
    if method not in METHODS:
        raise QuantError(f"method must be one of {', '.join(ALL_METHODS)}, not {method!r}")
    return METHODS[method]


def _bits(method: str, weight_bits, act_bits) -> tuple:
    dw, da = DEFAULT_BITS[method]
    return dw if weight_bits is None else weight_bits, da if act_bits is None else act_bits


def check_options(method: str, weight_bits=None, act_bits=None, bias_correction="auto", **opts) -> None:
    """Refuse bad quantizer options before any model exists (see the module docstring)."""
    mod = _module(method)
    check_bias_correction(bias_correction)
    mod.check(*_bits(method, weight_bits, act_bits), **opts)


def folded(model):
    """``model`` with its batch norms folded into the layers before them (itself if it has none)."""
    from ..frontends.graph import BatchNorm, FloatGraph
    from ..frontends.passes import fold_batchnorm

    if isinstance(model, FloatGraph) and any(isinstance(l, BatchNorm) for l in model.layers.values()):
        return fold_batchnorm(model)
    return model


def make_plan(model, method: str, weight_bits=None, act_bits=None, calib_data=None, *, bias_correction="auto",
              **opts) -> QuantPlan:
    """The plan of ``method`` for ``model``, calibrated on ``calib_data``, its biases corrected
    (:func:`~lowbit.sw.quant.bias.bias_corrected`). A model with batch norm is planned folded:
    export it, or fake-quantize it, as :func:`folded` gives it."""
    mod = _module(method)
    check_bias_correction(bias_correction)
    if calib_data is None:
        raise QuantError("calib_data must be uint8 pixels of a few hundred or more images, not None")
    graph = folded(model)
    plan = bias_corrected(graph, mod.plan(graph, *_bits(method, weight_bits, act_bits), calib_data, **opts),
                          calib_data, bias_correction)
    if opts.get("input_bits") is not None:
        # only when asked: an IR made without the option stays exactly what it was
        plan.metadata["input_bits"] = int(opts["input_bits"])
    if opts.get("layer_bits"):
        lb = opts["layer_bits"]  # checked by the method's plan; recorded as a mapping
        plan.metadata["layer_bits"] = parse_layer_bits(lb) if isinstance(lb, str) else {k: dict(v) for k, v in lb.items()}
    return plan


def quantize(model, method: str, weight_bits=None, act_bits=None, calib_data=None, *, qat: bool = False,
             train_data=None, qat_epochs: int = 3, seed: int = 0, progress: bool = True, name: str | None = None,
             learn_scales: bool = False, scale_lr: float | None = None, **opts):
    """Quantize a float graph to the integer IR (see the module docstring).

    Batch norm is folded first (:func:`folded`); QAT then fine-tunes the folded weights, so the
    plan's frozen scales and what is trained are exactly what is exported.
    """
    model = folded(model)
    plan = make_plan(model, method, weight_bits, act_bits, calib_data, **opts)
    if qat:
        from .qat import qat_finetune

        if train_data is None:
            raise QuantError("qat=True needs train_data=(x_uint8, labels), not None")
        model, plan = qat_finetune(model, plan, *train_data, epochs=qat_epochs, seed=seed, progress=progress,
                                   learn_scales=learn_scales, scale_lr=scale_lr)
        plan.metadata.update(qat=True, qat_epochs=qat_epochs)
    wb, ab = plan.metadata["weight_bits"], plan.metadata["act_bits"]
    ib = f"_in{plan.metadata['input_bits']}" if "input_bits" in plan.metadata else ""
    lb = layer_bits_suffix(plan.metadata.get("layer_bits", {}))
    return export_network(model, plan, name or f"{method}_w{wb}a{ab}{ib}{lb}{'_qat' if qat else ''}")
