"""Generate a block, simulate it in cocotb against the golden model, return the report."""

from __future__ import annotations

from pathlib import Path

from lowbit.sw.specs import MacArraySpec, RequantSpec

from .runner import RunResult, run_testbench

__all__ = ["emit_mac_requant", "verify_mac_requant"]


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
