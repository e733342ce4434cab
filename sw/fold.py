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

__all__ = ["LayerFold", "FoldPlan", "plan_folding", "auto_fold", "parse_fold", "OBJECTIVES", "mac_efficiency"]


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


def mac_efficiency(ops) -> float:
    """``Σ MACs / (II · lanes)`` of folded ops (:func:`~lowbit.sw.ops.lower` with a plan): the
    fraction of lane-cycles that do a MAC in the steady state, 1 when every matrix-vector op
    takes the whole initiation interval. Its inverse is what an unbalanced fold wastes."""
    lanes = sum(op.lanes() for op in ops)
    if lanes == 0:
        return 0.0
    return sum(op.macs for op in ops) / (max(op.cycles() for op in ops) * lanes)


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


#: What :func:`auto_fold` can optimise (``objective``); see its docstring for the exact definitions.
OBJECTIVES = ("fastest", "balanced", "per_lut")


def _divide(a: int, b: int) -> bool:
    """The width converter's rule: a stream re-cut from ``a`` to ``b`` lanes needs one to divide the other."""
    return a % b == 0 or b % a == 0


def auto_fold(net: Network, *, max_lanes: int | None = None, target_cycles: int | None = None,
              objective: str = "fastest", family: str | None = None, mem_family: str | None = None) -> FoldPlan:
    """Choose a fold per layer for a total MAC-lane budget or a cycles-per-image target.

    The search space: every combination of one fold option per IR layer (the options of the
    layer's foldable op that its other ops can follow) in which each layer's output lanes and
    the next layer's input lanes divide one another, within the constraint — ``Σ lanes ≤
    max_lanes``, or ``II ≤ target_cycles`` — where the initiation interval ``II`` is the max
    over layers of their cycles per image (a layer's: its slowest op's) and ``lanes`` the sum
    of the ops' MAC lanes. ``objective`` picks from it:

    ``"fastest"`` (the default; FINN's folding, what ``lowbit build`` has always chosen)
        Find the smallest II for which every layer can meet it with one of its fold options,
        counting lanes; each layer takes the fewest lanes meeting the II, then the slowest fold
        still meeting it (the narrowest max-pool; among equal lanes a matrix-vector fold's
        cycles are equal), then the widest input, and a layer whose output lanes do not divide
        the next input is re-cut to the nearest that does. With ``max_lanes`` the smallest II
        whose total fits is chosen; with ``target_cycles`` the largest II within the target
        (the fewest lanes reaching it). This is a greedy search, kept as it was because builds,
        the demo and the bench depend on its plans: on the SFC and TFC shapes and the tested CNN
        it reaches an exhaustive search's smallest II and its fewest lanes at that II
        (tests/test_fold_objectives.py), but not on every shape (a 48-24-10 MLP at 64 lanes: 63
        lanes where 58 reach the same II 24; 100-30-7 at 64 lanes: II 120 where 60 fits).
    ``"balanced"``
        Images per second per MAC lane: the plan minimising ``II · Σ lanes`` (equivalently
        maximising ``Σ MACs / (II · Σ lanes)``, the fraction of lane-cycles doing a MAC, since
        the MACs per image do not depend on the fold); among equals, with ``max_lanes`` the
        smallest II (the fastest; equal ``II · lanes`` and II mean equal lanes), with
        ``target_cycles`` the fewest lanes (the fastest of equals would often be the fully
        parallel network, as efficient as a balanced slow one). Exact over the whole space: a
        Pareto search over (II, lanes) layer by layer, each partial plan kept per its last
        output lanes (the only thing the next layer's divisibility sees). It may leave much of a budget unused: the
        most efficient fold can be a small one (a max-pool or window that sets the II, or
        layer sizes whose divisors only balance at few lanes).
    ``"per_lut"``
        Images per second per estimated LUT: the plan minimising ``II · LUT``, LUT being
        ``network_cost(lower(net, plan), family, mem_family)["lut"]`` (the cost model's sum over
        ops, so per layer additive); among equals the smallest II (``target_cycles``: the
        fewest LUTs), then the fewest lanes; exact by the same Pareto search over (II, lanes,
        LUT). Needs ``family`` (``mem_family`` as for :func:`~lowbit.sw.ops.network_cost`).

    Of plans equal in every criterion the search keeps the first it meets, each layer's options
    taken in the order (fewest lanes, slowest, widest input), so a result is reproducible.
    """
    if (max_lanes is None) == (target_cycles is None):
        raise ValueError("auto_fold needs exactly one of max_lanes or target_cycles")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    if objective == "per_lut" and family is None:
        raise ValueError("objective 'per_lut' needs family (the cost model's FPGA family, e.g. 'xilinx')")
    groups = ops_by_layer(lower(net))
    options = [sorted(_options(g), key=lambda o: (o.lanes, o.cycles, o.out_lanes, o.in_lanes)) for g in groups]
    if objective == "fastest":
        return _fastest(net, options, max_lanes, target_cycles)
    preferred = [sorted(opts, key=lambda o: (o.lanes, -o.cycles, -o.in_lanes)) for opts in options]
    luts = None
    if objective == "per_lut":
        luts = [[sum(op.with_fold(o.fold).cost(family, mem_family)["lut"] for op in g) for o in opts]
                for g, opts in zip(groups, preferred)]
    front = _frontier(preferred, luts, max_lanes=max_lanes, target_cycles=target_cycles)
    if not front:
        _refuse(options, max_lanes, target_cycles)
    ii, lanes, lut = (lambda p: p[0]), (lambda p: p[1]), (lambda p: p[2])
    per = lanes if objective == "balanced" else lut  # what an image per second is counted against
    tie = ii if max_lanes is not None else per  # budget: the fastest of equals; target: the smallest
    best = min(front, key=lambda p: (ii(p) * per(p), tie(p), lanes(p)))
    return plan_folding(net, [preferred[l][k].fold for l, k in enumerate(best[3])])


def _refuse(options, max_lanes, target_cycles):
    if max_lanes is not None:
        least = sum(min(o.lanes for o in opts) for opts in options)
        raise ValueError(f"max_lanes must be at least {least} (one lane per matrix-vector layer), not {max_lanes}")
    raise ValueError(f"no folding reaches target_cycles={target_cycles}")


def _frontier(options, luts, *, max_lanes, target_cycles) -> list:
    """Every non-dominated plan as ``(II, lanes, LUT, (option index per layer))``.

    Layer by layer, the partial plans ending in each output-lane count keep only those not
    dominated in (II so far, lanes so far, LUT so far): a dominated partial plan cannot become
    better than its dominator whatever the later layers take, since both see the same
    divisibility rule and the criteria only grow by the same amounts. Partial plans beyond
    ``target_cycles`` or that cannot fit ``max_lanes`` even with each later layer's fewest
    lanes are dropped. ``luts`` (per layer, per option) may be ``None`` (all zero).
    """
    rest = [0] * (len(options) + 1)  # fewest lanes the layers from l on need
    for l in range(len(options) - 1, -1, -1):
        rest[l] = rest[l + 1] + min((o.lanes for o in options[l]), default=0)
    fronts = {None: [(0, 0, 0, ())]}  # last output lanes -> partial plans
    for l, opts in enumerate(options):
        grown: dict = {}
        for k, o in enumerate(opts):
            if target_cycles is not None and o.cycles > target_cycles:
                continue
            lut = luts[l][k] if luts is not None else 0
            for out, front in fronts.items():
                if out is not None and not _divide(out, o.in_lanes):
                    continue
                for ii, lanes, cost, chain in front:
                    n = lanes + o.lanes
                    if max_lanes is not None and n + rest[l + 1] > max_lanes:
                        continue
                    grown.setdefault(o.out_lanes, []).append((max(ii, o.cycles), n, cost + lut, chain + (k,)))
        fronts = {out: _pareto(plans) for out, plans in grown.items()}
    return _pareto([p for plans in fronts.values() for p in plans])


def _pareto(plans: list) -> list:
    """The plans no other plan equals or beats in all of (II, lanes, LUT); of equal ones the first.

    Sorted by II (stable), a plan is dominated exactly when an earlier kept plan has no more
    lanes and no more LUTs: a staircase of the kept plans' (lanes, LUT) answers that by bisection.
    """
    from bisect import bisect_left, bisect_right

    kept, stair_lanes, stair_luts = [], [], []  # lanes ascending, LUTs strictly descending
    for p in sorted(plans, key=lambda p: p[:3]):
        _, lanes, lut = p[:3]
        i = bisect_right(stair_lanes, lanes)
        if i and stair_luts[i - 1] <= lut:
            continue
        kept.append(p)
        lo = hi = bisect_left(stair_lanes, lanes)
        while hi < len(stair_lanes) and stair_luts[hi] >= lut:
            hi += 1
        stair_lanes[lo:hi], stair_luts[lo:hi] = [lanes], [lut]
    return kept


def _fastest(net: Network, options: list, max_lanes: int | None, target_cycles: int | None) -> FoldPlan:
    """The ``"fastest"`` objective (see :func:`auto_fold`): options per layer sorted by
    (lanes, cycles, out lanes, in lanes)."""

    def fit(ii: int):
        chosen = []
        for opts in options:
            ok = [o for o in opts if o.cycles <= ii]
            if not ok:
                return None
            chosen.append(min(ok, key=lambda o: (o.lanes, -o.cycles, -o.in_lanes)))
        return chosen

    divide = _divide

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
    _refuse(options, max_lanes, target_cycles)
