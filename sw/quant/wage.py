"""WAGE: training with low-bit weights, activations, gradients and errors (Wu et al.).

``k_W-k_A-k_G-k_E`` (default ``2-8-8-8``), after the paper:

* ``Q(x, k) = clip(σ(k)·round(x/σ(k)), −1+σ(k), 1−σ(k))`` with ``σ(k) = 2^(1−k)``;
* weights ``W ~ U(−L, L)``, ``L = max(L_min, √(6/n_in))``, ``L_min = 1.5·σ(k_W)``; the
  forward pass uses ``Q(W, k_W)`` (2 bits: ``{−½, 0, ½}``);
* batch norm is replaced by a **constant scaling layer** ``÷α``, ``α = max(2^round(log2
  (L_min/√(6/n_in))), 1)``, a power of two;
* activations ``Q(ReLU(z), k_A)`` (8-bit signed grid, so ``u{k_A−1}`` after ReLU), ties
  rounded up as the requantizer does; straight-through gradient;
* errors (gradients of activations) are rescaled by ``R(e) = 2^round(log2 max|e|)`` and
  quantized to ``k_E`` bits on the way back;
* weight gradients become ``σ(k_G)·sgn(n)·(⌊|n|⌋ + Bernoulli(|n| − ⌊|n|⌋))`` with
  ``n = lr·g/R(g)`` (stochastic rounding), and ``W ← clip(W − ΔW, −1+σ(k_G), 1−σ(k_G))``.
  The loss is cross-entropy on the last layer's scaled outputs (the paper uses SSE).

Every scale is a power of two, so :func:`export_wage` gives an IR with shift-only
requantization; its golden-model outputs equal the WAGE forward pass.

Any preset works, MLP or CNN (:class:`WageNet` takes the preset's graph without batch norm
or dropout as its template): ``lenet`` is the paper's own network, 32C5-MP2-64C5-MP2-512FC-10,
with a constant scaling layer after every convolution and dense layer (``n_in`` of a
convolution is ``KH·KW·IC``) and max-pools on the quantized activations.

Public API: ``train_wage(x_train, y_train, preset, bits="2-8-8-8", epochs, seed) ->
WageNet``, ``export_wage(model) -> Network``, ``parse_wage_bits("2-8-8-8")``; ``WageMLP``
builds the MLP form directly.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch
from torch import nn

from ..formats import IntFormat
from ..frontends.graph import Conv2d, Dropout, FloatGraph, Linear, Scale
from .core import ActSpec, QuantError, QuantPlan, WeightQuant, export_network, input_spec, quant_stages

__all__ = ["WageNet", "WageMLP", "train_wage", "export_wage", "parse_wage_bits", "DEFAULT_WAGE_BITS"]

DEFAULT_WAGE_BITS = (2, 8, 8, 8)


def parse_wage_bits(text) -> tuple[int, int, int, int]:
    """``"2-8-8-8"`` (or a 4-tuple) → ``(k_W, k_A, k_G, k_E)``, k_W in 2..8, others in 2..16."""
    parts = text if isinstance(text, (tuple, list)) else str(text).split("-")
    try:
        k = tuple(int(p) for p in parts)
    except ValueError:
        k = ()
    if len(k) != 4 or not 2 <= k[0] <= 8 or not all(2 <= v <= 16 for v in k[1:]):
        raise QuantError(f"WAGE bits must be 'W-A-G-E' with W in 2..8 and A, G, E in 2..16 (e.g. 2-8-8-8), "
                         f"not {text!r}")
    return k


def sigma(k: int) -> float:
    return 2.0 ** (1 - k)


def shift_pow2(x: float) -> float:
    return 2.0 ** round(math.log2(x))


def _q(x, k):
    s = sigma(k)
    return torch.clamp(torch.round(x / s) * s, -1 + s, 1 - s)


class _ActQuant(torch.autograd.Function):
    """Forward: Q_A after ReLU (ties up); backward: straight through in range, then Q_E."""

    @staticmethod
    def forward(ctx, z, k_a, k_e):
        s = sigma(k_a)
        ctx.save_for_backward((z >= 0) & (z <= 1 - s))
        ctx.k_e = k_e
        return torch.clamp(torch.floor(z / s + 0.5), 0, 2 ** (k_a - 1) - 1) * s

    @staticmethod
    def backward(ctx, e):
        (mask,) = ctx.saved_tensors
        e = e * mask
        m = float(e.abs().max())
        if m == 0:
            return e, None, None
        return _q(e / shift_pow2(m), ctx.k_e), None, None


class _ErrQuant(torch.autograd.Function):
    """Identity forward; quantize the error flowing back to the previous layer (Q_E)."""

    @staticmethod
    def forward(ctx, x, k_e):
        ctx.k_e = k_e
        return x.view_as(x)

    @staticmethod
    def backward(ctx, e):
        m = float(e.abs().max())
        return (e if m == 0 else _q(e / shift_pow2(m), ctx.k_e)), None


class WageNet(FloatGraph):
    """A network trained the WAGE way, built from ``template`` (a FloatGraph without batch norm):
    each Linear or Conv2d becomes one without bias with WAGE's initialisation, followed by
    ``scale{k}`` (the constant scaling layer ÷α, ``k`` counting the weighted layers); ReLU,
    max-pool and flatten layers stay, dropout goes. Its forward pass runs the graph's loop with
    WAGE's weight quantizer and its activation/error quantizer in place of the ReLUs."""

    def __init__(self, template: FloatGraph, bits=DEFAULT_WAGE_BITS, seed: int = 0):
        bits = parse_wage_bits(bits)
        gen = torch.Generator().manual_seed(int(seed))
        l_min = 1.5 * sigma(bits[0])
        layers, k = [], 0
        for name, layer in template.layers.items():
            if isinstance(layer, Dropout):
                continue
            if not layer.weighted:
                if layer.param_names or any(True for _ in layer.parameters()):
                    raise QuantError(f"WAGE replaces batch norm by its constant scaling layer: the template must "
                                     f"have no {layer.kind} layer ({name!r})")
                layers.append((name, layer))
                continue
            # created on the meta device: WAGE's own initialisation replaces torch's (no RNG drawn)
            if isinstance(layer, Conv2d):
                new = Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                             bias=False, device="meta")
            elif isinstance(layer, Linear):
                new = Linear(layer.in_features, layer.out_features, bias=False, device="meta")
            else:
                raise QuantError(f"WAGE trains Linear and Conv2d layers, not {layer.kind} ({name!r})")
            shape = new.weight.shape
            l_std = math.sqrt(6.0 / math.prod(shape[1:]))  # n_in: a row, or a filter's KH·KW·IC
            new.weight = nn.Parameter((torch.rand(*shape, generator=gen) * 2 - 1) * max(l_min, l_std))
            layers += [(name, new), (f"scale{k}", Scale(max(shift_pow2(l_min / l_std), 1.0)))]
            k += 1
        super().__init__(template.input_shape, layers)
        self.bits = bits

    @property
    def alphas(self) -> list[float]:
        """The constant scaling layers' divisors α, one per layer."""
        return [l.divisor for l in self.layers.values() if isinstance(l, Scale)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k_w, k_a, _, k_e = self.bits

        def weights(name, layer):  # Q(W, k_W) forward, straight-through backward; no bias
            w = layer.weight
            return w + (_q(w, k_w) - w).detach(), None

        return self.run(x, params=weights, act=lambda name, layer, z: _ActQuant.apply(z, k_a, k_e))


class WageMLP(WageNet):
    """The WAGE network of an MLP: ``fc{i}`` (Linear, no bias), ``scale{i}``, ``relu{i}``."""

    def __init__(self, in_features: int, hidden, classes: int = 10, bits=DEFAULT_WAGE_BITS, seed: int = 0):
        from ..train import mlp

        with torch.device("meta"):
            template = mlp(in_features, hidden, classes, dropout=0.0)
        super().__init__(template, bits, seed)
        self.arch = {"in_features": int(in_features), "hidden": [int(h) for h in hidden], "classes": int(classes)}


def _wage_step(model: WageMLP, lr: float, gen: torch.Generator) -> None:
    k_g = model.bits[2]
    s = sigma(k_g)
    with torch.no_grad():
        for w in model.parameters():  # the Linear weights, in layer order
            g = w.grad
            m = float(g.abs().max())
            if m == 0:
                continue
            n = lr * g / shift_pow2(m)
            frac = n.abs() - n.abs().floor()
            dw = s * torch.sign(n) * (n.abs().floor() + (torch.rand(n.shape, generator=gen) < frac).float())
            w.sub_(dw).clamp_(-1 + s, 1 - s)
            w.grad = None


def train_wage(x_train, y_train, *, preset: str = "sfc", bits="2-8-8-8", epochs: int = 10, seed: int = 0,
               lr: float = 4.0, batch_size: int = 128, classes: int = 10, input_shape=None,
               progress: bool = True) -> WageNet:
    """Train a WAGE network of ``preset`` from scratch on uint8 pixels (see the module docstring).

    ``lr`` is WAGE's integer-valued learning rate, decayed to a quarter halfway and an
    eighth at three quarters of the epochs. ``input_shape`` (a CNN's ``(H, W, 1)``) defaults
    to the pixel rows for an MLP and to the preset's image for a CNN.
    """
    from tqdm import tqdm

    from .. import train as tr

    names = getattr(tr, "PRESET_NAMES", tuple(tr.PRESETS))
    if preset not in names:
        raise QuantError(f"preset must be one of {', '.join(names)}, not {preset!r}")
    tr.set_threads()
    torch.manual_seed(int(seed))
    x = tr.to_input(x_train)
    y = torch.as_tensor(np.asarray(y_train), dtype=torch.long)
    if preset in tr.PRESETS:
        model = WageMLP(x.shape[1], tr.PRESETS[preset], classes, bits, seed)
    else:
        shape = tuple(input_shape) if input_shape is not None else (*tr.CNN_PRESETS[preset].image, 1)
        if math.prod(shape) != x.shape[1]:
            raise QuantError(f"preset {preset!r} takes {'×'.join(map(str, shape))} images, not pixel rows of "
                             f"{x.shape[1]} features")
        with torch.device("meta"):  # the template's structure only: its weights are never drawn
            template = tr.build_preset(preset, shape, classes, batchnorm=False, dropout=0.0)
        model = WageNet(template, bits, seed)
    gen = torch.Generator().manual_seed(int(seed) + 1)
    loss_fn = nn.CrossEntropyLoss()
    k_e = model.bits[3]
    for epoch in range(epochs):
        cur = lr * (1.0 if epoch < epochs / 2 else 0.25 if epoch < 3 * epochs / 4 else 0.125)
        perm = torch.randperm(len(x), generator=gen)
        bar = tqdm(range(0, len(x), batch_size), desc=f"WAGE {epoch + 1}/{epochs}", leave=False,
                   disable=not progress or not sys.stderr.isatty())
        for i in bar:
            idx = perm[i:i + batch_size]
            out = _ErrQuant.apply(model(x[idx]), k_e)
            loss = loss_fn(out, y[idx])
            loss.backward()
            _wage_step(model, cur, gen)
    model.eval()
    return model


def wage_plan(model: WageNet) -> QuantPlan:
    k_w, k_a, k_g, k_e = model.bits
    fmt = IntFormat.ternary() if k_w == 2 else IntFormat.signed(k_w)
    wqs, acts = {}, {}
    for st in quant_stages(model):
        # Q(W, k_W)/α on the grid σ/α (α folded into the weights: Stage.float_params);
        # clip at ±(1−σ) ⇔ integers ±(2^(k−1) − 1)
        wqs[st.name] = WeightQuant("int", fmt, np.full(st.layer.weight.shape[0], sigma(k_w) / math.prod(st.divisors)))
        if st.act:
            acts[st.act] = ActSpec("uint", k_a - 1, sigma(k_a))
    a_in, transform = input_spec(8)
    return QuantPlan(wqs, acts, a_in, transform, "shift", 0,
                     {"method": "wage", "wage_bits": "-".join(map(str, model.bits)), "weight_bits": k_w,
                      "act_bits": k_a, "alphas": list(model.alphas)})


def export_wage(model: WageNet, name: str | None = None):
    """The integer IR of a trained WAGE network (shift-only requantization)."""
    net = export_network(model, wage_plan(model), name or f"wage_{'-'.join(map(str, model.bits))}")
    return net
