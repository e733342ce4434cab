"""Test vectors shared by the Amaranth-simulator tests and the cocotb testbenches.

Values are produced in the integer world (formats from :mod:`lowbit.sw.formats`) and
packed into beats with the one bit order of :mod:`lowbit.sw.pack`, so the same stimulus
drives both simulators and the golden model.
"""

from __future__ import annotations

import numpy as np

from lowbit.sw.formats import IntFormat, signed_range
from lowbit.sw.pack import pack_words
from lowbit.sw.specs import MacArraySpec, RequantSpec

__all__ = ["mac_vectors", "mac_beats", "requant_corner_accs"]


def _extremes(fmt: IntFormat) -> tuple[int, int]:
    return fmt.min, fmt.max


def mac_vectors(spec: MacArraySpec, n_random: int, rng: np.random.Generator, beats: int | None = None):
    """``(x [beats, simd], w [beats, pe, simd])`` value pairs: corners first, then random.

    Corners: every weight and activation at its maximum, at its minimum, and the two
    mixed products that give the most positive and most negative accumulator (these hit
    the accumulator width bound exactly).
    """
    beats = beats or spec.beats
    wf, af = spec.weight_format, spec.act_format
    xs, ws = (beats, spec.simd), (beats, spec.pe, spec.simd)
    full = lambda shape, v: np.full(shape, v, np.int64)  # noqa: E731
    out = []
    for wv in _extremes(wf):
        for xv in _extremes(af):
            out.append((full(xs, xv), full(ws, wv)))
    out.append((full(xs, 0 if af.min <= 0 <= af.max and af.kind.value != "bipolar" else af.min), full(ws, wf.max)))
    for _ in range(n_random):
        out.append((rng.choice(af.values(), xs), rng.choice(wf.values(), ws)))
    return out


def mac_beats(spec: MacArraySpec, x, w) -> list[dict]:
    """One vector as input beats: ``{"x": int, "w": int, "last": 0|1}`` per beat."""
    x, w = np.asarray(x), np.asarray(w)
    n = x.shape[0]
    xw = pack_words(spec.act_format.encode(x), spec.act_format.bits)
    ww = pack_words(spec.weight_format.encode(w.reshape(n, -1)), spec.weight_format.bits)
    return [{"x": int(xw[b]), "w": int(ww[b]), "last": int(b == n - 1)} for b in range(n)]


def requant_corner_accs(spec: RequantSpec, shift: int, mult: int = 1, bias: int = 0) -> np.ndarray:
    """Accumulators at every saturation boundary and every rounding tie near them.

    For each clip bound ``c`` the pre-shift values ``c·2^s`` and ``c·2^s ± 2^(s-1)`` (the
    ties) and their ±1 neighbours are mapped back through the multiplier and the bias.
    """
    f = spec.out_format
    bounds = {f.min, f.max, 0, -1, 1} | ({0} if spec.relu else set())
    step, half = 1 << shift, (1 << shift) >> 1
    pre = set()
    for c in bounds:
        for d in (-half - 1, -half, -half + 1, -1, 0, 1, half - 1, half, half + 1):
            pre.add(c * step + d)
    lo, hi = signed_range(spec.acc_bits)
    accs = {v // max(mult, 1) - bias + e for v in pre for e in (0, 1)} | {lo, hi}
    return np.array(sorted(a for a in accs if lo <= a <= hi), np.int64)
