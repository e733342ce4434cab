"""Analytical cost model: LUTs, FFs, BRAM, DSP and cycles from formats, PE, SIMD and layer sizes.

The model counts what the circuit is made of — per MAC lane by multiplier kind (XNOR,
negation, ternary add/subtract/skip, pow2 shift, general multiply), the adder tree of each
PE row, the accumulators, and per PE the requantizer (bias adder, optional multiplier,
runtime barrel shifter, rounding, clip) — and weighs each part with a per-family
coefficient fitted to yosys (:func:`lowbit.hw.calibrate.calibrate`, which synthesizes the
blocks: hardware, so it lives in ``hw``). The fitted coefficients ship in
``cost_coefficients.json`` next to this module; ``python -m lowbit.hw.calibrate calibrate``
regenerates them (yosys results are cached under ``build/cost_cache``).

The model assumes DSP inference off (multipliers in LUTs, as FINN does for ≤ 8-bit
lanes), which is what ``lowbit synth --dsp auto`` falls back to when DSPs run out.
Cycles follow FINN's MVAU folding: ``(rows/PE)·(cols/SIMD)`` beats per vector.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .formats import Kind, Rounding, parse_format
from .specs import MacArraySpec, ProductKind, RequantSpec

__all__ = ["FEATURES", "features", "estimate_block", "estimate_layer", "weight_memory", "rom_memory", "block_ram_floor",
           "load_coefficients", "CALIBRATION_GRID", "COEFFICIENTS_PATH", "block_specs"]

COEFFICIENTS_PATH = Path(__file__).with_name("cost_coefficients.json")
FAMILIES = ("xilinx", "ice40", "ecp5")

FEATURES = ("lane_xnor", "lane_negate", "lane_ternary", "lane_shift", "lane_multiply",
            "tree", "acc", "rq_add", "rq_mult", "rq_shift", "rq_round", "rq_clip", "const")


def _tree_bits(n: int, leaf_bits: int) -> int:
    """Total width of the adders of a balanced tree over ``n`` leaves (Amaranth widens by one per level)."""
    widths, total = [leaf_bits] * n, 0
    while len(widths) > 1:
        nxt = [max(widths[i], widths[i + 1]) + 1 for i in range(0, len(widths) - 1, 2)]
        total += sum(nxt)
        if len(widths) % 2:
            nxt.append(widths[-1])
        widths = nxt
    return total


def _product_bits(mac: MacArraySpec) -> int:
    """Signed width of one lane's product ``w·x`` over the formats' ranges."""
    wf, af = mac.weight_format, mac.act_format
    ends = (wf.min * af.min, wf.min * af.max, wf.max * af.min, wf.max * af.max, 0)
    return max(min(ends).bit_length(), max(ends).bit_length()) + 1


def features(mac: MacArraySpec, rq: RequantSpec | None) -> dict:
    """The structural quantities the LUT count is linear in, for one MAC array + requantizer."""
    f = dict.fromkeys(FEATURES, 0.0)
    wf, af = mac.weight_format, mac.act_format
    wb, ab = wf.bits, af.bits
    lanes = mac.pe * mac.simd
    kind = mac.product
    prod_bits = _product_bits(mac)
    if kind is ProductKind.XNOR:
        f["lane_xnor"] = lanes                  # one XNOR, folded into the popcount tree's first LUT level
        f["tree"] = mac.pe * _tree_bits(mac.simd, 1)
    else:
        if kind is ProductKind.MULTIPLY:
            f["lane_multiply"] = lanes * wb * ab     # partial-product bits of a b×b array multiplier
        elif kind is ProductKind.SHIFT:
            f["lane_shift"] = lanes * prod_bits * (wb - 1)  # (wb-1)-level barrel shifter, then ± select
        else:
            f[f"lane_{kind}"] = lanes * (ab + 1)     # ±x: one adder/mux bit per activation bit
        f["tree"] = mac.pe * _tree_bits(mac.simd, prod_bits)
    f["acc"] = mac.pe * mac.acc_bits                 # accumulate adder + restart mux per bit
    if rq is not None:
        n = rq.lanes
        f["rq_add"] = n * rq.sum_bits
        f["rq_mult"] = n * rq.sum_bits * rq.mult_bits
        f["rq_shift"] = n * rq.product_bits * rq.shift_bits
        f["rq_round"] = n * rq.product_bits * {Rounding.FLOOR: 0, Rounding.HALF_UP: 1, Rounding.HALF_EVEN: 2}[rq.rounding]
        f["rq_clip"] = n * (rq.product_bits + rq.out_format.bits)
    f["const"] = 1.0
    return f


def _tree_register_bits(mac: MacArraySpec) -> int:
    """Flip-flops of one row's adder-tree stages (hw/mac.py): each stage's group sums at the
    width their adders grow to (one bit per level; XNOR stage 0 is the signed Σ ±1 of its bits)."""
    fanins = mac.tree_fanins
    if mac.product is ProductKind.XNOR:
        g = fanins[0]
        widths = [(min(g, mac.simd - i)).bit_length() + 1 for i in range(0, mac.simd, g)]
        fanins = fanins[1:]
    else:
        widths = [_product_bits(mac)] * mac.simd
    total = sum(widths) if mac.product is ProductKind.XNOR else 0
    for g in fanins:
        widths = [max(group) + (len(group) - 1).bit_length() for group in
                  (widths[i:i + g] for i in range(0, len(widths), g))]
        total += sum(widths)
    return total


def block_ffs(mac: MacArraySpec, rq: RequantSpec | None) -> int:
    """Registers of the MAC array and four-stage requantizer (hw/mac.py, hw/requant.py).

    MAC: the operand registers (the weight and activation words of a beat), the product
    registers (one XNOR bit per lane for bipolar x bipolar), every adder-tree stage's sums and
    the accumulator per PE, plus valid/first/last of every stage before the accumulator, the
    output valid and the fresh-vector flag. Requantizer: per lane the biased, multiplied
    product and its shift, the floor and round-up bit, the clip decisions (fits, sign, up, two
    each for under and over, the unclipped code), the output code; four valid flags.
    """
    terms = mac.simd if mac.product is ProductKind.XNOR else mac.simd * _product_bits(mac)
    flags = 3 * (2 + len(mac.tree_fanins)) + 2
    n = mac.weight_word_bits + mac.act_word_bits + mac.pe * (terms + _tree_register_bits(mac) + mac.acc_bits) + flags
    if rq is not None:
        bipolar = rq.out_format.kind is Kind.BIPOLAR
        out_bits, clip_flags = (1, 0) if bipolar else (rq.out_format.bits, 7)  # bipolar never clips
        n += rq.lanes * (2 * (rq.product_bits + 1) + rq.shift_bits + 1 + clip_flags + 2 * out_bits) + 4
    return n


def load_coefficients(path: Path | None = None) -> dict:
    p = Path(path) if path else COEFFICIENTS_PATH
    if not p.is_file():
        raise FileNotFoundError(f"cost coefficients {p} do not exist: run 'python -m lowbit.hw.calibrate calibrate'")
    return json.loads(p.read_text())


def estimate_block(mac: MacArraySpec, rq: RequantSpec | None = None, family: str = "xilinx", *,
                   coefficients: dict | None = None) -> dict:
    """LUTs and FFs of one MAC array (+ requantizer) for ``family``, from the fitted model."""
    coeffs = coefficients or load_coefficients()
    if family not in coeffs.get("families", {}):
        raise ValueError(f"family must be one of {', '.join(coeffs.get('families', {}))}, not {family!r}")
    c = coeffs["families"][family]["lut"]
    f = features(mac, rq)
    luts = sum(c.get(k, 0.0) * v for k, v in f.items())
    return {"lut": max(1, round(luts)), "ff": block_ffs(mac, rq), "dsp": 0, "features": f}


# --- weight memories --------------------------------------------------------------------------

# (depth, width) shapes of one block RAM; LUTRAM: depth per LUT and whether the family has it.
_BRAM_SHAPES = {
    "ice40": [(256, 16), (512, 8), (1024, 4), (2048, 2)],                        # SB_RAM40_4K
    "ecp5": [(512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)],  # DP16KD
    "xilinx": [(512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)],  # RAMB18E1
}
_LUTRAM = {"ice40": None, "ecp5": 16, "xilinx": 64}  # bits of depth one LUT(-RAM) cell holds


def _check_family(family: str) -> None:
    if family not in _BRAM_SHAPES:
        raise ValueError(f"family must be one of {', '.join(_BRAM_SHAPES)}, not {family!r}")


def weight_memory(depth: int, width: int, family: str) -> dict:
    """Block RAMs or LUTRAM cells for a ``depth × width`` weight memory.

    Shallow memories go to LUTRAM where the family has it (≤ 64 deep on Xilinx: one
    RAM64X1S LUT6 per bit; ≤ 16 deep on ECP5: one DPR16X4 per 4 bits, 4 LUT4s), since a
    block RAM would waste most of its depth; otherwise the cheapest block-RAM shape.
    """
    _check_family(family)
    if depth < 1 or width < 1:
        return {"bram": 0, "lutram_luts": 0, "bits": 0}
    lr = _LUTRAM[family]
    if lr is not None and depth <= lr:
        luts = width if family == "xilinx" else 4 * math.ceil(width / 4)
        return {"bram": 0, "lutram_luts": luts, "bits": depth * width}
    bram = min(math.ceil(depth / d) * math.ceil(width / w) for d, w in _BRAM_SHAPES[family])
    return {"bram": bram, "lutram_luts": 0, "bits": depth * width}


#: the deepest synchronous-read ROM yosys builds from LUTs rather than block RAM, per family, measured on SFC
#: builds (2026-12-03): synth_xilinx made 128- to 256-deep weight ROMs LUT6 + MUXF7/MUXF8 and put 448-deep
#: and deeper ones in RAMB18; synth_ecp5 put every weight ROM deeper than 16 words in DP16KD
_ROM_IN_LUTS = {"ice40": 0, "ecp5": 16, "xilinx": 256}
_LUT_INPUTS = {"ice40": 4, "ecp5": 4, "xilinx": 6}


def rom_memory(depth: int, width: int, family: str, *, sync: bool = True) -> dict:
    """Block RAMs or LUTs for a ``depth × width`` ROM (a memory initialised and never written).

    The weight memories read synchronously: block RAM unless shallow enough that yosys
    builds them from LUTs (:data:`_ROM_IN_LUTS`). The parameter memories read
    combinationally (``sync=False``), which no block RAM does: always LUTs. A LUT of k
    inputs holds 2^k words of one bit (the wide multiplexers behind them are free cells,
    PFUMX/L6MUX on ECP5, MUXF7/MUXF8 on Xilinx): ``width · ceil(depth / 2^k)`` LUTs.
    """
    _check_family(family)
    if depth < 1 or width < 1:
        return {"bram": 0, "lutram_luts": 0, "bits": 0}
    if sync and depth > _ROM_IN_LUTS[family]:
        return weight_memory(depth, width, family)
    luts = width * math.ceil(depth / (1 << _LUT_INPUTS[family]))
    return {"bram": 0, "lutram_luts": luts, "bits": depth * width}


def block_ram_floor(depth: int, width: int, family: str) -> int:
    """The fewest block RAMs a ``depth × width`` memory read one word per cycle can take:
    ``max(ceil(bits / block bits), ceil(width / widest port))`` (ECP5 DP16KD and Xilinx RAMB18:
    18,432 bits, 36-bit ports; iCE40 SB_RAM40_4K: 4,096 bits, 16-bit ports), 0 for a memory
    shallow enough for LUTRAM (see :func:`weight_memory`). What a mapping is measured against."""
    _check_family(family)
    lr = _LUTRAM[family]
    if depth < 1 or width < 1 or (lr is not None and depth <= lr):
        return 0
    block_bits = max(d * w for d, w in _BRAM_SHAPES[family])
    port = max(w for _, w in _BRAM_SHAPES[family])
    return max(math.ceil(depth * width / block_bits), math.ceil(width / port))


def estimate_layer(rows: int, cols: int, pe: int, simd: int, weight_format, act_format, out_format="u4", *,
                   family: str = "xilinx", mult_bits: int = 0, shift_bits: int = 4, rounding="half_even",
                   relu: bool = True, coefficients: dict | None = None) -> dict:
    """Cost and cycles of one fully connected layer on a PE×SIMD MVAU with streamed weights.

    ``rows`` outputs and ``cols`` inputs must divide by ``pe`` and ``simd`` (FINN's folding
    rule). Returns LUTs (compute + LUTRAM), FFs, BRAM, DSP and ``cycles`` per input vector.
    """
    for name, v in (("rows", rows), ("cols", cols)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v!r}")
    if rows % pe:
        raise ValueError(f"pe must divide rows ({rows}), not {pe!r}")
    if cols % simd:
        raise ValueError(f"simd must divide cols ({cols}), not {simd!r}")
    beats = cols // simd
    mac = MacArraySpec(pe=pe, simd=simd, weight_format=weight_format, act_format=act_format, beats=beats)
    rq = RequantSpec(lanes=pe, acc_bits=mac.acc_bits, out_format=out_format, bias_bits=mac.acc_bits,
                     mult_bits=mult_bits, shift_bits=shift_bits, rounding=rounding, relu=relu)
    blk = estimate_block(mac, rq, family, coefficients=coefficients)
    depth = (rows // pe) * beats
    mem = weight_memory(depth, mac.weight_word_bits, family)
    return {"lut": blk["lut"] + mem["lutram_luts"], "ff": blk["ff"], "bram": mem["bram"], "dsp": 0,
            "lutram_luts": mem["lutram_luts"], "weight_bits": rows * cols * mac.weight_format.bits,
            "cycles": depth, "compute_lut": blk["lut"]}


# --- calibration ----------------------------------------------------------------------------------

# (weight, act, out): each product kind, several widths.
_FORMATS = [("bipolar", "bipolar", "bipolar"), ("bipolar", "u2", "u2"), ("ternary", "u4", "u4"),
            ("s2", "u2", "u2"), ("s4", "u4", "u4"), ("s8", "s8", "s8"), ("pow2_4", "u4", "u4")]
# small enough that the whole grid synthesizes in a few minutes on 2 cores
_SHAPES = [(2, 4), (4, 8)]
_RQ = [("half_even", 0), ("floor", 0), ("half_up", 8)]

CALIBRATION_GRID = [(w, a, o, pe, simd, *_RQ[(i + j) % len(_RQ)])
                    for i, (w, a, o) in enumerate(_FORMATS) for j, (pe, simd) in enumerate(_SHAPES)]


def block_specs(w, a, o, pe, simd, rounding="half_even", mult_bits=0, beats=4):
    mac = MacArraySpec(pe=pe, simd=simd, weight_format=w, act_format=a, beats=beats)
    rq = RequantSpec(lanes=pe, acc_bits=mac.acc_bits, out_format=o, bias_bits=mac.acc_bits, mult_bits=mult_bits,
                     shift_bits=4, rounding=rounding, relu=parse_format(o).kind is Kind.UNSIGNED)
    return mac, rq


if __name__ == "__main__":  # the calibration command moved with the code that synthesizes blocks
    import sys

    print("the cost-model calibration moved: run 'python -m lowbit.hw.calibrate calibrate' "
          "(or 'python -m lowbit.hw.calibrate lanes')", file=sys.stderr)
    sys.exit(2)
