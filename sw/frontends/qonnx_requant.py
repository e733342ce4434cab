"""The requantizer of one QONNX layer: the integer ``(m, s, bias)`` that turns its accumulators into
the next activation Quant's codes. Split out of :mod:`.qonnx` (the importer) so each module stays
small; this one is pure arithmetic on numpy arrays and knows nothing of ONNX graphs.

Contract. A layer's pre-activation is ``z_c = α_c·acc_c + β_c``; the inputs are the ratio
``r = α/s_out`` (positive, per channel), the bias in accumulator steps ``b* = β/α``, the lowbit output
format, the source's code range ``qlo..qhi`` (its Quant's ``min_int``/``max_int``, 0 at the bottom after
a Relu) and qonnx's rounding mode. The source computes ``y = clip(R(r·acc + r·b*), qlo, qhi)``.

* :func:`direct_requant` — when ``r = m/2^s`` exactly (``m`` of at most ``bits`` bits), ``b*`` is an
  integer (within :data:`REL`), the range is the format's own and lowbit has qonnx's rounding
  (:data:`ACT_ROUNDING`; not HALF_UP on signed codes without a Relu): that shift/multiplier, the bias
  ``b*``, that rounding. Exact by construction; else ``(None, None, None)``.
* :func:`fit_thresholds` — otherwise: per channel, the ``(m ≤ 2^bits − 1, s, integer bias)`` whose
  half-up requantizer (:func:`~lowbit.sw.requant.requantize`) steps at every one of the source's
  thresholds over the accumulator range ``acc_lo..acc_hi`` — exact, checked level by level; when none
  exists, the searched triple missing the fewest thresholds (every shift, integer biases within 2
  of ``b*``, per pair the multiplier inside the most levels' bounds; each miss is one accumulator
  step off), reported as ``exact: false`` with the count and the worst relative scale error. A
  narrow source range whose missing end code the accumulators can reach counts as a miss
  (``narrow_range_reached``). When that half-up search misses thresholds (a float BatchNorm puts
  them between accumulator steps, where an integer bias cannot), the layer takes ``floor`` rounding
  and a per-channel product offset ``c`` (:func:`offset_fit`): ``floor(((acc + b)·m + c)/2^s) ≥ k ⇔
  acc ≥ T_k`` places each threshold at a resolution of ``1/m`` step, so the smallest ``(m, s)``
  with a common ``c`` for every level is exact; a channel without one keeps its half-up triple
  (as ``c = 2^(s−1)`` under floor, the same function).

Both return ``(RequantParams, bias per channel (int64), report dict)``; the report has ``requant``
(shift/multiplier), ``multiplier_bits``, ``exact``, ``bias_exact`` and ``max_rel_scale_error``.
"""

from __future__ import annotations

import math

import numpy as np

from ..formats import Rounding
from ..requant import MAX_SHIFT, OFFSET_LIMIT, RequantParams, requantize
from .common import ModelImportError

__all__ = ["direct_requant", "fit_thresholds", "offset_fit", "ACT_ROUNDING", "REL"]

#: an activation Quant's rounding_mode → the requantizer's rounding (qonnx's ROUND is numpy's half-even)
ACT_ROUNDING = {"ROUND": Rounding.HALF_EVEN, "HALF_EVEN": Rounding.HALF_EVEN, "HALF_UP": Rounding.HALF_UP,
                "FLOOR": Rounding.FLOOR}
REL = 1e-6  # "integral" / "equal" within this relative tolerance


def dyadic(r, bits: int):
    """``(m, s)`` per entry with ``m/2^s == r`` exactly (m < 2^bits, the smallest shift), or None."""
    limit = (1 << bits) - 1
    ms, ss = [], []
    for v in np.atleast_1d(r):
        for s in range(MAX_SHIFT + 1):
            m = v * 2.0 ** s
            if m == math.floor(m):
                break
        else:
            return None
        if not 1 <= m <= limit:
            return None
        ms.append(int(m))
        ss.append(s)
    return np.array(ms, np.int64), np.array(ss, np.int64)


def _pack(m, s):
    """Scalars when every channel agrees; no multiplier when every m is 1."""
    m, s = np.asarray(m, np.int64).copy(), np.asarray(s, np.int64).copy()
    while True:  # m/2^s in lowest terms: a power-of-two m is a shift
        even = (m % 2 == 0) & (s > 0) & (m > 0)
        if not even.any():
            break
        m[even] //= 2
        s[even] -= 1
    s_out = np.int64(s[0]) if np.all(s == s[0]) else s
    if np.all(m == 1):
        return None, s_out
    return (np.int64(m[0]) if np.all(m == m[0]) else m), s_out


def direct_requant(r, b_star, fmt, qlo, qhi, rounding, relu, mode, signed, bits):
    """The requantizer when the ratio is exactly ``m/2^s`` and the bias integral (qonnx's own rounding)."""
    bias = np.round(b_star)
    if not np.all(np.abs(bias - b_star) <= REL * np.maximum(1.0, np.abs(b_star))):
        return None, None, None
    lo = max(fmt.min, 0) if relu else fmt.min
    if (lo, fmt.max) != (qlo, qhi):
        return None, None, None  # a narrow range: lowbit clips at the format's ends
    if mode == "HALF_UP" and signed and not relu:
        return None, None, None  # qonnx's HALF_UP rounds negative ties away from zero, lowbit's up
    found = dyadic(r, bits)
    if found is None:
        return None, None, None
    m, s = _pack(*found)
    rq = RequantParams(fmt, s, m, rounding, relu)
    return rq, bias.astype(np.int64), {"requant": "shift" if m is None else "multiplier",
                                       "multiplier_bits": rq.multiplier_bits, "exact": True, "bias_exact": True,
                                       "max_rel_scale_error": 0.0}


def _real_thresholds(r, c0, k, mode):
    """Smallest integer acc with ``R(r·acc + c0) ≥ k`` (qonnx's rounding R), as float (may be huge)."""
    t = (k - (0.0 if mode == "FLOOR" else 0.5) - c0) / r
    T = np.ceil(t)
    tie = T == t
    if mode in ("ROUND", "HALF_EVEN"):
        strict = (k % 2) != 0  # a tie rounds to the even neighbour: reaching odd k needs more than the tie
    elif mode == "HALF_UP":
        strict = k <= 0  # away from zero: a negative tie goes down
    else:
        strict = False
    return np.where(tie & strict, T + 1, T)


def fit_thresholds(r, b_star, fmt, qlo, qhi, relu, mode, acc_lo, acc_hi, bits):
    """Per channel ``(m, s, bias)`` whose half-up requantizer equals the real one at every threshold;
    when some channel has none, ``floor`` rounding with per-channel product offsets (see the module)."""
    # the levels the source's staircase climbs; a narrow range's missing end (−2^(b−1), or 2^b − 1) is a clip
    # lowbit's formats do not have: checked afterwards at the ends of the accumulator range
    levels = np.arange(qlo + 1, qhi + 1)
    limit = (1 << bits) - 1
    fits, thresholds = [], []
    for c in range(len(r)):
        rc, lo_a, hi_a = float(r[c]), int(acc_lo[c]), int(acc_hi[c])
        T = _real_thresholds(rc, b_star[c] * rc, levels, mode)
        T = np.clip(T, lo_a, hi_a + 1).astype(np.int64)  # thresholds outside the reachable range: any beyond it
        sol, misses = _search(rc, b_star[c], levels, T, lo_a, hi_a, limit, fmt, relu)
        if sol is None:  # a ratio beyond any multiplier of these bits
            raise ModelImportError(f"a requantization ratio {rc:.4g} needs more than {bits} multiplier bits")
        fits.append((sol, misses))
        thresholds.append(T)
    use_offsets = any(misses for _, misses in fits)
    ms, ss, bs, cs = [], [], [], []
    exact = True
    worst, missed, narrow_missed = 0.0, 0, False
    for c, ((sol, misses), T) in enumerate(zip(fits, thresholds)):
        rc, lo_a, hi_a = float(r[c]), int(acc_lo[c]), int(acc_hi[c])
        m, s, b = sol
        offset = (1 << s) >> 1  # half-up = floor after adding half
        if use_offsets:
            b0 = int(np.round(b_star[c]))
            found = offset_fit(T, levels, b0, lo_a, hi_a, rc, limit)
            if found is not None:
                (m, s, offset), b = found, b0
            misses = _misses(m, s, b, levels, T, lo_a, hi_a, fmt, relu, "floor", offset)
        rule = RequantParams(fmt, s, m, "floor", relu, offset) if use_offsets else RequantParams(fmt, s, m, "half_up", relu)
        ends = requantize(np.array([lo_a, hi_a]) + b, rule)
        if ends[0] < qlo or ends[1] > qhi:  # reaches a code the source's narrow range never gives
            misses += 1
            narrow_missed = True
        missed += misses
        exact = exact and misses == 0
        worst = max(worst, abs(m / 2.0 ** s - rc) / rc)
        ms.append(m)
        ss.append(s)
        bs.append(b)
        cs.append(offset)
    m, s = _pack(ms, ss) if not use_offsets else _pack_keep(ms, ss)
    offsets = None
    if use_offsets:
        cs = np.array(cs, np.int64)
        offsets = np.int64(cs[0]) if np.all(cs == cs[0]) else cs
    rq = RequantParams(fmt, s, m, "floor" if use_offsets else "half_up", relu, offsets)
    kind = "multiplier" if m is not None else "shift"
    return rq, np.array(bs, np.int64), {"requant": kind + (" + offset" if use_offsets else ""),
                                        "multiplier_bits": rq.multiplier_bits, "offset_bits": rq.offset_bits,
                                        "exact": exact,
                                        "bias_exact": bool(np.all(np.abs(np.round(b_star) - b_star)
                                                                  <= REL * np.maximum(1.0, np.abs(b_star)))),
                                        "max_rel_scale_error": float(worst),
                                        "max_bias_error": float(np.max(np.abs(np.array(bs) - b_star))),
                                        "thresholds_missed": int(missed), "thresholds": int(len(r) * len(levels)),
                                        "narrow_range_reached": narrow_missed}


def _pack_keep(m, s):
    """As :func:`_pack` but without reducing ``m/2^s``: the offsets are scaled by ``2^s``."""
    m, s = np.asarray(m, np.int64), np.asarray(s, np.int64)
    s_out = np.int64(s[0]) if np.all(s == s[0]) else s
    if np.all(m == 1):
        return None, s_out
    return (np.int64(m[0]) if np.all(m == m[0]) else m), s_out


def offset_fit(T, levels, b: int, lo_a: int, hi_a: int, r: float, limit: int):
    """The smallest ``(m ≤ limit, s, c)`` with ``floor(((acc + b)·m + c)/2^s) ≥ k ⇔ acc ≥ T_k`` for every
    level ``k`` and accumulator ``lo_a..hi_a``, or None. Exact integer arithmetic (Python ints).

    With ``u = T_k + b``: ``acc = T_k`` reaches ``k`` and ``T_k − 1`` does not iff
    ``k·2^s − u·m ≤ c ≤ k·2^s − (u − 1)·m − 1``; a threshold at or below ``lo_a`` only needs the first
    bound at ``u = lo_a + b``, one above ``hi_a`` only the second at ``u = hi_a + 1 + b``. The levels'
    intervals meet (one ``c`` for all) when ``m/2^s`` is close enough to ``r``: tried from the smallest
    shift up, the multipliers around ``r·2^s``; ``c`` the common value nearest 0.
    """
    pairs = [(int(k), int(t)) for k, t in zip(levels, T)]
    for s in range(MAX_SHIFT + 1):
        ideal = r * 2.0 ** s
        if ideal > limit + 1:
            break
        base = math.floor(ideal)
        cands = sorted({m for m in (base - 1, base, base + 1, base + 2) if 1 <= m <= limit},
                       key=lambda m: abs(m - ideal))
        for m in cands:
            c_lo, c_hi = -OFFSET_LIMIT, OFFSET_LIMIT
            for k, t in pairs:
                kk = k << s
                if t > lo_a:
                    c_hi = min(c_hi, kk - (min(t, hi_a + 1) + b - 1) * m - 1)
                if t <= hi_a:
                    c_lo = max(c_lo, kk - (max(t, lo_a) + b) * m)
            if c_lo <= c_hi:
                return m, s, min(max(0, c_lo), c_hi)
    return None


def _misses(m, s, b, levels, T, lo_a, hi_a, fmt, relu, rounding="half_up", offset=None) -> int:
    """How many accumulators at (or just below) a real threshold ``T`` ``requantize(acc + b)`` puts on
    another level than the real requantizer (0: they agree on the whole range, both being monotone)."""
    rq = RequantParams(fmt, s, m, rounding, relu, offset)
    below = T - 1
    probe = np.concatenate([T[T <= hi_a], below[below >= lo_a], [lo_a, hi_a]])
    y = requantize(probe + b, rq)
    want = levels[0] - 1 + np.sum(T[None, :] <= probe[:, None], axis=1)  # T rises with the level
    return int(np.sum(y != want))


def _level_bounds(s: int, b: int, levels, T, lo_a: int, hi_a: int, limit: int):
    """Per level ``k``, the multipliers ``[L, U]`` with which ``round_half_up((acc + b)·m / 2^s)`` steps to
    ``k`` exactly at the real threshold ``T_k``: acc = T reaches it, acc = T − 1 does not."""
    num = (levels - 0.5) * 2.0 ** s
    lo = np.ones(len(levels))
    hi = np.full(len(levels), float(limit))
    reach = T <= hi_a  # (T + b)·m ≥ num
    v = (T + b).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(reach & (v > 0), np.maximum(lo, np.ceil(num / v)), lo)
        hi = np.where(reach & (v < 0), np.minimum(hi, np.floor(num / v)), hi)
        hi = np.where(reach & (v == 0) & (num > 0), 0, hi)
        stay = T > lo_a  # (T − 1 + b)·m < num
        v = (T - 1 + b).astype(np.float64)
        hi = np.where(stay & (v > 0), np.minimum(hi, np.ceil(num / v) - 1), hi)
        lo = np.where(stay & (v < 0), np.maximum(lo, np.floor(num / v) + 1), lo)
        hi = np.where(stay & (v == 0) & (num <= 0), 0, hi)
    return lo, hi


def _search(r, b_star, levels, T, lo_a, hi_a, limit, fmt, relu):
    """``((m, s, b), misses)``: the widest ``m ≤ limit`` (largest shift) and an integer bias near ``b_star``
    reproducing every threshold (misses 0), else the triple missing the fewest."""
    s_top = min(MAX_SHIFT, int(math.floor(math.log2(limit / r))))
    b0 = int(np.round(b_star))
    best, best_misses = None, None
    for s in range(s_top, -1, -1):
        ideal = r * 2.0 ** s
        for b in (b0, b0 - 1, b0 + 1, b0 - 2, b0 + 2):
            lo, hi = _level_bounds(s, b, levels, T, lo_a, hi_a, limit)
            # the m inside the most levels' bounds (an optimum sits on a lower bound), nearest the real ratio
            cands = np.unique(np.clip(np.concatenate([lo, [np.round(ideal)]]), 1, limit))
            inside = ((lo[None, :] <= cands[:, None]) & (cands[:, None] <= hi[None, :])).sum(1)
            order = np.lexsort((np.abs(cands - ideal), -inside))
            m = int(cands[order[0]])
            misses = _misses(m, s, b, levels, T, lo_a, hi_a, fmt, relu)
            if misses == 0:
                return (m, s, b), 0
            if best_misses is None or misses < best_misses:
                best, best_misses = (m, s, b), misses
    return best, best_misses
