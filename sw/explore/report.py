"""A sweep's outputs: ``results.csv``, ``results.json``, ``report.md`` and the PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

from ..util import atomic_path, write_files
from .analysis import SweepResult, pareto_front
from .config import COST_FAMILY

__all__ = ["CSV_FIELDS", "PLOTS", "write_outputs", "markdown_report", "plot"]


CSV_FIELDS = ["name", "method", "config", "bits", "weight_bits", "act_bits", "mode", "lane_budget", "fold",
              "mac_lanes", "accuracy", "cycles_model", "bottleneck", "cycles_measured", "sim_mismatches", "lut_model",
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
         "**cycles** per image are the analytical folding model (the initiation interval: max over the ops of "
         "their cycles, NF·SF for a dense layer, OH·OW·NF·SF for a convolution, the schedule of its sliding "
         "window, H·W·C/PE for a max-pool; **bottleneck** names the ops that set it), spot-checked in Verilator "
         "below; **LUT** is `yosys` where the point was synthesized, else the analytical cost `model` "
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
          "| point | fold | accuracy | cycles | bottleneck | LUT (source) | fmax (source) | images/s | images/s per kLUT |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["bits"], r["method"], r["mode"], r["lane_budget"])):
        L.append(f"| {r['name']} | {r['fold']} | {100 * r['accuracy']:.2f}% | {r['cycles_model']} | "
                 f"{r.get('bottleneck') or '–'} | {r['lut']} ({r['lut_source']}) | {r['fmax_mhz']:.1f} ({r['fmax_source']}) | "
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
