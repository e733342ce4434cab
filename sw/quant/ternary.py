"""ternary: ternary weights with one scale per cluster of N output channels, 8-bit activations.

After Mellempudi et al.: weights become ``{-1, 0, +1}·α_k`` where cluster ``k`` groups
``N`` consecutive output channels — N rows of a dense layer, N filters of a convolution
(``N`` = 1, 4, 16, 64 or ``"layer"``). Per cluster the
ternary code minimises the L2 error: the ``k`` largest magnitudes are kept, ``α`` is their mean,
and ``k`` maximises ``(Σ top-k |w|)² / k`` (the exact form of ternary weight networks' rule). Activations are ``u{act_bits}`` (default 8) with a real scale; the
cluster scales reach the requantizer as per-channel integer multipliers. The last layer
uses one cluster (argmax over raw logits).

Every weight-activation product becomes an addition, a subtraction or nothing; only the
requantizer multiplies, once per output. ``metadata["ternary"]`` reports, over all
layers and per image: ``products`` (the multiply-accumulates of the float network: a
convolution's weights count once per output position), the share of zero weights (skipped
products), distinct scales, and the share of multiplications replaced by additions,
``products / (products + outputs)`` with ``outputs`` the requantized values (one multiply
each; a convolution has ``OH·OW·OC``). (Mellempudi et al. cluster N kernels along a
filter's input channels, where each cluster's partial sum needs its own multiplication,
giving ``1 − 1/(N·KH·KW)`` for a convolution and ``1 − 1/N`` for a dense layer — their
"~85 % at N = 4" on ResNet-101's 1×1 and 3×3 convolutions; here clusters run along output
channels, which the per-channel requantizer supports directly, so N trades accuracy
against the number of distinct multipliers rather than multiplications.)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..formats import IntFormat
from .core import (ActSpec, QuantError, QuantPlan, WeightQuant, calibration_activations, check_bits, check_input_bits,
                   check_layer_bits, input_spec, layer_widths, quant_stages)
from .scaled import real_act_scale

NAME = "ternary"
WEIGHT_BITS = (2, 2)
ACT_BITS = (1, 16)
CLUSTER_SIZES = (1, 4, 16, 64, "layer")


def parse_cluster(cluster) -> int | None:
    """``"layer"`` → None (whole layer), else a positive int."""
    if cluster in ("layer", None):
        return None
    try:
        n = int(cluster)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(cluster).strip() != str(n):
        raise QuantError(f"cluster for method {NAME!r} must be a positive integer (e.g. 1, 4, 16, 64) or 'layer', "
                         f"not {cluster!r}")
    return n


def ternarize(w: np.ndarray, cluster: int | None) -> WeightQuant:
    out = w.shape[0]
    n = out if cluster is None else min(cluster, out)
    scale, thr = np.empty(out), np.empty(out)
    for start in range(0, out, n):
        # The L2-optimal ternary code of a cluster keeps its k largest magnitudes with
        # α = their mean, where k maximises (Σ top-k |w|)² / k (the error is Σw² − that).
        mags = np.sort(np.abs(w[start:start + n]).ravel())[::-1]
        csum = np.cumsum(mags)
        k = int(np.argmax(csum ** 2 / np.arange(1, mags.size + 1)))
        scale[start:start + n] = csum[k] / (k + 1) if csum[k] > 0 else 1.0
        # threshold halfway between the last kept and the first dropped magnitude
        thr[start:start + n] = (mags[k] + mags[k + 1]) / 2 if k + 1 < mags.size else 0.0
    return WeightQuant("ternary", IntFormat.ternary(), scale, thr)


def check(weight_bits=2, act_bits=8, *, cluster=4, multiplier_bits: int = 16,
          input_bits=None, layer_bits=None) -> tuple[int, int, int | None]:
    """The option check of :func:`plan` (no model needed): ``(act_bits, multiplier_bits, cluster size)``."""
    if weight_bits is not None:
        check_bits(NAME, "weight_bits", weight_bits, *WEIGHT_BITS, " (ternary weights take 2 bits)")
    ab = check_bits(NAME, "act_bits", act_bits, *ACT_BITS)
    mb = check_bits(NAME, "multiplier_bits", multiplier_bits, 2, 16)
    check_input_bits(NAME, input_bits)
    check_layer_bits(NAME, layer_bits, None, ACT_BITS)
    return ab, mb, parse_cluster(cluster)


def plan(model, weight_bits: int | None = 2, act_bits: int = 8, calib=None, *, cluster=4,
         multiplier_bits: int = 16, input_bits=None, layer_bits=None) -> QuantPlan:
    ab, mb, n = check(weight_bits, act_bits, cluster=cluster, multiplier_bits=multiplier_bits, input_bits=input_bits,
                      layer_bits=layer_bits)
    stages = quant_stages(model)
    _, a_bits = layer_widths(NAME, check_layer_bits(NAME, layer_bits, None, ACT_BITS), stages, 2, ab)
    acts_f = calibration_activations(model, calib)
    a_in, transform = input_spec(ab, input_bits=input_bits)
    wqs, acts = {}, {}
    products = zeros = weights = outputs = scales = 0
    for st in stages:
        w, _ = st.float_params()
        last = st.act is None
        wq = ternarize(w, None if last else n)
        wqs[st.name] = wq
        q = wq.integers(torch.as_tensor(w)).numpy()
        positions = math.prod(model.shapes[st.name][:-1])  # a convolution's output pixels; 1 for dense
        products += q.size * positions
        zeros += int((q == 0).sum())
        weights += q.size
        outputs += q.shape[0] * positions
        scales += len(np.unique(wq.scale))
        if not last:
            acts[st.act] = ActSpec("uint", a_bits[st.act], real_act_scale(acts_f[st.act], a_bits[st.act]))
    report = {"cluster": "layer" if n is None else n, "products": products, "zero_weight_share": zeros / weights,
              "distinct_scales": scales, "mults_replaced_share": products / (products + outputs)}
    return QuantPlan(wqs, acts, a_in, transform, "multiplier", mb,
                     {"method": NAME, "weight_bits": 2, "act_bits": ab, "ternary": report})
