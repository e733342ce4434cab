"""The tasks of a sweep, one point each: ``eval`` (quantize, golden accuracy, folding, cost
model), ``synth`` and ``sim`` (build the point's accelerator, then yosys/nextpnr or Verilator).

A task is a JSON-able dict; :func:`run_task` runs any of them and never raises.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import time
import traceback
from pathlib import Path

from .config import COST_FAMILY, SweepConfig

__all__ = ["CACHE_VERSION", "task_key", "grid_points", "network_for", "golden_accuracy", "estimate_network", "evaluate_point",
           "synth_point", "sim_point", "run_task"]

# Bumped when a task's result would change for the same configuration (new fields, a fixed bug).
CACHE_VERSION = 1


def _public(task: dict) -> dict:
    """The task without its ``_``-prefixed fields (where things are, not what they are)."""
    return {k: (_public(v) if isinstance(v, dict) else v) for k, v in task.items() if not k.startswith("_")}


def task_key(task: dict) -> str:
    """Stable hash of a task's configuration (the cache file name); ``_`` fields do not count."""
    blob = json.dumps({"v": CACHE_VERSION, **_public(task)}, sort_keys=True, default=str)
    return f"{task['kind']}_{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _bit_config(method: str, b: int) -> tuple[int, int, dict, str] | None:
    """``(weight_bits, act_bits, opts, label)`` of method at width b, or None when it cannot take b."""
    from ..quant import METHODS

    if method == "ternary":
        return 2, b, {"cluster": 4}, f"Wternary A{b} N=4"
    if method == "binary":
        return 1, b, {}, f"W1 A{b}"
    lo, hi = METHODS[method].WEIGHT_BITS
    if not lo <= b <= hi:
        return None
    return b, b, {}, f"W{b} A{b}"


def grid_points(config: SweepConfig, model_sha: str = "", dataset: str | None = None) -> list[dict]:
    """The ``eval`` tasks: every lane budget × method × width (× PTQ/QAT) the methods can take.

    Lane budgets are the outer loop: a pool's workers start on different networks, and the
    other foldings of a network find it (and its accuracy) in the sweep's network cache
    instead of quantizing it and running the golden model again at the same time.
    """
    ds = dataset or config.dataset
    tasks = []
    modes = [0] + ([config.qat_epochs] if config.qat_epochs else [])
    for lanes in config.lanes:
        for method in config.methods:
            for b in config.bits:
                bc = _bit_config(method, b)
                if bc is None:
                    continue
                wb, ab, opts, label = bc
                for qat in modes:
                    if qat and b > 4:
                        continue  # post-training is already within noise of float32 at 8 bits
                    tasks.append({
                        "kind": "eval", "preset": config.preset, "dataset": ds, "epochs": config.epochs,
                        "seed": config.seed, "model_dir": config.model_dir, "model_sha": model_sha,
                        "method": method, "bits": b, "weight_bits": wb, "act_bits": ab, "opts": opts,
                        "label": label, "qat_epochs": qat, "calib": config.calib,
                        "test_images": config.test_images, "lanes": lanes, "target": config.target,
                        "cost_family": COST_FAMILY[config.family], "mem_family": config.family,
                    })
    return tasks


@functools.lru_cache(maxsize=4)
def _dataset(name: str):
    from ..datasets import load_dataset
    return load_dataset(name)


@functools.lru_cache(maxsize=4)
def _float_model(preset: str, dataset: str, epochs: int, seed: int, model_dir: str):
    from ..train import load_or_train, set_threads

    set_threads()  # one torch thread per worker: the pool already fills the cores
    return load_or_train(preset, _dataset(dataset), epochs, seed, cache_dir=model_dir, progress=False, log=None)


_NET_FIELDS = ("preset", "dataset", "epochs", "seed", "model_dir", "model_sha", "method", "weight_bits",
               "act_bits", "opts", "qat_epochs", "calib")


@functools.lru_cache(maxsize=8)
def _network_cached(blob: str):
    from ..quant import quantize

    t = json.loads(blob)
    ds = _dataset(t["dataset"])
    model, info = _float_model(t["preset"], t["dataset"], t["epochs"], t["seed"], t["model_dir"])
    net = quantize(model, t["method"], t["weight_bits"], t["act_bits"], ds.x_train[:t["calib"]],
                   qat=bool(t["qat_epochs"]), train_data=(ds.x_train, ds.y_train),
                   qat_epochs=max(1, t["qat_epochs"]), seed=t["seed"], progress=False, **t["opts"])
    return net, info


def network_for(task: dict):
    """The quantized network of a task.

    Memoized per process, and on disk under ``task["_net_cache"]`` when given: the foldings
    of one network land on different workers, and QAT networks take minutes to make.
    """
    blob = json.dumps({k: task[k] for k in _NET_FIELDS}, sort_keys=True)
    where = task.get("_net_cache")
    if not where:
        return _network_cached(blob)
    from ..ir import IRError, Network

    path = Path(where) / f"net_{hashlib.sha256(blob.encode()).hexdigest()[:16]}.npz"
    model, info = _float_model(task["preset"], task["dataset"], task["epochs"], task["seed"], task["model_dir"])
    if path.is_file():
        try:
            return Network.load(path), info
        except IRError:
            pass  # damaged: make it again
    net, info = _network_cached(blob)
    net.save(path)  # atomic; two workers writing the same network write the same bytes
    return net, info


def estimate_network(net, plan, family: str, mem_family: str | None = None) -> dict:
    """Cost model of a folded network: the sum of its ops' estimates (:func:`lowbit.sw.ops.network_cost`).

    ``family`` picks the LUT coefficients, ``mem_family`` (default ``family``) the block-RAM
    and LUTRAM shapes: ECP5 borrows iCE40's LUT4 coefficients but has its own 18-kbit RAMs.
    """
    from ..ops import lower, network_cost

    return network_cost(lower(net, plan), family, mem_family)


_ACCURACY: dict = {}


def golden_accuracy(task: dict, net) -> tuple[float, int]:
    """Golden-model accuracy of the task's network on its test images, and how many.

    It depends on the network, not on its folding: memoized per process, and on disk beside
    the network under ``task["_net_cache"]``, so the other lane budgets of a network (a LeNet
    takes about 40 s on 10,000 images) do not run the golden model again.
    """
    import numpy as np

    from ..golden import run_network

    blob = json.dumps({"v": CACHE_VERSION, "test_images": task["test_images"], **{k: task[k] for k in _NET_FIELDS}},
                      sort_keys=True)
    if blob in _ACCURACY:
        return _ACCURACY[blob]
    where = task.get("_net_cache")
    path = Path(where) / f"acc_{hashlib.sha256(blob.encode()).hexdigest()[:16]}.json" if where else None
    if path is not None and path.is_file():
        try:
            d = json.loads(path.read_text())
            _ACCURACY[blob] = float(d["accuracy"]), int(d["test_images"])
            return _ACCURACY[blob]
        except (ValueError, KeyError, OSError):
            pass  # cut short or damaged: run it again
    ds = _dataset(task["dataset"])
    x, y = ds.x_test, ds.y_test
    if task["test_images"]:
        x, y = x[:task["test_images"]], y[:task["test_images"]]
    # keep="logits": a 10,000-image LeNet's intermediates take gigabytes
    acc = float(np.mean(run_network(net, x, raw_pixels=True, keep="logits").classes == y))
    _ACCURACY[blob] = acc, int(len(y))
    if path is not None:
        from ..util import write_atomic

        write_atomic(path, json.dumps({"accuracy": acc, "test_images": int(len(y)), "network": net.name}) + "\n")
    return _ACCURACY[blob]


def evaluate_point(task: dict) -> dict:
    """Quantize, golden-model accuracy, fold for the lane budget, cost model: the ``eval`` task.

    Works on any network the ops lower (MLPs and CNNs): the cycles are the initiation
    interval of the lowered plan (the slowest op: a matrix-vector unit, a sliding window or
    a max-pool), the cost the sum of the ops' estimates.
    """
    from ..fold import auto_fold
    from ..ops import initiation_interval, lower, mac_lanes, network_cost

    net, info = network_for(task)
    acc, n = golden_accuracy(task, net)
    plan = auto_fold(net, max_lanes=task["lanes"])
    ops = lower(net, plan)
    cost = network_cost(ops, task["cost_family"], task["mem_family"])
    ii = initiation_interval(ops)
    slowest = [f"{op.name} {op.kind}" for op in ops if op.cycles() == ii]  # often tied in a CNN
    return {"accuracy": acc, "float_accuracy": float(info["test_accuracy"]), "test_images": n,
            "network": net.name,
            "formats": ["/".join(f"{w}/{a}" for w, a in op.mac_format_pairs()) for op in ops if op.mac_format_pairs()],
            "fold": str(plan), "mac_lanes": mac_lanes(ops), "cycles_model": ii,
            "cycles_per_layer": [op.cycles() for op in ops],
            "ops": [f"{op.name} {op.kind}" for op in ops], "bottleneck": " + ".join(slowest),
            "lut_model": cost["lut"], "ff_model": cost["ff"], "bram_model": cost["bram"],
            "dsp_model": cost["dsp"], "lutram_model": cost["lutram_luts"]}


def _build(task: dict, out: Path):
    """Build the point's network into ``out`` (reused when its manifest is already there)."""
    from lowbit.hw.build import build_network, load_build

    from ..fold import auto_fold

    net, _ = network_for(task["point"])
    plan = auto_fold(net, max_lanes=task["point"]["lanes"])
    if (out / "manifest.json").is_file():
        try:
            manifest, built = load_build(out)
            if built.name == net.name and manifest.get("expected_cycles_per_image") == plan.initiation_interval:
                return manifest, net
        except ValueError:
            pass  # stale or damaged: rebuild
    manifest = build_network(net, plan, out)
    return manifest, net


def synth_point(task: dict) -> dict:
    """Build the point's Verilog and synthesize it for ``task["target"]``: the ``synth`` task."""
    from ..synth import synth_target

    out = Path(task["build_dir"])
    _build(task, out)
    r = synth_target(out, task["target"])
    res = r["resources"]
    return {"lut_yosys": res.get("lut"), "ff_yosys": res.get("ff"), "bram_yosys": res.get("bram"),
            "dsp_yosys": res.get("dsp"), "fmax_mhz": r.get("fmax_mhz"), "fits": r["fits"],
            "violations": r["violations"], "synth_notes": r["notes"], "synth_times": r["times"]}


def sim_point(task: dict) -> dict:
    """Run ``sim_images`` test images through the built accelerator in Verilator: the ``sim`` task."""
    from lowbit.sim.netrun import simulate_build

    out = Path(task["build_dir"])
    manifest, net = _build(task, out)
    ds = _dataset(task["point"]["dataset"])
    n = min(task["sim_images"], len(ds.x_test))  # digits has 359 test images
    rep = simulate_build(out, manifest, net, ds.x_test[:n], ds.y_test[:n], stress=min(50, n // 4))
    if not rep.run.passed:
        raise RuntimeError(f"simulation of {out} failed (testbench did not pass)")
    return {"sim_images": n, "cycles_measured": rep.cycles_per_image, "cycles_expected": rep.expected_cycles_per_image,
            "mismatches": rep.mismatches, "bit_exact": rep.bit_exact, "sim_accuracy": rep.accuracy,
            "latency_cycles": rep.latency_cycles}


_COST_FIELDS = ("cost_family", "mem_family", "test_images", "target")
_KINDS = {"eval": "evaluate_point", "synth": "synth_point", "sim": "sim_point"}


def run_task(task: dict) -> dict:
    """Run one task; never raises: a failure comes back as ``status = "error"`` with its message."""
    t0 = time.monotonic()
    # looked up at call time on the package (lowbit.sw.explore), so tests can substitute one
    fn = getattr(sys.modules[__package__], _KINDS[task["kind"]])
    try:
        data = fn(task)
        status, err, tb = "ok", None, None
    except Exception as e:  # noqa: BLE001 - a failing point is a result to record, not a reason to stop
        data, status, err, tb = {}, "error", f"{type(e).__name__}: {e}", traceback.format_exc(limit=8)
    return {"key": task_key(task), "task": task, "status": status, "error": err, "traceback": tb,
            "seconds": round(time.monotonic() - t0, 3), **data}
