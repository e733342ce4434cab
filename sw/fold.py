"""Folding of a network onto hardware (FINN's MVAU folding) and its analytical cycle model.

Each IR layer's op (:mod:`lowbit.sw.ops`) lists its fold options and the cycles of each; this
module chooses or validates one fold per layer. A dense layer of R outputs and C inputs with ``PE`` parallel outputs and ``SIMD`` parallel
inputs takes ``NF·SF`` cycles per vector, ``NF = R/PE`` and ``SF = C/SIMD``. Layers run as
a pipeline, so the steady-state initiation interval (cycles per image) is the maximum over
layers, and the input stream of layer ``l+1`` is the output of layer ``l`` re-cut from PE_l
to SIMD_{l+1} lanes (one must divide the other).
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import Network
from .ops import foldable_ops, lower
from .ops.matvec import LayerFold

__all__ = ["LayerFold", "FoldPlan", "plan_folding", "auto_fold", "parse_fold"]


@dataclass(frozen=True)
class FoldPlan:
    """One fold per IR layer (for its op that takes a fold: a :class:`LayerFold` for a dense
    layer), with the cycles per image and MAC lanes its op gives that fold."""

    layers: tuple
    cycles: tuple
    lanes: tuple

    @classmethod
    def of(cls, ops, folds) -> "FoldPlan":
        """The plan of ``folds`` for ``ops`` (one foldable op per IR layer, see :func:`foldable_ops`)."""
        folds = tuple(folds)
        return cls(folds, tuple(op.cycles(f) for op, f in zip(ops, folds)),
                   tuple(op.lanes(f) for op, f in zip(ops, folds)))

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
    """Validate explicit ``(pe, simd)`` per layer; errors name the layer, the value and the divisors.

    Each layer's op checks its own fold; the streams between neighbours are then checked
    by :func:`lowbit.sw.ops.check_neighbours`.
    """
    ops = foldable_ops(lower(net))
    if len(folds) != len(ops):
        raise ValueError(f"fold must give one PExSIMD per layer ({len(ops)} layers), not {len(folds)}")
    plan = FoldPlan.of(ops, [op.check_fold(f) for op, f in zip(ops, folds)])
    lower(net, plan)  # checks every stream between neighbours
    return plan


def parse_fold(text: str, n_layers: int) -> list[tuple[int, int]]:
    """``"16x16,16x16,8x16,10x8"`` or one ``"PExSIMD"`` for every layer."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        folds = [tuple(int(v) for v in t.lower().split("x")) for t in items]
        if any(len(f) != 2 for f in folds):
            raise ValueError
    except ValueError:
        raise ValueError(f"fold must be PExSIMD per layer, comma separated (e.g. 16x16,8x8), not {text!r}") from None
    if len(folds) == 1:
        folds = folds * n_layers
    return folds


def auto_fold(net: Network, *, max_lanes: int | None = None, target_cycles: int | None = None) -> FoldPlan:
    """Choose a fold per layer for a total MAC-lane budget or a cycles-per-image target.

    Balanced for the initiation interval (as FINN's folding): find the smallest II for which
    every layer can meet it with one of its op's fold options, counting lanes; each layer
    takes the fewest lanes meeting the II (then the widest input). With ``max_lanes`` the
    smallest II whose total fits is chosen.
    """
    if (max_lanes is None) == (target_cycles is None):
        raise ValueError("auto_fold needs exactly one of max_lanes or target_cycles")
    ops = foldable_ops(lower(net))
    # (lanes, cycles per image, fold) per op, as sorted candidates
    options = [sorted(((op.lanes(f), op.cycles(f), f) for f in op.fold_options()),
                      key=lambda o: (o[0], o[1], o[2].out_lanes, o[2].in_lanes)) for op in ops]

    def fit(ii: int):
        chosen = []
        for opts in options:
            ok = [o for o in opts if o[1] <= ii]
            if not ok:
                return None
            chosen.append(min(ok, key=lambda o: (o[0], o[1], -o[2].in_lanes))[2])  # fewest lanes, then wider input
        return chosen

    def compatible(chosen: list) -> list:
        folds = list(chosen)
        for i in range(len(folds) - 1):
            out, nxt = folds[i].out_lanes, folds[i + 1].in_lanes
            if out % nxt and nxt % out:
                # re-cut this op's output to a divisor/multiple of the next input, same input width
                cands = [f for f in ops[i].fold_options()
                         if f.in_lanes == folds[i].in_lanes and (f.out_lanes % nxt == 0 or nxt % f.out_lanes == 0)]
                folds[i] = min(cands, key=lambda f: abs(f.out_lanes - out))
        return folds

    candidates = sorted({o[1] for opts in options for o in opts})
    if target_cycles is not None:
        candidates = [c for c in candidates if c <= target_cycles] or candidates[:1]
        candidates = sorted(candidates, reverse=True)
    for ii in candidates:
        chosen = fit(ii)
        if chosen is None:
            continue
        plan = FoldPlan.of(ops, compatible(chosen))
        if max_lanes is not None and plan.mac_lanes > max_lanes:
            continue
        return plan_folding(net, list(plan.layers))  # the chosen plan, checked as an explicit one would be
    if max_lanes is not None:
        raise ValueError(f"max_lanes must be at least {len(net.layers)} (one lane per layer), not {max_lanes}")
    raise ValueError(f"no folding reaches target_cycles={target_cycles}")
