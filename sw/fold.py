"""Folding of a network onto hardware (FINN's MVAU folding) and its analytical cycle model.

Each IR layer's ops (:mod:`lowbit.sw.ops`) give its fold options and the cycles of each; this
module chooses or validates one fold per layer, given to the layer's one foldable op and
followed by its others. A dense layer of R outputs and C inputs with ``PE`` parallel outputs
and ``SIMD`` parallel inputs takes ``NF·SF`` cycles per vector, ``NF = R/PE`` and
``SF = C/SIMD``; a convolution is that over its ``OH·OW`` im2col vectors (``R = OC``,
``C = KH·KW·IC``), behind a sliding window that takes the same SIMD; a max-pool's fold is its
``PE`` (channels per beat, ``H·W·C/PE`` cycles). Layers run as a pipeline, so the steady-state
initiation interval (cycles per image) is the maximum over layers (each layer: its slowest
op), and the input stream of layer ``l+1`` is the output of layer ``l`` re-cut from its output
lanes (PE) to the next input lanes (SIMD; one must divide the other).

Fold text (:func:`parse_fold`): ``PExSIMD`` per layer, comma separated; a max-pool's entry is
its ``PE`` alone, e.g. ``"32x5,8,16x32,16,8x64,10x8"`` for lenet.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import Network
from .ops import foldable_ops, lower, ops_by_layer
from .ops.matvec import LayerFold

__all__ = ["LayerFold", "FoldPlan", "plan_folding", "auto_fold", "parse_fold"]


@dataclass(frozen=True)
class _Option:
    """One fold of one IR layer, as all of the layer's ops take it."""

    fold: object
    lanes: int  # MAC lanes of the layer's ops
    cycles: int  # cycles per image: the slowest of the layer's ops
    in_lanes: int  # lanes of the layer's input stream (its first op's)
    out_lanes: int  # lanes of its output stream (its last op's)


def _option(group, fold) -> _Option:
    """``fold`` given to every op of one layer (``group``); a follower that cannot take it raises."""
    folds = [op.check_fold(fold) for op in group]
    return _Option(fold, sum(op.lanes(f) for op, f in zip(group, folds)),
                   max(op.cycles(f) for op, f in zip(group, folds)), folds[0].in_lanes, folds[-1].out_lanes)


def _options(group) -> list[_Option]:
    """Every fold of the layer's foldable op that its other ops can follow."""
    (foldable,) = foldable_ops(group)
    out = []
    for f in foldable.fold_options():
        try:
            out.append(_option(group, f))
        except ValueError:  # e.g. a SIMD the sliding window cannot take
            continue
    return out


@dataclass(frozen=True)
class FoldPlan:
    """One fold per IR layer (for its op that takes a fold: a :class:`LayerFold` for a dense or
    convolution layer, a :class:`~lowbit.sw.ops.pool.PoolFold` for a max-pool), with the cycles per
    image (the slowest of the layer's ops) and MAC lanes its ops give that fold."""

    layers: tuple
    cycles: tuple
    lanes: tuple

    @classmethod
    def of(cls, groups, folds) -> "FoldPlan":
        """The plan of ``folds`` for the ops of each IR layer (``groups``, see :func:`~lowbit.sw.ops.ops_by_layer`)."""
        options = [_option(g, f) for g, f in zip(groups, folds, strict=True)]
        return cls(tuple(o.fold for o in options), tuple(o.cycles for o in options), tuple(o.lanes for o in options))

    @property
    def initiation_interval(self) -> int:
        """The analytical bound: max over layers of their cycles per image (NF·SF for a dense layer)."""
        return max(self.cycles)

    @property
    def mac_lanes(self) -> int:
        return sum(self.lanes)

    def __str__(self) -> str:
        return ",".join(str(f) for f in self.layers)


def plan_folding(net: Network, folds: list) -> FoldPlan:
    """Validate explicit folds, one per layer: ``(pe, simd)`` for a dense or convolution layer,
    ``(pe,)`` or ``pe`` for a max-pool; errors name the layer, the value and the allowed values.

    Each layer's foldable op checks the fold, then the layer's other ops (a convolution's
    sliding window takes its SIMD); the streams between neighbours are then checked by
    :func:`lowbit.sw.ops.check_neighbours`.
    """
    groups = ops_by_layer(lower(net))
    if len(folds) != len(groups):
        raise ValueError(f"fold must give one PExSIMD per layer ({len(groups)} layers), not {len(folds)}")
    checked = [op.check_fold(f) for op, f in zip(foldable_ops(lower(net)), folds)]
    plan = FoldPlan.of(groups, checked)
    lower(net, plan)  # checks every stream between neighbours
    return plan


def parse_fold(text: str, n_layers: int) -> list[tuple[int, ...]]:
    """``"16x16,16x16,8x16,10x8"`` or one ``"PExSIMD"`` for every layer; a max-pool's entry is its PE
    alone (``"32x1,8,16x32,16,8x16,10x8"``), read as ``(pe,)``."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        folds = [tuple(int(v) for v in t.lower().split("x")) for t in items]
        if not folds or any(len(f) not in (1, 2) for f in folds):
            raise ValueError
    except ValueError:
        raise ValueError(f"fold must be PExSIMD per layer (a max-pool: its PE alone), comma separated (e.g. 16x16,8x8 "
                         f"or 8x1,8,16x8), not {text!r}") from None
    if len(folds) == 1:
        folds = folds * n_layers
    return folds


def auto_fold(net: Network, *, max_lanes: int | None = None, target_cycles: int | None = None) -> FoldPlan:
    """Choose a fold per layer for a total MAC-lane budget or a cycles-per-image target.

    Balanced for the initiation interval (as FINN's folding): find the smallest II for which
    every layer can meet it with one of its fold options (a layer's cycles: its slowest op),
    counting lanes; each layer takes the fewest lanes meeting the II, then the slowest fold
    still meeting it (the narrowest max-pool; among equal lanes a matrix-vector fold's cycles
    are equal), then the widest input. With ``max_lanes`` the smallest II whose total fits is
    chosen.
    """
    if (max_lanes is None) == (target_cycles is None):
        raise ValueError("auto_fold needs exactly one of max_lanes or target_cycles")
    groups = ops_by_layer(lower(net))
    options = [sorted(_options(g), key=lambda o: (o.lanes, o.cycles, o.out_lanes, o.in_lanes)) for g in groups]

    def fit(ii: int):
        chosen = []
        for opts in options:
            ok = [o for o in opts if o.cycles <= ii]
            if not ok:
                return None
            chosen.append(min(ok, key=lambda o: (o.lanes, -o.cycles, -o.in_lanes)))
        return chosen

    def divide(a: int, b: int) -> bool:
        return a % b == 0 or b % a == 0

    def compatible(chosen: list) -> list:
        folds = list(chosen)
        for i in range(len(folds) - 1):
            out, nxt = folds[i].out_lanes, folds[i + 1].in_lanes
            if divide(out, nxt):
                continue
            # re-cut this layer's output to a divisor/multiple of the next input, same input width
            cands = [o for o in options[i] if o.in_lanes == folds[i].in_lanes and divide(o.out_lanes, nxt)]
            if cands:
                folds[i] = min(cands, key=lambda o: abs(o.out_lanes - out))
                continue
            # a layer whose input and output lanes are one (a max-pool): re-cut the next layer's input instead
            cands = [o for o in options[i + 1] if o.out_lanes == folds[i + 1].out_lanes and divide(out, o.in_lanes)]
            if cands:
                folds[i + 1] = min(cands, key=lambda o: abs(o.in_lanes - nxt))
        return folds

    candidates = sorted({o.cycles for opts in options for o in opts})
    if target_cycles is not None:
        candidates = [c for c in candidates if c <= target_cycles] or candidates[:1]
        candidates = sorted(candidates, reverse=True)
    for ii in candidates:
        chosen = fit(ii)
        if chosen is None:
            continue
        folds = compatible(chosen)
        if max_lanes is not None and sum(o.lanes for o in folds) > max_lanes:
            continue
        return plan_folding(net, [o.fold for o in folds])  # the chosen plan, checked as an explicit one would be
    if max_lanes is not None:
        least = sum(min(o.lanes for o in opts) for opts in options)
        raise ValueError(f"max_lanes must be at least {least} (one lane per matrix-vector layer), not {max_lanes}")
    raise ValueError(f"no folding reaches target_cycles={target_cycles}")
