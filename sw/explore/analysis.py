"""From task results to answers: joined rows, Pareto fronts, Su et al.'s comparison at matched
accuracy, and which points deserve synthesis and simulation."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from .config import NOMINAL_FMAX_MHZ, SweepConfig

__all__ = ["SweepResult", "pareto_front", "su_comparison", "combine", "select_synth", "select_sim"]


def pareto_front(rows: list, objectives: dict) -> list[int]:
    """Indices of the rows no other row dominates.

    Parameters
    ----------
    rows : list of dict
    objectives : dict
        Column → ``"max"`` or ``"min"``. A row dominates another when it is at least as good
        in every objective and strictly better in one. Rows missing a value are skipped.

    Returns
    -------
    list of int
        Sorted by the first objective.
    """
    for k, sense in objectives.items():
        if sense not in ("max", "min"):
            raise ValueError(f"objective {k!r} must be 'max' or 'min', not {sense!r}")
    keys = list(objectives)

    def vec(r):
        vals = [r.get(k) for k in keys]
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in vals):
            return None
        return [v if objectives[k] == "max" else -v for k, v in zip(keys, vals)]

    vs = [(i, vec(r)) for i, r in enumerate(rows)]
    vs = [(i, v) for i, v in vs if v is not None]
    front = []
    for i, a in vs:
        dominated = any(all(x >= y for x, y in zip(b, a)) and any(x > y for x, y in zip(b, a)) for _, b in vs)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: rows[i][keys[0]])


def su_comparison(rows: list[dict], threshold: float) -> list[dict]:
    """Per bit width: the best images/s per kLUT among points at or above ``threshold`` accuracy.

    Reproduces the comparison of Su et al. (arXiv 1807.10577): hardware efficiency across
    precisions at matched accuracy. Also lists each width's best accuracy, so a width that
    never reaches the threshold shows by how much it misses.
    """
    out = []
    for b in sorted({r["bits"] for r in rows}):
        mine = [r for r in rows if r["bits"] == b]
        best_acc = max(mine, key=lambda r: r["accuracy"])
        ok = [r for r in mine if r["accuracy"] >= threshold - 1e-12]
        best = max(ok, key=lambda r: r["images_per_s_per_klut"]) if ok else None
        out.append({"bits": b, "points": len(mine), "matched": len(ok), "best_accuracy": best_acc["accuracy"],
                    "best_accuracy_point": best_acc["name"],
                    "efficiency": best["images_per_s_per_klut"] if best else None,
                    "point": best["name"] if best else None, "accuracy": best["accuracy"] if best else None,
                    "images_per_s": best["images_per_s"] if best else None, "lut": best["lut"] if best else None,
                    "lut_source": best["lut_source"] if best else None,
                    "fmax_source": best["fmax_source"] if best else None})
    return out


def combine(results: list[dict], synth: dict, sim: dict, family: str) -> tuple[list[dict], dict]:
    """Flat rows (one per successful eval point) joining the synth and sim results.

    ``synth`` and ``sim`` map an eval key to its task result. Returns the rows and the fmax
    note (how the nominal fmax was chosen).
    """
    measured = [s["fmax_mhz"] for s in synth.values() if s.get("status") == "ok" and s.get("fmax_mhz")]
    if measured:
        nominal = float(statistics.median(measured))
        note = f"median nextpnr fmax of the {len(measured)} synthesized point(s): {nominal:.1f} MHz"
    else:
        nominal = NOMINAL_FMAX_MHZ[family]
        note = f"no nextpnr fmax in this sweep: nominal {nominal:.0f} MHz for {family}"
    rows = []
    for r in results:
        if r["status"] != "ok":
            continue
        t = r["task"]
        s, m = synth.get(r["key"], {}), sim.get(r["key"], {})
        s_ok, m_ok = s.get("status") == "ok", m.get("status") == "ok"
        lut_y = s.get("lut_yosys") if s_ok else None
        fmax_y = s.get("fmax_mhz") if s_ok else None
        lut = lut_y if lut_y is not None else r["lut_model"]
        fmax = fmax_y if fmax_y else nominal
        ips = fmax * 1e6 / r["cycles_model"]
        mode = "qat" if t["qat_epochs"] else "ptq"
        rows.append({
            "name": f"{t['method']} {t['label']} {mode} {t['lanes']}L", "key": r["key"], "preset": t["preset"],
            "dataset": t["dataset"], "method": t["method"], "bits": t["bits"], "weight_bits": t["weight_bits"],
            "act_bits": t["act_bits"], "config": t["label"], "mode": mode, "lane_budget": t["lanes"],
            "fold": r["fold"], "mac_lanes": r["mac_lanes"], "accuracy": r["accuracy"],
            "float_accuracy": r["float_accuracy"], "cycles_model": r["cycles_model"],
            "bottleneck": r.get("bottleneck"),  # absent from results cached before CNNs
            "cycles_measured": m.get("cycles_measured") if m_ok else None,
            "sim_mismatches": m.get("mismatches") if m_ok else None,
            "lut_model": r["lut_model"], "ff_model": r["ff_model"], "bram_model": r["bram_model"],
            "lut_yosys": lut_y, "ff_yosys": s.get("ff_yosys") if s_ok else None,
            "bram_yosys": s.get("bram_yosys") if s_ok else None, "fits": s.get("fits") if s_ok else None,
            "lut": lut, "lut_source": "yosys" if lut_y is not None else "model",
            "fmax_mhz": round(fmax, 2), "fmax_source": "nextpnr" if fmax_y else "nominal",
            "images_per_s": ips, "images_per_s_per_klut": ips / (lut / 1000.0),
        })
    return rows, {"nominal_fmax_mhz": nominal, "note": note}


def _pick(rows: list[dict], n: int, key_of, order) -> list[dict]:
    """Up to n rows, round-robin over groups (``key_of``), each group in ``order``."""
    groups: dict = {}
    for r in sorted(rows, key=order):
        groups.setdefault(key_of(r), []).append(r)
    picked, gi = [], sorted(groups)
    while len(picked) < n and any(groups[g] for g in gi):
        for g in gi:
            if groups[g] and len(picked) < n:
                picked.append(groups[g].pop(0))
    return picked


def select_synth(rows: list[dict], n: int, max_lut: int | None = None) -> list[dict]:
    """Points to synthesize: the Pareto front of accuracy vs model images/s per kLUT among the points
    of at most ``max_lut`` model LUTs, one bit width after another (most accurate first), so every
    precision gets measured before any gets two."""
    rows = [r for r in rows if max_lut is None or r["lut_model"] <= max_lut]
    front = [rows[i] for i in pareto_front(rows, {"accuracy": "max", "images_per_s_per_klut": "max"})]
    rest = [r for r in rows if r not in front]
    picked = _pick(front, n, lambda r: r["bits"], lambda r: (-r["accuracy"], r["lut"]))
    if len(picked) < n:
        picked += _pick(rest, n - len(picked), lambda r: r["bits"], lambda r: (-r["accuracy"], r["lut"]))
    return picked


def select_sim(rows: list[dict], n: int) -> list[dict]:
    """Points to simulate: one lane budget after another (most accurate network first), so the
    measured cycles check the model at several foldings."""
    return _pick(rows, n, lambda r: r["lane_budget"], lambda r: (-r["accuracy"], r["cycles_model"]))


@dataclass
class SweepResult:
    config: SweepConfig
    dataset: str
    float_accuracy: float
    threshold: float
    rows: list[dict]
    failures: list[dict]
    su: list[dict]
    fmax: dict
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0
