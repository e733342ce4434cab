"""nextpnr on a tiny generated block: the fmax line is parsed from a real log, and the
IO wrapper lets a block with more ports than the package has pins be placed."""

import pytest

from lowbit.sim.verify import emit_mac_requant
from lowbit.sw.cost import block_ffs
from lowbit.sw.pnr import nextpnr, parse_fmax
from lowbit.sw.specs import MacArraySpec, RequantSpec
from lowbit.sw.synth import TARGETS, synth_target, top_ports

LOG = """\
Info: Max frequency for clock 'clk$SB_IO_IN_$glb_clk': 16.16 MHz (FAIL at 50.00 MHz)
Info: Routing complete.
Warning: Max frequency for clock 'clk$SB_IO_IN_$glb_clk': 15.38 MHz (FAIL at 50.00 MHz)
Info: Max frequency for clock '$glbnet$clk': 161.00 MHz (PASS at 150.00 MHz)
"""


def test_parse_fmax_takes_the_post_route_line():
    clocks = parse_fmax(LOG)
    assert clocks["clk$SB_IO_IN_$glb_clk"] == (15.38, False, 50.0)
    assert clocks["$glbnet$clk"] == (161.0, True, 150.0)
    assert parse_fmax("no timing here") == {}


def test_nextpnr_refuses_a_target_without_open_pnr(tmp_path):
    with pytest.raises(ValueError, match="target must have an open place-and-route flow"):
        nextpnr(tmp_path / "x.json", TARGETS["xilinx-7"])


def _tiny(tmp_path):
    mac = MacArraySpec(pe=2, simd=2, weight_format="s2", act_format="u2", beats=1)
    rq = RequantSpec(lanes=2, acc_bits=mac.acc_bits, out_format="u2", bias_bits=mac.acc_bits, relu=True)
    emit_mac_requant(mac, rq, tmp_path)
    return mac, rq


@pytest.mark.hdl
def test_ice40_place_and_route_of_a_wrapped_block(tmp_path):
    mac, rq = _tiny(tmp_path)
    ports = top_ports([tmp_path / "mac_requant.v"], "mac_requant")
    assert ports["i__payload"] == ("input", mac.act_word_bits + mac.weight_word_bits + 1)
    r = synth_target(tmp_path, "ice40-up5k", freq_mhz=20, keep_dir=tmp_path / "work")
    assert r["io_wrapper"] and r["io_bits"] > TARGETS["ice40-up5k"].io
    assert r["fits"] and r["violations"] == []
    # the fmax nextpnr printed, not a default: a real number in a plausible iCE40 range
    assert 3 < r["fmax_mhz"] < 300
    assert r["pnr"]["freq_mhz"] == 20
    log = (tmp_path / "work" / "nextpnr.log").read_text()
    assert min(f for f, _, _ in parse_fmax(log).values()) == r["fmax_mhz"]
    # the core's resources exclude the wrapper's shift registers: at most the registers the
    # two-stage MAC + requantizer declare (yosys may prune constant bits, never add)
    assert mac.pe * mac.acc_bits <= r["resources"]["ff"] <= block_ffs(mac, rq)
    assert r["resources"]["lut"] > 0 and r["times"]["nextpnr_s"] > 0


@pytest.mark.parametrize("name", [n for n, t in TARGETS.items() if t.nextpnr is not None])
def test_every_open_target_places_a_tiny_block(tmp_path, name):
    # the device/package arguments of each target are only checked by nextpnr itself
    # (ecp5-85k once asked for a package its die does not come in)
    _tiny(tmp_path)
    r = synth_target(tmp_path, name, freq_mhz=20, keep_dir=tmp_path / "work")
    assert r["target"] == name and r["fits"]
    log = (tmp_path / "work" / "nextpnr.log").read_text()
    assert min(f for f, _, _ in parse_fmax(log).values()) == r["fmax_mhz"] > 0
    assert r["pnr"]["freq_mhz"] == 20


def test_a_place_and_route_that_runs_out_of_time_says_so(tmp_path, monkeypatch):
    """A timeout is a failed tool run named with its limit and what to do, not a traceback."""
    import subprocess

    from lowbit.sw.util import ToolRunError

    def too_slow(cmd, **kw):
        raise subprocess.TimeoutExpired(cmd, kw["timeout"])

    netlist = tmp_path / "netlist.json"
    netlist.write_text("{}")
    monkeypatch.setattr(subprocess, "run", too_slow)
    with pytest.raises(ToolRunError, match=r"nextpnr-ecp5 \(ecp5-85k\) did not finish within 5 s \(place and route "
                                           r"of a large design: give it longer with --pnr-timeout, or synthesize without it: --no-pnr\)"):
        nextpnr(netlist, TARGETS["ecp5-85k"], timeout_s=5)
