"""``lowbit build``: a network's Verilog top, memory images and manifest, written together.

Output folder
-------------
``<top>.v``        the accelerator for the FPGA (plain Verilog-2005). ``memories="embedded"`` (default):
                   every memory initialised in the Verilog, equal to the image files by
                   construction (both come from :mod:`lowbit.sw.pack`). ``"readmemh"``: each
                   weight/parameter memory reads its ``.hex`` image with ``$readmemh`` (file
                   name only: tools resolve it against their working directory or the
                   Verilog's folder; see :mod:`lowbit.hw.readmem`)
``<top>_sim.v``    the same design as Verilator's simulation model (module ``<top>`` too;
                   ``lowbit sim`` runs it by default): Verilog ``*`` lane multipliers and data
                   registers that hold in bubbles, see :mod:`lowbit.hw.simmodel`
``<top>_axis.v``   module ``<top>_axis``: the core with AXI4-Stream port names (``aclk``/``aresetn``,
                   ``s_axis_*``, ``m_axis_*``, a sticky ``tlast`` check), see :mod:`lowbit.hw.axis`
``tb_<top>.v``, ``tb_<top>_inputs.hex``, ``tb_<top>_expected.hex``  a standalone Verilog testbench
                   (Icarus, no Python): random valid inputs, the golden model's outputs, random
                   gaps and stalls, prints PASS/FAIL; see :mod:`lowbit.hw.tbgen`
``layer*_*.hex|mem|coe|mif|bin``  every weight memory (one per layer) and parameter memory (one per PE row)
``net.npz``        the integer IR the hardware was built from (for the golden model)
``manifest.json``  every memory (layer, bank, width, depth, lane order, encoding, files and
                   sha256), the top, the I/O protocol, the port map, the folding and the
                   analytical cycles per layer and per image
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from amaranth.back import verilog

from lowbit.sw.fold import FoldPlan, mac_efficiency
from lowbit.sw.ir import Network
from lowbit.sw.memimage import ImageSet, holds_manifest
from lowbit.sw.ops import initiation_interval, lower, mac_lanes
from lowbit.sw.util import check_replaceable, replace_folder

from .axis import axis_wrapper
from .emit import port_map
from .network import NetworkTop
from .readmem import use_readmemh
from .registry import check_components
from .simmodel import MODEL_DIFFERENCES, check_lane_multipliers, multiplier_pairs
from .tbgen import IMAGES as TESTBENCH_IMAGES
from .tbgen import standalone_testbench

__all__ = ["build_network", "IO_PROTOCOL", "TOP_NAME", "MEMORY_STYLES"]

MEMORY_STYLES = {
    "embedded": "embedded: the Verilog initialises every memory with the same words as the image files",
    "readmemh": "readmemh: every weight and parameter memory is initialised by $readmemh of its .hex image "
                "(file name only, resolved against the tool's working directory or the Verilog's folder)",
}

TOP_NAME = "lowbit_net"
IO_PROTOCOL = {
    "input": "stream i (i__valid, i__ready, i__payload): one image = input_stream.beats_per_image beats "
             "(in_features/SIMD_0 for a dense first layer); beat b holds first-layer inputs "
             "b*lanes .. b*lanes+lanes-1 (lanes = input_stream.lanes) in the input format, lane k at bits "
             "[k*bits, (k+1)*bits); the host applies the IR's input transform to pixels; no end flag "
             "(the top counts beats). A transfer happens on a rising clock edge with valid and ready high.",
    "output": "stream o: one beat per image: field cls (argmax, lowest index wins ties) and field logits "
              "(last layer acc + bias, signed, lane j = output j); see ports.o__payload for offsets.",
    "counters": "stat_cycles, stat_images, stat_in_stalls (i valid, not ready), stat_out_stalls "
                "(o valid, not ready): 32-bit registers, cleared by rst, wrapping modulo 2^32; each counts the "
                "rising clock edges after reset at which its condition held (stat_cycles: every edge, so it reads "
                "k-1 in the k-th cycle after reset; stat_images: o transfers), visible from the next cycle.",
    "clock_reset": "clk rising edge; rst synchronous, active high; one cycle of rst (clk running) restores the "
                   "power-on state; beats offered while rst is high are dropped (i__ready may read 1 then).",
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_network(net: Network, plan: FoldPlan, out_dir: str | os.PathLike, *,
                  formats=("hex", "mem", "coe", "mif", "bin"), memories: str = "embedded",
                  simulation_model: bool = True, testbench_images: int = TESTBENCH_IMAGES) -> dict:
    """Generate and write everything; the folder appears complete or not at all.

    ``simulation_model`` also writes ``<top>_sim.v`` (see :mod:`lowbit.hw.simmodel`), after
    checking its lane multipliers against the synthesized ones on every code pair.
    ``testbench_images``: images in the standalone testbench (:mod:`lowbit.hw.tbgen`).
    """
    if memories not in MEMORY_STYLES:
        raise ValueError(f"memories must be one of {', '.join(MEMORY_STYLES)}, not {memories!r}")
    if memories == "readmemh" and "hex" not in formats:
        raise ValueError(f"formats must include 'hex' when memories is 'readmemh', not {list(formats)!r}")
    out_dir = check_replaceable(out_dir, is_previous=holds_manifest, what="a previous lowbit build",
                                param="output folder")  # before minutes of generation, not after
    ops = lower(net, plan)
    check_components(ops)
    top = NetworkTop(ops)
    text = verilog.convert(top, name=TOP_NAME, emit_src=False)

    images = ImageSet()
    for op in ops:
        for mem in op.memories():
            images.add(mem)
    readmem = []
    if memories == "readmemh":
        text, readmem = use_readmemh(text, images.memories)
    sim_text, sim_model = None, None
    if simulation_model:
        checked = check_lane_multipliers(multiplier_pairs(ops))
        sim_text = verilog.convert(NetworkTop(ops, model="simulation"), name=TOP_NAME, emit_src=False)
        if memories == "readmemh":
            sim_text, _ = use_readmemh(sim_text, images.memories)
        sim_model = {"file": f"{TOP_NAME}_sim.v", "sha256": _sha256(sim_text.encode()),
                     "differences": MODEL_DIFFERENCES, "lane_multiplier_check": checked}

    axis = axis_wrapper(port_map(top), ops[0].in_stream.beats_per_image, TOP_NAME)

    with tempfile.TemporaryDirectory() as tmp:
        ir_path = net.save(Path(tmp) / "net.npz")
        ir_bytes = ir_path.read_bytes()
    extra = {
        "top": TOP_NAME,
        "verilog": [f"{TOP_NAME}.v"],
        "verilog_sha256": _sha256(text.encode()),
        "simulation_model": sim_model,
        "axis_wrapper": axis.manifest_entry(),
        "memory_style": MEMORY_STYLES[memories],
        "readmemh_files": sorted({f for _, f in readmem}),
        "ir": {"file": "net.npz", "sha256": _sha256(ir_bytes), "name": net.name,
               "input_transform": net.input.to_json()},
        "io": IO_PROTOCOL,
        **port_map(top),
        "in_features": net.in_features, "classes": top.classes, "logit_bits": top.logit_bits,
        "input_stream": ops[0].in_stream.to_json(),
        # one entry per op: its kind, fold, streams and expected cycles (FINN-style folding table)
        "folding": [op.manifest_entry() for op in ops],
        "expected_cycles_per_image": initiation_interval(ops),
        "mac_lanes": mac_lanes(ops),
        # Σ MACs / (II · lanes): the lane-cycles that do a MAC (1 for a perfectly balanced fold)
        "mac_efficiency": round(mac_efficiency(ops), 6),
    }
    # the standalone testbench reads the port map and input stream above (and runs the golden model)
    testbench = standalone_testbench(net, extra, images=testbench_images)
    extra["standalone_testbench"] = testbench.manifest_entry()
    manifest, files = images.manifest(formats, extra)
    files[f"{TOP_NAME}.v"] = text.encode()
    if sim_text is not None:
        files[sim_model["file"]] = sim_text.encode()
    files[axis.file] = axis.text.encode()
    files.update(testbench.files)
    files["net.npz"] = ir_bytes
    files["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()

    # the complete folder is staged beside the target and swapped in: never half a build
    replace_folder(out_dir, files, is_previous=holds_manifest, what="a previous lowbit build", param="output folder")
    return manifest


def load_build(out_dir: str | os.PathLike) -> tuple[dict, Network]:
    """Read a build folder back, checking every image's and the IR's sha256 against the manifest."""
    from lowbit.sw.memimage import check_file, verify_images

    out_dir = Path(out_dir)
    if not (out_dir / "manifest.json").is_file():
        raise ValueError(f"{str(out_dir)!r} is not a lowbit build folder (no manifest.json); run 'lowbit build' first")
    manifest = verify_images(out_dir)
    for key in ("top", "ir", "verilog"):
        if key not in manifest:
            raise ValueError(f"{str(out_dir / 'manifest.json')!r} lacks {key!r}: not a network build")
    if "input_stream" not in manifest:
        raise ValueError(f"{str(out_dir)!r} was built by an earlier lowbit (its manifest has no 'input_stream'): "
                         f"rebuild it with 'lowbit build'")
    check_file(out_dir, manifest["ir"], "integer IR")
    for v in manifest["verilog"]:
        path = out_dir / v
        if not path.is_file():
            raise ValueError(f"{str(path)!r} is missing")
        if _sha256(path.read_bytes()) != manifest.get("verilog_sha256", _sha256(path.read_bytes())):
            raise ValueError(f"{str(path)!r} has been modified since it was built")
    if manifest.get("simulation_model"):
        check_file(out_dir, manifest["simulation_model"], "simulation model")
    if manifest.get("axis_wrapper"):
        check_file(out_dir, manifest["axis_wrapper"], "AXI4-Stream wrapper")
    return manifest, Network.load(out_dir / manifest["ir"]["file"])
