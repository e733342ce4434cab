"""lowbit.sw.explore and ``lowbit explore``: sweep, cache and resume, failures, Pareto, Dask."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lowbit.sw import explore as ex
from lowbit.sw.explore import CONFIGS, pareto_front, parse_match, su_comparison


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    # one float model for the module: digits TFC trains in about a second
    return str(tmp_path_factory.mktemp("models"))


def small(models, **kw):
    return dataclasses.replace(CONFIGS["small"], model_dir=models, **kw)


# --- pure functions -----------------------------------------------------------------------------------

def test_pareto_front_hand_made():
    rows = [
        {"name": "a", "ips": 10, "acc": 0.90},
        {"name": "b", "ips": 20, "acc": 0.85},
        {"name": "c", "ips": 15, "acc": 0.80},   # dominated by b
        {"name": "d", "ips": 5, "acc": 0.95},
        {"name": "e", "ips": 10, "acc": 0.90},   # equal to a: neither dominates, both stay
        {"name": "f", "ips": 4, "acc": 0.94},    # dominated by d
        {"name": "g", "ips": None, "acc": 0.99},  # missing value: skipped
    ]
    front = pareto_front(rows, {"ips": "max", "acc": "max"})
    assert [rows[i]["name"] for i in front] == ["d", "a", "e", "b"]
    # minimizing the first objective flips which rows survive
    luts = [{"lut": 100, "acc": 0.9}, {"lut": 50, "acc": 0.8}, {"lut": 200, "acc": 0.85}]
    assert pareto_front(luts, {"lut": "min", "acc": "max"}) == [1, 0]
    with pytest.raises(ValueError, match="must be 'max' or 'min', not 'up'"):
        pareto_front(rows, {"ips": "up"})


def test_su_comparison_matched_accuracy():
    def r(name, bits, acc, eff):
        return {"name": name, "bits": bits, "accuracy": acc, "images_per_s_per_klut": eff, "images_per_s": eff,
                "lut": 1000, "lut_source": "model", "fmax_source": "nominal"}

    rows = [r("b1", 1, 0.60, 900.0), r("b2a", 2, 0.86, 300.0), r("b2b", 2, 0.70, 500.0), r("b4", 4, 0.88, 100.0)]
    su = {s["bits"]: s for s in su_comparison(rows, 0.85)}
    assert su[1]["efficiency"] is None and su[1]["best_accuracy"] == 0.60
    assert su[2]["point"] == "b2a" and su[2]["efficiency"] == 300.0  # b2b is faster but below the threshold
    assert su[4]["point"] == "b4"


def test_parse_match():
    assert parse_match("float-5", 0.87) == pytest.approx(0.82)
    assert parse_match("80", 0.87) == pytest.approx(0.80)
    with pytest.raises(ValueError, match="must be 'float-N'.*not 'five'"):
        parse_match("five", 0.87)
    with pytest.raises(ValueError, match="percentage in 0..100, not '150'"):
        parse_match("150", 0.87)


def test_config_validation():
    with pytest.raises(ValueError, match="methods must be among .*, not 'fancy'"):
        dataclasses.replace(CONFIGS["small"], methods=("fancy",)).validate()
    with pytest.raises(ValueError, match="target must be one of .*, not 'stratix'"):
        dataclasses.replace(CONFIGS["small"], target="stratix").validate()
    with pytest.raises(ValueError, match="lanes must be positive integers"):
        dataclasses.replace(CONFIGS["small"], lanes=(0,)).validate()


def test_grid_skips_widths_a_method_cannot_take():
    cfg = dataclasses.replace(CONFIGS["default"], methods=("scaled", "ternary"), bits=(1, 4), lanes=(16,),
                              qat_epochs=0)
    labels = [t["label"] for t in ex.grid_points(cfg, "sha")]
    # scaled has no 1-bit weights; ternary takes any activation width
    assert labels == ["W4 A4", "Wternary A1 N=4", "Wternary A4 N=4"]
    keys = {ex.task_key(t) for t in ex.grid_points(cfg, "sha")}
    assert len(keys) == 3 and keys.isdisjoint({ex.task_key(t) for t in ex.grid_points(cfg, "other")})
    # the default's QAT epochs add a quantization-aware twin of every point at <= 4 bits
    qat = ex.grid_points(dataclasses.replace(cfg, qat_epochs=2), "sha")
    assert sorted(t["label"] for t in qat) == sorted(labels * 2)
    assert sorted(t["qat_epochs"] for t in qat) == [0, 0, 0, 2, 2, 2]


def test_estimate_network_grows_with_lanes(models):
    from lowbit.sw.fold import auto_fold

    t = ex.grid_points(small(models), "x", "digits")[0]
    ex._float_model("tfc", "digits", CONFIGS["small"].epochs, 0, models)
    net, _ = ex.network_for(t)
    few = ex.estimate_network(net, auto_fold(net, max_lanes=8), "ice40")
    many = ex.estimate_network(net, auto_fold(net, max_lanes=256), "ice40")
    assert 0 < few["lut"] < many["lut"]


# --- sweeps -------------------------------------------------------------------------------------------

def test_small_sweep_writes_everything_and_resumes_from_cache(models, tmp_path, monkeypatch):
    cfg = small(models)
    res = ex.run_sweep(cfg, tmp_path, workers=0, progress=False, log=None)
    assert len(res.rows) == 6 and not res.failures
    assert res.stats["eval"]["computed"] == 6 and res.stats["eval"]["cached"] == 0
    for name in ("results.csv", "results.json", "report.md", *ex.PLOTS.values()):
        assert (tmp_path / name).stat().st_size > 0, name
    assert len(list((tmp_path / "cache").glob("eval_*.json"))) == 6
    doc = json.loads((tmp_path / "results.json").read_text())
    assert {s["bits"] for s in doc["su_comparison"]} == {1, 4}
    report = (tmp_path / "report.md").read_text()
    assert "Accuracy threshold" in report and "(model)" in report and "nominal" in report
    for r in res.rows:
        assert r["lut_source"] == "model" and r["fmax_source"] == "nominal"
        assert r["images_per_s"] == pytest.approx(r["fmax_mhz"] * 1e6 / r["cycles_model"])
        assert 0 <= r["accuracy"] <= 1
    # more lanes, fewer cycles for the same network
    by = {(r["config"], r["lane_budget"]): r for r in res.rows}
    assert by[("W4 A4", 64)]["cycles_model"] < by[("W4 A4", 8)]["cycles_model"]

    # a rerun must not evaluate anything: every point comes from the cache
    def boom(task):
        raise AssertionError("cached point evaluated again")

    monkeypatch.setattr(ex, "evaluate_point", boom)
    again = ex.run_sweep(cfg, tmp_path, workers=0, progress=False, log=None)
    assert again.stats["eval"] == {**again.stats["eval"], "computed": 0, "cached": 6, "failed": 0}
    assert [r["accuracy"] for r in again.rows] == [r["accuracy"] for r in res.rows]


def test_resume_after_interruption_and_failing_point(models, tmp_path, monkeypatch):
    cfg = small(models)
    # "interrupt" a first run: only two points made it into the cache
    tasks = ex.grid_points(cfg, ex._file_sha(Path(models) / "tfc_digits_s0_e40.pt"), "digits")
    ex.execute(tasks[:2], tmp_path / "cache", workers=0, progress=False)
    # and a corrupt file left by a kill mid-write is redone, not trusted
    (tmp_path / "cache" / f"{ex.task_key(tasks[2])}.json").write_text('{"status": "o')

    calls = []
    real = ex.evaluate_point

    def counting(task):
        calls.append(task["label"])
        return real(task)

    monkeypatch.setattr(ex, "evaluate_point", counting)
    bad = dict(tasks[0], method="scaled", weight_bits=1, act_bits=1, label="W1 A1 (bad)")
    res = ex.run_sweep(cfg, tmp_path, workers=0, progress=False, log=None, extra_points=[bad])
    assert len(calls) == 5  # 4 left over + the bad one; the 2 cached ones skipped
    assert res.stats["eval"]["cached"] == 2 and res.stats["eval"]["failed"] == 1
    assert len(res.rows) == 6  # every good point completed
    (fail,) = res.failures
    assert fail["point"] == "W1 A1 (bad)" and "weight" in fail["error"].lower() and "1" in fail["error"]
    stored = json.loads((tmp_path / "cache" / f"{fail['key']}.json").read_text())
    assert stored["status"] == "error" and stored["error"] == fail["error"] and stored["traceback"]
    assert "Failed points" in (tmp_path / "report.md").read_text()


def test_process_pool_and_dask_give_the_same_results(models, tmp_path):
    distributed = pytest.importorskip("distributed")
    cfg = small(models, methods=("scaled",), bits=(4,))
    local = ex.run_sweep(cfg, tmp_path / "local", workers=2, progress=False, log=None)  # process pool
    assert local.stats["eval"]["computed"] == 2
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, host="127.0.0.1", protocol="tcp",
                                  dashboard_address=None) as cluster:
        remote = ex.run_sweep(cfg, tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False, log=None)
    assert remote.stats["eval"]["computed"] == 2
    strip = [{k: v for k, v in r.items() if k != "key"} for r in local.rows]
    assert strip == [{k: v for k, v in r.items() if k != "key"} for r in remote.rows]
    assert [r["key"] for r in local.rows] == [r["key"] for r in remote.rows]


def test_cli_small(models, tmp_path, capsys):
    from lowbit.sw.cli import main

    out = tmp_path / "cli"
    rc = main(["explore", "--config", "small", "--methods", "scaled", "--bits", "4", "--lanes", "8",
               "--workers", "0", "--no-progress", "--out", str(out), "--match", "90", "--epochs", "40"])
    # the CLI's model_dir is build/models; the point is the outputs and the printed comparison
    assert rc == 0
    text = capsys.readouterr().out
    assert "match threshold 90.00%" in text and "4-bit" in text
    assert (out / "results.csv").read_text().count("\n") == 2


def test_cli_bad_input(capsys):
    from lowbit.sw.cli import main

    assert main(["explore", "--bits", "two", "--out", "build/x"]) == 2
    assert "--bits must be comma-separated integers, not 'two'" in capsys.readouterr().err
    assert main(["explore", "--out", "sw/inside"]) == 2
    assert "--out must not be inside the source tree" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.hdl
def test_small_sweep_with_synth_and_sim(models, tmp_path):
    """One point synthesized (iCE40, with nextpnr) and one simulated in Verilator."""
    cfg = small(models, methods=("binary",), bits=(1,), lanes=(8,), synth=1, sim=1, sim_images=40,
                target="ice40-up5k")
    res = ex.run_sweep(cfg, tmp_path, workers=0, progress=False, log=None)
    assert not res.failures, res.failures
    (r,) = res.rows
    assert r["lut_source"] == "yosys" and r["lut_yosys"] > 0
    assert r["fmax_source"] == "nextpnr" and r["fmax_mhz"] > 0
    assert r["sim_mismatches"] == 0
    assert abs(r["cycles_measured"] - r["cycles_model"]) <= 0.05 * r["cycles_model"]


# --- CNN presets --------------------------------------------------------------------------------------

CNN_EPOCHS = 5  # the digits CNN trains in a few seconds; the figures need a trained network, not a good one


def cnn_small(models, **kw):
    return dataclasses.replace(ex.named_config("small", "cnn_digits"), model_dir=models, epochs=CNN_EPOCHS, **kw)


@pytest.fixture(scope="module")
def cnn_sweep(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn_sweep")
    return ex.run_sweep(cnn_small(models), out, workers=0, progress=False, log=None), out


def test_cnn_configurations_are_their_own():
    # a CNN preset takes its own named configurations, an MLP preset the MLP's with its network
    assert ex.named_config("default", "lenet") is ex.CNN_CONFIGS["lenet"]["default"]
    assert ex.named_config("small", "cnn_digits").preset == "cnn_digits"
    assert ex.named_config("default", "sfc") == dataclasses.replace(CONFIGS["default"], preset="sfc")
    assert ex.named_config("default") is CONFIGS["default"]
    for preset, named in ex.CNN_CONFIGS.items():
        assert set(named) == set(CONFIGS), preset  # --config default/small means something for every preset
        for cfg in named.values():
            assert cfg.preset == preset and cfg.validate() is cfg
    with pytest.raises(ValueError, match="config must be one of default, small, not 'huge'"):
        ex.named_config("huge", "lenet")


def test_cli_config_for_cnn_preset():
    import argparse

    from lowbit.sw.commands import explore as cmd

    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    cfg = cmd.config_from_args(p.parse_args(["--preset", "lenet"]))
    assert cfg == ex.CNN_CONFIGS["lenet"]["default"]
    cfg = cmd.config_from_args(p.parse_args(["--preset", "cnn_digits", "--config", "small", "--lanes", "32,128"]))
    assert cfg == dataclasses.replace(ex.CNN_CONFIGS["cnn_digits"]["small"], lanes=(32, 128))
    assert cmd.config_from_args(p.parse_args([])) == CONFIGS["default"]


@pytest.mark.parametrize("preset", ["cnn_digits", "lenet"])
def test_cnn_lane_budgets_give_distinct_plans_within_budget(preset):
    """Every lane budget of a CNN preset's configurations folds to its own plan, within budget,
    faster with more lanes (a budget past the point where the plan stops changing would be a
    duplicate point). Shapes only: an untrained network quantized on random pixels."""
    import numpy as np

    from lowbit.sw.fold import auto_fold
    from lowbit.sw.ops import initiation_interval, lower, mac_lanes
    from lowbit.sw.quant import quantize
    from lowbit.sw.train import CNN_PRESETS, build_preset

    h, w = CNN_PRESETS[preset].image
    model = build_preset(preset, (h, w, 1))
    model.eval()
    net = quantize(model, "pow2", 4, 4, np.random.default_rng(0).integers(0, 256, (64, h * w), dtype=np.uint8),
                   progress=False)
    budgets = sorted({lanes for cfg in ex.CNN_CONFIGS[preset].values() for lanes in cfg.lanes})
    cycles = []
    for lanes in budgets:
        plan = auto_fold(net, max_lanes=lanes)
        ops = lower(net, plan)
        assert mac_lanes(ops) == plan.mac_lanes <= lanes
        assert initiation_interval(ops) == plan.initiation_interval
        cycles.append(plan.initiation_interval)
    assert cycles == sorted(cycles, reverse=True) and len(set(cycles)) == len(cycles), dict(zip(budgets, cycles))


def test_cnn_sweep_rows_are_the_ops_and_the_golden_model(models, cnn_sweep):
    """Every row's cycles are the lowered plan's initiation interval, its LUTs the ops' cost
    (window and pool included), its accuracy the golden model's on the test set, computed here
    again from a network quantized afresh from the checkpoint."""
    import numpy as np

    from lowbit.sw.datasets import load_dataset
    from lowbit.sw.fold import auto_fold
    from lowbit.sw.golden import run_network
    from lowbit.sw.ops import initiation_interval, lower, network_cost
    from lowbit.sw.quant import quantize
    from lowbit.sw.train import checkpoint_path, load_checkpoint

    res, out = cnn_sweep
    cfg = res.config
    assert res.dataset == "digits" and not res.failures
    assert len(res.rows) == 2 * 2 * 2  # pow2, ternary × 2, 4 bits × 16, 64 lanes
    ds = load_dataset("digits")
    model, info = load_checkpoint(checkpoint_path("cnn_digits", "digits", 0, CNN_EPOCHS, models))
    assert res.float_accuracy == info["test_accuracy"]
    accuracy = {}
    for r in res.rows:
        task = json.loads((out / "cache" / f"{r['key']}.json").read_text())["task"]
        net_key = (task["method"], task["weight_bits"], task["act_bits"])
        if net_key not in accuracy:
            net = quantize(model, task["method"], task["weight_bits"], task["act_bits"], ds.x_train[:cfg.calib],
                           progress=False, **task["opts"])
            golden = run_network(net, ds.x_test, raw_pixels=True)  # every intermediate kept: a different path
            accuracy[net_key] = (net, float(np.mean(golden.classes == ds.y_test)))
        net, acc = accuracy[net_key]
        assert r["accuracy"] == acc, r["name"]
        plan = auto_fold(net, max_lanes=r["lane_budget"])
        ops = lower(net, plan)
        assert {op.kind for op in ops} >= {"sliding_window", "max_pool", "matrix_vector"}
        assert r["cycles_model"] == initiation_interval(ops) == plan.initiation_interval, r["name"]
        assert r["fold"] == str(plan) and r["mac_lanes"] == plan.mac_lanes <= r["lane_budget"]
        assert r["bottleneck"] == " + ".join(f"{op.name} {op.kind}" for op in ops if op.cycles() == r["cycles_model"])
        cost = network_cost(ops, "ice40", "ecp5")  # ECP5 takes iCE40's LUT4 coefficients
        assert (r["lut_model"], r["ff_model"], r["bram_model"]) == (cost["lut"], cost["ff"], cost["bram"])
        mv = sum(op.cost("ice40", "ecp5")["lut"] for op in ops if op.kind == "matrix_vector")
        assert r["lut_model"] > mv  # the windows and pools are counted too
        assert r["images_per_s"] == pytest.approx(r["fmax_mhz"] * 1e6 / r["cycles_model"])
    # the foldings of one network share its accuracy (one golden-model run each, cached beside the network)
    assert len(list((out / "cache" / "nets").glob("acc_*.json"))) == len(accuracy) == 4
    by = {(r["config"], r["lane_budget"]): r for r in res.rows}
    assert by[("W4 A4", 64)]["cycles_model"] < by[("W4 A4", 16)]["cycles_model"]
    assert by[("W4 A4", 64)]["accuracy"] == by[("W4 A4", 16)]["accuracy"]


def test_cnn_sweep_pareto_fronts_are_non_dominated(cnn_sweep):
    res, out = cnn_sweep
    rows = res.rows
    doc = json.loads((out / "results.json").read_text())

    def dominates(a, b, x, sense):
        ax, bx = (a[x], b[x]) if sense == "max" else (-a[x], -b[x])
        return ax >= bx and a["accuracy"] >= b["accuracy"] and (ax > bx or a["accuracy"] > b["accuracy"])

    for x, sense, name in (("images_per_s", "max", "accuracy_vs_images_per_s"), ("lut", "min", "accuracy_vs_lut")):
        front = set(pareto_front(rows, {x: sense, "accuracy": "max"}))
        assert front and len(front) < len(rows)
        for i, r in enumerate(rows):
            beaten = any(dominates(o, r, x, sense) for o in rows)
            assert beaten == (i not in front), (name, r["name"])
        assert doc["pareto"][name] == [rows[i]["name"] for i in pareto_front(rows, {x: sense, "accuracy": "max"})]
    for name in ex.PLOTS.values():
        assert (out / name).stat().st_size > 0
    assert "bottleneck" in (out / "results.csv").read_text().splitlines()[0]


def test_cnn_preset_refuses_a_dataset_of_another_image_size(models, tmp_path, capsys):
    from lowbit.sw.cli import main

    with pytest.raises(ValueError) as e:
        ex.run_sweep(cnn_small(models, dataset="fashion-mnist"), tmp_path / "x", workers=0, progress=False, log=None)
    assert str(e.value) == ("--preset cnn_digits takes 8x8 images, but --dataset fashion-mnist has 28x28 images: "
                            "use --dataset digits with --preset cnn_digits, or keep --dataset fashion-mnist with "
                            "--preset lenet or an MLP preset (tfc, sfc, lfc)")
    assert not (tmp_path / "x").exists() and not list(Path(models).glob("cnn_digits_fashion-mnist*"))
    # on the command line: the same error, exit 2, before anything is trained
    assert main(["explore", "--preset", "lenet", "--dataset", "digits", "--config", "small", "--workers", "0",
                 "--no-progress", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert ("--preset lenet takes 28x28 images, but --dataset digits has 8x8 images: use --dataset fashion-mnist or "
            "mnist with --preset lenet, or keep --dataset digits with --preset cnn_digits or an MLP preset") in err
    assert not (tmp_path / "y").exists()
    # auto: the images the preset is made for
    assert ex.resolve_dataset("cnn_digits", "auto") == ("digits", None)
    assert ex.resolve_dataset("tfc", "digits") == ("digits", None)  # an MLP takes any size


def test_cnn_preset_auto_without_fashion_mnist(monkeypatch):
    import lowbit.sw.datasets as datasets

    monkeypatch.setattr(datasets, "default_dataset", lambda data_dir=None: ("digits", "Fashion-MNIST not found"))
    with pytest.raises(ValueError, match=r"^--preset lenet takes 28x28 images, but --dataset auto is digits here "
                                         r"\(Fashion-MNIST not found\), which has 8x8 images: use --dataset "
                                         r"fashion-mnist or mnist with --preset lenet"):
        ex.resolve_dataset("lenet", "auto")


@pytest.mark.slow
@pytest.mark.hdl
def test_cnn_sweep_with_synth_and_sim(models, tmp_path):
    """The digits CNN: one point synthesized (ECP5, with nextpnr), one simulated in Verilator."""
    cfg = cnn_small(models, methods=("pow2",), bits=(4,), lanes=(16,), synth=1, sim=1, sim_images=40)
    res = ex.run_sweep(cfg, tmp_path, workers=0, progress=False, log=None)
    assert not res.failures, res.failures
    (r,) = res.rows
    assert r["lut_source"] == "yosys" and r["lut_yosys"] > 0
    assert r["fmax_source"] == "nextpnr" and r["fmax_mhz"] > 0
    assert r["sim_mismatches"] == 0
    assert abs(r["cycles_measured"] - r["cycles_model"]) <= 0.05 * r["cycles_model"]
