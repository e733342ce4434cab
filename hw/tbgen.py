"""The standalone Verilog testbench that ``lowbit build`` writes beside the core: no Python needed.

An integrator who has only the build folder and Icarus Verilog can check the core the way
``lowbit sim`` does: ``tb_<top>.v`` streams ``tb_<top>_inputs.hex`` (every input beat of
``images`` images) into the core with random valid gaps, takes the outputs with random ready
stalls (both from 32-bit LFSRs inside the testbench, each with probability
:data:`GAP_STALL_THRESHOLD`/256 per cycle), compares every output beat with
``tb_<top>_expected.hex`` (the golden model's class and logits for the same images, packed
as the output beat) and prints one line, then ends with ``$finish``::

    lowbit tb: PASS: 8 images, 0 mismatches (class + every logit), 1234 cycles
    lowbit tb: FAIL: 8 images, 1 mismatches (class + every logit), 1234 cycles

Run it in the build folder (the ``.hex`` files, and with ``--memories readmemh`` the weight
images too, are named without a folder and resolved against the working directory)::

    iverilog -g2005 -o tb_lowbit_net.vvp tb_lowbit_net.v lowbit_net.v && vvp tb_lowbit_net.vvp

(``lowbit_net_sim.v``, the simulation model, works in place of ``lowbit_net.v``.)

The build has no data set, so the images are random valid inputs: every element drawn
uniformly from the values of the core's input format (``input_stream.format``, the first
layer's input format after the IR's input transform) by ``numpy.random.default_rng(seed)``,
seed :data:`SEED` unless told otherwise, so a build's stimulus is the same on every machine.

The output beat's layout (the fields ``cls`` and ``logits`` of ``ports.o__payload`` in the
manifest) is read by :func:`output_layout` only: :func:`encode_outputs` packs the expected
words with it and :func:`decode_outputs` (what ``lowbit sim`` scores with) unpacks with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from lowbit.sw.formats import from_twos_complement, signed_range, to_twos_complement
from lowbit.sw.golden import run_network
from lowbit.sw.ir import Network
from lowbit.sw.memfiles import dumps
from lowbit.sw.ops import StreamShape

__all__ = ["IMAGES", "SEED", "GAP_STALL_THRESHOLD", "OutputLayout", "output_layout", "encode_outputs",
           "decode_outputs", "standalone_inputs", "StandaloneTestbench", "standalone_testbench"]

IMAGES = 8   # images in a build's standalone testbench unless told otherwise
SEED = 0     # numpy default_rng seed of their inputs
GAP_STALL_THRESHOLD = 77  # out of 256: probability of an input gap / output stall per cycle (~0.3)
PREFIX = "lowbit tb:"     # every line the testbench prints starts with it


@dataclass(frozen=True)
class OutputLayout:
    """Where the output beat holds the class and the logits (bits, LSB = 0)."""

    width: int
    cls_offset: int
    cls_width: int
    logits_offset: int
    logit_width: int   # each logit: signed two's complement
    logits: int        # logit j at logits_offset + j * logit_width


def output_layout(manifest: dict) -> OutputLayout:
    """The output beat's layout, from the manifest's ``ports.o__payload`` (the core's own port map)."""
    po = manifest["ports"]["o__payload"]
    c, lg = po["fields"]["cls"], po["fields"]["logits"]
    return OutputLayout(po["width"], c["offset"], c["width"], lg["offset"], lg["elem"]["width"], lg["length"])


def encode_outputs(classes, logits, manifest: dict) -> list[int]:
    """Output beat words (one per image) holding ``classes`` and ``logits`` ``[images, outputs]``."""
    lay = output_layout(manifest)
    classes, logits = np.asarray(classes, np.int64), np.asarray(logits, np.int64).reshape(len(classes), -1)
    if logits.shape[1] != lay.logits:
        raise ValueError(f"logits must have {lay.logits} columns (ports.o__payload), not {logits.shape[1]}")
    lo, hi = signed_range(lay.logit_width)
    if logits.size and (logits.min() < lo or logits.max() > hi):
        raise ValueError(f"logits must fit {lay.logit_width}-bit signed lanes ({lo}..{hi}), "
                         f"not {int(logits.min())}..{int(logits.max())}")
    if classes.size and (classes.min() < 0 or classes.max() >> lay.cls_width):
        raise ValueError(f"classes must fit {lay.cls_width} unsigned bits, not {int(classes.min())}..{int(classes.max())}")
    words = []
    for c, row in zip(classes.tolist(), to_twos_complement(logits, lay.logit_width).tolist()):
        w = c << lay.cls_offset
        for j, v in enumerate(row):
            w |= int(v) << (lay.logits_offset + j * lay.logit_width)
        words.append(w)
    return words


def decode_outputs(words, manifest: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(classes [images], logits [images, outputs])`` of output beat words: the inverse of :func:`encode_outputs`."""
    lay = output_layout(manifest)
    words = [int(v) for v in words]
    cls = np.array([(v >> lay.cls_offset) & ((1 << lay.cls_width) - 1) for v in words], np.int64)
    raw = np.array([[(v >> (lay.logits_offset + j * lay.logit_width)) & ((1 << lay.logit_width) - 1)
                     for j in range(lay.logits)] for v in words], np.int64).reshape(len(words), lay.logits)
    return cls, from_twos_complement(raw, lay.logit_width).astype(np.int64)


def standalone_inputs(manifest: dict, images: int = IMAGES, seed: int = SEED) -> np.ndarray:
    """``[images, in_features]`` first-layer input values, uniform over the input format's values."""
    fmt = StreamShape.from_json(manifest["input_stream"]).format
    if fmt is None:
        raise ValueError("input_stream.format must name the core's input format, not null")
    return np.random.default_rng(seed).choice(fmt.values(), (images, manifest["in_features"])).astype(np.int64)


#: the core instantiated by both testbenches (this one and lowbit.sim.harness's), every port by name
DUT_INSTANCE = """\
  {top} dut (
    .clk(clk), .rst(rst),
    .i__valid(i_valid), .i__ready(i_ready), .i__payload(i_payload),
    .o__valid(o_valid), .o__ready(o_ready), .o__payload(o_payload),
    .stat_cycles(stat_cycles), .stat_images(stat_images),
    .stat_in_stalls(stat_in_stalls), .stat_out_stalls(stat_out_stalls)
  );
"""

_TEMPLATE = """\
// Generated by lowbit build (lowbit.hw.tbgen): a standalone testbench of {top}; no Python needed.
// In the build folder:
//   iverilog -g2005 -o {tb}.vvp {tb}.v {top}.v && vvp {tb}.vvp
// Streams {images} images from {inputs} into {top} with random valid gaps, takes the outputs
// with random ready stalls (two LFSRs, each {thr}/256 per cycle), compares every output beat
// (class + every logit) with {expected} and prints "{prefix} PASS: ..." or
// "{prefix} FAIL: ..." with the mismatch count, then $finish.
`timescale 1ns/1ps
module {tb};
  localparam IN_W = {in_w};
  localparam OUT_W = {out_w};
  localparam IMAGES = {images};
  localparam TOTAL_BEATS = {total_beats};
  localparam MAX_CYCLES = {max_cycles};
  localparam [7:0] THRESHOLD = {thr};
  localparam CLS_OFF = {cls_off};
  localparam CLS_W = {cls_w};

  reg clk = 1'b0;
  always #5 clk = ~clk;
  // synchronous, active-high reset for the first 4 rising edges
  reg [3:0] por = 4'hF;
  always @(posedge clk) por <= {{1'b0, por[3:1]}};
  wire rst = por[0];

  reg [IN_W-1:0] inputs [0:TOTAL_BEATS-1];
  reg [OUT_W-1:0] expected [0:IMAGES-1];
  initial begin
    $readmemh("{inputs}", inputs);
    $readmemh("{expected}", expected);
  end

  wire i_ready, o_valid;
  wire [OUT_W-1:0] o_payload;
  wire [31:0] stat_cycles, stat_images, stat_in_stalls, stat_out_stalls;
  reg i_valid;
  reg [IN_W-1:0] i_payload;
  reg [31:0] in_idx, out_idx, mismatches, cycles;
  reg [31:0] lfsr_a, lfsr_b;

  wire fire_in = i_valid & i_ready;
  wire [31:0] next_idx = in_idx + (fire_in ? 32'd1 : 32'd0);
  wire gap = lfsr_a[7:0] < THRESHOLD;
  wire o_ready = !(lfsr_b[7:0] < THRESHOLD);

{dut}
  always @(posedge clk) begin
    if (rst) begin
      i_valid <= 1'b0; i_payload <= {{IN_W{{1'b0}}}};
      in_idx <= 32'd0; out_idx <= 32'd0; mismatches <= 32'd0; cycles <= 32'd0;
      lfsr_a <= 32'hACE1_2468; lfsr_b <= 32'h1357_9BDF;
    end else begin
      if (out_idx == IMAGES || cycles == MAX_CYCLES) begin
        if (out_idx == IMAGES && mismatches == 0)
          $display("{prefix} PASS: %0d images, 0 mismatches (class + every logit), %0d cycles", IMAGES, cycles);
        else if (out_idx == IMAGES)
          $display("{prefix} FAIL: %0d images, %0d mismatches (class + every logit), %0d cycles",
                   IMAGES, mismatches, cycles);
        else
          $display("{prefix} FAIL: timeout after %0d cycles, %0d of %0d images out, %0d mismatches",
                   cycles, out_idx, IMAGES, mismatches + IMAGES - out_idx);
        $display("{prefix} stat_cycles %0d, stat_images %0d, stat_in_stalls %0d, stat_out_stalls %0d",
                 stat_cycles, stat_images, stat_in_stalls, stat_out_stalls);
        $finish;
      end
      cycles <= cycles + 32'd1;
      lfsr_a <= {{lfsr_a[30:0], lfsr_a[31] ^ lfsr_a[21] ^ lfsr_a[1] ^ lfsr_a[0]}};
      lfsr_b <= {{lfsr_b[30:0], lfsr_b[31] ^ lfsr_b[21] ^ lfsr_b[1] ^ lfsr_b[0]}};
      if (fire_in) in_idx <= next_idx;
      // valid stays up until its beat is taken (the stream rule); gaps only between beats
      if (!i_valid || i_ready) begin
        i_valid <= (next_idx < TOTAL_BEATS) && !gap;
        i_payload <= inputs[next_idx < TOTAL_BEATS ? next_idx : 0];
      end
      if (o_valid && o_ready) begin
        // !== : an X or Z bit in the output is a mismatch too
        if (o_payload !== expected[out_idx]) begin
          mismatches <= mismatches + 32'd1;
          if (mismatches < 5)
            $display("{prefix} image %0d: got class %0d, word %h; expected class %0d, word %h", out_idx,
                     o_payload[CLS_OFF +: CLS_W], o_payload, expected[out_idx][CLS_OFF +: CLS_W], expected[out_idx]);
        end
        out_idx <= out_idx + 32'd1;
      end
    end
  end
endmodule
"""


@dataclass
class StandaloneTestbench:
    """One build's testbench: ``files`` (name → bytes, for the build folder) and its manifest record."""

    top: str
    module: str
    images: int
    seed: int
    files: dict
    commands: list

    def manifest_entry(self) -> dict:
        sha = {name: hashlib.sha256(data).hexdigest() for name, data in self.files.items()}
        verilog, inputs, expected = list(self.files)
        return {
            "file": verilog, "sha256": sha[verilog], "module": self.module,
            "inputs": {"file": inputs, "sha256": sha[inputs]},
            "expected": {"file": expected, "sha256": sha[expected]},
            "images": self.images, "seed": self.seed,
            "stimulus": f"{self.images} images, every element uniform over the input format's values "
                        f"(numpy default_rng({self.seed})); expected = the golden model's class and logits "
                        f"packed as the output beat (ports.o__payload)",
            "traffic": f"input valid gaps and output ready stalls, each {GAP_STALL_THRESHOLD}/256 per cycle "
                       f"from two 32-bit LFSRs",
            "commands": self.commands,
            "prints": f"'{PREFIX} PASS: N images, 0 mismatches ...' or '{PREFIX} FAIL: N images, K mismatches "
                      f"...' (or '... FAIL: timeout ...'), then $finish",
        }


def standalone_testbench(net: Network, manifest: dict, *, images: int = IMAGES, seed: int = SEED) -> StandaloneTestbench:
    """The testbench of the core that ``manifest`` describes (its ``top``, ``ports``, ``input_stream``,
    ``in_features`` and ``expected_cycles_per_image``), for ``net``, the IR it was built from."""
    if not isinstance(images, int) or isinstance(images, bool) or images < 1:
        raise ValueError(f"images must be a positive integer, not {images!r}")
    top = manifest["top"]
    tb = f"tb_{top}"
    stream = StreamShape.from_json(manifest["input_stream"])
    x = standalone_inputs(manifest, images, seed)
    golden = run_network(net, x, keep="logits")
    lay = output_layout(manifest)
    in_w = manifest["ports"]["i__payload"]["width"]
    beats = stream.encode(x)
    names = {"verilog": f"{tb}.v", "inputs": f"{tb}_inputs.hex", "expected": f"{tb}_expected.hex"}
    # generous: a failing core stops at the timeout instead of running forever
    max_cycles = (images + 10) * manifest["expected_cycles_per_image"] * 4 + 100_000
    text = _TEMPLATE.format(top=top, dut=DUT_INSTANCE.format(top=top), tb=tb,
                            images=images, inputs=names["inputs"], expected=names["expected"],
                            in_w=in_w, out_w=lay.width, total_beats=len(beats), max_cycles=max_cycles,
                            thr=GAP_STALL_THRESHOLD, cls_off=lay.cls_offset, cls_w=lay.cls_width, prefix=PREFIX)
    files = {names["verilog"]: text.encode(),
             names["inputs"]: dumps(beats, in_w, "hex"),
             names["expected"]: dumps(encode_outputs(golden.classes, golden.logits, manifest), lay.width, "hex")}
    commands = [f"iverilog -g2005 -o {tb}.vvp {tb}.v {top}.v", f"vvp {tb}.vvp"]
    return StandaloneTestbench(top, tb, images, seed, files, commands)
