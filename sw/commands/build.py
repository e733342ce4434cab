"""``lowbit build``: a whole-network accelerator from an integer IR."""

from __future__ import annotations

HELP = "build a network accelerator: Verilog top, memory images (hex/mem, coe, mif, bin) and manifest.json"
DESCRIPTION = """\
Turn an integer IR network (.npz from 'lowbit quantize') into a streaming accelerator: one
folded matrix-vector unit per dense layer (PE parallel outputs x SIMD parallel inputs; a layer
takes NF*SF = (rows/PE)*(cols/SIMD) cycles per image), a sliding-window unit before the
matrix-vector unit of each convolution (OH*OW im2col vectors per image, zero padding made on
the fly), a max-pool unit per max-pool layer, shift/clip requantizers, FIFOs between layers,
an argmax at the end, and cycle/stall counters.

Writes into --output: lowbit_net.v (memories embedded as initial values, equal to the image
files by construction), one image file per memory bank and format, net.npz (the IR), and
manifest.json (memories with sha256, I/O protocol, port map, folding, expected cycles).

Folding: --fold "16x16,16x16,16x16,10x16" (PExSIMD per layer, or one for all) or automatic
with --max-lanes N (fastest folding within N MAC lanes) or --target-cycles N (fewest lanes
reaching N cycles per image); --objective balanced instead takes the folding with the most
images/s per MAC lane (the fewest idle lane-cycles) within the budget or target.
PE must divide the layer's outputs and SIMD its inputs.
A convolution folds as its matrix (PE | out channels, SIMD | KH*KW*C, and SIMD divides C or
is a multiple of C dividing KW*C); a max-pool's entry is its PE alone (channels per beat,
a divisor of C): e.g. --fold "32x5,4,8x32,2,8x64,10x8" for lenet. Each unit's cycles per
image are printed and written to the manifest; the image rate is the slowest unit's, and the
MAC efficiency sum(MACs) / (II * lanes) says how much of the lanes' time does a MAC.
"""


def add_arguments(p):
    from .common import add_output_argument, positive_int

    p.add_argument("net", nargs="?", help="integer IR file (.npz); or use --random")
    add_output_argument(p, "build/net", "output folder (replaced as a whole)")
    p.add_argument("--fold", default=None, help="PExSIMD per layer, comma separated (default: auto)")
    p.add_argument("--max-lanes", type=positive_int, default=None, help="auto fold: total MAC lane budget")
    p.add_argument("--target-cycles", type=positive_int, default=None, help="auto fold: cycles per image")
    p.add_argument("--objective", default="fastest", choices=["fastest", "balanced"],
                   help="auto fold: 'fastest' (default) takes the smallest initiation interval II within "
                        "--max-lanes (with --target-cycles: the fewest lanes reaching it); 'balanced' the "
                        "most images/s per MAC lane, i.e. the smallest II*lanes (the highest MAC efficiency "
                        "sum(MACs)/(II*lanes)), among equals the fastest (with --target-cycles: the fewest "
                        "lanes); it may use far fewer lanes than the budget")
    p.add_argument("--formats", default="hex,mem,coe,mif,bin", help="memory image formats to write")
    p.add_argument("--memories", default="embedded", choices=["embedded", "readmemh"],
                   help="embedded: the Verilog holds every memory's initial words; readmemh: weight and "
                        "parameter memories load their .hex image with $readmemh (file name only: keep the "
                        ".hex files beside the Verilog or in the tool's working directory)")
    p.add_argument("--no-sim-model", action="store_true",
                   help="skip lowbit_net_sim.v, the faster simulation model that 'lowbit sim' runs by default "
                        "(then simulate with 'lowbit sim --model synthesis')")
    g = p.add_argument_group("random network (instead of NET)")
    g.add_argument("--random", default=None, metavar="SIZES", help="e.g. 784,256,256,256,10")
    g.add_argument("--weight", default="s4", help="weight format of the random network")
    g.add_argument("--act", default="u4", help="activation format of the random network")
    g.add_argument("--seed", type=int, default=0)


def load_net(args):
    from lowbit.sw.cli import UserError
    from lowbit.sw.ir import Network
    from lowbit.sw.randnet import random_network

    if (args.net is None) == (args.random is None):
        raise UserError("give either NET (an IR .npz file) or --random SIZES, not both or neither")
    if args.net:
        return Network.load(args.net)
    try:
        sizes = [int(v) for v in args.random.split(",")]
    except ValueError:
        raise UserError(f"--random must be comma-separated layer sizes like 784,256,10, not {args.random!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise UserError(f"--random needs at least two positive sizes, not {args.random!r}")
    return random_network(sizes, args.weight, args.act, seed=args.seed)


def choose_plan(net, fold: str | None, max_lanes: int | None, target_cycles: int | None,
                objective: str = "fastest"):
    from lowbit.sw.cli import UserError
    from lowbit.sw.fold import auto_fold, parse_fold, plan_folding

    if fold and (max_lanes or target_cycles):
        raise UserError("give --fold or an automatic target (--max-lanes / --target-cycles), not both")
    if fold:
        if objective != "fastest":
            raise UserError(f"give --fold or --objective {objective} (an automatic fold's objective), not both")
        return plan_folding(net, parse_fold(fold, len(net.layers)))
    if max_lanes is None and target_cycles is None:
        max_lanes = 256
    return auto_fold(net, max_lanes=max_lanes, target_cycles=target_cycles, objective=objective)


def run(args) -> int:
    import time

    from lowbit.hw.build import build_network

    from .common import output_dir

    out = output_dir(args.output)
    net = load_net(args)
    plan = choose_plan(net, args.fold, args.max_lanes, args.target_cycles, args.objective)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    t0 = time.perf_counter()
    manifest = build_network(net, plan, out, formats=formats, memories=args.memories,
                             simulation_model=not args.no_sim_model)
    print(net.describe())
    print(f"folding {plan} ({plan.mac_lanes} MAC lanes)")
    for op in manifest["folding"]:
        print(f"  layer {op['index']} {op['name']} ({op['op']}): {op['summary']}")
    print(f"expected: {manifest['expected_cycles_per_image']} cycles per image (initiation interval), "
          f"MAC efficiency {manifest['mac_efficiency']:.3f} (sum of MACs / (II x {manifest['mac_lanes']} lanes))")
    sim = manifest["simulation_model"]
    if sim:
        checked = ", ".join(f"{c['weight']} x {c['act']} ({c['code_pairs']} code pairs)" for c in sim["lane_multiplier_check"])
        print(f"simulation model {sim['file']}: digit multipliers equal '*' on every code pair of "
              f"{checked or 'no general-multiplier layer'}")
    netlists = f"{manifest['top']}.v" + (f", {sim['file']}" if sim else "")
    print(f"wrote {out}/ ({len(manifest['memories'])} memories x {len(formats)} formats, "
          f"{netlists}, manifest.json) in {time.perf_counter() - t0:.1f} s")
    return 0
