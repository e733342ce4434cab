"""Design-space exploration: quantization method × bit width × folding → accuracy, cycles, cost.

Every point of a sweep is one integer network (a method at a bit width, quantized from the
cached float32 model of an MLP or CNN preset) folded onto hardware for one MAC-lane budget. For each point the sweep
records

* **accuracy**: the golden model on the test set (the hardware equals it bit for bit; that is
  proven by the simulation tier, and spot-checked here);
* **cycles per image**: the analytical folding model (:mod:`lowbit.sw.fold`; the initiation
  interval of the lowered ops, :func:`lowbit.sw.ops.initiation_interval`), and for a few
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

Modules: :mod:`.config` (what to sweep), :mod:`.tasks` (one point: quantize, evaluate, cost,
build, synthesize, simulate), :mod:`.executor` (cache, process pool or Dask, and
:func:`run_sweep`, which drives them), :mod:`.analysis` (rows, Pareto fronts, Su et al.'s
comparison, which points to synthesize and simulate), :mod:`.report` (CSV, JSON, markdown,
plots). Everything is importable from ``lowbit.sw.explore`` itself.

Public API
----------
``SweepConfig``                       what to sweep (``CONFIGS["default"]``, ``CONFIGS["small"]``)
``named_config(name, preset)``        a named configuration; CNN presets have their own (``CNN_CONFIGS``)
``resolve_dataset(preset, dataset)``  the dataset ``auto`` means for a preset; a CNN refuses other image sizes
``run_sweep(config, out_dir, *, workers=2, scheduler=None, progress=True, log=print) -> SweepResult``
``grid_points(config, model_sha)``    the ``eval`` task configurations of a sweep
``evaluate_point(task)`` / ``synth_point(task)`` / ``sim_point(task)``  one task each
``estimate_network(net, plan, family)``  cost model of a whole folded network
``pareto_front(rows, objectives)``    indices of the non-dominated rows
``su_comparison(rows, threshold)``    images/s per kLUT per bit width at matched accuracy
``write_outputs(result, out_dir)``    CSV, JSON, markdown report and PNG plots
"""

from .analysis import SweepResult, combine, pareto_front, select_sim, select_synth, su_comparison
from .config import (CNN_CONFIGS, COST_FAMILY, CONFIGS, NOMINAL_FMAX_MHZ, SweepConfig, named_config, parse_match,
                     resolve_dataset)
from .executor import RunStats, _file_sha, execute, run_sweep
from .report import CSV_FIELDS, PLOTS, markdown_report, plot, write_outputs
from .tasks import (CACHE_VERSION, _float_model, estimate_network, evaluate_point, golden_accuracy, grid_points,
                    network_for, run_task, sim_point, synth_point, task_key)

__all__ = ["SweepConfig", "CONFIGS", "CNN_CONFIGS", "named_config", "resolve_dataset", "golden_accuracy",
           "SweepResult", "run_sweep", "grid_points", "evaluate_point", "synth_point",
           "sim_point", "estimate_network", "pareto_front", "su_comparison", "parse_match", "write_outputs",
           "task_key", "COST_FAMILY", "NOMINAL_FMAX_MHZ", "CACHE_VERSION"]
