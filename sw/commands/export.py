"""``lowbit export``: an integer IR network (.npz) → a QONNX model that qonnx's executor runs."""

from __future__ import annotations

from .train import add_dataset_arguments, resolve_dataset

HELP = "export an integer IR network as a QONNX model (FINN and hls4ml read it)"
DESCRIPTION = ("Write lowbit's integer network as QONNX: integer weights as initializers with their QONNX datatypes, "
               "the input transform and every requantizer as nodes that reproduce lowbit's rounding exactly, "
               "max-pools on the codes; the output is the raw integer logits. The file is then run by qonnx's own "
               "executor on --check-images test images and compared with lowbit's golden model on every output; "
               "any difference is an error and the file is not kept.")


def add_arguments(parser) -> None:
    parser.add_argument("ir", metavar="NET.npz", help="IR file written by lowbit quantize or lowbit import")
    parser.add_argument("-o", "--output", default=None, metavar="NET.onnx",
                        help="QONNX path (default: NET's path with .onnx)")
    parser.add_argument("--check-images", type=int, default=1000,
                        help="test images the export is checked on against the golden model (0: no check)")
    add_dataset_arguments(parser)


def run(args) -> int:
    import os
    import time
    from pathlib import Path

    import numpy as np

    from lowbit.sw.export_qonnx import export_qonnx, qonnx_outputs
    from lowbit.sw.golden import run_network
    from lowbit.sw.ir import Network

    if args.check_images < 0:
        raise ValueError(f"--check-images must be a non-negative integer, not {args.check_images!r}")
    net = Network.load(args.ir)
    out = Path(args.output or Path(args.ir).with_suffix(".onnx"))
    if out.suffix != ".onnx":
        raise ValueError(f"--output must name a .onnx file, not {str(out)!r}")
    t0 = time.perf_counter()
    staged = out.with_name(f".{out.name}.export-{os.getpid()}.onnx")  # checked before it replaces a previous file
    try:
        summary = export_qonnx(net, staged)
        if args.check_images:
            ds = resolve_dataset(args)
            if ds.features != net.in_features:
                raise ValueError(f"dataset {ds.name!r} has {ds.features} features but {args.ir!r} takes "
                                 f"{net.in_features}")
            px = ds.x_test[:args.check_images]
            theirs = np.asarray(qonnx_outputs(staged, px))
            ours = run_network(net, px, raw_pixels=True, keep="logits").logits
            diff = int(np.count_nonzero(theirs != ours))
            if diff:
                raise ValueError(f"qonnx's execution of the export differs from the golden model in {diff} of "
                                 f"{ours.size} outputs on {len(px)} {ds.name} test images; nothing was written")
            print(f"qonnx's executor == golden model on every output of {len(px)} {ds.name} test images "
                  f"({ours.size} logits)")
        os.replace(staged, out)
    finally:
        staged.unlink(missing_ok=True)
    ops = summary.get("ops")
    print(f"exported {net.name}: {', '.join(ops) if ops else ''} ({out.stat().st_size:,} bytes, "
          f"{time.perf_counter() - t0:.1f} s) → {out}")
    return 0
