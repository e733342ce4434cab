"""``lowbit gen``: one hardware block's Verilog and its spec/port-map JSON."""

from __future__ import annotations

HELP = "write the Verilog of one block (MAC array, requantizer, or both) with its spec and port map"
DESCRIPTION = """\
Generate one hardware block from command-line parameters and write <name>.v and <name>.json
(the spec and the port map: where each field and lane sits in the flat Verilog ports).

blocks:
  mac          PE x SIMD multiply-accumulate array (stream in: x, w, last; stream out: PE sums)
  requant      shift/clip requantizer (stream in: acc, bias, shift[, mult] per lane)
  mac-requant  the MAC array feeding its requantizer; bias/shift/mult are static input ports

The multiplier is chosen by format: XNOR-popcount for bipolar x bipolar, negation for bipolar
weights, add/subtract/skip for ternary, shift for pow2 weights, a multiplier otherwise.
Formats: sN (signed, N=2..16), uN (unsigned, N=1..16), bipolar, ternary, pow2_N (weights only).
"""


def add_arguments(p):
    from .common import add_output_argument, positive_int

    p.add_argument("block", choices=["mac", "requant", "mac-requant"], help="which block")
    add_output_argument(p, "build/gen", "output folder (not inside the source tree)")
    p.add_argument("--name", default=None, help="Verilog module name (default: the block name with _ for -)")
    g = p.add_argument_group("MAC array")
    g.add_argument("--pe", type=positive_int, default=8, help="parallel outputs (rows)")
    g.add_argument("--simd", type=positive_int, default=8, help="parallel inputs (columns) per beat")
    g.add_argument("--weight", default="s4", help="weight format")
    g.add_argument("--act", default="u4", help="activation format")
    g.add_argument("--beats", type=positive_int, default=1, help="most beats accumulated per output (column fold)")
    g.add_argument("--acc-bits", type=int, default=None, help="accumulator width (default: the worst-case bound)")
    g = p.add_argument_group("requantizer")
    g.add_argument("--out", default="u4", help="output format")
    g.add_argument("--relu", action="store_true", help="clip at 0 from below")
    g.add_argument("--rounding", default="half_even", help="floor, half_up or half_even")
    g.add_argument("--mult-bits", type=int, default=0, help="multiplier width (0: pure shift)")
    g.add_argument("--shift-bits", type=int, default=4, help="shift width (shifts up to 2^bits-1, at most 48)")
    g.add_argument("--bias-bits", type=int, default=None, help="bias width (default: accumulator width)")
    g.add_argument("--lanes", type=positive_int, default=None, help="requant block only: lanes (default --pe)")


def run(args) -> int:
    from lowbit.hw.emit import emit
    from lowbit.sw.specs import MacArraySpec, RequantSpec

    from .common import output_dir

    out = output_dir(args.output)
    name = args.name or args.block.replace("-", "_")
    mac = None
    if args.block in ("mac", "mac-requant"):
        mac = MacArraySpec(pe=args.pe, simd=args.simd, weight_format=args.weight, act_format=args.act,
                           beats=args.beats, acc_bits=args.acc_bits)
    if args.block == "mac":
        from lowbit.hw.mac import MacArray
        v, j = emit(MacArray(mac), name, out, {"block": "mac", "mac": mac.to_json()})
    else:
        acc_bits = mac.acc_bits if mac else (args.acc_bits or 16)
        rq = RequantSpec(lanes=args.lanes or args.pe, acc_bits=acc_bits, out_format=args.out,
                         bias_bits=args.bias_bits or acc_bits, mult_bits=args.mult_bits,
                         shift_bits=args.shift_bits, rounding=args.rounding, relu=args.relu)
        if args.block == "requant":
            from lowbit.hw.requant import Requantizer
            v, j = emit(Requantizer(rq), name, out, {"block": "requant", "requant": rq.to_json()})
        else:
            from lowbit.hw.blocks import MacRequantBlock
            v, j = emit(MacRequantBlock(mac, rq), name, out,
                        {"block": "mac-requant", "mac": mac.to_json(), "requant": rq.to_json()})
    print(f"wrote {v}\nwrote {j}")
    if mac:
        print(f"MAC array {mac.pe}x{mac.simd}, {mac.weight_format} weights x {mac.act_format} activations, "
              f"{mac.product} lanes, {mac.acc_bits}-bit accumulators (worst case {mac.acc_range[0]}..{mac.acc_range[1]})")
    return 0
