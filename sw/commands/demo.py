"""``lowbit demo``: the main job on its default data, end to end."""

from __future__ import annotations

HELP = "run the main job end to end on default data (blocks, then a whole network) and print the proof"
DESCRIPTION = """\
The whole flow on its defaults:
  1. block proof: generate a 4-bit 8x8 MAC array with its requantizer, simulate it in Verilator
     against the numpy golden model, print the agreement and the cycle count;
  2. network: train (or reuse a cached) float32 network on Fashion-MNIST (digits when Fashion-MNIST
     is missing; cnn_digits always on digits), quantize it to integers, build the accelerator,
     simulate real test images bit-exactly in Verilator, print accuracy and throughput.
     --preset lenet or cnn_digits runs a convolutional network (sliding windows, max-pools).
Everything goes under --output (default build/demo).
"""


def add_arguments(p):
    from .common import add_output_argument, positive_int

    add_output_argument(p, "build/demo", "output folder")
    p.add_argument("--images", type=positive_int, default=1000, help="test images simulated in Verilator")
    p.add_argument("--preset", default="sfc", choices=["tfc", "sfc", "lfc", "lenet", "cnn_digits"],
                   help="network: an MLP (FINN/Brevitas sizes) or a CNN: lenet (28x28 Fashion-MNIST, built for "
                        "about 4,096 cycles per image) or cnn_digits (8x8 digits, small and quick)")
    p.add_argument("--method", default="pow2", help="quantization method (see lowbit quantize --help)")
    p.add_argument("--weight-bits", type=int, default=4)
    p.add_argument("--act-bits", type=int, default=4)
    p.add_argument("--skip-block", action="store_true", help="skip the block proof (step 1)")
    p.add_argument("--skip-network", action="store_true", help="skip the whole-network run (step 2)")


def block_proof(out) -> bool:
    from lowbit.sim.verify import verify_mac_requant
    from lowbit.sw.specs import MacArraySpec, RequantSpec

    mac = MacArraySpec(pe=8, simd=8, weight_format="s4", act_format="u4", beats=4)
    rq = RequantSpec(lanes=8, acc_bits=mac.acc_bits, out_format="u4", bias_bits=mac.acc_bits + 1, mult_bits=0,
                     shift_bits=4, rounding="half_even", relu=True)
    print(f"[1] block: MAC array 8x8 (s4 weights x u4 activations, {mac.acc_bits}-bit accumulators, "
          f"4 beats per vector) + requantizer (half_even, ReLU, u4)")
    result, verilog = verify_mac_requant(mac, rq, out / "block", n_random=200)
    r = result.report
    print(f"    Verilog: {verilog}")
    print(f"    Verilator build {result.build_seconds:.1f} s, simulation {result.run_seconds:.1f} s")
    print(f"    compared {r['compared']} vectors ({r['outputs_compared']} outputs, incl. {r['corner_vectors']} "
          f"saturation/rounding corners, random gaps and backpressure): {r['mismatches']} mismatches")
    print(f"    cycles at full rate: measured {r['cycles']}, analytical {r['expected_cycles']} "
          f"({r['beats']} beats + {r['expected_cycles'] - r['beats']} latency)")
    ok = result.passed and r["mismatches"] == 0 and r["cycles"] == r["expected_cycles"]
    print("    => bit-exact" if ok else "    => FAILED")
    return ok


def run(args) -> int:
    from .common import output_dir

    out = output_dir(args.output)
    ok = True
    if not args.skip_block:
        ok &= block_proof(out)
    if not args.skip_network:
        from .network_demo import network_demo

        ok &= network_demo(out, images=args.images, preset=args.preset, method=args.method,
                           weight_bits=args.weight_bits, act_bits=args.act_bits)
    return 0 if ok else 1
