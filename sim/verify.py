"""Generate a block, simulate it in cocotb against the golden model, return the report."""

from __future__ import annotations

from pathlib import Path

from lowbit.sw.specs import MacArraySpec, RequantSpec

from .runner import RunResult, run_testbench

__all__ = ["emit_mac_requant", "verify_mac_requant", "verify_op"]


def emit_mac_requant(mac: MacArraySpec, rq: RequantSpec, out_dir: Path, name: str = "mac_requant"):
    """Write ``<name>.v`` and ``<name>.json`` for a MAC array + requantizer block."""
    from lowbit.hw.blocks import MacRequantBlock
    from lowbit.hw.emit import emit

    return emit(MacRequantBlock(mac, rq), name, out_dir, {"block": "mac-requant", "mac": mac.to_json(),
                                                          "requant": rq.to_json()})


def verify_mac_requant(mac: MacArraySpec, rq: RequantSpec, build_dir: Path, *, n_random: int = 50, seed: int = 0,
                       simulator: str = "verilator", waves: bool = False) -> tuple[RunResult, Path]:
    build_dir = Path(build_dir)
    verilog, portmap = emit_mac_requant(mac, rq, build_dir)
    result = run_testbench(verilog=[verilog], top="mac_requant", test_module="lowbit.sim.tb_block",
                           build_dir=build_dir / f"sim_{simulator}",
                           config={"portmap": str(portmap.resolve()), "n_random": n_random, "seed": seed},
                           simulator=simulator, waves=waves)
    return result, verilog


def verify_op(op, x, build_dir: Path, *, stress_images: int = 2, gap: float = 0.3, stall: float = 0.3,
              seed: int = 0, simulator: str = "verilator", model: str = "synthesis") -> dict:
    """Stream ``x`` (``[images, ...]`` input values) through ``op``'s component in ``simulator``.

    The first ``stress_images`` images see random valid gaps and ready stalls; the rest run at
    full rate. Returns ``outputs`` (``[images, elements]`` values decoded from the output
    stream), ``golden`` (the op's golden function), ``cycles_per_image`` (steady state, from
    the output transfers of the full-rate images) and the run result.
    """
    import numpy as np
    from amaranth.back import verilog

    from lowbit.hw.registry import component_for

    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    x = np.asarray(x)
    images = len(x)
    ins, outs = op.in_stream, op.out_stream
    beats = ins.encode(x.reshape(images, -1))
    src = build_dir / "op.v"
    src.write_text(verilog.convert(component_for(op, model=model), name="op", emit_src=False))
    n_out = images * outs.beats_per_image
    cfg = {"beats": [f"{b:x}" for b in beats], "n_out": n_out, "seed": seed, "gap": gap, "stall": stall,
           "stress_beats": stress_images * ins.beats_per_image, "stress_out": stress_images * outs.beats_per_image,
           "timeout_ns": 10 * (4 * images * (op.cycles() + ins.beats_per_image) + 10_000)}
    run = run_testbench(verilog=[src], top="op", test_module="lowbit.sim.tb_op", build_dir=build_dir / "sim",
                        config=cfg, simulator=simulator)
    result = {"run": run, "golden": op.golden(x).out.reshape(images, -1), "outputs": None,
              "cycles_per_image": None}
    if run.passed and run.report.get("outputs") is not None:
        result["outputs"] = outs.decode([int(v, 16) for v in run.report["outputs"]])
        # the last output beat of each image, for the full-rate images
        ends = np.asarray(run.report["out_cycles"])[outs.beats_per_image - 1::outs.beats_per_image][stress_images:]
        if len(ends) >= 2:
            result["cycles_per_image"] = float(ends[-1] - ends[0]) / (len(ends) - 1)
    return result
