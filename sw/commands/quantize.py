"""``lowbit quantize``: float32 checkpoint → integer IR (.npz), by any method."""

from __future__ import annotations

from .train import add_dataset_arguments, resolve_dataset

HELP = "quantize a float32 checkpoint or your own torch/ONNX model to an integer IR network"
DESCRIPTION = ("Quantize a float32 MLP or CNN with one of the methods pow2, scaled, dfp, ternary, binary "
               "(post-training, or with --qat quantization-aware fine-tuning; batch norm is folded into the weights "
               "first), or train a WAGE network (--method wage); write the integer IR and print its golden-model test "
               "accuracy. --method minifloat runs the custom-float fast precision search instead (float emulation: "
               "no IR).\n\nYour own model (--model): a torch.export program (.pt2, torch.export.save), a float ONNX model "
               "(.onnx) or, with --trust-pickle, a pickled torch module (.pt/.pth). It is converted layer by layer "
               "(Linear/Gemm/MatMul, Conv2d (groups 1), BatchNorm, ReLU, MaxPool2d, Flatten/Reshape, Dropout/Identity; "
               "NCHW weights permuted once to lowbit's NHWC order), its input preprocessing (--pixel-divisor, "
               "--normalize) folded into its first layer, and checked against the framework's own execution (torch "
               "or onnxruntime) on --check-images test images before anything is written: max|diff| must be at most "
               "1e-4 of the largest |logit|. An already quantized QONNX model is read by 'lowbit import' instead.")


def add_arguments(parser) -> None:
    parser.add_argument("--method", default="pow2", help="pow2, scaled, dfp, ternary, binary, wage or minifloat")
    parser.add_argument("--weight-bits", "-w", type=int, default=None, help="weight bits (method default if omitted)")
    parser.add_argument("--act-bits", "-a", type=int, default=None, help="activation bits (method default if omitted)")
    parser.add_argument("--input-bits", type=int, default=None,
                        help="the first layer's input width, pixel >> (8 - N), N in 1..8 (default: min(act bits, 8); "
                             "binary W1A1: bipolar pixel >= 128); 8 keeps the raw pixels")
    parser.add_argument("--checkpoint", default=None,
                        help="float32 checkpoint (default: train or reuse build/models/<preset>_<dataset>_s<seed>_e<epochs>.pt)")
    parser.add_argument("--preset", default="sfc", help="preset when no --checkpoint or --model is given")
    parser.add_argument("--model", default=None, metavar="FILE",
                        help="your own float model instead of a preset: .pt2 (torch.export), .onnx, or .pt/.pth "
                             "(a pickled module, with --trust-pickle)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow --model to be a pickled torch module: loading one runs code from the file, so "
                             "only for files you trust (a .pt2 from torch.export.save needs no trust)")
    parser.add_argument("--check-images", type=int, default=1000,
                        help="--model: test images the import is checked on against the source framework")
    parser.add_argument("--pixel-divisor", type=float, default=255.0,
                        help="--model: the model takes pixel / D (255: torchvision's ToTensor)")
    parser.add_argument("--normalize", default=None, metavar="MEAN/STD",
                        help="--model: and then Normalize(mean, std): e.g. 0.2860/0.3530, or per channel "
                             "0.49,0.48,0.45/0.25,0.24,0.26")
    parser.add_argument("--epochs", type=int, default=10, help="float32 training epochs when no --checkpoint is given")
    parser.add_argument("--seed", type=int, default=0)
    add_dataset_arguments(parser)
    parser.add_argument("--calib", type=int, default=2000, help="training images used for calibration")
    parser.add_argument("--qat", action="store_true", help="quantization-aware fine-tuning (straight-through estimator)")
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--learn-scales", action="store_true",
                        help="--qat: train the weight and activation scales with the weights (LSQ; pow2/dfp: "
                             "power-of-two scales learned as rounded exponents)")
    parser.add_argument("--layer-bits", default="", metavar="LAYER=wNaN,...",
                        help="per-layer widths over -w/-a: e.g. fc3=w8 (the last layer's weights at 8 bits), "
                             "fc0=a8 (fc0's output codes at 8 bits), conv1=w4a8; 'w' for pow2/scaled/dfp only")
    parser.add_argument("--bias-correction", default="auto", choices=("auto", "on", "off"),
                        help="correct each layer's bias for the mean error its quantized weights make on the "
                             "calibration images (Nagel et al. 2019); auto: keep it when the integer network then "
                             "agrees more often with the float network's classes (default auto)")
    parser.add_argument("--granularity", default="channel", help="scaled: weight scale per 'channel' or 'layer'")
    parser.add_argument("--multiplier-bits", type=int, default=16, help="scaled/ternary/binary: requantizer multiplier width")
    parser.add_argument("--cluster", default="4", help="ternary: output channels per scale (1, 4, 16, 64, layer)")
    parser.add_argument("--wage-bits", default="2-8-8-8", help="wage: W-A-G-E bits")
    parser.add_argument("--wage-epochs", type=int, default=10)
    parser.add_argument("--out", default=None, help="IR path (default build/ir/<name>.npz)")


def method_options(args) -> dict:
    opts = {"scaled": {"granularity": args.granularity, "multiplier_bits": args.multiplier_bits},
            "ternary": {"cluster": args.cluster, "multiplier_bits": args.multiplier_bits},
            "binary": {"multiplier_bits": args.multiplier_bits}}.get(args.method, {})
    if args.bias_correction != "auto":
        opts["bias_correction"] = args.bias_correction == "on"
    if args.input_bits is not None:
        opts["input_bits"] = args.input_bits
    if args.layer_bits:
        opts["layer_bits"] = args.layer_bits
    return opts


def check_arguments(args) -> None:
    """Every argument check that needs no model and no data: run before any loading or training."""
    from lowbit.sw.quant import ALL_METHODS, METHODS, check_options
    from lowbit.sw.train import PRESET_NAMES

    if args.method not in ALL_METHODS:
        raise ValueError(f"--method must be one of {', '.join(ALL_METHODS)}, not {args.method!r}")
    if args.calib < 1:
        raise ValueError(f"--calib must be at least 1, not {args.calib!r}")
    if args.method in METHODS:
        check_options(args.method, args.weight_bits, args.act_bits, **method_options(args))
    elif args.input_bits is not None:
        why = "its first layer takes 8-bit pixels" if args.method == "wage" else "float emulation has no integer input"
        raise ValueError(f"--input-bits must be left out with --method {args.method} ({why}; it applies to "
                         f"{', '.join(METHODS)}), not {args.input_bits!r}")
    if args.method == "wage":
        from lowbit.sw.quant.wage import parse_wage_bits

        parse_wage_bits(args.wage_bits)
    if args.model is not None:
        if args.checkpoint:
            raise ValueError(f"--model and --checkpoint both give the float model: give one, not --model "
                             f"{args.model!r} and --checkpoint {args.checkpoint!r}")
        if args.method == "wage":
            raise ValueError("--model cannot be used with --method wage (WAGE trains its own preset from scratch)")
        if args.check_images < 1:
            raise ValueError(f"--check-images must be at least 1 (the import is always checked), not "
                             f"{args.check_images!r}")
        from lowbit.sw.frontends.common import Preprocessing

        Preprocessing.parse(args.pixel_divisor, args.normalize)
    elif args.trust_pickle or args.normalize is not None or args.pixel_divisor != 255.0:
        raise ValueError("--trust-pickle, --pixel-divisor and --normalize describe a --model file; give --model")
    if (args.method == "wage" or not (args.checkpoint or args.model)) and args.preset not in PRESET_NAMES:
        raise ValueError(f"--preset must be one of {', '.join(PRESET_NAMES)}, not {args.preset!r}")
    for flag, value, used in (("--epochs", args.epochs, not args.checkpoint and args.method != "wage"),
                              ("--qat-epochs", args.qat_epochs, args.qat),
                              ("--wage-epochs", args.wage_epochs, args.method == "wage")):
        if used and value < 0:
            raise ValueError(f"{flag} must be a non-negative integer, not {value!r}")
    if args.learn_scales and not (args.qat and args.method in METHODS):
        raise ValueError(f"--learn-scales trains scales during QAT: it needs --qat and a --method among "
                         f"{', '.join(METHODS)}, not --method {args.method}"
                         f"{'' if args.qat else ' without --qat'}")


def import_model(args, ds):
    """The user's ``--model`` as a FloatGraph taking lowbit's input, checked against its framework on the
    test images (``model.import_check`` holds the figure)."""
    import time

    from lowbit.sw.frontends.common import Preprocessing, finish_import
    from lowbit.sw.frontends.load import load_float_model

    t0 = time.perf_counter()
    shape = ds.image_shape if len(ds.image_shape) == 3 else (*ds.image_shape, 1) if len(ds.image_shape) == 2 else None
    imported = load_float_model(args.model, trust_pickle=args.trust_pickle, image_shape=shape)
    want = imported.graph.input_shape
    if want not in ((ds.features,), shape):
        raise ValueError(f"--model {args.model!r} takes inputs of shape {imported.source_shape} but the {ds.name} "
                         f"images are {'x'.join(map(str, ds.image_shape))}")
    classes = imported.graph.output_shape
    if len(classes) != 1 or classes[0] < ds.classes:
        raise ValueError(f"--model {args.model!r} gives outputs of shape {classes} but {ds.name} has {ds.classes} "
                         "classes: lowbit needs one logit per class")
    pre = Preprocessing.parse(args.pixel_divisor, args.normalize)
    images = ds.x_test[:args.check_images]
    graph, rel = finish_import(imported, images, pre)
    graph.import_check = {"source": imported.source, "images": len(images), "max_rel_diff": rel,
                          "preprocessing": pre.describe()}
    print(f"imported {imported.source}: {len(graph.layers)} layers ({', '.join(dict.fromkeys(imported.ops))}); input "
          f"{pre.describe()} folded into the first layer")
    print(f"import check against {imported.source} on {len(images)} {ds.name} test images: max|diff| = {rel:.2e} of "
          f"max|logit| (allowed 1e-4) ({time.perf_counter() - t0:.1f} s)")
    return graph


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from lowbit.sw.golden import run_network
    from lowbit.sw.quant import quantize
    from lowbit.sw.train import dataset_input_shape, load_checkpoint, load_or_train

    check_arguments(args)
    ds = resolve_dataset(args)
    if args.method == "wage":
        from lowbit.sw.quant.wage import export_wage, train_wage

        model = train_wage(ds.x_train, ds.y_train, preset=args.preset, bits=args.wage_bits, epochs=args.wage_epochs,
                           seed=args.seed, input_shape=dataset_input_shape(ds, args.preset))
        net = export_wage(model)
    else:
        if args.model:
            model = import_model(args, ds)
        elif args.checkpoint:
            model, info = load_checkpoint(args.checkpoint, in_features=ds.features)
        else:
            model, info = load_or_train(args.preset, ds, args.epochs, args.seed)
        if args.method == "minifloat":
            from lowbit.sw.quant.minifloat import fast_precision_search

            res = fast_precision_search(model, ds.x_train[:10], ds.x_test, ds.y_test)
            print(f"fast precision search: chose {res.chosen} ({res.accuracy}) with {res.evaluations} full "
                  f"evaluations: {res.evaluated}")
            return 0
        net = quantize(model, args.method, args.weight_bits, args.act_bits, ds.x_train[:args.calib], qat=args.qat,
                       train_data=(ds.x_train, ds.y_train), qat_epochs=args.qat_epochs, seed=args.seed,
                       learn_scales=args.learn_scales, **method_options(args))
    net.metadata.update(dataset=ds.name)
    if args.model:
        net.metadata["source_model"] = {"file": str(args.model), **model.import_check}
    acc = float(np.mean(run_network(net, ds.x_test, raw_pixels=True, keep="logits").classes == ds.y_test))
    net.metadata["golden_test_accuracy"] = acc
    path = Path(args.out or f"build/ir/{net.name}.npz")
    net.save(path)
    print(net.describe())
    if "ternary" in net.metadata:
        t = net.metadata["ternary"]
        print(f"ternary, clusters of {t['cluster']} output channels: {t['products']} products per image become "
              f"additions, subtractions or skips ({100 * t['zero_weight_share']:.1f}% zero weights); "
              f"{100 * t['mults_replaced_share']:.2f}% of the multiplications replaced (one requantizer multiply "
              f"per output remains; {t['distinct_scales']} distinct scales)")
    print(f"golden-model (integer) test accuracy {100 * acc:.2f}% on {len(ds.y_test)} {ds.name} images → {path}")
    return 0
