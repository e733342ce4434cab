"""``lowbit report accuracy``: the accuracy table of every method and bit width.

For each preset (default tfc and sfc; any MLP or CNN preset, e.g. ``lenet`` or ``cnn_digits``)
on Fashion-MNIST (or ``--dataset``): float32, then
pow2, scaled, dfp, ternary (cluster 4) and binary at 1, 2, 3, 4 and 8 bits (``W{b}A{b}``;
ternary is ``W ternary A{b}``, binary ``W1 A{b}``, bipolar at 1 bit), post-training and
with QAT (≤ 4 bits, and ternary N=4 A8), ternary at 8-bit activations for every cluster size, WAGE 2-8-8-8, and
minifloat (float emulation, reported apart: a few formats plus the fast precision
search against the exhaustive one). Every integer number is the golden model's accuracy
on the whole test set. Writes ``<output>/accuracy.md`` and ``<output>/accuracy.csv``.

``--input-bits`` sets the first layer's input width: by default ``8`` for every method (8-bit
pixels, as FINN's networks and the Brevitas figures take them), ``binary=8`` for one method's
rows, ``auto`` for ``min(A, 8)``; rows with it say ``inN`` in their configuration, and the
``input_bits`` column gives every integer row's first-layer input width. QAT fine-tunes for
``--qat-epochs`` (default 10) from the float32 checkpoint, with frozen calibrated scales or,
with ``--learn-scales``, learned ones.

For ``tfc``, ``sfc`` and ``lenet`` on Fashion-MNIST a summary follows the table: per width
(float32, W8A8, W4A4, W2A2, W1A1 = bipolar weights and activations) the best row against the
Brevitas figures (:data:`PEER`) and lowbit's targets (:data:`TARGETS`), met or not; the best
W2A2 and W1A1 QAT rows are repeated for ``--seeds`` QAT seeds (default 3, each a cached row of
its own) and given by their mean, with min–max.

Every row is cached in ``<output>/cache/`` as soon as it is computed, so an interrupted run
resumes where it stopped; ``--no-cache`` recomputes (and rewrites) every row. A row's key
(:func:`row_key`) holds everything its number depends on: the preset, the dataset's content
(a digest of its arrays), the float checkpoint's SHA-256 (WAGE rows, trained from scratch,
have none), the method, bit widths and options, the mode with its QAT epochs, the seed and
the calibration size, and the code version (:func:`code_version`: a digest of the code of the
quantizers, the float graph, training, the IR and the golden model, comments and docstrings
left out). A row whose key
changed is recomputed; stale entries are never read again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .common import add_output_argument
from .train import add_dataset_arguments, resolve_dataset

HELP = "write the accuracy table (markdown and CSV) of every method and bit width"
DESCRIPTION = __doc__

#: bump when the meaning of a cached row changes in a way the code digest cannot see
CACHE_VERSION = 1
#: the sources (under ``sw/``) that decide a row's number: quantizers, float layers and passes,
#: training (float checkpoints and QAT's loop), the IR, numerics and the golden model (ops)
CODE_SOURCES = ("quant", "frontends", "ops", "train.py", "ir.py", "golden.py", "requant.py", "formats.py", "specs.py")
#: Brevitas QAT on the same networks and data (FINN's topologies with batch norm, Fashion-MNIST, Adam with a
#: cosine schedule, 10 epochs from scratch, 8-bit input quantization): test accuracy (%) by width (32: float)
PEER = {"sfc": {32: 89.98, 8: 90.05, 4: 89.99, 2: 88.65, 1: 86.34},
        "tfc": {32: 89.12, 8: 88.97, 4: 88.70, 2: 87.18, 1: 84.88},
        "lenet": {32: 92.24, 8: 92.16, 4: 92.17, 2: 90.10, 1: 83.45}}
#: lowbit's targets at each width: above the peer
TARGETS = {"sfc": {32: 90.2, 8: 90.2, 4: 90.2, 2: 88.9, 1: 86.5},
           "tfc": {32: 89.3, 8: 89.2, 4: 88.9, 2: 87.4, 1: 85.1},
           "lenet": {32: 92.5, 8: 92.4, 4: 92.4, 2: 90.6, 1: 85.5}}
#: the widths whose best QAT row is repeated over seeds (the noisiest)
SEEDED_WIDTHS = (2, 1)
#: QAT fine-tuning epochs of the table (SFC W2A2 scaled in8, validation split: 3 epochs 89.96%, 10 epochs 90.16%)
DEFAULT_QAT_EPOCHS = 10
FIELDS = ["preset", "method", "config", "bits", "mode", "accuracy", "delta", "notes", "input_bits", "seconds"]


def add_arguments(parser) -> None:
    parser.add_argument("what", choices=["accuracy"], help="which report")
    add_dataset_arguments(parser)
    parser.add_argument("--presets", default="tfc,sfc", help="comma-separated presets")
    parser.add_argument("--bits", default="1,2,3,4,8", help="comma-separated bit widths")
    parser.add_argument("--methods", default="pow2,scaled,dfp,ternary,binary", help="comma-separated PTQ methods")
    parser.add_argument("--epochs", type=int, default=10, help="float32 training epochs (checkpoints are reused)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calib", type=int, default=2000, help="calibration images")
    parser.add_argument("--qat-epochs", type=int, default=DEFAULT_QAT_EPOCHS, help="QAT fine-tuning epochs (0: no QAT)")
    parser.add_argument("--learn-scales", action=argparse.BooleanOptionalAction, default=False,
                        help="QAT rows train their quantizer scales too (LSQ; power-of-two for pow2/dfp): about "
                             "twice the time, and no better on SFC at 8-bit input (see the README)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="QAT seeds of the best W2A2 and W1A1 rows, whose mean and spread the summary gives "
                             "(the float checkpoint is the same for every seed)")
    parser.add_argument("--wage-epochs", type=int, default=10, help="WAGE training epochs (0: skip WAGE)")
    parser.add_argument("--input-bits", default="8",
                        help="first-layer input width: N for every method, or METHOD=N,... (e.g. binary=8), or "
                             "'auto' for min(A, 8) (default 8: 8-bit pixels into the first layer, as FINN's "
                             "networks and the Brevitas figures of the summary take them)")
    parser.add_argument("--no-minifloat", action="store_true", help="skip the minifloat section")
    parser.add_argument("--no-cache", action="store_true", help="recompute every row (the cache is rewritten)")
    add_output_argument(parser, "build/reports", "output folder", "--out")


# ---- the row cache ----------------------------------------------------------------------
def code_version() -> str:
    """A digest of the code in :data:`CODE_SOURCES`: each file's path and syntax tree without its
    comments and docstrings, so editing documentation keeps the cache (any code change drops it)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for part in CODE_SOURCES:
        p = root / part
        for f in (sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.is_file() else []):
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + _code_tree(f.read_bytes()) + b"\0")
    return h.hexdigest()[:20]


def _code_tree(source: bytes) -> bytes:
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source  # the bytes then (such code fails anyway)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False).encode()


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dataset_digest(ds) -> str:
    """A digest of a dataset's arrays (shapes, dtypes and bytes): the same name with other
    files (a user's MNIST, another split) is another dataset."""
    import numpy as np

    h = hashlib.sha256()
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()[:20]


def row_key(**fields) -> dict:
    """The key of one cached row: the fields given plus the cache's version (JSON values)."""
    return {"cache_version": CACHE_VERSION, **fields}


@dataclass(frozen=True)
class RowCache:
    """One JSON file per row, ``<folder>/<sha256 of the key>.json`` holding ``{"key", "value"}``.

    ``read=False`` ignores what is there (and overwrites it). A file that cannot be read, or
    whose stored key differs from the one asked for, is a miss.
    """

    folder: Path
    read: bool = True

    @staticmethod
    def digest(key: dict) -> str:
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]

    def path(self, key: dict) -> Path:
        return self.folder / f"{self.digest(key)}.json"

    def get(self, key: dict) -> dict | None:
        if not self.read:
            return None
        try:
            entry = json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None
        # the stored key is compared too: a digest collision or a hand-edited file is a miss
        if not isinstance(entry, dict) or entry.get("key") != json.loads(json.dumps(key)):
            return None
        return entry.get("value") if isinstance(entry.get("value"), dict) else None

    def put(self, key: dict, value: dict) -> None:
        from lowbit.sw.util import write_atomic

        write_atomic(self.path(key), json.dumps({"key": key, "value": value}, sort_keys=True, indent=1) + "\n")


# ---- arguments --------------------------------------------------------------------------
def _bits_ok(method, b):
    from lowbit.sw.quant import METHODS

    mod = METHODS[method]
    wlo, whi = mod.WEIGHT_BITS
    return method in ("ternary", "binary") or wlo <= b <= whi


def parse_input_bits(text: str, methods) -> dict:
    """``"8"`` → every method 8; ``"binary=8,pow2=4"`` → those methods; ``""`` or ``"auto"`` → none."""
    from lowbit.sw.quant import METHODS
    from lowbit.sw.quant.core import check_input_bits

    out = {}
    if text.strip() == "auto":
        return out
    for part in (p.strip() for p in text.split(",") if p.strip()):
        method, _, value = part.rpartition("=")
        method = method.strip()
        targets = list(methods) if not method else [method]
        if method and method not in METHODS:
            raise ValueError(f"--input-bits entries must be N or METHOD=N with METHOD among {', '.join(METHODS)}, "
                             f"not {part!r}")
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"--input-bits entries must be N or METHOD=N with N an integer in 1..8, "
                             f"not {part!r}") from None
        for m in targets:
            out[m] = check_input_bits(m, n)
    return out


def _jobs(methods, bits):
    """``(method, weight_bits, act_bits, config, options)`` of every post-training row."""
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
    return jobs


def _width(method: str, weight_bits: int, act_bits: int):
    """The summary's width ``b`` of a row (``W{b}A{b}``; ternary weights fit 2 bits), or None."""
    if method == "binary":
        return 1 if act_bits == 1 else None
    wb = 2 if method == "ternary" else weight_bits
    return act_bits if wb == act_bits else None


def _best(candidates, mode=None):
    pool = [c for c in candidates if mode is None or c["mode"] == mode]
    return max(pool, key=lambda c: c["accuracy"]) if pool else None


def _summary(preset: str, dataset: str, base: float, by_width: dict, args) -> list[str]:
    """The summary lines of ``preset``: per width its best row against the peer and the target (Fashion-MNIST only,
    the peer's data); the seeded widths by the mean of their seeds."""
    if preset not in PEER or dataset != "fashion-mnist":
        return []
    peer, target = PEER[preset], TARGETS[preset]
    lines = [f"## {preset}: the best method per width against Brevitas QAT", "",
             "Peer: Brevitas QAT on the same topology with batch norm, the same data, Adam with a cosine schedule, "
             "10 epochs from scratch, 8-bit input quantization. lowbit: the best row of the table at each width "
             f"(QAT: {_epochs(args.qat_epochs)} from the float32 checkpoint"
             f"{', learned scales' if args.learn_scales else ''}); "
             + (f"W{SEEDED_WIDTHS[0]}A{SEEDED_WIDTHS[0]} and W1A1 by the mean of {args.seeds} QAT seeds "
                "(min–max beside it)." if args.seeds > 1 else "one seed."), "",
             "| width | peer | target | lowbit | met | method | mode | seeds |", "|---|---|---|---|---|---|---|---|"]
    ok = 100 * base >= target[32]
    lines.append(f"| float32 | {peer[32]:.2f} | {target[32]:.2f} | {100 * base:.2f} | {'yes' if ok else 'no'} | "
                 "float32 | - | 1 |")
    for width in (8, 4, 2, 1):
        candidates = by_width.get((preset, width), [])
        best = next((c for c in candidates if "seeds" in c), None) or _best(candidates)
        if best is None:
            continue
        seeds = best.get("seeds", [best["accuracy"]])
        acc = 100 * sum(seeds) / len(seeds)
        spread = f" ({100 * min(seeds):.2f}–{100 * max(seeds):.2f})" if len(seeds) > 1 else ""
        lines.append(f"| W{width}A{width} | {peer[width]:.2f} | {target[width]:.2f} | {acc:.2f}{spread} | "
                     f"{'yes' if acc >= target[width] else 'no'} | {best['method']} {best['config']} | "
                     f"{best['mode']} | {len(seeds)} |")
    return lines


def _epochs(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


def _first_input_bits(net) -> int:
    fmt = net.layers[0].in_format
    return 1 if fmt.kind.value == "bipolar" else fmt.bits


def run(args) -> int:
    import csv
    import io
    import time

    import numpy as np

    from lowbit.sw.golden import run_network
    from lowbit.sw.quant import METHODS
    from lowbit.sw.train import PRESET_NAMES, checkpoint_path, dataset_input_shape, load_or_train
    from lowbit.sw.util import write_files

    from .common import output_dir, output_option

    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    for p in presets:
        if p not in PRESET_NAMES:
            raise ValueError(f"--presets entries must be among {', '.join(PRESET_NAMES)}, not {p!r}")
    try:
        bits = [int(b) for b in args.bits.split(",")]
    except ValueError:
        raise ValueError(f"--bits must be comma-separated integers, not {args.bits!r}") from None
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"--methods entries must be among {', '.join(METHODS)}, not {m!r}")
    input_bits = parse_input_bits(args.input_bits, methods)
    for flag, value, least in (("--epochs", args.epochs, 1), ("--calib", args.calib, 1),
                               ("--qat-epochs", args.qat_epochs, 0), ("--wage-epochs", args.wage_epochs, 0),
                               ("--seeds", args.seeds, 1)):
        if value < least:
            raise ValueError(f"{flag} must be an integer ≥ {least}, not {value!r}")
    out = output_dir(args.output, param=output_option(args))  # before training, so a bad folder fails at once
    ds = resolve_dataset(args)
    out.mkdir(parents=True, exist_ok=True)
    cache = RowCache(out / "cache", read=not args.no_cache)
    common = {"code": code_version(), "dataset": {"name": ds.name, "digest": dataset_digest(ds)}, "seed": args.seed}
    rows = []  # dicts of FIELDS
    t0 = time.time()
    counts = {"computed": 0, "cached": 0}

    def golden(net):
        return float(np.mean(run_network(net, ds.x_test, raw_pixels=True, keep="logits").classes == ds.y_test))

    def add(preset, method, config, b, mode, acc, base, notes="", ibits=None, seconds=None, cached=False):
        rows.append({"preset": preset, "method": method, "config": config, "bits": b, "mode": mode,
                     "accuracy": round(100 * acc, 2), "delta": round(100 * (acc - base), 2), "notes": notes,
                     "input_bits": "" if ibits is None else ibits,
                     "seconds": "" if seconds is None else round(seconds, 1)})
        print(f"[{time.time() - t0:7.0f}s] {preset} {method:9s} {config:22s} {mode:4s} {100 * acc:6.2f}% "
              f"({100 * (acc - base):+.2f}) {notes}{' (cached)' if cached else ''}", flush=True)

    def row(preset, method, config, b, mode, base, key, compute):
        """One table row from the cache, or computed by ``compute() -> {accuracy, notes, …}`` and
        cached at once. ``config`` and ``b`` may be functions of that value (the search row)."""
        key = row_key(preset=preset, **common, **key)
        value = cache.get(key)
        cached = value is not None
        if not cached:
            t = time.time()
            value = compute()
            value["seconds"] = time.time() - t
            cache.put(key, value)
        counts["cached" if cached else "computed"] += 1
        add(preset, method, config(value) if callable(config) else config, b(value) if callable(b) else b, mode,
            value["accuracy"], base, value.get("notes", ""), value.get("input_bits"), value.get("seconds"), cached)
        return value["accuracy"]

    calib = ds.x_train[:args.calib]
    jobs = _jobs(methods, bits)
    by_width, summaries = {}, []  # (preset, width) → the integer rows at that width; per preset its summary lines
    for preset in presets:
        model, info = load_or_train(preset, ds, args.epochs, args.seed)
        model_sha = file_sha256(checkpoint_path(preset, ds.name, args.seed, args.epochs))
        base = info["test_accuracy"]
        add(preset, "float32", "float32", 32, "-", base, base)
        modes = ["ptq"] + (["qat"] if args.qat_epochs > 0 else [])
        for mode in modes:
            for method, wb, ab, config, opts in jobs:
                if mode == "qat" and ((method == "ternary" and opts.get("cluster") != 4)
                                      or (ab > 4 and method != "ternary")):
                    continue  # cluster sweep and 8-bit rows post-training only (time; PTQ ≈ float there),
                    # except ternary N=4 A8, a target of its own
                opts = dict(opts)
                if method in input_bits:
                    opts["input_bits"] = input_bits[method]
                    config += f" in{input_bits[method]}"

                def compute(method=method, wb=wb, ab=ab, opts=opts, mode=mode, seed=args.seed):
                    from lowbit.sw.quant import quantize

                    net = quantize(model, method, wb, ab, calib, qat=mode == "qat", train_data=(ds.x_train, ds.y_train),
                                   qat_epochs=args.qat_epochs, seed=seed, progress=False,
                                   learn_scales=mode == "qat" and args.learn_scales, **opts)
                    notes = ""
                    if "ternary" in net.metadata:
                        t = net.metadata["ternary"]
                        notes = (f"mults replaced {100 * t['mults_replaced_share']:.2f}%, zero weights "
                                 f"{100 * t['zero_weight_share']:.1f}%, {t['distinct_scales']} scales")
                    elif net.metadata.get("multiplier_max_rel_error") is not None and method != "binary":
                        notes = f"multiplier error ≤ {net.metadata['multiplier_max_rel_error']:.1e}"
                    return {"accuracy": golden(net), "notes": notes, "input_bits": _first_input_bits(net)}

                key = {"model": model_sha, "method": method, "weight_bits": wb, "act_bits": ab, "options": opts,
                       "mode": mode, "calib": args.calib,
                       **({"qat_epochs": args.qat_epochs, "learn_scales": args.learn_scales} if mode == "qat" else {})}
                acc = row(preset, method, config, ab, mode, base, key, compute)
                width = _width(method, wb, ab)
                if width is not None:
                    by_width.setdefault((preset, width), []).append(
                        {"method": method, "config": config, "mode": mode, "accuracy": acc, "key": key,
                         "compute": compute})
        if args.seeds > 1 and args.qat_epochs > 0:
            for width in SEEDED_WIDTHS:
                best = _best(by_width.get((preset, width), []), mode="qat")
                if best is None:
                    continue
                best["seeds"] = [best["accuracy"]]
                for seed in range(args.seed + 1, args.seed + args.seeds):
                    best["seeds"].append(row(preset, best["method"], f"{best['config']} qat seed {seed}", width, "qat",
                                             base, {**best["key"], "qat_seed": seed},
                                             lambda c=best["compute"], s=seed: c(seed=s)))
        summaries.append(_summary(preset, ds.name, base, by_width, args))
        if args.wage_epochs > 0:
            def compute_wage(preset=preset):
                from lowbit.sw.quant.wage import export_wage, train_wage

                wm = train_wage(ds.x_train, ds.y_train, preset=preset, epochs=args.wage_epochs, seed=args.seed,
                                input_shape=dataset_input_shape(ds, preset), progress=False)
                net = export_wage(wm)
                return {"accuracy": golden(net), "notes": "", "input_bits": _first_input_bits(net)}

            # trained from scratch: no float checkpoint in the key
            row(preset, "wage", "2-8-8-8 (W ternary A u7)", 2, "wage", base,
                {"method": "wage", "wage_bits": "2-8-8-8", "wage_epochs": args.wage_epochs}, compute_wage)
        if not args.no_minifloat:
            from lowbit.sw.quant.minifloat import (Minifloat, exhaustive_search, fast_precision_search,
                                                   minifloat_accuracy)

            for f in (Minifloat(6, 7), Minifloat(4, 3), Minifloat(4, 3, False), Minifloat(3, 2), Minifloat(2, 1)):
                row(preset, "minifloat", str(f), f.bits, "emu", base,
                    {"model": model_sha, "method": "minifloat", "format": str(f)},
                    lambda f=f: {"accuracy": minifloat_accuracy(model, ds.x_test, ds.y_test, f),
                                 "notes": "float emulation, no IR"})

            def compute_search():
                fast = fast_precision_search(model, ds.x_train[:10], ds.x_test, ds.y_test, float_accuracy=base)
                ex = exhaustive_search(model, ds.x_test, ds.y_test, float_accuracy=base)
                same = fast.chosen == ex.chosen
                # Both searches want the fewest bits; two formats of one width are an equally cheap
                # answer (the exhaustive one breaks the tie by fewer exponent bits).
                same_bits = bool(fast.chosen and ex.chosen and fast.chosen.bits == ex.chosen.bits)
                ex_bits = f", {ex.chosen.bits} bits" if ex.chosen else ""
                return {"accuracy": fast.accuracy or 0.0, "chosen": str(fast.chosen) if fast.chosen else None,
                        "chosen_bits": fast.chosen.bits if fast.chosen else 0,
                        "notes": f"fast search {fast.evaluations} evaluations vs exhaustive {ex.evaluations} "
                                 f"(chose {ex.chosen}{ex_bits}); same format: {'yes' if same else 'no'}, "
                                 f"same width: {'yes' if same_bits else 'no'}"}

            row(preset, "minifloat", lambda v: f"search: {v['chosen']}", lambda v: v["chosen_bits"], "emu", base,
                {"model": model_sha, "method": "minifloat", "search": "fast+exhaustive", "probe": 10}, compute_search)
    table = io.StringIO(newline="")
    w = csv.DictWriter(table, fieldnames=FIELDS)
    w.writeheader()
    w.writerows(rows)
    marked = ", ".join(f"{m} {n}" for m, n in input_bits.items())
    lines = [f"# Test accuracy on {ds.name} ({len(ds.y_test)} images)", "",
             "Integer rows are the golden model's accuracy of the exported IR; `delta` is against float32 "
             "(points). Modes: ptq post-training, qat quantization-aware fine-tuning "
             f"({_epochs(args.qat_epochs)}), wage trained from scratch ({_epochs(args.wage_epochs)}), emu float "
             "emulation. `input_bits` is the first layer's input width (pixel >> (8 − N); 1 for binary W1A1: "
             "the bipolar pixel ≥ 128); "
             + (f"rows marked `inN` set it with --input-bits ({marked}), the others use min(A, 8)."
                if input_bits else "every row uses the default, min(A, 8).")
             + " `seconds` is each row's compute time on this machine.", "",
             "| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    lines += ["| " + " | ".join(str(r[k]) for k in FIELDS) + " |" for r in rows]
    for summary in filter(None, summaries):
        lines += ["", *summary]
        print("\n".join(summary))
    # the folder may hold other reports: both files are replaced, nothing else is touched
    write_files(out, {"accuracy.csv": table.getvalue(), "accuracy.md": "\n".join(lines) + "\n"})
    print(f"wrote {out / 'accuracy.md'} and {out / 'accuracy.csv'} in {time.time() - t0:.0f} s "
          f"({counts['computed']} rows computed, {counts['cached']} from {out / 'cache'})")
    return 0
