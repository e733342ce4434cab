"""Quantization-aware training with a straight-through estimator (Su et al.).

The plan of a post-training method (pow2, scaled, dfp, ternary, binary) is built once on
the float32 model: weight scales, ternary thresholds and activation scales are frozen
(``learn_scales=True`` trains the scales too, :mod:`lowbit.sw.quant.learned`, and returns
the plan holding the trained ones).
A copy of the model is then fine-tuned through :func:`~lowbit.sw.quant.core.fake_forward`:
the forward pass computes exactly the integer network's values (times their scales),
the backward pass lets gradients through the rounding wherever the value lies inside the
clip range. The fine-tuned weights are exported with the same plan, so the integer IR
realises what was trained.

Batch norm is folded before the plan is built and fine-tuning starts
(:func:`lowbit.sw.quant.folded`), not kept during QAT and folded at export: the plan's
frozen weight scales are computed on the folded weights, the weights being trained are the
ones the IR will hold, and the fake-quantized forward pass is then the integer network
itself. Keeping batch norm would train weights whose folded values (scaled per channel by
statistics that keep moving) no longer match the frozen scales, and the exported network
would not be the one trained. The price, a network without batch norm's normalisation
while it is fine-tuned, is small for the few epochs of QAT at its low learning rate.
"""

from __future__ import annotations

import copy

import torch

from .core import QuantPlan, fake_forward

__all__ = ["qat_finetune", "DEFAULT_QAT_EPOCHS"]

DEFAULT_QAT_EPOCHS = 3


def qat_finetune(model, plan: QuantPlan, x_train, y_train, *, epochs: int = DEFAULT_QAT_EPOCHS, seed: int = 0,
                 lr: float = 5e-4, batch_size: int = 128, progress: bool = True, learn_scales: bool = False,
                 scale_lr: float | None = None):
    """Fine-tune a copy of ``model`` under ``plan``; returns ``(model, plan)`` (the inputs are untouched).

    ``learn_scales`` trains the plan's scales with the weights (:mod:`lowbit.sw.quant.learned`;
    ``scale_lr``, default ``lr``, is their learning rate, on their base-2 logarithms) and returns the
    plan holding the trained scales; otherwise the plan returned is ``plan``.
    """
    from ..frontends.graph import Dropout
    from ..train import fit, set_threads
    from .learned import LearnedScales

    set_threads()
    torch.manual_seed(int(seed))
    m = copy.deepcopy(model)
    # dropout would fight the fixed quantization grid at low precision: off during QAT
    # (at p = 0 torch's dropout returns its input and draws no random numbers)
    for layer in m.layers.values():
        if isinstance(layer, Dropout):
            layer.p = 0.0
    scales = LearnedScales(m, plan) if learn_scales else None
    params = list(m.parameters()) if scales is None else [
        {"params": list(m.parameters())}, {"params": list(scales.parameters()), "lr": scale_lr or lr}]
    fit(m, x_train, y_train, epochs=epochs, seed=seed, lr=lr, batch_size=batch_size, params=params,
        desc=f"QAT {plan.metadata.get('method')}", progress=progress,
        forward=lambda x: fake_forward(m, plan, x, scales=None if scales is None else scales.resolve()))
    return m, plan if scales is None else scales.to_plan()
