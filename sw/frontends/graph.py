"""FloatGraph: a float network as an ordered list of named layers with shapes, and THE forward loop.

Every float computation of lowbit runs through :meth:`FloatGraph.run`: training and
prediction, calibration, fake quantization (post-training and QAT), WAGE training and
minifloat emulation. They differ only in the hooks they hand to that loop.

Layers
------
A layer is a torch module of one of the kinds in :data:`LAYER_KINDS` (``Linear``, ``Conv2d``,
``BatchNorm``, ``ReLU``, ``MaxPool2d``, ``Flatten``, ``Dropout``, ``Scale``). Each kind states
its output shape for an input shape, the constructor arguments that rebuild it
(:meth:`Layer.config`, for checkpoints), which of its tensors a hook may substitute
(``param_names``) and whether it is an activation. A new kind is one more class with those
four answers.

Shapes exclude the batch dimension: an MLP on 8×8 digits has ``input_shape == (64,)``, a CNN
``(8, 8, 1)``. Image tensors are NHWC throughout — ``[batch, height, width, channels]``, the
integer IR's order — so a :class:`Flatten` gives the ``(h, w, c)`` order the IR's dense layer
reads. :meth:`FloatGraph.run` also takes an image graph's input flattened (a dataset's pixel
rows, ``[batch, H·W·C]``, which for one channel is the same order) and reshapes it.

Conv2d has torch's semantics and keeps torch's ``[OC, IC, KH, KW]`` weight parameter (what
a ``params`` hook sees and returns); :meth:`Layer.ir_weight` gives a weight in the IR's
``[OC, KH, KW, IC]`` order (:meth:`Stage.float_params` returns that order). Output channels
are axis 0 in both orders.

The forward loop and its hooks
------------------------------
``graph.run(x, *, params=None, act=None, out=None, collect=None)`` runs the layers in order.
For each layer ``name``:

1. ``params(name, layer) -> tuple | None`` (layers with ``param_names``, e.g. Linear's
   ``(weight, bias)``): the tensors to compute with instead of the layer's own — fake-
   quantized weights for QAT/PTQ, WAGE's quantized weights, minifloat-rounded ones. A
   ``None`` entry means "none" (a Linear without bias); returning ``None`` keeps the layer's.
2. ``act(name, layer, x) -> y`` (activation layers, e.g. ReLU): computes the activation
   instead of the layer — a quantizing ReLU (fake activation quantization, WAGE's
   activation/error quantizer). It *replaces* the layer rather than following it: the
   quantizer's clip at 0 is the ReLU, and a ReLU before it would also stop the gradient
   where the pre-activation is exactly 0, which fake-quantized accumulators often are.
3. ``out(name, layer, y) -> y`` (every layer): transforms the layer's output on its way to
   the next layer — minifloat rounding, or the fake-quantized bias added to an accumulator.
4. ``collect`` (a dict): receives ``name -> output`` of every layer (calibration).

With no hooks, ``run(x)`` is the plain float forward pass (``forward`` calls it), so
``nn.Module`` training, ``state_dict`` and ``deepcopy`` work as for any torch model.

:meth:`FloatGraph.stages` groups the layers into the units an integer IR layer realises:
a layer with weights, an optional batch norm, constant scales, one activation, an optional
max-pool after it (its own IR layer), with dropout and flatten anywhere (no IR layer), up to
the next layer with weights. Batch norm is folded away by
:func:`lowbit.sw.frontends.passes.fold_batchnorm` before quantization.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

__all__ = ["FloatGraph", "Layer", "Linear", "Conv2d", "BatchNorm", "ReLU", "MaxPool2d", "Flatten", "Dropout",
           "Scale", "Stage", "ByName", "GraphError", "LAYER_KINDS"]


class GraphError(ValueError):
    """A float graph that cannot be built or run: bad names, shapes, kinds or configs."""


class ByName(dict):
    """``name -> item`` in graph order; an int picks by position (``plan.acts[-1]``: the last one)."""

    def __getitem__(self, key):
        if isinstance(key, int) and not isinstance(key, bool):
            return list(self.values())[key]
        return super().__getitem__(key)


def _shape(shape) -> tuple[int, ...]:
    return tuple(int(d) for d in shape)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _pair(kind: str, pname: str, v, least: int) -> tuple[int, int]:
    """An int or a pair of ints ≥ ``least`` as a pair (torch's convention for kernel, stride, padding)."""
    pair = (v, v) if _is_int(v) else tuple(v) if isinstance(v, (tuple, list)) else None
    if pair is None or len(pair) != 2 or not all(_is_int(d) and d >= least for d in pair):
        what = "positive" if least == 1 else "non-negative"
        raise GraphError(f"{kind} {pname} must be a {what} integer or a pair of them, not {v!r}")
    return int(pair[0]), int(pair[1])


def _image(in_shape, channels: int | None = None) -> str | None:
    """Why ``in_shape`` is not an NHWC image (with ``channels`` channels), or None."""
    if len(in_shape) != 3 or (channels is not None and in_shape[2] != channels):
        return f"takes images of shape (height, width, {'channels' if channels is None else channels})"
    return None


def _nchw(x: torch.Tensor) -> torch.Tensor:
    """An NHWC batch as the NCHW tensor torch's image functions take (a view: channels-last memory)."""
    if x.dim() != 4:
        raise GraphError(f"image layers take a batch of shape (batch, height, width, channels), not {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


# ---- layer kinds -----------------------------------------------------------------------
class Layer:
    """What every float layer kind says about itself (a mixin on a torch module).

    Class attributes: ``kind`` (its name in configs), ``param_names`` (tensors a ``params``
    hook may substitute, in :meth:`compute` order), ``activation`` (an ``act`` hook
    replaces it), ``weighted`` (it starts a :class:`Stage`).
    """

    kind: ClassVar[str]
    param_names: ClassVar[tuple[str, ...]] = ()
    activation: ClassVar[bool] = False

    @property
    def weighted(self) -> bool:
        return bool(self.param_names)

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape for ``in_shape`` (elementwise layers keep it); GraphError saying what
        it takes ("takes inputs of shape …") if refused."""
        return in_shape

    def config(self) -> dict:
        """Constructor keyword arguments (JSON-able) that rebuild this layer."""
        return {}

    def current_params(self) -> tuple:
        return tuple(getattr(self, n) for n in self.param_names)

    def ir_weight(self, weight=None):
        """``weight`` (default: the layer's own) in the integer IR's order (a tensor or an array)."""
        return self.weight if weight is None else weight

    def compute(self, x: torch.Tensor, *params) -> torch.Tensor:
        """The layer's function with ``params`` in place of its own (layers with ``param_names``)."""
        raise NotImplementedError(self.kind)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.config().items())
        return f"{self.kind}({args})" if args else self.kind


class Linear(Layer, nn.Linear):
    """``y = x·Wᵀ + b`` (torch's ``nn.Linear``; creating it draws its initial weights from torch's RNG)."""

    kind = "linear"
    param_names = ("weight", "bias")

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **kw):
        for pname, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise GraphError(f"Linear {pname} must be a positive integer, not {v!r}")
        nn.Linear.__init__(self, int(in_features), int(out_features), bool(bias), **kw)

    def out_shape(self, in_shape):
        if tuple(in_shape) != (self.in_features,):
            raise GraphError(f"takes inputs of shape ({self.in_features},)")
        return (self.out_features,)

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None}

    def compute(self, x, weight, bias):
        return nn.functional.linear(x, weight, bias)

    def to_ir(self, weights, weight_format, in_format, bias, requant, name: str, *, in_shape=None):
        """The integer IR layer this float layer becomes (integer ``weights`` in its ``[out, in]`` order;
        ``in_shape``, which :meth:`Stage.to_ir` passes to every kind, is its own)."""
        from ..ir import DenseLayer

        return DenseLayer(weights, weight_format, in_format, bias, requant, name)

    def describe(self):
        return f"linear {self.in_features}->{self.out_features}{'' if self.bias is not None else ' (no bias)'}"


class Conv2d(Layer, nn.Conv2d):
    """Torch's 2-D convolution (zero padding) on NHWC images ``[batch, H, W, IC] → [batch, OH, OW, OC]``.

    The weight parameter is torch's ``[OC, IC, KH, KW]`` (creating the layer draws it from
    torch's RNG); :meth:`ir_weight` gives ``[OC, KH, KW, IC]``, the IR's order.
    """

    kind = "conv2d"
    param_names = ("weight", "bias")

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = True,
                 **kw):
        for pname, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not _is_int(v) or v < 1:
                raise GraphError(f"Conv2d {pname} must be a positive integer, not {v!r}")
        nn.Conv2d.__init__(self, int(in_channels), int(out_channels), _pair("Conv2d", "kernel_size", kernel_size, 1),
                           _pair("Conv2d", "stride", stride, 1), _pair("Conv2d", "padding", padding, 0),
                           bias=bool(bias), **kw)

    def out_shape(self, in_shape):
        if why := _image(in_shape, self.in_channels):
            raise GraphError(why)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        h, w = in_shape[0] + 2 * ph - kh, in_shape[1] + 2 * pw - kw
        if h < 0 or w < 0:
            raise GraphError(f"takes images of at least {kh - 2 * ph}×{kw - 2 * pw} pixels")
        return (h // sh + 1, w // sw + 1, self.out_channels)

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
                "bias": self.bias is not None}

    def compute(self, x, weight, bias):
        return _nhwc(nn.functional.conv2d(_nchw(x), weight, bias, self.stride, self.padding))

    def forward(self, x):
        return self.compute(x, self.weight, self.bias)

    def ir_weight(self, weight=None):
        w = self.weight if weight is None else weight
        return w.permute(0, 2, 3, 1) if isinstance(w, torch.Tensor) else np.transpose(w, (0, 2, 3, 1))

    def to_ir(self, weights, weight_format, in_format, bias, requant, name: str, *, in_shape):
        """The integer IR layer this float layer becomes (integer ``weights`` in the IR's
        ``[OC, KH, KW, IC]`` order; ``in_shape`` its ``(H, W, IC)`` input)."""
        from ..ir import Conv2dLayer

        return Conv2dLayer(weights, weight_format, in_format, bias, requant, name, in_shape=tuple(in_shape),
                           stride=tuple(self.stride), padding=tuple(self.padding))

    def describe(self):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        extra = "" if (sh, sw) == (1, 1) else f" stride {sh}" if sh == sw else f" stride ({sh}, {sw})"
        extra += "" if (ph, pw) == (0, 0) else f" pad {ph}" if ph == pw else f" pad ({ph}, {pw})"
        return f"conv2d {self.in_channels}->{self.out_channels} {kh}x{kw}{extra}" + (
            "" if self.bias is not None else " (no bias)")


class BatchNorm(Layer, nn.BatchNorm1d):
    """Batch norm per channel of the last axis: after a Linear (``[batch, F]``) or a Conv2d
    (``[batch, H, W, C]``, statistics over batch, height and width, as torch's BatchNorm2d).

    Training mode normalises with the batch's statistics and updates the running ones; eval
    mode uses the running statistics (what :func:`~lowbit.sw.frontends.passes.fold_batchnorm`
    folds). Not a layer with weights: hooks leave it alone.
    """

    kind = "batchnorm"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        if not _is_int(num_features) or num_features < 1:
            raise GraphError(f"BatchNorm num_features must be a positive integer, not {num_features!r}")
        for pname, v, hi in (("eps", eps, math.inf), ("momentum", momentum, 1)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= hi:
                raise GraphError(f"BatchNorm {pname} must be a number in (0, {hi}], not {v!r}")
        nn.BatchNorm1d.__init__(self, int(num_features), float(eps), float(momentum))

    def out_shape(self, in_shape):
        if not in_shape or in_shape[-1] != self.num_features:
            raise GraphError(f"takes inputs of shape (..., {self.num_features})")
        return in_shape

    def config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def forward(self, x):
        # channels are the last axis: as rows of [N, C], torch's BatchNorm1d is exactly that
        return nn.BatchNorm1d.forward(self, x.reshape(-1, self.num_features)).reshape(x.shape)

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)`` per channel, float64, with eval mode's ``y = scale·x + shift``:
        ``scale = γ/√(σ² + ε)``, ``shift = β − μ·scale``."""
        scale = self.weight.detach().double() / torch.sqrt(self.running_var.double() + self.eps)
        return scale, self.bias.detach().double() - self.running_mean.double() * scale

    def fold(self, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights and bias (float64) of the layer before this one with this batch norm folded in:
        output channel ``o``'s weights (axis 0, either weight order) times ``scale[o]`` — a
        negative scale flips their signs — and ``bias·scale + shift``."""
        scale, shift = self.scale_shift()
        w = weight.detach().double()
        b = torch.zeros(w.shape[0], dtype=torch.float64) if bias is None else bias.detach().double()
        return w * scale.reshape(-1, *([1] * (w.dim() - 1))), b * scale + shift

    def describe(self):
        return f"batchnorm {self.num_features}"


class ReLU(Layer, nn.ReLU):
    kind = "relu"
    activation = True

    def __init__(self):
        nn.ReLU.__init__(self)


class Dropout(Layer, nn.Dropout):
    """Zeroes inputs with probability ``p`` in training mode; the identity in eval mode (and at p = 0)."""

    kind = "dropout"

    def __init__(self, p: float = 0.5):
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p < 1:
            raise GraphError(f"Dropout p must be a number in [0, 1), not {p!r}")
        nn.Dropout.__init__(self, float(p))

    def config(self):
        return {"p": self.p}


class Scale(Layer, nn.Module):
    """``y = x / divisor``: a constant scaling layer (WAGE's replacement for batch norm)."""

    kind = "scale"

    def __init__(self, divisor: float):
        if not isinstance(divisor, (int, float)) or isinstance(divisor, bool) or not (
                math.isfinite(divisor) and divisor > 0):
            raise GraphError(f"Scale divisor must be a positive finite number, not {divisor!r}")
        nn.Module.__init__(self)
        self.divisor = float(divisor)

    def forward(self, x):
        return x / self.divisor

    def config(self):
        return {"divisor": self.divisor}


class MaxPool2d(Layer, nn.Module):
    """Max-pool over windows of NHWC images, no padding (torch's ``max_pool2d``, floor mode);
    ``stride`` defaults to ``kernel_size``. After an activation it becomes its own IR layer."""

    kind = "maxpool2d"

    def __init__(self, kernel_size=2, stride=None):
        nn.Module.__init__(self)
        self.kernel_size = _pair("MaxPool2d", "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else _pair("MaxPool2d", "stride", stride, 1)

    def out_shape(self, in_shape):
        if why := _image(in_shape):
            raise GraphError(why)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if in_shape[0] < kh or in_shape[1] < kw:
            raise GraphError(f"takes images of at least {kh}×{kw} pixels")
        return ((in_shape[0] - kh) // sh + 1, (in_shape[1] - kw) // sw + 1, in_shape[2])

    def config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride)}

    def forward(self, x):
        return _nhwc(nn.functional.max_pool2d(_nchw(x), self.kernel_size, self.stride))

    def to_ir(self, fmt, name: str, *, in_shape):
        """The integer IR layer (max-pool on codes of format ``fmt``) this layer becomes."""
        from ..ir import MaxPool2dLayer

        return MaxPool2dLayer(fmt, name, in_shape=tuple(in_shape), kernel=tuple(self.kernel_size),
                              stride=tuple(self.stride))

    def describe(self):
        (kh, kw), stride = self.kernel_size, self.stride
        return f"maxpool2d {kh}x{kw}" + ("" if stride == self.kernel_size else f" stride {stride}")


class Flatten(Layer, nn.Module):
    """``[batch, H, W, C] → [batch, H·W·C]`` in NHWC order (the IR's dense input order; no IR layer)."""

    kind = "flatten"

    def __init__(self):
        nn.Module.__init__(self)

    def out_shape(self, in_shape):
        return (math.prod(in_shape),)

    def forward(self, x):
        return x.reshape(x.shape[0], -1)


LAYER_KINDS: dict[str, type[Layer]] = {cls.kind: cls for cls in (Linear, Conv2d, BatchNorm, ReLU, MaxPool2d, Flatten,
                                                                  Dropout, Scale)}


# ---- stages: the float layers one integer IR layer realises ----------------------------
@dataclass(frozen=True)
class Stage:
    """The float layers one weighted IR layer realises: a layer with weights (Linear, Conv2d),
    then an optional batch norm right after it, constant scales, one activation, and an
    optional max-pool after the activation, with dropout and flatten anywhere in between (the
    identity and a reshape at inference); up to the next layer with weights.

    ``name`` is the weighted layer's name (its IR layer's name), ``divisors`` the constant
    scales between it and its activation (folded into its weights), ``act`` the name of its
    activation layer (``None``: the output stage emits raw values), ``bn`` the name of its
    batch norm (``None`` once :func:`~lowbit.sw.frontends.passes.fold_batchnorm` ran), ``pool``
    the name of the max-pool after its activation (a second IR layer of its own, on the
    activation's codes), ``in_shape`` the weighted layer's input shape, ``members`` every
    layer of the stage by name, in graph order.
    """

    name: str
    layer: Layer
    divisors: tuple[float, ...] = ()
    act: str | None = None
    bn: str | None = None
    pool: str | None = None
    in_shape: tuple[int, ...] = ()
    members: Mapping = field(default_factory=ByName, compare=False, repr=False)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The weighted layer's (and activation's) output shape, before the max-pool."""
        return _shape(self.layer.out_shape(self.in_shape))

    def float_params(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` as float64 numpy arrays, W in the IR's order (``[out, in]``, ``[OC, KH, KW, IC]``),
        the batch norm (its eval statistics) and the constant scales folded in."""
        w, b = self.layer.weight, self.layer.bias
        if self.bn is not None:
            w, b = self.members[self.bn].fold(w, b)
        w = np.asarray(self.layer.ir_weight(w.detach().double().numpy()))
        b = np.zeros(w.shape[0]) if b is None else b.detach().double().numpy()
        for d in self.divisors:
            w, b = w / d, b / d
        return w, b

    def to_ir(self, weights, weight_format, in_format, bias=None, requant=None) -> tuple:
        """The stage's IR layers: its weighted layer's (integer ``weights`` in the order of
        :meth:`float_params`), then its max-pool's on the requantizer's output format."""
        layers = (self.layer.to_ir(weights, weight_format, in_format, bias, requant, self.name,
                                   in_shape=self.in_shape),)
        if self.pool is not None:
            if requant is None:
                raise GraphError(f"max-pool {self.pool!r} needs the requantized codes of layer {self.name!r}")
            layers += (self.members[self.pool].to_ir(requant.out_format, self.pool, in_shape=self.out_shape),)
        return layers


# ---- the graph -------------------------------------------------------------------------
class FloatGraph(nn.Module):
    """An ordered list of named float layers with shapes, and the one forward loop (:meth:`run`).

    Parameters
    ----------
    input_shape : sequence of int
        The shape of one input, without the batch dimension.
    layers : mapping or sequence of ``(name, layer)``
        Names are Python identifiers, unique, and become the ``state_dict`` prefixes
        (``fc0.weight``). Each layer's input shape must be what the previous one gives.
    """

    def __init__(self, input_shape, layers):
        super().__init__()
        self.input_shape = _shape(input_shape)
        self.shapes = shapes = ByName()  # name -> output shape
        items = list(layers.items()) if isinstance(layers, Mapping) else list(layers)
        shape = self.input_shape
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise GraphError(f"layers must be (name, layer) pairs, not {item!r}")
            name, layer = item
            if not isinstance(name, str) or not name.isidentifier() or hasattr(type(self), name) or (
                    name in self.__dict__ or name in self._modules):
                why = "unique" if name in shapes else "a Python identifier not used by FloatGraph"
                raise GraphError(f"layer name must be {why}, not {name!r}")
            if not isinstance(layer, Layer):
                raise GraphError(f"layer {name!r} must be one of the float layer kinds "
                                 f"{', '.join(c.__name__ for c in LAYER_KINDS.values())}, not "
                                 f"{type(layer).__module__}.{type(layer).__qualname__}")
            try:
                out = _shape(layer.out_shape(shape))
            except GraphError as e:
                prev = f"layer {list(shapes)[-1]!r}" if shapes else "the graph input"
                raise GraphError(f"layer {name!r} ({layer.describe()}) {e}, but {prev} gives {shape}") from None
            self.add_module(name, layer)
            shapes[name] = out
            shape = out
        if not shapes:
            raise GraphError("a FloatGraph needs at least one layer")

    # -- structure ----------------------------------------------------------------------
    @property
    def layers(self) -> ByName:
        """``name -> layer`` in order."""
        return ByName((n, self._modules[n]) for n in self.shapes)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shapes[-1]

    @property
    def linears(self) -> list[Linear]:
        """The Linear layers in order."""
        return [l for l in self.layers.values() if isinstance(l, Linear)]

    def stages(self) -> tuple[Stage, ...]:
        """The layers grouped per weighted IR layer (see :class:`Stage`); GraphError if they do not group."""
        stages, cur, prev, in_shape = [], None, None, self.input_shape
        for name, layer in self.layers.items():
            if layer.weighted:
                if cur:
                    stages.append(Stage(**cur))
                cur = {"name": name, "layer": layer, "in_shape": in_shape, "members": ByName({name: layer})}
            elif isinstance(layer, (Dropout, Flatten)):
                if cur is not None:  # the identity at inference / a reshape: no IR layer
                    cur["members"][name] = layer
            elif cur is None:
                raise GraphError(f"layer {name!r} ({layer.kind}) comes before any layer with weights")
            else:
                self._group(cur, name, layer, prev)
            prev, in_shape = name, self.shapes[name]
        if cur:
            stages.append(Stage(**cur))
        return tuple(stages)

    def _group(self, cur: dict, name: str, layer: Layer, prev: str) -> None:
        """Add an elementwise layer or a max-pool to the stage being collected (``cur``)."""
        where = f"layer {name!r} ({layer.kind})"
        if isinstance(layer, BatchNorm):
            if prev != cur["name"]:
                raise GraphError(f"{where} must directly follow a layer with weights (Linear or Conv2d), not layer "
                                 f"{prev!r} ({self._modules[prev].kind})")
            cur["bn"] = name
        elif cur.get("pool"):
            raise GraphError(f"{where} follows max-pool {cur['pool']!r} of layer {cur['name']!r}; only dropout and "
                             "flatten may follow it before the next weights")
        elif isinstance(layer, MaxPool2d):
            if cur.get("act") is None:
                raise GraphError(f"{where} must follow the activation of layer {cur['name']!r} (pooling works on "
                                 "its requantized codes)")
            cur["pool"] = name
        elif cur.get("act") is not None:
            raise GraphError(f"{where} follows activation {cur['act']!r} of layer {cur['name']!r}; only a max-pool, "
                             "dropout and flatten may follow an activation before the next weights")
        elif layer.activation:
            cur["act"] = name
        elif isinstance(layer, Scale):
            cur["divisors"] = cur.get("divisors", ()) + (layer.divisor,)
        else:
            raise GraphError(f"layer {name!r} of kind {layer.kind!r} cannot be grouped into a stage")
        cur["members"][name] = layer

    def describe(self) -> str:
        rows = [f"input {self.input_shape}"]
        rows += [f"{n}: {l.describe()} -> {self.shapes[n]}" for n, l in self.layers.items()]
        return "\n".join(rows)

    # -- configs (checkpoints) ----------------------------------------------------------
    def config(self) -> dict:
        """The layer list as plain data (rebuilds the graph with :meth:`from_config`)."""
        return {"input_shape": list(self.input_shape),
                "layers": [{"name": n, "kind": l.kind, **l.config()} for n, l in self.layers.items()]}

    @classmethod
    def from_config(cls, config) -> "FloatGraph":
        """The graph of :meth:`config` (fresh parameters, to be replaced by ``load_state_dict``)."""
        if not isinstance(config, Mapping) or not isinstance(config.get("layers"), list) or not isinstance(
                config.get("input_shape"), (list, tuple)):
            raise GraphError(f"a FloatGraph config must be a dict with 'input_shape' and 'layers' lists, "
                             f"not {config!r:.200}")
        layers = []
        for i, entry in enumerate(config["layers"]):
            if not isinstance(entry, Mapping) or "name" not in entry or "kind" not in entry:
                raise GraphError(f"config layer {i} must be a dict with 'name' and 'kind', not {entry!r:.200}")
            args = {k: v for k, v in entry.items() if k not in ("name", "kind")}
            kind = entry["kind"]
            if kind not in LAYER_KINDS:
                raise GraphError(f"config layer {i} ({entry['name']!r}) kind must be one of "
                                 f"{', '.join(LAYER_KINDS)}, not {kind!r}")
            try:
                layers.append((entry["name"], LAYER_KINDS[kind](**args)))
            except TypeError as e:
                raise GraphError(f"config layer {i} ({entry['name']!r}, {kind}): {e}") from None
        return cls(config["input_shape"], layers)

    # -- the forward loop ---------------------------------------------------------------
    def run(self, x: torch.Tensor, *, params=None, act=None, out=None, collect: dict | None = None) -> torch.Tensor:
        """The forward pass with optional hooks (see the module docstring)."""
        n = len(self.input_shape)
        if n > 1 and x.dim() == 2 and x.shape[1] == math.prod(self.input_shape):
            x = x.reshape(len(x), *self.input_shape)  # a dataset's pixel rows: NHWC order
        if x.dim() <= n - 1 or tuple(x.shape[x.dim() - n:]) != self.input_shape:
            flat = f" or (batch, {math.prod(self.input_shape)})" if n > 1 else ""
            raise GraphError(f"FloatGraph input must have shape (batch, {', '.join(map(str, self.input_shape))})"
                             f"{flat}, not {tuple(x.shape)}")
        for name in self.shapes:
            layer = self._modules[name]
            p = params(name, layer) if params is not None and layer.param_names else None
            if p is not None:
                x = layer.compute(x, *p)
            elif act is not None and layer.activation:
                x = act(name, layer, x)
            else:
                x = layer(x)
            if out is not None:
                x = out(name, layer, x)
            if collect is not None:
                collect[name] = x
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)
