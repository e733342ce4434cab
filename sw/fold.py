"""Folding of a network onto hardware (FINN's MVAU folding) and its analytical cycle model.

A dense layer of R outputs and C inputs with ``PE`` parallel outputs and ``SIMD`` parallel
inputs takes ``NF·SF`` cycles per vector, ``NF = R/PE`` and ``SF = C/SIMD``. Layers run as
a pipeline, so the steady-state initiation interval (cycles per image) is the maximum over
layers, and the input stream of layer ``l+1`` is the output of layer ``l`` re-cut from PE_l
to SIMD_{l+1} lanes (one must divide the other).
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import Network
from .pack import check_fold

__all__ = ["LayerFold", "FoldPlan", "plan_folding", "auto_fold", "parse_fold"]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True)
class LayerFold:
    pe: int
    simd: int
    rows: int
    cols: int

    @property
    def nf(self) -> int:
        return self.rows // self.pe

    @property
    def sf(self) -> int:
        return self.cols // self.simd

    @property
    def cycles(self) -> int:
        """Cycles per vector: NF·SF beats through the MAC array."""
        return self.nf * self.sf

    @property
    def lanes(self) -> int:
        return self.pe * self.simd


@dataclass(frozen=True)
class FoldPlan:
    layers: tuple[LayerFold, ...]

    @property
    def initiation_interval(self) -> int:
        """The analytical bound: max over layers of NF·SF cycles per image."""
        return max(f.cycles for f in self.layers)

    @property
    def mac_lanes(self) -> int:
        return sum(f.lanes for f in self.layers)

    def to_json(self) -> list[dict]:
        return [{"pe": f.pe, "simd": f.simd, "nf": f.nf, "sf": f.sf, "cycles_per_image": f.cycles}
                for f in self.layers]

    def __str__(self) -> str:
        return ",".join(f"{f.pe}x{f.simd}" for f in self.layers)


def plan_folding(net: Network, folds: list[tuple[int, int]]) -> FoldPlan:
    """Validate explicit ``(pe, simd)`` per layer; errors name the layer, the value and the divisors."""
    if len(folds) != len(net.layers):
        raise ValueError(f"fold must give one PExSIMD per layer ({len(net.layers)} layers), not {len(folds)}")
    plan = []
    for layer, (pe, simd) in zip(net.layers, folds):
        check_fold(layer.out_features, layer.in_features, pe, simd, name=layer.name)
        plan.append(LayerFold(pe, simd, layer.out_features, layer.in_features))
    for i, (a, b) in enumerate(zip(plan, plan[1:])):
        if a.pe % b.simd and b.simd % a.pe:
            raise ValueError(
                f"layer {i} PE ({a.pe}) and layer {i + 1} SIMD ({b.simd}) must divide one another "
                f"(the stream between them is re-cut from {a.pe} to {b.simd} lanes)")
    return FoldPlan(tuple(plan))


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
    """Choose (PE, SIMD) per layer for a total MAC-lane budget or a cycles-per-image target.

    Balanced for the initiation interval (as FINN's folding): find the smallest II for which
    every layer can meet it with valid divisors, counting lanes; each layer takes the fewest
    lanes meeting the II. With ``max_lanes`` the smallest II whose total fits is chosen.
    """
    if (max_lanes is None) == (target_cycles is None):
        raise ValueError("auto_fold needs exactly one of max_lanes or target_cycles")
    options = []
    for layer in net.layers:
        opts = sorted({(pe * simd, (layer.out_features // pe) * (layer.in_features // simd), pe, simd)
                       for pe in _divisors(layer.out_features) for simd in _divisors(layer.in_features)})
        options.append(opts)

    def fit(ii: int):
        chosen = []
        for opts in options:
            ok = [o for o in opts if o[1] <= ii]
            if not ok:
                return None
            chosen.append(min(ok, key=lambda o: (o[0], o[1], -o[3])))  # fewest lanes, then wider SIMD
        return chosen

    def compatible(chosen) -> list[tuple[int, int]]:
        folds = [(c[2], c[3]) for c in chosen]
        for i in range(len(folds) - 1):
            pe, nxt_simd = folds[i][0], folds[i + 1][1]
            if pe % nxt_simd and nxt_simd % pe:
                # shrink this layer's PE to a divisor/multiple of the next SIMD, keeping its II
                layer = net.layers[i]
                cands = [p for p in _divisors(layer.out_features) if p % nxt_simd == 0 or nxt_simd % p == 0]
                pe = min(cands, key=lambda p: abs(p - pe))
                simd = folds[i][1]
                folds[i] = (pe, simd)
        return folds

    candidates = sorted({o[1] for opts in options for o in opts})
    if target_cycles is not None:
        candidates = [c for c in candidates if c <= target_cycles] or candidates[:1]
        candidates = sorted(candidates, reverse=True)
    best = None
    for ii in candidates:
        chosen = fit(ii)
        if chosen is None:
            continue
        plan = plan_folding(net, compatible(chosen))
        if max_lanes is not None:
            if plan.mac_lanes <= max_lanes:
                return plan
            continue
        return plan
    if best is None and max_lanes is not None:
        raise ValueError(f"max_lanes must be at least {len(net.layers)} (one lane per layer), not {max_lanes}")
    raise ValueError(f"no folding reaches target_cycles={target_cycles}")
