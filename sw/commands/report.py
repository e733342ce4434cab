"""``lowbit report accuracy``: the accuracy table of every method and bit width.

For each preset (default tfc and sfc) on Fashion-MNIST (or ``--dataset``): float32, then
pow2, scaled, dfp, ternary (cluster 4) and binary at 1, 2, 3, 4 and 8 bits (``W{b}A{b}``;
ternary is ``W ternary A{b}``, binary ``W1 A{b}``, bipolar at 1 bit), post-training and
with QAT (≤ 4 bits, and ternary N=4 A8), ternary at 8-bit activations for every cluster size, WAGE 2-8-8-8, and
minifloat (float emulation, reported apart: a few formats plus the fast precision
search against the exhaustive one). Every integer number is the golden model's accuracy
on the whole test set. Writes ``<output>/accuracy.md`` and ``<output>/accuracy.csv``.
"""

from __future__ import annotations

from .common import add_output_argument
from .train import add_dataset_arguments, resolve_dataset

HELP = "write the accuracy table (markdown and CSV) of every method and bit width"
DESCRIPTION = __doc__


def add_arguments(parser) -> None:
    parser.add_argument("what", choices=["accuracy"], help="which report")
    add_dataset_arguments(parser)
    parser.add_argument("--presets", default="tfc,sfc", help="comma-separated presets")
    parser.add_argument("--bits", default="1,2,3,4,8", help="comma-separated bit widths")
    parser.add_argument("--methods", default="pow2,scaled,dfp,ternary,binary", help="comma-separated PTQ methods")
    parser.add_argument("--epochs", type=int, default=10, help="float32 training epochs (checkpoints are reused)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calib", type=int, default=2000, help="calibration images")
    parser.add_argument("--qat-epochs", type=int, default=3, help="QAT fine-tuning epochs (0: no QAT)")
    parser.add_argument("--wage-epochs", type=int, default=10, help="WAGE training epochs (0: skip WAGE)")
    parser.add_argument("--no-minifloat", action="store_true", help="skip the minifloat section")
    add_output_argument(parser, "build/reports", "output folder", "--out")


def _bits_ok(method, b):
    from lowbit.sw.quant import METHODS

    mod = METHODS[method]
    wlo, whi = mod.WEIGHT_BITS
    return method in ("ternary", "binary") or wlo <= b <= whi


def run(args) -> int:
    import csv
    import io
    import time

    import numpy as np

    from lowbit.sw.golden import run_network
    from lowbit.sw.quant import METHODS, quantize
    from lowbit.sw.train import PRESETS, load_or_train
    from lowbit.sw.util import write_files

    from .common import output_dir, output_option

    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    for p in presets:
        if p not in PRESETS:
            raise ValueError(f"--presets entries must be among {', '.join(PRESETS)}, not {p!r}")
    try:
        bits = [int(b) for b in args.bits.split(",")]
    except ValueError:
        raise ValueError(f"--bits must be comma-separated integers, not {args.bits!r}") from None
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"--methods entries must be among {', '.join(METHODS)}, not {m!r}")
    out = output_dir(args.output, param=output_option(args))  # before training, so a bad folder fails at once
    ds = resolve_dataset(args)
    out.mkdir(parents=True, exist_ok=True)
    rows = []  # dicts: preset, method, config, bits, mode, accuracy, delta, notes
    t0 = time.time()

    def golden(net):
        return float(np.mean(run_network(net, ds.x_test, raw_pixels=True).classes == ds.y_test))

    def add(preset, method, config, b, mode, acc, base, notes=""):
        rows.append({"preset": preset, "method": method, "config": config, "bits": b, "mode": mode,
                     "accuracy": round(100 * acc, 2), "delta": round(100 * (acc - base), 2), "notes": notes})
        print(f"[{time.time() - t0:7.0f}s] {preset} {method:9s} {config:22s} {mode:4s} {100 * acc:6.2f}% "
              f"({100 * (acc - base):+.2f}) {notes}", flush=True)

    calib = ds.x_train[:args.calib]
    for preset in presets:
        model, info = load_or_train(preset, ds, args.epochs, args.seed)
        base = info["test_accuracy"]
        add(preset, "float32", "float32", 32, "-", base, base)
        jobs = []
        for method in methods:
            for b in bits:
                if not _bits_ok(method, b):
                    continue
                wb = {"ternary": 2, "binary": 1}.get(method, b)
                wname = {"ternary": "ternary", "binary": "W1"}.get(method, f"W{b}")
                opts = {"cluster": 4} if method == "ternary" else {}
                jobs.append((method, wb, b, f"{wname} A{b}" + (" N=4" if method == "ternary" else ""), opts))
        if "ternary" in methods:
            for n in (1, 16, 64, "layer"):
                jobs.append(("ternary", 2, 8, f"ternary A8 N={n}", {"cluster": n}))
        modes = ["ptq"] + (["qat"] if args.qat_epochs > 0 else [])
        for mode in modes:
            for method, wb, ab, config, opts in jobs:
                if mode == "qat" and ((method == "ternary" and opts.get("cluster") != 4)
                                      or (ab > 4 and method != "ternary")):
                    continue  # cluster sweep and 8-bit rows post-training only (time; PTQ ≈ float there),
                    # except ternary N=4 A8, a target of its own
                net = quantize(model, method, wb, ab, calib, qat=mode == "qat", train_data=(ds.x_train, ds.y_train),
                               qat_epochs=args.qat_epochs, seed=args.seed, progress=False, **opts)
                notes = ""
                if "ternary" in net.metadata:
                    t = net.metadata["ternary"]
                    notes = (f"mults replaced {100 * t['mults_replaced_share']:.2f}%, zero weights "
                             f"{100 * t['zero_weight_share']:.1f}%, {t['distinct_scales']} scales")
                elif net.metadata.get("multiplier_max_rel_error") is not None and method != "binary":
                    notes = f"multiplier error ≤ {net.metadata['multiplier_max_rel_error']:.1e}"
                add(preset, method, config, ab, mode, golden(net), base, notes)
        if args.wage_epochs > 0:
            from lowbit.sw.quant.wage import export_wage, train_wage

            wm = train_wage(ds.x_train, ds.y_train, preset=preset, epochs=args.wage_epochs, seed=args.seed,
                            progress=False)
            add(preset, "wage", "2-8-8-8 (W ternary A u7)", 2, "wage", golden(export_wage(wm)), base)
        if not args.no_minifloat:
            from lowbit.sw.quant.minifloat import (Minifloat, exhaustive_search, fast_precision_search,
                                                   minifloat_accuracy)

            for f in (Minifloat(6, 7), Minifloat(4, 3), Minifloat(4, 3, False), Minifloat(3, 2), Minifloat(2, 1)):
                add(preset, "minifloat", str(f), f.bits, "emu", minifloat_accuracy(model, ds.x_test, ds.y_test, f),
                    base, "float emulation, no IR")
            fast = fast_precision_search(model, ds.x_train[:10], ds.x_test, ds.y_test, float_accuracy=base)
            ex = exhaustive_search(model, ds.x_test, ds.y_test, float_accuracy=base)
            same = fast.chosen == ex.chosen
            # Both searches want the fewest bits; two formats of one width are an equally cheap
            # answer (the exhaustive one breaks the tie by fewer exponent bits).
            same_bits = bool(fast.chosen and ex.chosen and fast.chosen.bits == ex.chosen.bits)
            ex_bits = f", {ex.chosen.bits} bits" if ex.chosen else ""
            add(preset, "minifloat", f"search: {fast.chosen}", fast.chosen.bits if fast.chosen else 0, "emu",
                fast.accuracy or 0.0, base,
                f"fast search {fast.evaluations} evaluations vs exhaustive {ex.evaluations} "
                f"(chose {ex.chosen}{ex_bits}); same format: {'yes' if same else 'no'}, "
                f"same width: {'yes' if same_bits else 'no'}")
    fields = ["preset", "method", "config", "bits", "mode", "accuracy", "delta", "notes"]
    table = io.StringIO(newline="")
    w = csv.DictWriter(table, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    lines = [f"# Test accuracy on {ds.name} ({len(ds.y_test)} images)", "",
             "Integer rows are the golden model's accuracy of the exported IR; `delta` is against float32 "
             "(points). Modes: ptq post-training, qat quantization-aware fine-tuning "
             f"({args.qat_epochs} epochs), wage trained from scratch, emu float emulation.", "",
             "| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    lines += ["| " + " | ".join(str(r[k]) for k in fields) + " |" for r in rows]
    # the folder may hold other reports: both files are replaced, nothing else is touched
    write_files(out, {"accuracy.csv": table.getvalue(), "accuracy.md": "\n".join(lines) + "\n"})
    print(f"wrote {out / 'accuracy.md'} and {out / 'accuracy.csv'} in {time.time() - t0:.0f} s")
    return 0
