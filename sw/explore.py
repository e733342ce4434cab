"""Design-space exploration: quantization method × bit width × folding → accuracy, cycles, cost.

Every point of a sweep is one integer network (a method at a bit width, quantized from the
cached float32 model) folded onto hardware for one MAC-lane budget. For each point the sweep
records

* **accuracy**: the golden model on the test set (the hardware equals it bit for bit; that is
  proven by the simulation tier, and spot-checked here);
* **cycles per image**: the analytical folding model (:mod:`lowbit.sw.fold`), and for a few
  points the cycles measured in Verilator (:func:`lowbit.sim.netrun.simulate_build`);
* **resources**: the analytical cost model (:mod:`lowbit.sw.cost`, labelled ``model``)
  everywhere, and yosys/nextpnr (:func:`lowbit.sw.synth.synth_target`, labelled ``yosys``)
  for a chosen few points, with their fmax;
* **images/s** = fmax / cycles per image, with the fmax's source named (``nextpnr`` where the
  point was placed and routed, else ``nominal``: the median nextpnr fmax of the synthesized
  points of the sweep, or a per-family default when there is none).

Work is split into tasks of three kinds — ``eval`` (quantize, golden accuracy, folding, cost
model), ``synth`` and ``sim`` — each cached as one JSON file under ``<out>/cache/`` named by
a hash of its configuration. A rerun skips every task whose file holds a success, so an
interrupted sweep resumes where it stopped; a task that raises is recorded with its error
(and tried again on the next run) while the others go on. Tasks run in a local process pool
or on an existing Dask distributed cluster.

Public API
----------
``SweepConfig``                       what to sweep (``CONFIGS["default"]``, ``CONFIGS["small"]``)
``run_sweep(config, out_dir, *, workers=2, scheduler=None, progress=True, log=print) -> SweepResult``
``grid_points(config, model_sha)``    the ``eval`` task configurations of a sweep
``evaluate_point(task)`` / ``synth_point(task)`` / ``sim_point(task)``  one task each
``estimate_network(net, plan, family)``  cost model of a whole folded network
``pareto_front(rows, objectives)``    indices of the non-dominated rows
``su_comparison(rows, threshold)``    images/s per kLUT per bit width at matched accuracy
``write_outputs(result, out_dir)``    CSV, JSON, markdown report and PNG plots
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import statistics
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .util import atomic_path, write_atomic, write_files

__all__ = ["SweepConfig", "CONFIGS", "SweepResult", "run_sweep", "grid_points", "evaluate_point", "synth_point",
           "sim_point", "estimate_network", "pareto_front", "su_comparison", "parse_match", "write_outputs",
           "task_key", "COST_FAMILY", "NOMINAL_FMAX_MHZ", "CACHE_VERSION"]

# Bumped when a task's result would change for the same configuration (new fields, a fixed bug).
CACHE_VERSION = 1

# The cost model is calibrated for these families; ECP5 is LUT4 like iCE40, so its LUT4
# coefficients stand in (the yosys points of a sweep show how well).
COST_FAMILY = {"ice40": "ice40", "ecp5": "ice40", "xilinx": "xilinx"}
# fmax for points not placed and routed when the sweep has no nextpnr fmax at all:
# the clock constraints lowbit's nextpnr runs use (lowbit.sw.pnr), and 200 MHz on
# Xilinx 7 series (no open place-and-route there).
NOMINAL_FMAX_MHZ = {"ice40": 50.0, "ecp5": 150.0, "xilinx": 200.0}


@dataclass(frozen=True)
class SweepConfig:
    """What one sweep covers.

    Parameters
    ----------
    preset : str
        Float32 MLP preset (``tfc``, ``sfc``, ``lfc``), reused from ``model_dir`` or trained.
    dataset : str
        ``fashion-mnist``, ``mnist``, ``digits`` or ``auto``.
    methods : tuple of str
        Post-training quantizers (keys of :data:`lowbit.sw.quant.METHODS`).
    bits : tuple of int
        Bit widths ``b``: ``W{b}A{b}`` for pow2/scaled/dfp, ``W ternary A{b}`` for ternary,
        ``W1 A{b}`` (bipolar at ``b = 1``) for binary; widths a method cannot take are skipped.
    lanes : tuple of int
        MAC-lane budgets for :func:`lowbit.sw.fold.auto_fold` (the folding axis).
    target : str
        FPGA target of the synthesized points (:data:`lowbit.sw.synth.TARGETS`); its family
        picks the cost model's coefficients.
    synth : int
        How many points to synthesize (yosys, plus nextpnr where the family has it).
    synth_max_lut : int
        Only points whose cost-model LUTs are at most this are synthesized: yosys time grows
        with the design (a 6k-LUT TFC takes about 2 minutes on ECP5, 1024 lanes far longer).
    sim : int
        How many points to spot-check in Verilator, each on ``sim_images`` test images.
    qat_epochs : int
        0: post-training only; otherwise also quantization-aware points (b ≤ 4) with this many epochs.
    match : str
        Accuracy threshold of the Su et al. comparison: ``"float-5"`` (points below the
        float32 accuracy) or an absolute percentage such as ``"80"``.
    """

    preset: str = "tfc"
    dataset: str = "auto"
    epochs: int = 10
    seed: int = 0
    methods: tuple = ("pow2", "scaled", "ternary", "binary")
    bits: tuple = (1, 2, 4, 8)
    lanes: tuple = (16, 64, 256, 1024)
    calib: int = 2000
    test_images: int = 0            # 0: the whole test set
    target: str = "ecp5-25k"
    synth: int = 4
    synth_max_lut: int = 6000
    sim: int = 2
    sim_images: int = 300
    qat_epochs: int = 2             # QAT points at ≤ 4 bits: PTQ alone leaves 1-2-bit TFC below any match
    match: str = "float-5"
    model_dir: str = "build/models"

    def validate(self) -> "SweepConfig":
        """Check every field (imports the quantizers, hence torch: not done at construction)."""
        from .quant import METHODS
        from .synth import TARGETS
        from .train import PRESETS

        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"methods must be among {', '.join(METHODS)}, not {m!r}")
        if not self.methods:
            raise ValueError("methods must name at least one method, not ()")
        for name, seq, lo in (("bits", self.bits, 1), ("lanes", self.lanes, 1)):
            if not seq or any(not isinstance(v, int) or v < lo for v in seq):
                raise ValueError(f"{name} must be positive integers, not {seq!r}")
        if any(b > 16 for b in self.bits):
            raise ValueError(f"bits must be at most 16, not {max(self.bits)}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {self.target!r}")
        for name in ("synth", "synth_max_lut", "sim", "qat_epochs", "test_images"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {v!r}")
        if not isinstance(self.sim_images, int) or self.sim_images < 3:
            raise ValueError(f"sim_images must be an integer of at least 3, not {self.sim_images!r}")
        parse_match(self.match, 0.5)  # validates
        return self

    @property
    def family(self) -> str:
        from .synth import TARGETS
        return TARGETS[self.target].family

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


CONFIGS = {
    # ~10 min on 2 cores: 14 networks × 4 foldings, 4 synthesized (ECP5), 2 simulated.
    "default": SweepConfig(),
    # seconds: digits, TFC, 2 methods × 2 widths × 2 foldings, cost model only.
    "small": SweepConfig(dataset="digits", epochs=40, methods=("scaled", "binary"), bits=(1, 4), lanes=(8, 64),
                         calib=500, synth=0, sim=0, sim_images=60, qat_epochs=0, match="float-10"),
}


def parse_match(text: str, float_accuracy: float) -> float:
    """Accuracy threshold (fraction) from ``"float-N"`` (N points below float32) or ``"P"`` (percent)."""
    s = str(text).strip().lower().replace(" ", "")
    try:
        if s.startswith("float"):
            rest = s[len("float"):]
            return float_accuracy + (float(rest) / 100 if rest else 0.0)  # rest is "-5": signed points
        v = float(s)
    except ValueError:
        raise ValueError(f"match must be 'float-N' (points below float32) or a percentage, not {text!r}") from None
    if not 0 <= v <= 100:
        raise ValueError(f"match must be a percentage in 0..100, not {text!r}")
    return v / 100


# --- tasks ------------------------------------------------------------------------------------------

def _public(task: dict) -> dict:
    """The task without its ``_``-prefixed fields (where things are, not what they are)."""
    return {k: (_public(v) if isinstance(v, dict) else v) for k, v in task.items() if not k.startswith("_")}


def task_key(task: dict) -> str:
    """Stable hash of a task's configuration (the cache file name); ``_`` fields do not count."""
    blob = json.dumps({"v": CACHE_VERSION, **_public(task)}, sort_keys=True, default=str)
    return f"{task['kind']}_{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _bit_config(method: str, b: int) -> tuple[int, int, dict, str] | None:
    """``(weight_bits, act_bits, opts, label)`` of method at width b, or None when it cannot take b."""
    from .quant import METHODS

    if method == "ternary":
        return 2, b, {"cluster": 4}, f"Wternary A{b} N=4"
    if method == "binary":
        return 1, b, {}, f"W1 A{b}"
    lo, hi = METHODS[method].WEIGHT_BITS
    if not lo <= b <= hi:
        return None
    return b, b, {}, f"W{b} A{b}"


def grid_points(config: SweepConfig, model_sha: str = "", dataset: str | None = None) -> list[dict]:
    """The ``eval`` tasks: every method × width (× PTQ/QAT) × lane budget the methods can take."""
    ds = dataset or config.dataset
    tasks = []
    modes = [0] + ([config.qat_epochs] if config.qat_epochs else [])
    for method in config.methods:
        for b in config.bits:
            bc = _bit_config(method, b)
            if bc is None:
                continue
            wb, ab, opts, label = bc
            for qat in modes:
                if qat and b > 4:
                    continue  # post-training is already within noise of float32 at 8 bits
                for lanes in config.lanes:
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
    from .datasets import load_dataset
    return load_dataset(name)


@functools.lru_cache(maxsize=4)
def _float_model(preset: str, dataset: str, epochs: int, seed: int, model_dir: str):
    from .train import load_or_train, set_threads

    set_threads()  # one torch thread per worker: the pool already fills the cores
    return load_or_train(preset, _dataset(dataset), epochs, seed, cache_dir=model_dir, progress=False, log=None)


_NET_FIELDS = ("preset", "dataset", "epochs", "seed", "model_dir", "model_sha", "method", "weight_bits",
               "act_bits", "opts", "qat_epochs", "calib")


@functools.lru_cache(maxsize=8)
def _network_cached(blob: str):
    from .quant import quantize

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
    from .ir import IRError, Network

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
    """Cost model of a folded network: the sum over layers of MAC array + requantizer and memories.

    ``family`` picks the LUT coefficients, ``mem_family`` (default ``family``) the block-RAM
    and LUTRAM shapes: ECP5 borrows iCE40's LUT4 coefficients but has its own 18-kbit RAMs.

    Each layer is one MVAU with a PE×SIMD array, weights in a ``NF·SF × PE·SIMD·b`` memory
    and per-channel parameters (bias, multiplier, shift) in an ``NF``-deep memory, as
    :mod:`lowbit.hw.mvu` builds it; the last layer emits logits (no requantizer).
    """
    from .cost import estimate_block, weight_memory
    from .pack import layer_specs

    tot = {"lut": 0, "ff": 0, "bram": 0, "dsp": 0, "lutram_luts": 0}
    for layer, fold in zip(net.layers, plan.layers):
        mac, rq, params = layer_specs(layer, fold)
        blk = estimate_block(mac, rq, family)
        wmem = weight_memory(fold.nf * fold.sf, mac.weight_word_bits, mem_family or family)
        pmem = weight_memory(fold.nf, fold.pe * params.width, mem_family or family)
        tot["lut"] += blk["lut"] + wmem["lutram_luts"] + pmem["lutram_luts"]
        tot["lutram_luts"] += wmem["lutram_luts"] + pmem["lutram_luts"]
        tot["ff"] += blk["ff"]
        tot["bram"] += wmem["bram"] + pmem["bram"]
    return tot


def evaluate_point(task: dict) -> dict:
    """Quantize, golden-model accuracy, fold for the lane budget, cost model: the ``eval`` task."""
    import numpy as np

    from .fold import auto_fold
    from .golden import run_network

    ds = _dataset(task["dataset"])
    net, info = network_for(task)
    x, y = ds.x_test, ds.y_test
    if task["test_images"]:
        x, y = x[:task["test_images"]], y[:task["test_images"]]
    acc = float(np.mean(run_network(net, x, raw_pixels=True).classes == y))
    plan = auto_fold(net, max_lanes=task["lanes"])
    cost = estimate_network(net, plan, task["cost_family"], task["mem_family"])
    return {"accuracy": acc, "float_accuracy": float(info["test_accuracy"]), "test_images": int(len(y)),
            "network": net.name, "formats": [f"{l.weight_format}/{l.in_format}" for l in net.layers],
            "fold": str(plan), "mac_lanes": plan.mac_lanes, "cycles_model": plan.initiation_interval,
            "cycles_per_layer": [f.cycles for f in plan.layers],
            "lut_model": cost["lut"], "ff_model": cost["ff"], "bram_model": cost["bram"],
            "dsp_model": cost["dsp"], "lutram_model": cost["lutram_luts"]}


def _build(task: dict, out: Path):
    """Build the point's network into ``out`` (reused when its manifest is already there)."""
    from lowbit.hw.build import build_network, load_build

    from .fold import auto_fold

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
    from .synth import synth_target

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
    n = task["sim_images"]
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
    fn = globals()[_KINDS[task["kind"]]]  # looked up at call time so tests can substitute one
    try:
        data = fn(task)
        status, err, tb = "ok", None, None
    except Exception as e:  # noqa: BLE001 - a failing point is a result to record, not a reason to stop
        data, status, err, tb = {}, "error", f"{type(e).__name__}: {e}", traceback.format_exc(limit=8)
    return {"key": task_key(task), "task": task, "status": status, "error": err, "traceback": tb,
            "seconds": round(time.monotonic() - t0, 3), **data}


# --- execution --------------------------------------------------------------------------------------

def _cache_path(cache: Path, task: dict) -> Path:
    return cache / f"{task_key(task)}.json"


def _load_cached(cache: Path, task: dict) -> dict | None:
    p = _cache_path(cache, task)
    if not p.is_file():
        return None
    try:
        r = json.loads(p.read_text())
    except (json.JSONDecodeError, OSError):
        return None  # a file cut short by an interruption: redo the task
    return r if r.get("status") == "ok" else None


def _store(cache: Path, result: dict) -> None:
    # atomic: an interrupted write never leaves a half file under the real name
    write_atomic(cache / f"{result['key']}.json", json.dumps(result, indent=1, default=str) + "\n")


@dataclass
class RunStats:
    computed: int = 0
    cached: int = 0
    failed: int = 0
    seconds: float = 0.0


def execute(tasks: list[dict], cache: Path, *, workers: int = 2, scheduler: str | None = None,
            progress: bool = True, desc: str = "explore") -> tuple[list[dict], RunStats]:
    """Run the tasks not cached yet, storing each result as it arrives; results in task order.

    ``workers = 0`` runs in this process (no pool); ``scheduler`` (``tcp://host:port``) sends
    the tasks to an existing Dask distributed cluster instead of a local pool.
    """
    from tqdm import tqdm

    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer, not {workers!r}")
    t0 = time.monotonic()
    stats = RunStats()
    results: dict[str, dict] = {}
    todo = []
    for t in tasks:
        r = _load_cached(cache, t)
        if r is not None:
            results[r["key"]] = r
            stats.cached += 1
        else:
            todo.append(t)
    bar = tqdm(total=len(tasks), initial=stats.cached, desc=desc, disable=not progress, unit="pt",
               dynamic_ncols=True)

    def done(r: dict) -> None:
        _store(cache, r)
        results[r["key"]] = r
        stats.computed += 1
        stats.failed += r["status"] != "ok"
        bar.update(1)
        if r["status"] != "ok":
            bar.write(f"{desc}: {r['task'].get('label', '')} {r['task'].get('lanes', '')} lanes failed: {r['error']}")

    def lost(t: dict, e: BaseException) -> dict:
        # the worker itself died (killed, out of memory): still a recorded failure
        return {"key": task_key(t), "task": t, "status": "error", "error": f"{type(e).__name__}: {e}",
                "traceback": None, "seconds": None}

    try:
        if not todo:
            pass
        elif scheduler:
            from distributed import Client, as_completed

            with Client(scheduler, timeout="20s") as client:
                futs = {client.submit(run_task, t, pure=False, key=f"lowbit-{task_key(t)}-{time.time_ns()}"): t
                        for t in todo}
                try:
                    for fut in as_completed(futs):
                        try:
                            done(fut.result())
                        except Exception as e:  # noqa: BLE001
                            done(lost(futs[fut], e))
                finally:
                    client.cancel(list(futs))
        elif workers == 0 or len(todo) == 1:
            for t in todo:
                done(run_task(t))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed as cf_completed

            # spawn: torch and tqdm hold threads, and forking a threaded process can deadlock
            pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=mp.get_context("spawn"))
            try:
                futs = {pool.submit(run_task, t): t for t in todo}
                for fut in cf_completed(futs):
                    try:
                        done(fut.result())
                    except Exception as e:  # noqa: BLE001
                        done(lost(futs[fut], e))
            except BaseException:
                # Ctrl-C: drop the queued points at once; the finished ones are in the cache
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
    finally:
        bar.close()
        stats.seconds = time.monotonic() - t0
    return [results[task_key(t)] for t in tasks], stats


# --- analysis ---------------------------------------------------------------------------------------

def pareto_front(rows: list, objectives: dict) -> list[int]:
    """Indices of the rows no other row dominates.

    Parameters
    ----------
    rows : list of dict
    objectives : dict
        Column → ``"max"`` or ``"min"``. A row dominates another when it is at least as good
        in every objective and strictly better in one. Rows missing a value are skipped.

    Returns
    -------
    list of int
        Sorted by the first objective.
    """
    for k, sense in objectives.items():
        if sense not in ("max", "min"):
            raise ValueError(f"objective {k!r} must be 'max' or 'min', not {sense!r}")
    keys = list(objectives)

    def vec(r):
        vals = [r.get(k) for k in keys]
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in vals):
            return None
        return [v if objectives[k] == "max" else -v for k, v in zip(keys, vals)]

    vs = [(i, vec(r)) for i, r in enumerate(rows)]
    vs = [(i, v) for i, v in vs if v is not None]
    front = []
    for i, a in vs:
        dominated = any(all(x >= y for x, y in zip(b, a)) and any(x > y for x, y in zip(b, a)) for _, b in vs)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: rows[i][keys[0]])


def su_comparison(rows: list[dict], threshold: float) -> list[dict]:
    """Per bit width: the best images/s per kLUT among points at or above ``threshold`` accuracy.

    Reproduces the comparison of Su et al. (arXiv 1807.10577): hardware efficiency across
    precisions at matched accuracy. Also lists each width's best accuracy, so a width that
    never reaches the threshold shows by how much it misses.
    """
    out = []
    for b in sorted({r["bits"] for r in rows}):
        mine = [r for r in rows if r["bits"] == b]
        best_acc = max(mine, key=lambda r: r["accuracy"])
        ok = [r for r in mine if r["accuracy"] >= threshold - 1e-12]
        best = max(ok, key=lambda r: r["images_per_s_per_klut"]) if ok else None
        out.append({"bits": b, "points": len(mine), "matched": len(ok), "best_accuracy": best_acc["accuracy"],
                    "best_accuracy_point": best_acc["name"],
                    "efficiency": best["images_per_s_per_klut"] if best else None,
                    "point": best["name"] if best else None, "accuracy": best["accuracy"] if best else None,
                    "images_per_s": best["images_per_s"] if best else None, "lut": best["lut"] if best else None,
                    "lut_source": best["lut_source"] if best else None,
                    "fmax_source": best["fmax_source"] if best else None})
    return out


def combine(results: list[dict], synth: dict, sim: dict, family: str) -> tuple[list[dict], dict]:
    """Flat rows (one per successful eval point) joining the synth and sim results.

    ``synth`` and ``sim`` map an eval key to its task result. Returns the rows and the fmax
    note (how the nominal fmax was chosen).
    """
    measured = [s["fmax_mhz"] for s in synth.values() if s.get("status") == "ok" and s.get("fmax_mhz")]
    if measured:
        nominal = float(statistics.median(measured))
        note = f"median nextpnr fmax of the {len(measured)} synthesized point(s): {nominal:.1f} MHz"
    else:
        nominal = NOMINAL_FMAX_MHZ[family]
        note = f"no nextpnr fmax in this sweep: nominal {nominal:.0f} MHz for {family}"
    rows = []
    for r in results:
        if r["status"] != "ok":
            continue
        t = r["task"]
        s, m = synth.get(r["key"], {}), sim.get(r["key"], {})
        s_ok, m_ok = s.get("status") == "ok", m.get("status") == "ok"
        lut_y = s.get("lut_yosys") if s_ok else None
        fmax_y = s.get("fmax_mhz") if s_ok else None
        lut = lut_y if lut_y is not None else r["lut_model"]
        fmax = fmax_y if fmax_y else nominal
        ips = fmax * 1e6 / r["cycles_model"]
        mode = "qat" if t["qat_epochs"] else "ptq"
        rows.append({
            "name": f"{t['method']} {t['label']} {mode} {t['lanes']}L", "key": r["key"], "preset": t["preset"],
            "dataset": t["dataset"], "method": t["method"], "bits": t["bits"], "weight_bits": t["weight_bits"],
            "act_bits": t["act_bits"], "config": t["label"], "mode": mode, "lane_budget": t["lanes"],
            "fold": r["fold"], "mac_lanes": r["mac_lanes"], "accuracy": r["accuracy"],
            "float_accuracy": r["float_accuracy"], "cycles_model": r["cycles_model"],
            "cycles_measured": m.get("cycles_measured") if m_ok else None,
            "sim_mismatches": m.get("mismatches") if m_ok else None,
            "lut_model": r["lut_model"], "ff_model": r["ff_model"], "bram_model": r["bram_model"],
            "lut_yosys": lut_y, "ff_yosys": s.get("ff_yosys") if s_ok else None,
            "bram_yosys": s.get("bram_yosys") if s_ok else None, "fits": s.get("fits") if s_ok else None,
            "lut": lut, "lut_source": "yosys" if lut_y is not None else "model",
            "fmax_mhz": round(fmax, 2), "fmax_source": "nextpnr" if fmax_y else "nominal",
            "images_per_s": ips, "images_per_s_per_klut": ips / (lut / 1000.0),
        })
    return rows, {"nominal_fmax_mhz": nominal, "note": note}


def _pick(rows: list[dict], n: int, key_of, order) -> list[dict]:
    """Up to n rows, round-robin over groups (``key_of``), each group in ``order``."""
    groups: dict = {}
    for r in sorted(rows, key=order):
        groups.setdefault(key_of(r), []).append(r)
    picked, gi = [], sorted(groups)
    while len(picked) < n and any(groups[g] for g in gi):
        for g in gi:
            if groups[g] and len(picked) < n:
                picked.append(groups[g].pop(0))
    return picked


def select_synth(rows: list[dict], n: int, max_lut: int | None = None) -> list[dict]:
    """Points to synthesize: the Pareto front of accuracy vs model images/s per kLUT among the points
    of at most ``max_lut`` model LUTs, one bit width after another (most accurate first), so every
    precision gets measured before any gets two."""
    rows = [r for r in rows if max_lut is None or r["lut_model"] <= max_lut]
    front = [rows[i] for i in pareto_front(rows, {"accuracy": "max", "images_per_s_per_klut": "max"})]
    rest = [r for r in rows if r not in front]
    picked = _pick(front, n, lambda r: r["bits"], lambda r: (-r["accuracy"], r["lut"]))
    if len(picked) < n:
        picked += _pick(rest, n - len(picked), lambda r: r["bits"], lambda r: (-r["accuracy"], r["lut"]))
    return picked


def select_sim(rows: list[dict], n: int) -> list[dict]:
    """Points to simulate: one lane budget after another (most accurate network first), so the
    measured cycles check the model at several foldings."""
    return _pick(rows, n, lambda r: r["lane_budget"], lambda r: (-r["accuracy"], r["cycles_model"]))


# --- the sweep --------------------------------------------------------------------------------------

@dataclass
class SweepResult:
    config: SweepConfig
    dataset: str
    float_accuracy: float
    threshold: float
    rows: list[dict]
    failures: list[dict]
    su: list[dict]
    fmax: dict
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0


def _file_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def run_sweep(config: SweepConfig, out_dir, *, workers: int = 2, scheduler: str | None = None,
              progress: bool = True, log=print, extra_points: list[dict] | None = None) -> SweepResult:
    """Run (or resume) a sweep and write its outputs; see the module docstring.

    Parameters
    ----------
    config : SweepConfig
    out_dir : path
        Results, plots, ``cache/`` (one JSON per task) and ``builds/`` (synthesized and
        simulated designs).
    workers : int
        Local process pool size; 0 runs every task in this process.
    scheduler : str or None
        Address of an existing Dask distributed scheduler; replaces the local pool. Its
        workers must see ``out_dir`` and ``config.model_dir`` (a shared file system) for the
        synth and sim tasks.
    extra_points : list of dict or None
        Additional ``eval`` tasks (as :func:`grid_points` makes them), e.g. a configuration
        the grid leaves out.
    """
    from .datasets import default_dataset
    from .train import checkpoint_path

    config.validate()
    t0 = time.monotonic()
    out = Path(out_dir)
    cache = out / "cache"
    out.mkdir(parents=True, exist_ok=True)
    dataset = config.dataset
    if dataset == "auto":
        dataset, why = default_dataset()
        if why and log:
            log(f"note: {why}")
    # Train (or load) the float model here, once, before the workers start: several workers
    # finding no checkpoint at once would each train it.
    model, info = _float_model(config.preset, dataset, config.epochs, config.seed, config.model_dir)
    sha = _file_sha(checkpoint_path(config.preset, dataset, config.seed, config.epochs, config.model_dir))
    float_acc = float(info["test_accuracy"])
    threshold = parse_match(config.match, float_acc)
    tasks = [dict(t, _net_cache=str((cache / "nets").resolve()))
             for t in grid_points(config, sha, dataset) + list(extra_points or [])]
    if log:
        log(f"explore: {config.preset} on {dataset} (float32 {100 * float_acc:.2f}%), {len(tasks)} points; "
            f"cache {cache}")
    results, st = execute(tasks, cache, workers=workers, scheduler=scheduler, progress=progress, desc="accuracy+model")
    stats = {"eval": dataclasses.asdict(st)}
    rows, _ = combine(results, {}, {}, config.family)

    def follow(kind: str, chosen: list[dict], extra: dict) -> dict:
        by_key = {r["key"]: r for r in results}
        # the build depends on the network and the folding only, not on how the sweep costs it
        ts = [{"kind": kind, "point": {k: v for k, v in by_key[c["key"]]["task"].items() if k not in _COST_FIELDS},
               "target": config.target,
               "build_dir": str((out / "builds" / f"{kind}_{c['key']}").resolve()), **extra} for c in chosen]
        if not ts:
            return {}
        res, s = execute(ts, cache, workers=workers, scheduler=scheduler, progress=progress, desc=kind)
        stats[kind] = dataclasses.asdict(s)
        return {c["key"]: r for c, r in zip(chosen, res)}

    synth = follow("synth", select_synth(rows, config.synth, config.synth_max_lut), {})
    sim = follow("sim", select_sim(rows, config.sim), {"sim_images": config.sim_images})
    rows, fmax = combine(results, synth, sim, config.family)
    failures = [{"kind": r["task"]["kind"], "point": (r["task"].get("label") or r["task"]["point"]["label"]),
                 "lanes": r["task"].get("lanes") or r["task"]["point"]["lanes"], "method":
                 r["task"].get("method") or r["task"]["point"]["method"], "error": r["error"], "key": r["key"]}
                for r in [*results, *synth.values(), *sim.values()] if r["status"] != "ok"]
    result = SweepResult(config, dataset, float_acc, threshold, rows, failures, su_comparison(rows, threshold), fmax,
                         stats, time.monotonic() - t0)
    write_outputs(result, out)
    result.seconds = time.monotonic() - t0
    if log:
        n_ok = len(rows)
        log(f"explore: {n_ok} points ok, {len(failures)} failed; "
            + ", ".join(f"{k} {v['computed']} run / {v['cached']} cached" for k, v in stats.items())
            + f"; {result.seconds:.0f} s; wrote {out / 'report.md'}")
    return result


# --- outputs ----------------------------------------------------------------------------------------

CSV_FIELDS = ["name", "method", "config", "bits", "weight_bits", "act_bits", "mode", "lane_budget", "fold",
              "mac_lanes", "accuracy", "cycles_model", "cycles_measured", "sim_mismatches", "lut_model",
              "lut_yosys", "lut", "lut_source", "ff_model", "ff_yosys", "bram_model", "bram_yosys", "fits",
              "fmax_mhz", "fmax_source", "images_per_s", "images_per_s_per_klut", "preset", "dataset", "key"]


def _fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return str(v)


def write_outputs(result: SweepResult, out_dir) -> dict:
    """``results.csv``, ``results.json``, ``report.md`` and the PNG plots; returns their paths.

    Each file is replaced atomically (the folder also holds the cache and the builds, so it
    is not replaced as a whole); the plots are written first, the tables and report last.
    """
    import csv
    import io

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = result.rows
    paths = {"csv": out / "results.csv", "json": out / "results.json", "report": out / "report.md"}
    table = io.StringIO(newline="")
    w = csv.DictWriter(table, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    doc = {"config": result.config.to_json(), "dataset": result.dataset, "float_accuracy": result.float_accuracy,
           "match_threshold": result.threshold, "fmax": result.fmax, "stats": result.stats,
           "seconds": result.seconds, "rows": rows, "su_comparison": result.su, "failures": result.failures,
           "pareto": {"accuracy_vs_images_per_s": [rows[i]["name"] for i in
                                                   pareto_front(rows, {"images_per_s": "max", "accuracy": "max"})],
                      "accuracy_vs_lut": [rows[i]["name"] for i in pareto_front(rows, {"lut": "min", "accuracy": "max"})]}}
    paths.update(plot(result, out))
    write_files(out, {paths["csv"].name: table.getvalue(),
                      paths["json"].name: json.dumps(doc, indent=1, default=str) + "\n",
                      paths["report"].name: markdown_report(result, doc, paths)})
    return paths


def markdown_report(result: SweepResult, doc: dict, paths: dict) -> str:
    c, rows = result.config, result.rows
    L = [f"# lowbit explore: {c.preset} on {result.dataset}", "",
         f"float32 test accuracy {100 * result.float_accuracy:.2f}%; {len(rows)} points "
         f"({', '.join(c.methods)} × bits {', '.join(map(str, c.bits))} × lane budgets "
         f"{', '.join(map(str, c.lanes))}{'; QAT ' + str(c.qat_epochs) + ' epochs at ≤ 4 bits' if c.qat_epochs else ''}),"
         f" {len(result.failures)} failed; {result.seconds:.0f} s.", "",
         "Sources: **accuracy** is the golden model on the test set (the hardware equals it bit for bit); "
         "**cycles** per image are the analytical folding model (max over layers of NF·SF), spot-checked in "
         "Verilator below; **LUT** is `yosys` where the point was synthesized, else the analytical cost `model` "
         f"(coefficients of family {COST_FAMILY[c.family]} for target {c.target}); **fmax** is `nextpnr` "
         f"where placed and routed, else `nominal` ({result.fmax['note']}); images/s = fmax / cycles.", ""]
    L += ["## Hardware efficiency across precisions at matched accuracy (Su et al.)", "",
          f"Accuracy threshold: **{100 * result.threshold:.2f}%** (`{c.match}`; float32 "
          f"{100 * result.float_accuracy:.2f}%). Per bit width b (W b A b; ternary is W ternary A b, binary W1 A b), "
          "the point with the most images/s per kLUT among those at or above the threshold.", "",
          "| bits | points | ≥ threshold | best accuracy | images/s per kLUT | point | accuracy | images/s | LUT | sources |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for s in result.su:
        L.append(f"| {s['bits']} | {s['points']} | {s['matched']} | {100 * s['best_accuracy']:.2f}% "
                 f"({s['best_accuracy_point']}) | {_fmt(s['efficiency'])} | {s['point'] or 'none reaches it'} | "
                 f"{_fmt(100 * s['accuracy'] if s['accuracy'] is not None else None, 2)} | {_fmt(s['images_per_s'], 0)} | "
                 f"{_fmt(s['lut'])} | {(s['lut_source'] or '') + ('/' + s['fmax_source'] if s['fmax_source'] else '')} |")
    L += ["", "## Pareto fronts", ""]
    for title, names in (("accuracy vs images/s", doc["pareto"]["accuracy_vs_images_per_s"]),
                         ("accuracy vs LUTs", doc["pareto"]["accuracy_vs_lut"])):
        L.append(f"- {title}: " + "; ".join(names))
    synthd = [r for r in rows if r["lut_yosys"] is not None]
    if synthd:
        L += ["", f"## Synthesized points ({c.target}): model vs yosys", "",
              "| point | fold | LUT model | LUT yosys | error | BRAM model | BRAM yosys | fmax MHz | fits |",
              "|---|---|---|---|---|---|---|---|---|"]
        for r in synthd:
            err = (r["lut_model"] - r["lut_yosys"]) / r["lut_yosys"] if r["lut_yosys"] else float("nan")
            L.append(f"| {r['name']} | {r['fold']} | {r['lut_model']} | {r['lut_yosys']} | {100 * err:+.0f}% | "
                     f"{r['bram_model']} | {r['bram_yosys']} | {_fmt(r['fmax_mhz'])} ({r['fmax_source']}) | {r['fits']} |")
    simd = [r for r in rows if r["cycles_measured"] is not None]
    if simd:
        L += ["", f"## Simulated points (Verilator, {c.sim_images} test images): model vs measured cycles", "",
              "| point | fold | cycles/image model | measured | mismatches vs golden |", "|---|---|---|---|---|"]
        for r in simd:
            L.append(f"| {r['name']} | {r['fold']} | {r['cycles_model']} | {_fmt(r['cycles_measured'], 2)} | "
                     f"{r['sim_mismatches']} |")
    if result.failures:
        L += ["", "## Failed points", "", "| kind | point | lanes | error |", "|---|---|---|---|"]
        L += [f"| {f['kind']} | {f['method']} {f['point']} | {f['lanes']} | {f['error'].splitlines()[0]} |"
              for f in result.failures]
    L += ["", "## All points", "",
          "| point | fold | accuracy | cycles | LUT (source) | fmax (source) | images/s | images/s per kLUT |",
          "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["bits"], r["method"], r["mode"], r["lane_budget"])):
        L.append(f"| {r['name']} | {r['fold']} | {100 * r['accuracy']:.2f}% | {r['cycles_model']} | "
                 f"{r['lut']} ({r['lut_source']}) | {r['fmax_mhz']:.1f} ({r['fmax_source']}) | "
                 f"{r['images_per_s']:,.0f} | {r['images_per_s_per_klut']:,.1f} |")
    plots = [p for k, p in paths.items() if str(p).endswith(".png")]
    if plots:
        L += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(L) + "\n"


PLOTS = {"throughput": "pareto_accuracy_vs_images_per_s.png", "luts": "pareto_accuracy_vs_luts.png",
         "efficiency": "efficiency_by_bits.png"}


def plot(result: SweepResult, out: Path) -> dict:
    """The three PNG plots (matplotlib, Agg backend: no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.rows
    if not rows:
        return {}
    bits = sorted({r["bits"] for r in rows})
    cmap = plt.get_cmap("tab10")
    color = {b: cmap(i % 10) for i, b in enumerate(bits)}
    markers = dict(zip(sorted({r["method"] for r in rows}), "osD^vP*X"))
    paths = {}

    def scatter(ax, xkey):
        for r in rows:
            yosys = r["lut_source"] == "yosys"
            ax.scatter(r[xkey], 100 * r["accuracy"], marker=markers[r["method"]], s=40 if yosys else 28,
                       facecolors=color[r["bits"]] if yosys else "none", edgecolors=color[r["bits"]], linewidths=1.2)
        for b in bits:
            ax.scatter([], [], marker="s", color=color[b], label=f"{b}-bit")
        for m, mk in markers.items():
            ax.scatter([], [], marker=mk, facecolors="none", edgecolors="k", label=m)
        ax.axhline(100 * result.threshold, color="grey", ls=":", lw=1, label=f"match {100 * result.threshold:.1f}%")

    for name, xkey, sense, xlabel in (("throughput", "images_per_s", "max", "images/s (fmax / model cycles)"),
                                      ("luts", "lut", "min", "LUTs (filled: yosys, hollow: cost model)")):
        fig, ax = plt.subplots(figsize=(7.5, 5))
        scatter(ax, xkey)
        front = [rows[i] for i in pareto_front(rows, {xkey: sense, "accuracy": "max"})]
        ax.step([r[xkey] for r in front], [100 * r["accuracy"] for r in front], where="post" if sense == "min" else "pre",
                color="crimson", lw=1.2, label="Pareto front")
        ax.scatter([r[xkey] for r in front], [100 * r["accuracy"] for r in front], s=140, facecolors="none",
                   edgecolors="crimson", linewidths=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{result.config.preset} on {result.dataset}: accuracy vs {'throughput' if name == 'throughput' else 'LUTs'}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right" if sense == "max" else "lower right", ncol=2)
        fig.tight_layout()
        p = out / PLOTS[name]
        with atomic_path(p) as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        paths[f"plot_{name}"] = p

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for i, b in enumerate(bits):
        mine = [r for r in rows if r["bits"] == b]
        ok = [r for r in mine if r["accuracy"] >= result.threshold - 1e-12]
        bad = [r for r in mine if r not in ok]
        ax.scatter([i + 0.08 * ((j % 5) - 2) for j in range(len(bad))], [r["images_per_s_per_klut"] for r in bad],
                   marker="x", color="lightgrey")
        ax.scatter([i + 0.08 * ((j % 5) - 2) for j in range(len(ok))], [r["images_per_s_per_klut"] for r in ok],
                   marker="o", color=color[b])
        if ok:
            best = max(r["images_per_s_per_klut"] for r in ok)
            ax.bar(i, best, width=0.6, alpha=0.25, color=color[b])
    ax.set_xticks(range(len(bits)), [f"{b}-bit" for b in bits])
    ax.set_yscale("log")
    ax.set_ylabel("images/s per kLUT")
    ax.set_title(f"hardware efficiency by precision (bars: best at ≥ {100 * result.threshold:.1f}% accuracy; "
                 f"x: below)", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    p = out / PLOTS["efficiency"]
    with atomic_path(p) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    paths["plot_efficiency"] = p
    return paths
