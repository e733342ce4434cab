"""``lowbit import``: an already quantized QONNX model (Brevitas ``export_qonnx``) → integer IR (.npz)."""

from __future__ import annotations

from .train import add_dataset_arguments, resolve_dataset

HELP = "import a quantized QONNX model (Brevitas export_qonnx) as an integer IR network"
DESCRIPTION = ("Read a QONNX model — Quant / BipolarQuant nodes with their scales, bit widths and rounding, the float "
               "BatchNormalization Brevitas leaves between them, Conv, MatMul/Gemm, Relu, MaxPool, Flatten — and write "
               "lowbit's integer IR with the quantization taken as given (no method, nothing retrained). Every scale "
               "is mapped to an integer requantizer: power-of-two scales to exact shifts, others to a multiplier of "
               "at most --multiplier-bits bits; the import prints which layers are exact and, for the others, the "
               "worst relative error of the effective scale (never silently truncated). It then runs qonnx's own "
               "executor and lowbit's golden model on the test images and prints their class agreement and the "
               "share of logits equal after undoing the output scale. A float ONNX or torch model is quantized by "
               "'lowbit quantize --model' instead; a QCDQ export (QuantizeLinear/DequantizeLinear) is refused with "
               "the export to use.")


def add_arguments(parser) -> None:
    from .common import positive_int

    parser.add_argument("model", metavar="FILE", help="QONNX model (.onnx) written by Brevitas's export_qonnx")
    parser.add_argument("-o", "--output", default=None, metavar="NET.npz",
                        help="IR path (default build/ir/<FILE's stem>.npz)")
    parser.add_argument("--input-scale", type=float, default=None,
                        help="the model's float input is pixel * S (default 1/255, torchvision's ToTensor; 1 for a "
                             "file written by 'lowbit export', which takes raw pixels)")
    parser.add_argument("--multiplier-bits", type=positive_int, default=16,
                        help="widest requantizer multiplier for a scale that is not a power of two (at most 16)")
    parser.add_argument("--check-images", type=int, default=None,
                        help="test images compared with qonnx's execution (default: the whole test set)")
    add_dataset_arguments(parser)


def run(args) -> int:
    import time
    from pathlib import Path

    from lowbit.sw.frontends.qonnx import import_qonnx, qonnx_agreement

    if args.input_scale is not None and not args.input_scale > 0:
        raise ValueError(f"--input-scale must be a positive number, not {args.input_scale!r}")
    if args.check_images is not None and args.check_images < 1:
        raise ValueError(f"--check-images must be at least 1, not {args.check_images!r}")
    out = Path(args.output or f"build/ir/{Path(args.model).stem}.npz")
    if out.suffix != ".npz":
        raise ValueError(f"--output must name a .npz file, not {str(out)!r}")
    ds = resolve_dataset(args)
    t0 = time.perf_counter()
    net, report = import_qonnx(args.model, input_scale=args.input_scale, multiplier_bits=args.multiplier_bits)
    if net.in_features != ds.features:
        raise ValueError(f"{args.model!r} takes {net.in_features} inputs but the {ds.name} images have {ds.features} "
                         "pixels")
    print(net.describe())
    for line in report.get("lines", []):
        print(f"  {line}")
    px, labels = ds.x_test[:args.check_images], ds.y_test[:args.check_images]
    agree = qonnx_agreement(args.model, net, px, input_scale=net.metadata["input_scale"])
    print(f"against qonnx's execution on {len(px)} {ds.name} test images: classes agree on "
          f"{100 * agree['class_agreement']:.2f}%, logits equal after undoing the output scale "
          f"{100 * agree['logits_equal']:.2f}% (max |diff| {agree['max_abs_diff']:.3g} output-scale units)")
    from lowbit.sw.golden import run_network
    import numpy as np

    acc = float(np.mean(run_network(net, px, raw_pixels=True, keep="logits").classes == labels))
    net.metadata.update(dataset=ds.name, golden_test_accuracy=acc, source_model={"file": str(args.model),
                                                                                 "format": "qonnx", **agree})
    net.save(out)
    print(f"golden-model (integer) test accuracy {100 * acc:.2f}% on {len(labels)} {ds.name} images "
          f"({time.perf_counter() - t0:.1f} s) → {out}")
    return 0
