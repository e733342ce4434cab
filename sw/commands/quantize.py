"""``lowbit quantize``: float32 checkpoint → integer IR (.npz), by any method."""

from __future__ import annotations

from .train import add_dataset_arguments, resolve_dataset

HELP = "quantize a float32 checkpoint to an integer IR network"
DESCRIPTION = ("Quantize a float32 MLP or CNN with one of the methods pow2, scaled, dfp, ternary, binary "
               "(post-training, or with --qat quantization-aware fine-tuning; batch norm is folded into the weights "
               "first), or train a WAGE network (--method wage); write the integer IR and print its golden-model test "
               "accuracy. --method minifloat runs the custom-float fast precision search instead (float emulation: "
               "no IR).")


def add_arguments(parser) -> None:
    parser.add_argument("--method", default="pow2", help="pow2, scaled, dfp, ternary, binary, wage or minifloat")
    parser.add_argument("--weight-bits", "-w", type=int, default=None, help="weight bits (method default if omitted)")
    parser.add_argument("--act-bits", "-a", type=int, default=None, help="activation bits (method default if omitted)")
    parser.add_argument("--input-bits", type=int, default=None,
                        help="the first layer's input width, pixel >> (8 - N), N in 1..8 (default: min(act bits, 8); "
                             "binary W1A1: bipolar pixel >= 128); 8 keeps the raw pixels")
    parser.add_argument("--checkpoint", default=None,
                        help="float32 checkpoint (default: train or reuse build/models/<preset>_<dataset>_s<seed>_e<epochs>.pt)")
    parser.add_argument("--preset", default="sfc", help="preset when no --checkpoint is given")
    parser.add_argument("--epochs", type=int, default=10, help="float32 training epochs when no --checkpoint is given")
    parser.add_argument("--seed", type=int, default=0)
    add_dataset_arguments(parser)
    parser.add_argument("--calib", type=int, default=2000, help="training images used for calibration")
    parser.add_argument("--qat", action="store_true", help="quantization-aware fine-tuning (straight-through estimator)")
    parser.add_argument("--qat-epochs", type=int, default=3)
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
    if args.input_bits is not None:
        opts["input_bits"] = args.input_bits
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
    if (args.method == "wage" or not args.checkpoint) and args.preset not in PRESET_NAMES:
        raise ValueError(f"--preset must be one of {', '.join(PRESET_NAMES)}, not {args.preset!r}")
    for flag, value, used in (("--epochs", args.epochs, not args.checkpoint and args.method != "wage"),
                              ("--qat-epochs", args.qat_epochs, args.qat),
                              ("--wage-epochs", args.wage_epochs, args.method == "wage")):
        if used and value < 0:
            raise ValueError(f"{flag} must be a non-negative integer, not {value!r}")


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
        if args.checkpoint:
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
                       **method_options(args))
    net.metadata.update(dataset=ds.name)
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
