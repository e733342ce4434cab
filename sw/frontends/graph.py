"""FloatGraph: a float network as an ordered list of named layers with shapes, and THE forward loop.

Every float computation of lowbit runs through :meth:`FloatGraph.run`: training and
prediction, calibration, fake quantization (post-training and QAT), WAGE training and
minifloat emulation. They differ only in the hooks they hand to that loop.

Layers
------
A layer is a torch module of one of the kinds in :data:`LAYER_KINDS` (``Linear``, ``ReLU``,
``Dropout``, ``Scale``). Each kind states its output shape for an input shape, the
constructor arguments that rebuild it (:meth:`Layer.config`, for checkpoints), which of its
tensors a hook may substitute (``param_names``) and whether it is an activation. A new kind
(Conv2d, BatchNorm, MaxPool2d, Flatten …) is one more class with those four answers.

Shapes exclude the batch dimension: an MLP on 8×8 digits has ``input_shape == (64,)``.

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
a layer with weights, then its elementwise layers (constant scales, one activation,
dropout) up to the next layer with weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

__all__ = ["FloatGraph", "Layer", "Linear", "ReLU", "Dropout", "Scale", "Stage", "ByName", "GraphError",
           "LAYER_KINDS"]


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

    def to_ir(self, weights, weight_format, in_format, bias, requant, name: str):
        """The integer IR layer this float layer becomes (integer ``weights`` in its ``[out, in]`` order)."""
        from ..ir import DenseLayer

        return DenseLayer(weights, weight_format, in_format, bias, requant, name)

    def describe(self):
        return f"linear {self.in_features}->{self.out_features}{'' if self.bias is not None else ' (no bias)'}"


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


LAYER_KINDS: dict[str, type[Layer]] = {cls.kind: cls for cls in (Linear, ReLU, Dropout, Scale)}


# ---- stages: the float layers one integer IR layer realises ----------------------------
@dataclass(frozen=True)
class Stage:
    """A layer with weights and the elementwise layers after it, up to the next layer with weights.

    ``name`` is the weighted layer's name (the IR layer's name), ``divisors`` the constant
    scales between it and its activation (folded into its weights), ``act`` the name of its
    activation layer (``None``: the output stage emits raw values).
    """

    name: str
    layer: Layer
    divisors: tuple[float, ...] = ()
    act: str | None = None

    def float_params(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W [out, in], b [out])`` as float64 numpy arrays, the constant scales folded in."""
        w = self.layer.weight.detach().double().numpy()
        b = self.layer.bias
        b = np.zeros(w.shape[0]) if b is None else b.detach().double().numpy()
        for d in self.divisors:
            w, b = w / d, b / d
        return w, b


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
                                 f"{', '.join(c.__name__ for c in LAYER_KINDS.values())}, not {type(layer).__name__}")
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
        """The layers grouped per integer IR layer (see :class:`Stage`); GraphError if they do not group."""
        stages, cur = [], None
        for name, layer in self.layers.items():
            if layer.weighted:
                if cur:
                    stages.append(Stage(**cur))
                cur = {"name": name, "layer": layer, "divisors": (), "act": None}
                continue
            if cur is None:
                if isinstance(layer, Dropout):
                    continue
                raise GraphError(f"layer {name!r} ({layer.kind}) comes before any layer with weights")
            if isinstance(layer, Dropout):
                continue  # the identity at inference
            if cur["act"] is not None:
                raise GraphError(f"layer {name!r} ({layer.kind}) follows activation {cur['act']!r} of layer "
                                 f"{cur['name']!r}; only dropout may follow an activation before the next weights")
            if layer.activation:
                cur["act"] = name
            elif isinstance(layer, Scale):
                cur["divisors"] += (layer.divisor,)
            else:
                raise GraphError(f"layer {name!r} of kind {layer.kind!r} cannot be grouped into a stage")
        if cur:
            stages.append(Stage(**cur))
        return tuple(stages)

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
        if x.dim() <= n - 1 or tuple(x.shape[x.dim() - n:]) != self.input_shape:
            raise GraphError(f"FloatGraph input must have shape (batch, {', '.join(map(str, self.input_shape))}), "
                             f"not {tuple(x.shape)}")
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
