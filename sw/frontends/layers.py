"""The float layer kinds of a :class:`~.graph.FloatGraph` (see :mod:`.graph` for the whole picture).

Each kind is a torch module with four answers about itself: its output shape for an input
shape, the constructor arguments that rebuild it (``config``), which tensors a ``params`` hook
may substitute (``param_names``) and whether it is an activation. They live apart from the
graph (stages and the forward loop) so that each module has one job; :mod:`.graph` re-exports
every name, so ``from lowbit.sw.frontends.graph import Linear`` keeps working.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from torch import nn

__all__ = ["Layer", "Linear", "Conv2d", "BatchNorm", "ReLU", "MaxPool2d", "Flatten", "Dropout", "Scale", "ByName",
           "GraphError", "LAYER_KINDS"]


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

