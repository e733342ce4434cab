"""``lowbit sim``: simulate a built accelerator on real test images, bit-exact against the golden model."""

from __future__ import annotations

HELP = "simulate a 'lowbit build' folder in cocotb (Verilator or Icarus) on real test images"
DESCRIPTION = """\
Stream test images through the built accelerator and compare every output (class and every
logit) with the numpy golden model. The first --stress images run with random valid gaps and
output stalls; the rest run at full rate and are timed with the accelerator's own cycle
counter. Prints mismatches, accuracy, measured cycles per image against the analytical bound,
latency, simulated images per second and projected images per second at --clock-mhz.
The image files are checked against the sha256 in manifest.json first. A simulation that does
not run to the end (a netlist that does not compile, a testbench that stops) compares nothing:
it is reported as such, with the simulator, the error and the log to read, and exits with 1.

--model simulation (default) runs the build's simulation model, lowbit_net_sim.v: the same
design with Verilog '*' lane multipliers (checked equal to the synthesized digit multipliers on
every code pair at build time) and pipeline data registers that hold in bubbles, several times
faster in Verilator. --model synthesis runs lowbit_net.v, the Verilog that goes to the FPGA.
"""


def add_arguments(p):
    from .common import add_output_argument, positive_int
    from .train import add_data_argument

    p.add_argument("dir", help="a folder written by 'lowbit build'")
    add_output_argument(p, None, "simulation folder: testbench, Verilator build, logs, waveforms "
                                 "(default: DIR_sim_<simulator>_<model> beside DIR)")
    p.add_argument("--dataset", default=None, help="fashion-mnist, mnist or digits (default: fashion-mnist if "
                                                   "installed, else digits)")
    p.add_argument("--data-dir", default=None, help="folder with IDX files (else $LOWBIT_DATA, then Debian's)")
    add_data_argument(p)
    p.add_argument("--images", type=positive_int, default=1000, help="test images to simulate")
    p.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])
    p.add_argument("--model", default="simulation", choices=["simulation", "synthesis"],
                   help="netlist to run: the build's simulation model (fast) or the synthesized Verilog")
    p.add_argument("--waves", action="store_true", help="dump waveforms (slow)")
    p.add_argument("--stress", type=int, default=50, help="images run with random gaps and stalls")
    p.add_argument("--clock-mhz", type=float, default=100.0, help="clock for the projected images/s")


def print_report(rep, clock_mhz: float, indent: str = "") -> None:
    r = rep
    print(f"{indent}netlist: {', '.join(r.verilog)} ({r.model} model)")
    print(f"{indent}{r.simulator} build {r.run.build_seconds:.1f} s, simulation {r.run.run_seconds:.1f} s "
          f"({r.sim_images_per_second:.0f} images/s simulated)")
    print(f"{indent}compared {r.images} images (class + every logit; {r.stress} with random gaps and "
          f"stalls): {r.mismatches} mismatches")
    for mm in r.first_mismatches:
        print(f"{indent}  image {mm['image']}: class {mm['class']} (expected {mm['expected_class']}), "
              f"logits {mm['logits']} (expected {mm['expected_logits']})")
    if r.accuracy is not None:
        print(f"{indent}accuracy: hardware {100 * r.accuracy:.2f}%, golden model {100 * r.golden_accuracy:.2f}%")
    if r.cycles_per_image:
        ratio = r.cycles_per_image / r.expected_cycles_per_image
        print(f"{indent}cycles per image: measured {r.cycles_per_image:.1f}, analytical bound "
              f"{r.expected_cycles_per_image} (ratio {ratio:.3f}); latency {r.latency_cycles} cycles")
        print(f"{indent}projected {r.projected_images_per_second(clock_mhz):,.0f} images/s at {clock_mhz:g} MHz")


def run(args) -> int:
    import sys
    from pathlib import Path

    from lowbit.hw.build import load_build
    from lowbit.sim.netrun import SimulationError, simulate_build
    from lowbit.sw.datasets import default_dataset, load_dataset

    from .common import output_dir

    # the simulation folder goes beside DIR unless --output names one: refuse the source tree
    build = output_dir(args.dir, param="DIR") if args.output is None else Path(args.dir).resolve()
    sim_dir = None if args.output is None else output_dir(args.output)
    manifest, net = load_build(build)
    from .train import dataset_name

    name = dataset_name(args, default=None)
    if name is None:
        name, why = default_dataset(args.data_dir)
        if why:
            print(f"note: {why}")
    ds = load_dataset(name, args.data_dir)
    px, labels = ds.x_test[:args.images], ds.y_test[:args.images]
    if px.shape[1] != net.in_features:
        raise ValueError(f"{'--data' if args.data else '--dataset'} {name} has {px.shape[1]} pixels per image but the network takes "
                         f"{net.in_features} inputs")
    print(f"simulating {len(px)} {ds.name} test images on {args.simulator} ({args.model} model) ...")
    try:
        rep = simulate_build(build, manifest, net, px, labels, simulator=args.simulator, waves=args.waves,
                             stress=args.stress, model=args.model, sim_dir=sim_dir)
    except SimulationError as e:
        # no outputs, so no mismatch count: the reason and the log instead
        sys.stdout.flush()
        print(f"lowbit sim: error: {e}", file=sys.stderr)
        print("=> FAILED: the simulation did not run, nothing was compared")
        return 1
    print_report(rep, args.clock_mhz)
    ok = rep.bit_exact
    print("=> bit-exact" if ok else "=> FAILED")
    return 0 if ok else 1
