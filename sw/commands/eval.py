"""``lowbit eval``: golden-model accuracy and per-layer saturation of an IR network."""

from __future__ import annotations

from .train import add_dataset_arguments, resolve_dataset

HELP = "evaluate an integer IR network with the golden model"
DESCRIPTION = ("Run the integer golden model on a dataset's test images and report accuracy and, per layer, "
               "the share of outputs clipped at the top of the output range and at the bottom (for ReLU layers "
               "the bottom is the ReLU itself).")


def add_arguments(parser) -> None:
    parser.add_argument("ir", help="IR file (.npz) written by lowbit quantize")
    add_dataset_arguments(parser)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N test images")


def layer_clip_rates(net, result):
    """Per layer ``(share above hi, share below lo)``; None for raw-logit or bipolar layers."""
    return result.clip_rates(net)


def run(args) -> int:
    import numpy as np

    from lowbit.sw.golden import run_network
    from lowbit.sw.ir import Network

    net = Network.load(args.ir)
    ds = resolve_dataset(args)
    if ds.features != net.in_features:
        raise ValueError(f"dataset {ds.name!r} has {ds.features} features but {args.ir!r} takes {net.in_features}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, not {args.limit!r}")
    x, y = ds.x_test[:args.limit], ds.y_test[:args.limit]
    res = run_network(net, x, raw_pixels=True)
    acc = float(np.mean(res.classes == y))
    print(net.describe())
    print(f"golden-model accuracy {100 * acc:.2f}% on {len(y)} {ds.name} test images")
    for layer, sat, clip in zip(net.layers, res.saturation(net), layer_clip_rates(net, res)):
        if clip is None:
            rq = getattr(layer, "requant", None)
            what = ("raw logits" if layer.out_format is None else
                    f"{layer.op}: passes its {layer.out_format} codes through" if rq is None else "bipolar (sign, no clip)")
            print(f"  {layer.name:8s} {what}")
        else:
            print(f"  {layer.name:8s} saturation {100 * sat:6.2f}%  (clipped high {100 * clip[0]:6.2f}%, "
                  f"below {'0 (ReLU)' if layer.requant.relu else 'lo'} {100 * clip[1]:6.2f}%)")
    return 0
