"""minifloat: custom narrow floating point (emulated) and Hill et al.'s fast precision search.

This is float emulation, not integer hardware: it produces no IR and its accuracy is
reported separately.

A :class:`Minifloat` has a sign bit, ``exp_bits`` exponent bits (bias ``2^(e−1) − 1``, no
code reserved for inf/NaN) and ``man_bits`` mantissa bits; values beyond the largest
saturate; with ``subnormals=False`` magnitudes below the smallest normal go to the
nearer of 0 and the smallest normal. The emulated network rounds (to nearest even)
the input, the weights and biases, and each layer's output to the format; the dot
products themselves are float32 (Hill et al. also emulate the arithmetic element-wise;
rounding per layer keeps the emulation fast).

Fast precision search (:func:`fast_precision_search`): for every candidate format the
R² between the last-layer activations (logits) of the custom-precision and float32
networks is computed on a few inputs (default 10). Candidates are ordered by bit width;
the prediction is "accuracy within ``tolerance`` of float32 when R² ≥ ``r2_min``". The
cheapest predicted-good format is evaluated in full; if it meets the target, the best-R²
cheaper format is tried, otherwise the next predicted-good dearer one — at most 2 full
evaluations. :func:`exhaustive_search` evaluates every candidate for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .core import QuantError

__all__ = ["Minifloat", "minifloat_forward", "minifloat_accuracy", "fast_precision_search", "exhaustive_search",
           "candidate_formats", "SearchResult"]


@dataclass(frozen=True)
class Minifloat:
    """A narrow float format: 1 sign bit, ``exp_bits`` (1..8), ``man_bits`` (0..23)."""

    exp_bits: int
    man_bits: int
    subnormals: bool = True

    def __post_init__(self):
        if not isinstance(self.exp_bits, int) or not 1 <= self.exp_bits <= 8:
            raise QuantError(f"exp_bits must be an integer in 1..8, not {self.exp_bits!r}")
        if not isinstance(self.man_bits, int) or not 0 <= self.man_bits <= 23:
            raise QuantError(f"man_bits must be an integer in 0..23, not {self.man_bits!r}")

    @property
    def bits(self) -> int:
        return 1 + self.exp_bits + self.man_bits

    @property
    def bias(self) -> int:
        return (1 << (self.exp_bits - 1)) - 1

    @property
    def min_normal(self) -> float:
        return 2.0 ** (1 - self.bias)

    @property
    def max(self) -> float:
        return (2 - 2.0 ** -self.man_bits) * 2.0 ** ((1 << self.exp_bits) - 1 - self.bias)

    def __str__(self) -> str:
        return f"e{self.exp_bits}m{self.man_bits}{'' if self.subnormals else 'n'}"

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        a = x.abs()
        emin = 1 - self.bias
        _, e = torch.frexp(a)  # a = f·2^e with f in [0.5, 1): the binade exponent is e − 1
        e = torch.clamp(e - 1, min=emin)  # below the normals the step stays 2^(emin − m): subnormals
        # powers of two scale exactly in float32, so round(a / step) · step is exact
        step = torch.ldexp(torch.ones_like(a), (e - self.man_bits).to(torch.int32))
        # 8 exponent bits without inf/NaN codes reach past float32's range: clamp at what float32 holds
        q = torch.clamp(torch.round(a / step) * step, max=min(self.max, float(torch.finfo(torch.float32).max)))
        if not self.subnormals:
            q = torch.where(a < self.min_normal, torch.where(a >= self.min_normal / 2, self.min_normal, 0.0), q)
        return torch.copysign(q, x)


@torch.no_grad()
def minifloat_forward(model, pixels, fmt: Minifloat | None) -> torch.Tensor:
    """Logits of ``model`` with weights, biases, input and layer outputs rounded to ``fmt``.

    The graph's loop in eval mode (no dropout) with every weighted layer's parameters and
    output rounded (activations like ReLU and max-pools keep representable values
    representable). Batch norm is folded into the weights first, as the hardware would run it.
    """
    from ..train import to_input
    from . import folded

    q = (lambda t: t) if fmt is None else fmt.quantize
    model = folded(model)
    model.eval()
    return model.run(q(to_input(pixels)),
                     params=lambda name, layer: tuple(None if p is None else q(p) for p in layer.current_params()),
                     out=lambda name, layer, y: q(y) if layer.weighted else y)


def minifloat_accuracy(model, pixels, labels, fmt: Minifloat | None) -> float:
    pred = minifloat_forward(model, pixels, fmt).argmax(1).numpy()
    return float(np.mean(pred == np.asarray(labels)))


def candidate_formats(exp_bits=range(2, 7), man_bits=range(0, 8), subnormals: bool = True) -> list[Minifloat]:
    return [Minifloat(e, m, subnormals) for e in exp_bits for m in man_bits]


def r_squared(pred: np.ndarray, ref: np.ndarray) -> float:
    ss_res = float(np.sum((pred - ref) ** 2))
    ss_tot = float(np.sum((ref - ref.mean()) ** 2)) or 1.0
    return 1.0 - ss_res / ss_tot


@dataclass
class SearchResult:
    chosen: Minifloat | None
    accuracy: float | None
    evaluations: int
    evaluated: dict  # str(format) -> accuracy
    r2: dict  # str(format) -> R² (fast search only)


def _order(cands):
    return sorted(cands, key=lambda f: (f.bits, f.exp_bits))


def fast_precision_search(model, probe_pixels, eval_pixels, eval_labels, *, candidates=None, tolerance=0.01,
                          r2_min=0.98, float_accuracy=None) -> SearchResult:
    """Hill et al.'s search (see the module docstring); ``tolerance`` is a fraction (0.01 = 1 point)."""
    cands = _order(candidates or candidate_formats())
    ref = minifloat_forward(model, probe_pixels, None).numpy()
    r2 = {str(f): r_squared(minifloat_forward(model, probe_pixels, f).numpy(), ref) for f in cands}
    base = minifloat_accuracy(model, eval_pixels, eval_labels, None) if float_accuracy is None else float_accuracy
    target = base - tolerance
    evaluated = {}

    def ok(f):
        evaluated[str(f)] = minifloat_accuracy(model, eval_pixels, eval_labels, f)
        return evaluated[str(f)] >= target

    good = [f for f in cands if r2[str(f)] >= r2_min]
    if not good:
        return SearchResult(None, None, 0, evaluated, r2)
    first = good[0]
    if ok(first):
        cheaper = [f for f in cands if f.bits < first.bits]
        chosen = first
        if cheaper:
            alt = max(cheaper, key=lambda f: (r2[str(f)], -f.bits))
            if ok(alt):
                chosen = alt
    else:
        dearer = good[1:]
        chosen = None
        if dearer and ok(dearer[0]):
            chosen = dearer[0]
    return SearchResult(chosen, None if chosen is None else evaluated[str(chosen)], len(evaluated), evaluated, r2)


def exhaustive_search(model, eval_pixels, eval_labels, *, candidates=None, tolerance=0.01,
                      float_accuracy=None) -> SearchResult:
    """Evaluate every candidate; choose the cheapest meeting the target."""
    cands = _order(candidates or candidate_formats())
    base = minifloat_accuracy(model, eval_pixels, eval_labels, None) if float_accuracy is None else float_accuracy
    evaluated = {str(f): minifloat_accuracy(model, eval_pixels, eval_labels, f) for f in cands}
    chosen = next((f for f in cands if evaluated[str(f)] >= base - tolerance), None)
    return SearchResult(chosen, None if chosen is None else evaluated[str(chosen)], len(cands), evaluated, {})
