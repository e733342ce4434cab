"""FloatGraph: a float network as an ordered list of named layers with shapes, and THE forward loop.

Every float computation of lowbit runs through :meth:`FloatGraph.run`: training and
prediction, calibration, fake quantization (post-training and QAT), WAGE training and
minifloat emulation. They differ only in the hooks they hand to that loop.

Layers
------
(The kinds live in :mod:`.layers`; this module re-exports them.) A layer is a torch module of one of the kinds in :data:`LAYER_KINDS` (``Linear``, ``Conv2d``,
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

import numpy as np
import torch
from torch import nn

from .layers import (LAYER_KINDS, BatchNorm, ByName, Conv2d, Dropout, Flatten, GraphError, Layer, Linear,  # noqa: F401
                     MaxPool2d, ReLU, Scale, _shape)

__all__ = ["FloatGraph", "Layer", "Linear", "Conv2d", "BatchNorm", "ReLU", "MaxPool2d", "Flatten", "Dropout",
           "Scale", "Stage", "ByName", "GraphError", "LAYER_KINDS"]


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
