"""Convolutional networks in hardware, end to end: a small CNN for the 8×8 digits set (windows
with zero padding, parallel-window first layer, max-pools, dense layers) built by
``lowbit build``, simulated in Verilator and Icarus on real digits images, bit-exact in class
and every logit against the golden model, at the cycles per image the ops promise."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lowbit.hw.build import build_network
from lowbit.sw.datasets import load_dataset
from lowbit.sw.fold import auto_fold, parse_fold, plan_folding
from lowbit.sw.ops import MaxPoolOp, SlidingWindowOp, lower
from lowbit.sw.randnet import random_cnn

#: cnn_digits' shape: 8x8x1 -> 8C3p1 -> MP2 -> 16C3p1 -> MP2 -> 32 -> 10
LAYERS = ["8C3p1", "MP2", "16C3p1", "MP2", "32", "10"]
#: first layer in parallel-window mode (SIMD 3 over kernel columns of its one channel)
FOLD = "4x3,2,4x8,4,4x16,2x8"


@pytest.fixture(scope="module")
def digits_cnn(tmp_path_factory):
    net = random_cnn((8, 8, 1), LAYERS, "s3", "u3", seed=7)
    plan = plan_folding(net, parse_fold(FOLD, len(net.layers)))
    out = tmp_path_factory.mktemp("cnn") / "build"
    manifest = build_network(net, plan, out)
    return net, plan, out, manifest


def test_manifest_lists_every_op_with_its_fold_buffers_and_cycles(digits_cnn):
    net, plan, out, manifest = digits_cnn
    assert manifest == json.loads((out / "manifest.json").read_text())
    kinds = [e["op"] for e in manifest["folding"]]
    assert kinds == ["sliding_window", "matrix_vector", "max_pool", "sliding_window", "matrix_vector", "max_pool",
                     "matrix_vector", "matrix_vector"]
    ops = lower(net, plan)
    assert [e["expected_cycles_per_image"] for e in manifest["folding"]] == [op.cycles() for op in ops]
    assert manifest["expected_cycles_per_image"] == max(op.cycles() for op in ops)
    windows = [e for e in manifest["folding"] if e["op"] == "sliding_window"]
    assert [w["buffer_banks"] for w in windows] == [3, 1]  # SIMD 3 over one channel; SIMD 8 of 8 channels
    for w in windows:
        assert w["buffer_words"] <= 1.25 * w["min_buffer_words"]
    assert manifest["input_stream"] == ops[0].in_stream.to_json()
    assert manifest["input_stream"]["beats_per_image"] == 64  # one pixel per beat


@pytest.mark.hdl
@pytest.mark.parametrize("simulator,images", [("verilator", 200), ("icarus", 50)])
def test_digits_cnn_bit_exact_on_real_images(digits_cnn, tmp_path, simulator, images):
    from lowbit.sim.netrun import simulate_build

    net, plan, out, manifest = digits_cnn
    ds = load_dataset("digits")
    rep = simulate_build(out, manifest, net, ds.x_test[:images], ds.y_test[:images], simulator=simulator,
                         stress=20, model="synthesis" if simulator == "icarus" else "simulation",
                         sim_dir=tmp_path / "sim")
    assert rep.run.passed and rep.images == images
    assert rep.mismatches == 0, rep.first_mismatches
    assert rep.accuracy == rep.golden_accuracy
    # the steady state of the pipeline is its slowest op (measured at full rate, after the stressed images)
    assert rep.cycles_per_image <= 1.05 * manifest["expected_cycles_per_image"]


def test_auto_fold_folds_convolutions_windows_and_pools():
    net = random_cnn((8, 8, 1), LAYERS, "s3", "u3", seed=7)
    for target in (256, 1024, 4096):
        plan = auto_fold(net, target_cycles=target)
        ops = lower(net, plan)
        assert max(op.cycles() for op in ops) <= target
        assert all(op.folded for op in ops)
    tight = auto_fold(net, max_lanes=64)
    assert sum(op.lanes() for op in lower(net, tight)) <= 64


def test_bad_cnn_folds_are_refused_with_the_rule():
    net = random_cnn((8, 8, 1), LAYERS, "s3", "u3", seed=7)
    with pytest.raises(ValueError, match=r"simd must divide the 1 input channels of layer 'conv0', or \(parallel "
                                         r"window\) be a multiple of them dividing KW·C = 3 \(allowed simd: 1, 3\), "
                                         r"not 9"):
        plan_folding(net, parse_fold("4x9,2,4x8,4,4x16,2x8", len(net.layers)))
    with pytest.raises(ValueError, match=r"pe must be a divisor of the 8 channels of max-pool layer"):
        plan_folding(net, parse_fold("4x3,3,4x8,4,4x16,2x8", len(net.layers)))
    assert isinstance(lower(net)[0], SlidingWindowOp) and isinstance(lower(net)[2], MaxPoolOp)


def test_bench_refuses_a_network_index_it_does_not_have(capsys):
    from lowbit.sw.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "--nets", "3,12"])
    assert e.value.code == 2
    assert "--nets: must be comma-separated indices 0..9, not '3,12'" in capsys.readouterr().err
