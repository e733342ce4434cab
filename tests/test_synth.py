"""The Verilog of every tested block configuration synthesizes with yosys for iCE40 and Xilinx 7."""

import pytest

from lowbit.sim.verify import emit_mac_requant
from lowbit.sw.synth import yosys_synth

from .test_hdl_block import CONFIGS, specs


@pytest.mark.hdl
@pytest.mark.parametrize("family, lut", [("ice40", "SB_LUT4"), ("xilinx", "LUT")])
@pytest.mark.parametrize("config", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_block_synthesizes(tmp_path, config, family, lut):
    mac, rq = specs(*config[1:])
    verilog, _ = emit_mac_requant(mac, rq, tmp_path)
    stats = yosys_synth(verilog, "mac_requant", family)
    luts = sum(n for cell, n in stats["cells"].items() if cell.startswith(lut))
    ffs = sum(n for cell, n in stats["cells"].items() if "DFF" in cell or cell.startswith("FD"))
    assert luts > 0
    # at least the accumulators, the output codes and both valid flags are registers
    assert ffs >= mac.pe  # registers survive (constant bits, such as an XNOR sum's LSB, are pruned)


@pytest.mark.hdl
@pytest.mark.parametrize("family, lut", [("ice40", "SB_LUT4"), ("xilinx", "LUT")])
@pytest.mark.parametrize("wf, af, fold", [("s4", "u4", [(8, 8), (5, 8)]), ("bipolar", "bipolar", [(16, 16), (10, 16)])],
                         ids=["w4a4", "w1a1"])
def test_network_top_synthesizes(tmp_path, family, lut, wf, af, fold):
    from lowbit.hw.build import build_network
    from lowbit.sw.fold import plan_folding
    from lowbit.sw.randnet import random_network

    net = random_network([64, 32, 10], wf, af, seed=3)
    manifest = build_network(net, plan_folding(net, fold), tmp_path / "net", formats=("hex",))
    stats = yosys_synth(tmp_path / "net" / "lowbit_net.v", manifest["top"], family)
    assert sum(n for cell, n in stats["cells"].items() if cell.startswith(lut)) > 0


@pytest.mark.hdl
def test_readmemh_network_synthesizes_like_the_embedded_one(tmp_path):
    """yosys finds the $readmemh images beside the Verilog; memories come out as block RAM as before."""
    from lowbit.hw.build import build_network
    from lowbit.sw.fold import plan_folding
    from lowbit.sw.randnet import random_network

    net = random_network([64, 32, 10], "s4", "u4", seed=3)
    plan = plan_folding(net, [(8, 8), (5, 8)])
    stats = {}
    for style in ("embedded", "readmemh"):
        m = build_network(net, plan, tmp_path / style, formats=("hex",), memories=style)
        stats[style] = yosys_synth(tmp_path / style / "lowbit_net.v", m["top"], "ice40")["cells"]
    assert stats["readmemh"].get("SB_RAM40_4K", 0) == stats["embedded"].get("SB_RAM40_4K", 0) > 0
    luts = [stats[s]["SB_LUT4"] for s in ("embedded", "readmemh")]
    assert abs(luts[0] - luts[1]) <= 0.02 * luts[0], luts


@pytest.mark.hdl
def test_a_network_takes_the_block_ram_floor(tmp_path):
    """One weight memory per layer (the PE rows side by side): block RAM is the floor
    max(capacity, port width) per memory, not PE memories each rounded up to a whole port."""
    from lowbit.hw.build import build_network
    from lowbit.sw.fold import plan_folding
    from lowbit.sw.randnet import random_network
    from lowbit.sw.synth import synth_target

    net = random_network([256, 64, 64], "bipolar", "bipolar", seed=3)
    # fc0: 4 x 16 lanes = 64 bits x 256 deep -> 2 DP16KD (per-PE memories of 16 bits: 4); fc1: 16 bits x 256 -> 1
    build_network(net, plan_folding(net, [(4, 16), (1, 16)]), tmp_path / "net", formats=("hex",))
    r = synth_target(tmp_path / "net", "ecp5-25k", pnr=False)
    assert r["bram_floor"] == 3 and r["resources"]["bram"] == 3
    assert any(n.startswith("block RAM floor 3 if every weight memory is block RAM (per memory max(")
               and n.endswith("used 3, 1.00x") for n in r["notes"])
