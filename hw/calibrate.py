"""Calibration of the analytical cost model (:mod:`lowbit.sw.cost`) against yosys.

It synthesizes MAC-array and requantizer blocks (the generators of ``lowbit.hw``) for each
family over :data:`lowbit.sw.cost.CALIBRATION_GRID`, caches every yosys count by a hash of
the Verilog, and fits the per-family LUT coefficients by non-negative least squares on
relative error. ``python -m lowbit.hw.calibrate calibrate`` rewrites ``cost_coefficients.json``;
``python -m lowbit.hw.calibrate lanes`` prints LUTs per MAC lane on Xilinx.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from lowbit.sw.cost import (CALIBRATION_GRID, COEFFICIENTS_PATH, FEATURES, block_specs, features)
from lowbit.sw.specs import MacArraySpec, RequantSpec
from lowbit.sw.util import write_atomic

from .blocks import MacRequantBlock
from .emit import emit
from .mac import MacArray

__all__ = ["measured_block", "calibrate", "lane_figures", "main"]


def _cache_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "build" / "cost_cache"


def measured_block(mac: MacArraySpec, rq: RequantSpec | None, family: str, *, cache: Path | None = None) -> dict:
    """yosys resources of a block (DSP inference off), cached by a hash of its Verilog + script.

    The key is the generated Verilog itself, not the spec: a change to the hardware
    generators invalidates every cached count.
    """
    import tempfile


    from lowbit.sw.synth import resources, synth_script, yosys_synth

    with tempfile.TemporaryDirectory() as tmp:
        if rq is None:
            v, _ = emit(MacArray(mac), "top", tmp, {"mac": mac.to_json()})
        else:
            v, _ = emit(MacRequantBlock(mac, rq), "top", tmp, {"mac": mac.to_json(), "requant": rq.to_json()})
        key = json.dumps({"verilog": hashlib.sha256(Path(v).read_bytes()).hexdigest(), "family": family,
                          "script": synth_script(family, "top", dsp=False)}, sort_keys=True)
        h = hashlib.sha256(key.encode()).hexdigest()[:16]
        cdir = Path(cache) if cache else _cache_dir()
        path = cdir / f"{family}_{h}.json"
        if path.is_file():
            return json.loads(path.read_text())
        stats = yosys_synth(v, "top", family, dsp=False)
    out = {"resources": resources(stats["cells"], family), "cells": stats["cells"]}
    # calibration workers share the cache: a reader must never see half a file
    write_atomic(path, json.dumps(out) + "\n")
    return out


def _measure(args):
    cfg, family = args
    mac, rq = block_specs(*cfg)
    return measured_block(mac, rq, family)


def _fit(rows: list[tuple[dict, float]]) -> dict:
    """Non-negative least squares on relative error: each row divided by its measured LUTs."""
    import numpy as np
    from scipy.optimize import nnls

    A = np.array([[f[k] / y for k in FEATURES] for f, y in rows])
    coef, _ = nnls(A, np.ones(len(rows)))
    return {k: float(c) for k, c in zip(FEATURES, coef)}


def _errors(rows, coef) -> dict:
    import numpy as np
    rel = [abs(sum(coef[k] * f[k] for k in FEATURES) - y) / y for f, y in rows]
    return {"median_rel": float(np.median(rel)), "max_rel": float(np.max(rel)), "n": len(rows)}


def calibrate(families=("xilinx", "ice40"), grid=None, *, jobs: int = 2, out: Path | None = COEFFICIENTS_PATH,
              log=print) -> dict:
    """Fit the LUT coefficients per family to yosys over ``grid`` and write them to ``out``.

    Reports the in-sample and leave-one-out median and maximum relative LUT error.
    """
    from concurrent.futures import ProcessPoolExecutor

    grid = list(grid or CALIBRATION_GRID)
    result = {"model": "lut = sum(coef[k] * feature[k]); see lowbit.sw.cost.features", "features": list(FEATURES),
              "grid": [list(g) for g in grid], "families": {}}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for family in families:
            measured = list(pool.map(_measure, [(cfg, family) for cfg in grid]))
            rows = [(features(*block_specs(*cfg)), m["resources"]["lut"]) for cfg, m in zip(grid, measured)]
            coef = _fit(rows)
            err = _errors(rows, coef)
            # leave-one-out: how the model does on a configuration it was not fitted to
            loo = []
            for i in range(len(rows)):
                c = _fit(rows[:i] + rows[i + 1:])
                f, y = rows[i]
                loo.append(abs(sum(c[k] * f[k] for k in FEATURES) - y) / y)
            import numpy as np
            err["loo_median_rel"], err["loo_max_rel"] = float(np.median(loo)), float(np.max(loo))
            points = [{"config": list(cfg), "measured_lut": y, "model_lut": round(sum(coef[k] * f[k] for k in FEATURES))}
                      for cfg, (f, y) in zip(grid, rows)]
            result["families"][family] = {"lut": coef, "error": err, "points": points}
            log(f"{family}: LUT error median {100 * err['median_rel']:.1f}% max {100 * err['max_rel']:.1f}% "
                f"(leave-one-out median {100 * err['loo_median_rel']:.1f}% max {100 * err['loo_max_rel']:.1f}%) "
                f"over {err['n']} blocks")
    if out is not None:
        write_atomic(out, json.dumps(result, indent=1) + "\n")
        log(f"wrote {out}")
    return result


def lane_figures(log=print) -> dict:
    """LUTs per MAC lane on Xilinx (MAC array alone): 4-bit multiply vs FINN-R, bipolar XNOR."""
    out = {}
    for name, w, a, pe, simd in (("s4xu4_8x8", "s4", "u4", 8, 8), ("u4xu4_8x8", "u4", "u4", 8, 8),
                                 ("bipolar_16x16", "bipolar", "bipolar", 16, 16)):
        mac = MacArraySpec(pe=pe, simd=simd, weight_format=w, act_format=a, beats=4)
        m = measured_block(mac, None, "xilinx")["resources"]
        lanes = pe * simd
        out[name] = {"lut": m["lut"], "ff": m["ff"], "carry": m["carry"], "lanes": lanes,
                     "lut_per_lane": m["lut"] / lanes, "acc_bits": mac.acc_bits}
        log(f"{name}: {m['lut']} LUT6 / {lanes} lanes = {m['lut'] / lanes:.2f} LUT per lane "
            f"(acc {mac.acc_bits} bits, {m['ff']} FF)")
    return out


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m lowbit.hw.calibrate", description="calibrate the analytical cost model")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calibrate", help="fit coefficients to yosys and write cost_coefficients.json")
    c.add_argument("--families", default="xilinx,ice40")
    c.add_argument("--jobs", type=int, default=2)
    c.add_argument("--out", default=str(COEFFICIENTS_PATH))
    sub.add_parser("lanes", help="measure LUTs per MAC lane on Xilinx")
    args = p.parse_args(argv)
    if args.cmd == "calibrate":
        calibrate(tuple(args.families.split(",")), jobs=args.jobs, out=Path(args.out))
    else:
        lane_figures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
