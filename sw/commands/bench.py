"""``lowbit bench``: the speed and throughput figures, measured."""

from __future__ import annotations

HELP = "benchmarks: golden model and packing speed, Verilator build/sim times, bit-exact runs on 10,000 images"
DESCRIPTION = """\
Measures and prints:
  * golden-model inference speed (images/s, numpy int64) and weight packing time for SFC;
  * for SFC (784-256-256-256-10) at 16x16 folding and LeNet (32C5-MP2-64C5-MP2-512FC-10, folded
    automatically for 4,096 cycles per image), quantized W1A1 (binary), W2A2, W4A4, W8A8 (pow2)
    and ternary (A8): Verilator build time, simulation of --images test images (bit-exact check of
    every output), simulated images/s, measured cycles per image against the analytical bound
    (ratio), latency, and projected images/s at --clock-mhz.
The simulated images/s is also given as a ratio to its target (SFC 200, LeNet 25 images/s).
  * importing a user's 10 MB float ONNX model (an MLP 784-1024-1024-1024-10, 11.7 MB) including its
    check against onnxruntime on 1,000 test images: best of 3, against the 20 s target.
Each preset is trained (10 epochs, cached in build/models) the first time it is needed.
--model picks the netlist (default: the build's simulation model; 'synthesis' runs the FPGA's
Verilog).
Results go to --output as bench.json and bench.md.
"""

SIM_TARGET = 200  # simulated images/s asked of SFC at 16x16 folding

NETS = [  # (name, preset, method, weight bits, act bits, quantizer options)
    ("SFC W1A1 binary", "sfc", "binary", 1, 1, {}),
    ("SFC W2A2 pow2", "sfc", "pow2", 2, 2, {}),
    ("SFC W4A4 pow2", "sfc", "pow2", 4, 4, {}),
    ("SFC W8A8 pow2", "sfc", "pow2", 8, 8, {}),
    ("SFC ternary A8", "sfc", "ternary", 2, 8, {}),
    # LeNet (WAGE's 32C5-MP2-64C5-MP2-512FC-10), folded for about LENET_CYCLES cycles per image;
    # the binary network keeps 8-bit pixels into its first layer, as FINN's do
    ("LeNet W1A1 binary (8-bit input)", "lenet", "binary", 1, 1, {"input_bits": 8}),
    ("LeNet W2A2 pow2", "lenet", "pow2", 2, 2, {}),
    ("LeNet W4A4 pow2", "lenet", "pow2", 4, 4, {}),
    ("LeNet W8A8 pow2", "lenet", "pow2", 8, 8, {}),
    ("LeNet ternary A8", "lenet", "ternary", 2, 8, {}),
]
SFC_FOLD = "16x16,16x16,16x16,10x16"
SIM_TARGETS = {"sfc": SIM_TARGET, "lenet": 25}  # simulated images/s asked of each preset
LENET_CYCLES = 4096  # the convolutional-hardware issue's Verilator point


def _net_indices(text: str) -> list[int]:
    """``--nets``: comma-separated indices into :data:`NETS`."""
    import argparse

    try:
        picked = [int(t) for t in text.split(",")]
    except ValueError:
        picked = None
    if not picked or any(not 0 <= i < len(NETS) for i in picked):
        raise argparse.ArgumentTypeError(f"must be comma-separated indices 0..{len(NETS) - 1}, not {text!r}")
    return picked


def add_arguments(p):
    from .common import add_output_argument, positive_int

    add_output_argument(p, "build/bench", "output folder")
    p.add_argument("--images", type=positive_int, default=10000, help="test images per network")
    p.add_argument("--nets", default=",".join(str(i) for i in range(len(NETS))),
                   type=_net_indices,
                   help="which networks (indices into: " + "; ".join(f"{i}={n[0]}" for i, n in enumerate(NETS)) + ")")
    from .train import add_data_argument

    add_data_argument(p)
    p.add_argument("--clock-mhz", type=float, default=100.0)
    p.add_argument("--model", default="simulation", choices=["simulation", "synthesis"],
                   help="netlist simulated (see lowbit sim --help)")


IMPORT_TARGET_S = 20.0  # a 10 MB ONNX model, check included, on 2 cores


def _import_bench(ds, out, repeats: int = 3) -> dict:
    """Time ``lowbit quantize --model``'s import step (load, convert, fold, check on 1,000 test images) on a
    ~10 MB float ONNX MLP with random weights; best of ``repeats``."""
    import time
    import warnings

    import torch
    from torch import nn

    from lowbit.sw.frontends.common import finish_import
    from lowbit.sw.frontends.onnx import convert_onnx

    torch.manual_seed(0)
    sizes = [ds.features, 1024, 1024, 1024, ds.classes]
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    path = out / "import_bench.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(nn.Sequential(*layers).eval(), torch.zeros(1, ds.features), str(path), dynamo=False)
    mb = path.stat().st_size / 1e6
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, rel = finish_import(convert_onnx(path), ds.x_test[:1000])
        times.append(time.perf_counter() - t0)
    path.unlink()
    best = min(times)
    print(f"import: {mb:.1f} MB ONNX MLP {'-'.join(map(str, sizes))}, checked on 1000 test images (max|diff| "
          f"{rel:.1e} of max|logit|): best {best:.2f} s of {repeats} ({best / IMPORT_TARGET_S:.3f}x the "
          f"{IMPORT_TARGET_S:g} s target)", flush=True)
    return {"megabytes": mb, "best_seconds": best, "seconds": times, "max_rel_diff": rel,
            "target_seconds": IMPORT_TARGET_S}


def run(args) -> int:
    import json
    import time

    import numpy as np

    from lowbit.hw.build import build_network, load_build
    from lowbit.sim.netrun import simulate_build
    from lowbit.sw.datasets import default_dataset, load_dataset
    from lowbit.sw.fold import auto_fold, parse_fold, plan_folding
    from lowbit.sw.golden import run_network
    from lowbit.sw.pack import weight_banks
    from lowbit.sw.quant import quantize
    from lowbit.sw.train import load_or_train
    from lowbit.sw.util import write_files

    from .common import output_dir

    out = output_dir(args.output)
    out.mkdir(parents=True, exist_ok=True)
    name, why = (args.data, None) if args.data else default_dataset()
    if why:
        print(f"note: {why}")
    ds = load_dataset(name)
    name = ds.name
    presets = sorted({NETS[i][1] for i in args.nets}, key=["sfc", "lenet"].index)
    models = {}
    for preset in presets:
        if preset == "lenet" and ds.image_shape != (28, 28):
            raise ValueError(f"--nets picks LeNet, which takes 28x28 images, but the data set here is {name} "
                             f"{ds.image_shape}{f' ({why})' if why else ''}; install Fashion-MNIST, give --data "
                             "with 28x28 images, or pick SFC networks only")
        models[preset] = load_or_train(preset, ds, epochs=10, seed=0)
    results = {"dataset": name, "float32_accuracy": {p: info["test_accuracy"] for p, (_, info) in models.items()},
               "networks": []}

    if "sfc" in models:
        net = quantize(models["sfc"][0], "pow2", 4, 4, ds.x_train[:4000], progress=False)
        t0 = time.perf_counter()
        run_network(net, ds.x_test, raw_pixels=True)
        dt = time.perf_counter() - t0
        results["golden_images_per_second"] = len(ds.x_test) / dt
        t0 = time.perf_counter()
        weight_banks(net.layers[0], 16, 16)
        results["pack_seconds_784x256"] = time.perf_counter() - t0
        print(f"golden model: {results['golden_images_per_second']:,.0f} images/s (SFC W4A4, numpy int64); "
              f"packing 784x256 s4 at 16x16: {1000 * results['pack_seconds_784x256']:.1f} ms")

    results["onnx_import"] = _import_bench(ds, out)

    rows = []
    for idx in args.nets:
        label, preset, method, wb, ab, opts = NETS[idx]
        qnet = quantize(models[preset][0], method, wb, ab, ds.x_train[:4000], progress=False, **opts)
        if preset == "lenet":
            plan = auto_fold(qnet, target_cycles=LENET_CYCLES)
        else:
            fold = SFC_FOLD if qnet.in_features == 784 else "8x8,8x8,8x8,10x8"
            plan = plan_folding(qnet, parse_fold(fold, len(qnet.layers)))
        bdir = out / f"net{idx}"
        t0 = time.perf_counter()
        build_network(qnet, plan, bdir)
        gen_s = time.perf_counter() - t0
        manifest, back = load_build(bdir)
        n = min(args.images, len(ds.x_test))
        print(f"{label}: folding {plan}, simulating {n} images ...", flush=True)
        rep = simulate_build(bdir, manifest, back, ds.x_test[:n], ds.y_test[:n], stress=50, model=args.model)
        target = SIM_TARGETS[preset]
        row = {"net": label, "model": rep.model, "fold": str(plan), "images": n, "mismatches": rep.mismatches,
               "hw_accuracy": rep.accuracy, "golden_accuracy": rep.golden_accuracy,
               "cycles_per_image": rep.cycles_per_image, "bound": plan.initiation_interval,
               "ratio": (rep.cycles_per_image or 0) / plan.initiation_interval, "latency": rep.latency_cycles,
               "generate_s": gen_s, "verilator_build_s": rep.run.build_seconds, "sim_s": rep.run.run_seconds,
               "sim_images_per_s": rep.sim_images_per_second, "sim_target": target,
               "projected_images_per_s": rep.projected_images_per_second(args.clock_mhz)}
        rows.append(row)
        print(f"  mismatches {row['mismatches']}, accuracy hw {100 * (row['hw_accuracy'] or 0):.2f}% = golden "
              f"{100 * (row['golden_accuracy'] or 0):.2f}%, cycles/image {row['cycles_per_image']} vs bound "
              f"{row['bound']} (ratio {row['ratio']:.3f}), build {row['verilator_build_s']:.0f} s, "
              f"{row['sim_images_per_s']:.0f} images/s simulated ({row['sim_images_per_s'] / target:.2f}x the "
              f"{target} images/s target, {rep.model} model)", flush=True)
    results["networks"] = rows
    lines = ["| network | model | images | mismatches | hw acc | golden acc | cycles/img | bound | ratio | latency | "
             "Verilator build s | sim images/s | projected images/s @%g MHz |" % args.clock_mhz,
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['net']} | {r['model']} | {r['images']} | {r['mismatches']} | {100 * (r['hw_accuracy'] or 0):.2f}% | "
                     f"{100 * (r['golden_accuracy'] or 0):.2f}% | {r['cycles_per_image']} | {r['bound']} | "
                     f"{r['ratio']:.3f} | {r['latency']} | {r['verilator_build_s']:.1f} | "
                     f"{r['sim_images_per_s']:.0f} | {r['projected_images_per_s']:,.0f} |")
    # the folder also holds the builds: the two result files are replaced, nothing else
    write_files(out, {"bench.json": json.dumps(results, indent=1), "bench.md": "\n".join(lines) + "\n"})
    print("\n".join(lines))
    ok = all(r["mismatches"] == 0 for r in rows)
    return 0 if ok else 1
