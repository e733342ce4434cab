"""Run a ``lowbit build`` folder in cocotb against the golden model."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lowbit.hw.simmodel import check_model
from lowbit.hw.tbgen import decode_outputs  # the one reader of the output beat's layout
from lowbit.sw.golden import run_network
from lowbit.sw.ir import Network
from lowbit.sw.memimage import dumps
from lowbit.sw.ops import StreamShape

from .harness import HARNESS_TOP, write_harness
from .runner import SIMULATOR_NAMES, RunResult, SimulationError, failure_reason, run_testbench, verilate_library

__all__ = ["simulate_build", "NetworkSimReport", "read_writememh", "SimulationError"]


def read_writememh(path: Path, width: int) -> list[int]:
    """Words of a ``$writememh`` file (comments and ``@address`` lines skipped)."""
    words = []
    for line in Path(path).read_text().splitlines():
        line = line.split("//")[0].strip()
        if not line or line.startswith("@"):
            continue
        for tok in line.split():
            if any(c in tok.lower() for c in "xz"):
                raise ValueError(f"{path}: undefined value {tok!r} (an output was X or Z)")
            v = int(tok, 16)
            if v >> width:
                raise ValueError(f"{path}: value {tok} is wider than {width} bits")
            words.append(v)
    return words


@dataclass
class NetworkSimReport:
    """The outcome of a simulation that ran to the end (one that did not raises :class:`SimulationError`)."""

    run: RunResult
    images: int
    mismatches: int
    first_mismatches: list = field(default_factory=list)
    classes: np.ndarray | None = None
    accuracy: float | None = None          # hardware classes against the labels
    golden_accuracy: float | None = None   # golden model against the same labels
    cycles_per_image: float | None = None  # measured steady state (initiation interval)
    latency_cycles: int | None = None      # first timed beat in → its image's result out
    expected_cycles_per_image: int = 0     # analytical bound: max over layers of NF·SF
    in_stalls: int = 0
    out_stalls: int = 0
    model: str = "synthesis"               # which netlist ran (lowbit.hw.simmodel.MODELS)
    verilog: list = field(default_factory=list)
    stress: int = 0                        # images run with random gaps and stalls

    @property
    def simulator(self) -> str:
        """The simulator that ran, as reports name it (``Verilator``, ``Icarus Verilog``)."""
        return SIMULATOR_NAMES.get(self.run.simulator, self.run.simulator)

    @property
    def sim_images_per_second(self) -> float:
        return self.images / self.run.run_seconds if self.run.run_seconds else float("nan")

    def projected_images_per_second(self, clock_mhz: float) -> float | None:
        return None if not self.cycles_per_image else clock_mhz * 1e6 / self.cycles_per_image

    @property
    def bit_exact(self) -> bool:
        return self.run.passed and self.mismatches == 0


def simulate_build(build_dir: Path, manifest: dict, net: Network, pixels: np.ndarray, labels=None, *,
                   simulator: str = "verilator", waves: bool = False, stress: int = 50, gap: float = 0.3,
                   stall: float = 0.3, sim_dir: Path | None = None, model: str = "synthesis") -> NetworkSimReport:
    """Stream ``pixels`` (uint8, one row per image) through the built accelerator, score every output.

    The first ``stress`` images run with valid gaps (probability ``gap`` per beat) and
    output stalls (``stall`` per cycle); the rest run at full rate and are timed.
    ``model`` picks the netlist: ``"synthesis"`` (the FPGA's Verilog) or ``"simulation"``
    (the build's faster simulation model, see :mod:`lowbit.hw.simmodel`).

    A simulation that does not run to the end (a netlist that does not compile, a testbench
    that fails or times out, no outputs written) raises :class:`SimulationError` naming the
    simulator, the stage, the reason and the log: it has nothing to compare, so it never comes
    back as a report.
    """
    check_model(model)
    if model == "simulation":
        if not manifest.get("simulation_model"):
            raise ValueError(f"model must be 'synthesis' for {str(build_dir)!r}, not 'simulation': it was built "
                             f"without a simulation model (rebuild it without --no-sim-model, or simulate with "
                             f"--model synthesis)")
        verilog_files = [manifest["simulation_model"]["file"]]
    else:
        verilog_files = list(manifest["verilog"])
    build_dir = Path(build_dir).resolve()
    sim_dir = Path(sim_dir or build_dir.parent / f"{build_dir.name}_sim_{simulator}_{model}").resolve()
    sim_dir.mkdir(parents=True, exist_ok=True)
    pixels = np.asarray(pixels).reshape(len(pixels), -1)
    if pixels.shape[1] != net.in_features:
        raise ValueError(f"images have {pixels.shape[1]} pixels but the network takes {net.in_features} inputs")
    n = len(pixels)
    stress = min(stress, max(0, n - 2))
    x = net.input.apply(pixels)
    golden = run_network(net, x, keep="logits")  # only classes and logits are compared

    beats = StreamShape.from_json(manifest["input_stream"]).encode(x)  # the first op's input stream
    in_w, out_w = manifest["ports"]["i__payload"]["width"], manifest["ports"]["o__payload"]["width"]
    files = {k: sim_dir / f"{k}.hex" for k in ("inputs", "outputs", "cycles")}
    files["inputs"].write_bytes(dumps(beats, in_w, "hex"))
    for k in ("outputs", "cycles"):
        files[k].unlink(missing_ok=True)
    harness = write_harness(sim_dir / f"{HARNESS_TOP}.v", manifest, n)
    # $readmemh builds name their images without a folder: the simulator resolves them against
    # its working directory, the testbench's build folder
    run_dir = sim_dir / "obj"
    # Start the testbench build from nothing: its makefile does not list the protected library,
    # so an executable from an earlier run would be kept, still linked to the earlier design
    # (seen: a rebuilt network simulated as the old one). ccache keeps the rebuild to seconds.
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    for fname in manifest.get("readmemh_files", []):
        shutil.copyfile(build_dir / fname, run_dir / fname)
    budget_cycles = (n + 10) * manifest["expected_cycles_per_image"] * 4 + 100_000
    sources = [build_dir / v for v in verilog_files] + [harness]
    extra_args, lib_seconds = [], 0.0
    if simulator == "verilator":
        wrapper, library, lib_seconds = verilate_library(sources, HARNESS_TOP, sim_dir / "lib",
                                                         threads=int(os.environ.get("LOWBIT_SIM_THREADS", "1")))
        sources, extra_args = [wrapper], [str(library)]
    run = run_testbench(
        verilog=sources, top=HARNESS_TOP,
        test_module="lowbit.sim.tb_network", build_dir=run_dir, simulator=simulator, waves=waves,
        config={"n": n, "stress": stress, "timeout_ns": budget_cycles * 10},
        build_args=extra_args,
        plusargs=[f"+LOWBIT_INPUTS={files['inputs']}", f"+LOWBIT_OUTPUTS={files['outputs']}",
                  f"+LOWBIT_CYCLES={files['cycles']}", f"+LOWBIT_N={n}", f"+LOWBIT_STRESS={stress}",
                  f"+LOWBIT_GAP={int(round(gap * 256))}", f"+LOWBIT_STALL={int(round(stall * 256))}"])
    run.build_seconds += lib_seconds
    # nothing ran to compare: say why, never as a count of mismatches
    if not run.passed:
        raise SimulationError(simulator, "running the network testbench",
                              failure_reason(run.log, f"{run.failed} of {run.tests} cocotb tests failed"), run.log)
    if not files["outputs"].is_file():
        raise SimulationError(simulator, "running the network testbench",
                              f"the harness wrote no outputs to {files['outputs']}", run.log)
    report = NetworkSimReport(run, n, 0, expected_cycles_per_image=manifest["expected_cycles_per_image"],
                              model=model, verilog=verilog_files, stress=stress)
    cls, logits = decode_outputs(read_writememh(files["outputs"], out_w), manifest)
    cycles = np.array(read_writememh(files["cycles"], 32), np.int64)
    bad = np.nonzero((cls != golden.classes) | np.any(logits != golden.logits, axis=1))[0]
    report.mismatches = int(len(bad))
    report.first_mismatches = [{"image": int(k), "class": int(cls[k]), "expected_class": int(golden.classes[k]),
                                "logits": logits[k].tolist(), "expected_logits": golden.logits[k].tolist()}
                               for k in bad[:5]]
    report.classes = cls
    timed = cycles[stress:]
    if len(timed) >= 2:
        report.cycles_per_image = float(timed[-1] - timed[0]) / (len(timed) - 1)
        report.latency_cycles = int(timed[0] - run.report["first_timed_in"] + 1)
    report.in_stalls, report.out_stalls = run.report["stat_in_stalls"], run.report["stat_out_stalls"]
    if labels is not None:
        labels = np.asarray(labels)[:n]
        report.accuracy = float(np.mean(cls == labels))
        report.golden_accuracy = float(np.mean(golden.classes == labels))
    return report
