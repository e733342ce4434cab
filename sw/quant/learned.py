"""Learned quantizer scales for quantization-aware training.

A post-training plan (:mod:`lowbit.sw.quant.core`) freezes every scale at calibration. Here
the scales become parameters trained with the weights, and the trained values are written
back into a plan of the same method, which then exports the integer IR as before
(:meth:`LearnedScales.to_plan`): what is exported is what was trained.

Which rule, and why
-------------------
* **Real scales** (``scaled`` weights per channel, every method's unsigned activations,
  ``binary``'s ``α`` and bipolar activations' ``c``): LSQ (Esser et al., "Learned Step Size
  Quantization", ICLR 2020). Its step-size gradient counts the rounding error inside the
  range (``round(v) − v``) as well as the clipping (``±Q``), where PACT's learns only an
  activation clip level and treats the range inside as unrounded; LSQ also covers weights
  and activations with one rule, and its paper matches or beats PACT at 2–4 bits. Two
  departures, both because lowbit trains with Adam: the scale is learned as its base-2
  logarithm (one learning rate then suits scales of any size, and a scale stays positive),
  and LSQ's gradient scale ``1/√(N·Q)`` is left out (Adam divides each parameter's gradient
  by its own running magnitude, so a constant factor would change nothing).
* **Power-of-two scales** (``pow2`` and ``dfp``, shift-only requantization after Mauch &
  Yang): the same logarithm, rounded in the forward pass with a straight-through gradient,
  as trained quantization thresholds (Jain et al., MLSys 2020) do; every activation's
  exponent is kept at or above its input's plus its weights' (``s_out ≥ s_in·s_w``), so
  every shift stays ≥ 0 during training and at export.
* Ternary weights keep their calibrated clusters (their thresholds are not a rounding of
  ``w/s`` that LSQ's gradient describes); their activations are learned.

The input's scale is fixed (it is the pixel transform). Granularity is the plan's: a scale
that is one per layer there (every last layer, pow2's weights) stays one.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn

from .core import ActSpec, QuantPlan, quant_stages

__all__ = ["LearnedScales", "POW2_METHODS"]

#: methods whose requantizer is a shift: every scale a power of two
POW2_METHODS = ("pow2", "dfp")


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _key(name: str) -> str:
    return name.replace(".", "_")  # ParameterDict keys may not contain dots


class LearnedScales(nn.Module):
    """The trainable scales of ``plan`` for ``model`` (a folded FloatGraph).

    :meth:`resolve` gives the scales of one forward pass (``{"weights": …, "acts": …}``, each
    a mapping layer name → tensor; a name missing keeps the plan's frozen scale);
    :func:`~lowbit.sw.quant.core.fake_forward` takes it as ``scales=``.
    """

    def __init__(self, model, plan: QuantPlan):
        super().__init__()
        self.stages = quant_stages(model)
        plan.check(self.stages)
        self.plan = plan
        self.pow2 = plan.metadata.get("method") in POW2_METHODS
        self.w = nn.ParameterDict()
        self.a = nn.ParameterDict()
        for st in self.stages:
            wq = plan.weights[st.name]
            if wq.kind in ("int", "bipolar"):
                s = np.asarray(wq.scale, np.float64)
                s = s[:1] if np.all(s == s[0]) else s
                self.w[_key(st.name)] = nn.Parameter(torch.log2(torch.as_tensor(s, dtype=torch.float32)))
            if st.act:
                spec = plan.acts[st.act]
                step = 2 * spec.scale if spec.kind == "bipolar" else spec.scale
                self.a[_key(st.act)] = nn.Parameter(torch.tensor([math.log2(step)]))

    def _decode(self, log2_scale: torch.Tensor) -> torch.Tensor:
        return torch.exp2(_ste_round(log2_scale) if self.pow2 else log2_scale)

    def resolve(self) -> dict:
        """This step's scales: weights per channel (or one), activations as their step (bipolar: ``c``)."""
        weights, acts = {}, {}
        s_in = torch.tensor(self.plan.input.scale * (2 if self.plan.input.kind == "bipolar" else 1))
        for st in self.stages:
            k = _key(st.name)
            if k in self.w:
                weights[st.name] = self._decode(self.w[k])
            if st.act:
                s = self._decode(self.a[_key(st.act)])
                if self.pow2 and st.name in weights:
                    # a shift is ≥ 0: s_out ≥ s_in·s_w (both powers of two, so is the product)
                    s = torch.maximum(s, (s_in * weights[st.name]).max().detach())
                acts[st.act] = s
                s_in = s
        return {"weights": weights, "acts": acts}

    @torch.no_grad()
    def to_plan(self) -> QuantPlan:
        """The plan with the trained scales (same method, formats and requantizer kind)."""
        r = self.resolve()
        weights, acts = {}, {}
        for st in self.stages:
            wq = self.plan.weights[st.name]
            if st.name in r["weights"]:
                s = r["weights"][st.name].double().numpy()
                wq = dataclasses.replace(wq, scale=np.broadcast_to(s, np.shape(wq.scale)).copy())
            weights[st.name] = wq
            if st.act:
                spec, step = self.plan.acts[st.act], float(r["acts"][st.act])
                acts[st.act] = (ActSpec("bipolar", 1, step / 2, step / 2) if spec.kind == "bipolar"
                                else ActSpec(spec.kind, spec.bits, step, spec.offset))
        meta = dict(self.plan.metadata, learned_scales="pow2" if self.pow2 else "lsq")
        return QuantPlan(weights, acts, self.plan.input, self.plan.transform, self.plan.requant,
                         self.plan.multiplier_bits, meta)
