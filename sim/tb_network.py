"""cocotb testbench of a whole network built by ``lowbit build`` (see :mod:`lowbit.sim.harness`).

Configuration (``LOWBIT_TB_CONFIG``): ``n``, ``stress`` and ``timeout_ns``; the images,
outputs and cycle files travel as plusargs to the harness. The first ``stress`` images run
with pseudo-random valid gaps and ready stalls, the rest at full rate; this test starts the
clock (the harness resets itself), waits for the harness to finish and reports the top's counters. Scoring
against the golden model happens in :func:`lowbit.sim.netrun.simulate_build`, in numpy.
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, with_timeout


def _high(signal) -> bool:
    """True only for a resolved 1 (X or Z is not high)."""
    value = signal.value
    return value.is_resolvable and int(value) == 1


@cocotb.test()
async def network_runs_to_completion(dut):
    with open(os.environ["LOWBIT_TB_CONFIG"]) as f:
        cfg = json.load(f)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    # Icarus hands control to cocotb before the harness's initial blocks have run, so at time
    # 0 `done` is still X there (Verilator has already applied them): look only after the
    # first edge, and count an unresolved value as "not done".
    await RisingEdge(dut.clk)
    if not _high(dut.done):
        await with_timeout(RisingEdge(dut.done), cfg["timeout_ns"], "ns")
    await RisingEdge(dut.clk)
    report = {
        "first_timed_in": int(dut.first_timed_in.value),
        "stat_cycles": int(dut.stat_cycles.value),
        "stat_images": int(dut.stat_images.value),
        "stat_in_stalls": int(dut.stat_in_stalls.value),
        "stat_out_stalls": int(dut.stat_out_stalls.value),
    }
    with open(os.environ["LOWBIT_TB_RESULT"], "w") as f:
        json.dump(report, f, indent=1)
