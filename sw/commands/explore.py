"""``lowbit explore``: sweep methods × bit widths × folding for accuracy, throughput and cost."""

from __future__ import annotations

HELP = "sweep quantization methods x bit widths x folding: accuracy, cycles, LUTs, fmax, images/s, Pareto plots"
DESCRIPTION = """\
Sweep post-training quantization methods and bit widths of a float32 preset (MLP or CNN) across
MAC-lane budgets (folding), and report for every point: golden-model test accuracy (the hardware
equals it bit for bit), cycles per image from the analytical folding model (the slowest op of the
folded network, named in the bottleneck column), LUTs/FFs/BRAM from the analytical cost model, and
images/s = fmax / cycles. A few points are synthesized with yosys (+ nextpnr for the
fmax) on --target and a few are run in Verilator on --sim-images test images to check the cycle
model; every number says whether it is "model", "yosys" or "nextpnr"/"nominal".

Writes to --output: results.csv, results.json, report.md (including Su et al.'s comparison: images/s per
kLUT per bit width at matched accuracy, threshold --match), pareto_accuracy_vs_images_per_s.png,
pareto_accuracy_vs_luts.png, efficiency_by_bits.png, and cache/ with one JSON per point: a rerun
skips finished points (resume after an interruption), a failing point is recorded with its error.

--config default: TFC on Fashion-MNIST, pow2/scaled/ternary/binary at 1/2/4/8 bits post-training and
with 2 epochs of QAT at <= 4 bits, lane budgets
16/64/256/1024, 4 points synthesized on ecp5-25k, 2 simulated (about 10 minutes on 2 cores).
--config small: digits, TFC, scaled/binary at 1/4 bits, 2 lane budgets, cost model only (seconds).
--preset sfc or lfc takes the same configurations with its own network.

The CNN presets have configurations of their own (a CNN's layers differ in work by 100x, so the
lane budgets an MLP needs mean nothing there; each CNN gets budgets spanning its useful range):
--preset cnn_digits (8x8 digits only): default: the 4 methods at 1/2/4/8 bits, with 10 epochs of QAT
at <= 4 bits, lane budgets 16/64/256 (about 9,216/1,536/384 cycles per image), 2 points synthesized on
ecp5-25k, 2 simulated (72 points, about 7 minutes on 2 cores); small: pow2/ternary at 2/4 bits,
lanes 16/64, cost model only (seconds).
--preset lenet (28x28 images: Fashion-MNIST or MNIST): default: the 4 methods at 1/2/4/8 bits
post-training only (QAT takes minutes per LeNet point; --qat-epochs adds it), lane budgets
256/512/1024/2048 (about 20,480/10,240/5,120/2,989 cycles per image; past about 1,700 lanes the
first layer's sliding window bounds LeNet at 2,989), accuracy on all 10,000 test images (about 40 s
per network), 1 point synthesized on ecp5-85k, 1 simulated; small: pow2 at 2/4 bits, lanes
512/2048, cost model only (about a minute).
A CNN preset and a --dataset of another image size are refused.
Options given explicitly override the configuration's values.
"""


def _ints(text: str, name: str) -> tuple:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers, not {text!r}") from None
    if not vals:
        raise ValueError(f"{name} must list at least one integer, not {text!r}")
    return vals


def add_arguments(p) -> None:
    from lowbit.sw.explore import CONFIGS
    from lowbit.sw.synth import TARGETS
    from lowbit.sw.train import PRESET_NAMES

    from .common import add_output_argument

    p.add_argument("--config", default="default", choices=list(CONFIGS), help="base sweep configuration")
    p.add_argument("--preset", default=None, choices=list(PRESET_NAMES),
                   help="MLP (tfc, sfc, lfc) or CNN preset (lenet, cnn_digits: configurations of their own)")
    p.add_argument("--dataset", default=None,
                   help="fashion-mnist, mnist, digits or auto (a CNN preset: the image size it is made for)")
    p.add_argument("--data", default=None, metavar="FILE.npz",
                   help="your own data instead of --dataset (see lowbit train --help)")
    p.add_argument("--methods", default=None, help="comma-separated post-training methods")
    p.add_argument("--bits", default=None, help="comma-separated bit widths")
    p.add_argument("--lanes", default=None, help="comma-separated MAC-lane budgets (folding)")
    p.add_argument("--target", default=None, choices=list(TARGETS), help="synthesis target (and cost-model family)")
    p.add_argument("--synth", type=int, default=None, metavar="N", help="points to synthesize (0: cost model only)")
    p.add_argument("--synth-max-lut", type=int, default=None, help="synthesize only points of at most this many model LUTs")
    p.add_argument("--sim", type=int, default=None, metavar="N", help="points to spot-check in Verilator")
    p.add_argument("--sim-images", type=int, default=None, help="test images per simulated point")
    p.add_argument("--qat-epochs", type=int, default=None, help="also quantization-aware points (b <= 4); 0: none")
    p.add_argument("--match", default=None,
                   help="accuracy threshold of the Su et al. comparison: float-N (N points below float32) or a percentage")
    p.add_argument("--epochs", type=int, default=None, help="float32 training epochs (checkpoint reused)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--calib", type=int, default=None, help="calibration images")
    p.add_argument("--test-images", type=int, default=None, help="test images for accuracy (0: all)")
    p.add_argument("--workers", type=int, default=2, help="local worker processes (0: in this process)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on an existing Dask distributed cluster (e.g. tcp://127.0.0.1:8786) instead")
    add_output_argument(p, "build/explore", "output folder (its cache/ makes reruns resume)", "--out")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def config_from_args(args):
    """The sweep configuration: ``--config`` for ``--preset`` (a CNN preset has configurations of
    its own) with every given option replacing its value."""
    import dataclasses

    from lowbit.sw.explore import named_config

    over = {}
    for name in ("dataset", "target", "synth", "synth_max_lut", "sim", "sim_images", "qat_epochs", "match", "epochs",
                 "seed", "calib", "test_images"):
        v = getattr(args, name)
        if v is not None:
            over[name] = v
    if args.data is not None:
        from .train import dataset_name

        over["dataset"] = dataset_name(args, default=None)
    if args.methods is not None:
        over["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if args.bits is not None:
        over["bits"] = _ints(args.bits, "--bits")
    if args.lanes is not None:
        over["lanes"] = _ints(args.lanes, "--lanes")
    return dataclasses.replace(named_config(args.config, args.preset), **over)


def run(args) -> int:
    from lowbit.sw.explore import run_sweep

    from .common import output_dir, output_option

    cfg = config_from_args(args)
    out = output_dir(args.output, param=output_option(args))
    if args.workers < 0:
        raise ValueError(f"--workers must be a non-negative integer, not {args.workers!r}")
    res = run_sweep(cfg, out, workers=args.workers, scheduler=args.scheduler, progress=args.progress)
    print(f"match threshold {100 * res.threshold:.2f}% ({cfg.match}); images/s per kLUT at matched accuracy:")
    for s in res.su:
        eff = f"{s['efficiency']:,.1f} ({s['point']}, {100 * s['accuracy']:.2f}%)" if s["efficiency"] else \
            f"none (best {100 * s['best_accuracy']:.2f}%)"
        print(f"  {s['bits']}-bit: {eff}")
    return 1 if not res.rows else 0
