"""``lowbit train``: train a float32 MLP preset and save a checkpoint."""

from __future__ import annotations

HELP = "train a float32 MLP (tfc/sfc/lfc) and save a checkpoint"
DESCRIPTION = ("Train one of the MLP presets (hidden layers 64×3 'tfc', 256×3 'sfc', 1024×3 'lfc', as in FINN "
               "and Brevitas) in float32 on CPU, deterministically for a seed, and save a checkpoint with its "
               "architecture under build/models/.")


def add_dataset_arguments(parser) -> None:
    parser.add_argument("--dataset", default="auto",
                        help="fashion-mnist, mnist, digits, or auto (fashion-mnist when found, else digits)")
    parser.add_argument("--data-dir", default=None, help="folder with IDX files (also $LOWBIT_DATA)")


def resolve_dataset(args, log=print):
    """Load the dataset named by ``--dataset``; ``auto`` says plainly when it falls back."""
    from lowbit.sw.datasets import default_dataset, load_dataset

    name = args.dataset
    if name == "auto":
        name, why = default_dataset(args.data_dir)
        if why and log:
            log(f"note: {why}")
    return load_dataset(name, args.data_dir)


def add_arguments(parser) -> None:
    parser.add_argument("--preset", default="sfc", help="tfc, sfc or lfc")
    add_dataset_arguments(parser)
    parser.add_argument("--epochs", type=int, default=10, help="training epochs")
    parser.add_argument("--seed", type=int, default=0, help="random seed (training is deterministic for it)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (cosine decay)")
    parser.add_argument("--out", default=None,
                        help="checkpoint path (default build/models/<preset>_<dataset>_s<seed>_e<epochs>.pt)")


def run(args) -> int:
    from lowbit.sw.train import PRESETS, checkpoint_path, save_checkpoint, train_mlp

    if args.preset not in PRESETS:
        raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, not {args.preset!r}")
    if args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, not {args.epochs!r}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be a positive number, not {args.lr!r}")
    ds = resolve_dataset(args)
    print(ds.describe())
    model, info = train_mlp(args.preset, ds, args.epochs, args.seed, lr=args.lr)
    path = args.out or checkpoint_path(args.preset, ds.name, args.seed, args.epochs)
    save_checkpoint(model, path, **info)
    print(f"{args.preset} float32 test accuracy {100 * info['test_accuracy']:.2f}% → {path}")
    return 0
