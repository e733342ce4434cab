"""A whole network through Icarus Verilog (cocotb), and what a simulation that cannot run reports.

Icarus hands control to cocotb before the harness's ``initial`` blocks have run, so the
network testbench once read ``done`` as X at time 0 and failed on every build; the failure
then came out of ``lowbit sim`` as "Verilator build 0.2 s" and "-1 mismatches". A tiny
random network (64 inputs, as the digits images) is built here, run on both netlists in
Icarus and compared with the golden model; a corrupted netlist must raise
:class:`SimulationError` naming the simulator, the stage, the error and the log, and
``lowbit sim`` must say that nothing was compared instead of printing a mismatch count.
"""

import hashlib
import json
import shutil

import numpy as np
import pytest

from lowbit.hw.build import build_network, load_build
from lowbit.sim.netrun import SimulationError, simulate_build
from lowbit.sim.runner import failure_reason, run_testbench
from lowbit.sw.cli import main
from lowbit.sw.fold import parse_fold, plan_folding
from lowbit.sw.randnet import random_network

pytestmark = pytest.mark.hdl

SIZES, FOLD = [64, 16, 10], "4x16,5x4"


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    net = random_network(SIZES, "s4", "u4", seed=3)
    plan = plan_folding(net, parse_fold(FOLD, len(net.layers)))
    out = tmp_path_factory.mktemp("icarus") / "net"
    build_network(net, plan, out, formats=("hex",))
    manifest, back = load_build(out)
    return out, manifest, back, plan


@pytest.mark.parametrize("model", ["synthesis", "simulation"])
def test_network_bit_exact_on_icarus(tmp_path, tiny_build, model):
    out, manifest, net, plan = tiny_build
    pixels = np.random.default_rng(1).integers(0, 256, (12, SIZES[0]), dtype=np.uint8)
    rep = simulate_build(out, manifest, net, pixels, simulator="icarus", stress=6, model=model,
                         sim_dir=tmp_path / "sim")
    assert rep.simulator == "Icarus Verilog" and rep.model == model and rep.run.passed
    assert rep.images == 12 and rep.stress == 6
    assert rep.mismatches == 0, rep.first_mismatches
    assert rep.classes.shape == (12,)
    # the full-rate images run at the analytical initiation interval, gaps and stalls seen before
    assert rep.cycles_per_image == plan.initiation_interval == manifest["expected_cycles_per_image"]
    assert rep.in_stalls + rep.out_stalls > 0


def _corrupt_simulation_model(src, dst):
    """A copy of the build whose simulation model does not compile (its manifest still agrees)."""
    shutil.copytree(src, dst)
    path = dst / "lowbit_net_sim.v"
    text = path.read_text().replace("endmodule", "endmodul", 1)
    path.write_text(text)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["simulation_model"]["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def test_a_netlist_that_does_not_compile_raises_naming_simulator_error_and_log(tmp_path, tiny_build):
    out, _, net, _ = tiny_build
    manifest = _corrupt_simulation_model(out, tmp_path / "bad")
    pixels = np.zeros((3, SIZES[0]), np.uint8)
    with pytest.raises(SimulationError) as e:
        simulate_build(tmp_path / "bad", manifest, net, pixels, simulator="icarus", model="simulation",
                       sim_dir=tmp_path / "sim")
    err = e.value
    assert err.simulator == "icarus" and err.stage == "compiling lowbit_harness"
    assert "lowbit_net_sim.v" in err.reason and "syntax error" in err.reason
    assert err.log == (tmp_path / "sim" / "obj" / "build.log").resolve() and err.log.is_file()
    assert str(err).startswith("the Icarus Verilog simulation did not run: compiling lowbit_harness failed: ")
    assert f"log: {err.log}" in str(err)


def test_lowbit_sim_says_the_simulation_did_not_run_instead_of_a_mismatch_count(tmp_path, tiny_build, capsys):
    out, *_ = tiny_build
    _corrupt_simulation_model(out, tmp_path / "bad")
    rc = main(["sim", str(tmp_path / "bad"), "--simulator", "icarus", "--dataset", "digits", "--images", "3",
               "-o", str(tmp_path / "sim")])
    cap = capsys.readouterr()
    assert rc == 1
    assert "lowbit sim: error: the Icarus Verilog simulation did not run: compiling lowbit_harness failed: " in cap.err
    assert "syntax error" in cap.err and str((tmp_path / "sim" / "obj" / "build.log").resolve()) in cap.err
    assert "=> FAILED: the simulation did not run, nothing was compared" in cap.out
    assert "mismatches" not in cap.out and "Verilator" not in cap.out + cap.err


def test_a_testbench_that_fails_at_run_time_comes_back_with_its_exception(tmp_path, monkeypatch):
    """The original bug in miniature: reading a register that an ``initial`` block has not set yet.

    Under pytest cocotb's runner calls ``sys.exit`` on a failing test; run_testbench must still
    return the counts, and :func:`failure_reason` must find the exception in the log.
    """
    (tmp_path / "probe.v").write_text("module probe(input clk, output reg done);\n"
                                      "  initial done = 1'b0;\nendmodule\n")
    (tmp_path / "tb_probe_x.py").write_text("import cocotb\n\n\n@cocotb.test()\nasync def reads_done(dut):\n"
                                            "    int(dut.done.value)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    run = run_testbench(verilog=[tmp_path / "probe.v"], top="probe", test_module="tb_probe_x",
                        build_dir=tmp_path / "b", config={}, simulator="icarus")
    assert (run.tests, run.failed, run.passed) == (1, 1, False) and run.simulator == "icarus"
    assert failure_reason(run.log, "?") == "ValueError: Cannot convert Logic('X') to int"
