"""Running tasks: one JSON file per finished task under ``cache/`` (a rerun skips it), in this
process, a local process pool or an existing Dask cluster; and :func:`run_sweep`, the sweep."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..util import write_atomic
from .analysis import SweepResult, combine, select_sim, select_synth, su_comparison
from .config import SweepConfig, parse_match, resolve_dataset
from .report import write_outputs
from .tasks import _COST_FIELDS, _float_model, grid_points, run_task, task_key

__all__ = ["RunStats", "execute", "run_sweep"]


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


# --- the sweep --------------------------------------------------------------------------------------

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
    from ..train import checkpoint_path

    config.validate()
    t0 = time.monotonic()
    # before anything is trained or written: a CNN preset refuses images of another size
    dataset, why = resolve_dataset(config.preset, config.dataset)
    if why and log:
        log(f"note: {why}")
    out = Path(out_dir)
    cache = out / "cache"
    out.mkdir(parents=True, exist_ok=True)
    # Train (or load) the float model here, once, before the workers start: several workers
    # finding no checkpoint at once would each train it.
    ckpt = checkpoint_path(config.preset, dataset, config.seed, config.epochs, config.model_dir)
    if log and not ckpt.is_file():
        log(f"explore: no checkpoint {ckpt}: training {config.preset} on {dataset} for {config.epochs} epochs first "
            f"(a LeNet on Fashion-MNIST takes minutes)")
    model, info = _float_model(config.preset, dataset, config.epochs, config.seed, config.model_dir)
    sha = _file_sha(ckpt)
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
