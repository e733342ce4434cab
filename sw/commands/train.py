"""``lowbit train``: train a float32 preset (MLP or CNN) and save a checkpoint."""

from __future__ import annotations

HELP = "train a float32 preset (tfc/sfc/lfc MLPs, lenet/cnn_digits CNNs) and save a checkpoint"
DESCRIPTION = ("Train one of the presets in float32 on CPU, deterministically for a seed, and save a checkpoint "
               "with its layer list under build/models/. MLPs: hidden layers 64×3 'tfc', 256×3 'sfc', 1024×3 "
               "'lfc' (as in FINN and Brevitas), with batch norm after each hidden layer (--no-batchnorm: without, "
               "the earlier recipe). CNNs (batch norm after every conv and hidden dense layer): 'lenet', WAGE's "
               "32C5-MP2-64C5-MP2-512FC-10 for 28×28 images, and 'cnn_digits', a small one for the 8×8 digits. "
               "Defaults per preset: MLPs with batch norm no dropout, sfc and lfc lr 2e-3, label smoothing 0.1, "
               "batch 128, tfc lr 4e-3, label smoothing 0.1, batch 64 (chosen on a validation split); without "
               "batch norm lr 1e-3, dropout 0.2; lenet lr 2e-3, label smoothing 0.1 (chosen the same way); "
               "cnn_digits lr 1e-3.")


def add_dataset_arguments(parser) -> None:
    parser.add_argument("--dataset", default="auto",
                        help="fashion-mnist, mnist, digits, or auto (fashion-mnist when found, else digits)")
    parser.add_argument("--data-dir", default=None, help="folder with IDX files (also $LOWBIT_DATA)")
    add_data_argument(parser)


def add_data_argument(parser) -> None:
    parser.add_argument("--data", default=None, metavar="FILE.npz",
                        help="your own data instead of --dataset: a .npz with arrays x_train, y_train, x_test, y_test "
                             "(uint8 images [n, H, W], [n, H, W, C] or flat [n, features]; integer labels 0..K-1)")


def dataset_name(args, default="auto") -> str:
    """The dataset the arguments choose: ``--data FILE.npz`` or ``--dataset`` (never both)."""
    data, name = getattr(args, "data", None), getattr(args, "dataset", None)
    if data is not None:
        if name not in (None, default):
            raise ValueError(f"--data and --dataset choose the data twice: give one of them, not --data {data!r} "
                             f"and --dataset {name!r}")
        if not str(data).endswith(".npz"):
            raise ValueError(f"--data must be a .npz file (arrays x_train, y_train, x_test, y_test), not {data!r}")
        return str(data)
    return default if name is None else name


def resolve_dataset(args, log=print):
    """Load the dataset named by ``--data`` or ``--dataset``; ``auto`` says plainly when it falls back."""
    from lowbit.sw.datasets import default_dataset, load_dataset

    name = dataset_name(args)
    if name == "auto":
        name, why = default_dataset(args.data_dir)
        if why and log:
            log(f"note: {why}")
    return load_dataset(name, args.data_dir)


def add_arguments(parser) -> None:
    from argparse import BooleanOptionalAction

    parser.add_argument("--preset", default="sfc", help="tfc, sfc, lfc, lenet or cnn_digits")
    add_dataset_arguments(parser)
    parser.add_argument("--epochs", type=int, default=10, help="training epochs")
    parser.add_argument("--seed", type=int, default=0, help="random seed (training is deterministic for it)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (cosine decay; default: the preset's)")
    parser.add_argument("--label-smoothing", type=float, default=None,
                        help="cross-entropy label smoothing in [0, 1) (default: the preset's)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay (L2)")
    parser.add_argument("--batchnorm", action=BooleanOptionalAction, default=None,
                        help="batch norm after each hidden layer (default: every preset has it)")
    parser.add_argument("--validation", type=int, default=0, metavar="N",
                        help="hold N training images out and report the accuracy on them (for choosing "
                             "hyperparameters without the test set)")
    parser.add_argument("--out", default=None,
                        help="checkpoint path (default build/models/<preset>_<dataset>_s<seed>_e<epochs>.pt, "
                             "<preset>-bn or -nobn when --batchnorm is not the preset's default)")


def run(args) -> int:
    import time

    from lowbit.sw.train import PRESET_NAMES, checkpoint_path, model_name, save_checkpoint, train_preset

    if args.preset not in PRESET_NAMES:
        raise ValueError(f"--preset must be one of {', '.join(PRESET_NAMES)}, not {args.preset!r}")
    if args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, not {args.epochs!r}")
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr must be a positive number, not {args.lr!r}")
    if args.label_smoothing is not None and not 0 <= args.label_smoothing < 1:
        raise ValueError(f"--label-smoothing must be a number in [0, 1), not {args.label_smoothing!r}")
    if not args.weight_decay >= 0:
        raise ValueError(f"--weight-decay must be a non-negative number, not {args.weight_decay!r}")
    if args.validation < 0:
        raise ValueError(f"--validation must be a non-negative integer, not {args.validation!r}")
    ds = resolve_dataset(args)
    print(ds.describe())
    t0 = time.perf_counter()
    model, info = train_preset(args.preset, ds, args.epochs, args.seed, lr=args.lr, weight_decay=args.weight_decay,
                               batchnorm=args.batchnorm, validation=args.validation,
                               label_smoothing=args.label_smoothing)
    seconds = time.perf_counter() - t0
    path = args.out or checkpoint_path(args.preset, ds.name, args.seed, args.epochs, batchnorm=args.batchnorm)
    if args.validation and not args.out:  # not the cache's model: that one saw every training image
        path = path.with_name(f"{path.stem}_val{args.validation}.pt")
    save_checkpoint(model, path, **info)
    name = model_name(args.preset, args.batchnorm)
    val = f", validation accuracy {100 * info['val_accuracy']:.2f}% on {args.validation} images" if args.validation \
        else ""
    print(f"{name} float32 test accuracy {100 * info['test_accuracy']:.2f}%{val} ({seconds:.0f} s, "
          f"{seconds / args.epochs:.1f} s per epoch) → {path}")
    return 0
