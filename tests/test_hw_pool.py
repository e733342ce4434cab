"""The max-pool unit beyond the op contract: windows whose maximum hides among the format's
minimum, long output stalls, pools inside whole networks (the network top against the golden
model), and the pools it refuses (overlapping, 1-wide, not tiling) before anything is generated."""

from __future__ import annotations

import gc
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from lowbit.hw.network import NetworkTop
from lowbit.hw.registry import component_for
from lowbit.sim.streams import get_n, put_all
from lowbit.sw.fold import parse_fold, plan_folding
from lowbit.sw.golden import run_network
from lowbit.sw.ir import IRError, MaxPool2dLayer, Network
from lowbit.sw.ops import FoldError, MaxPoolOp, lower
from lowbit.sw.randnet import random_cnn


def _run(dut, beats, n_out, *, gap: float, stall: float, seed: int = 0):
    got = {}

    async def producer(ctx):
        await put_all(ctx, dut.i, beats, gap_prob=gap, rng=random.Random(seed))

    async def consumer(ctx):
        got["o"] = await get_n(ctx, dut.o, n_out, stall_prob=stall, rng=random.Random(seed + 1))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return got["o"]


@pytest.mark.parametrize("fmt, shape, kernel, pe", [
    ("u1", (4, 4, 8), (2, 2), 8), ("u4", (6, 6, 2), (3, 3), 1), ("s3", (4, 6, 4), (2, 3), 2),
    ("s8", (4, 4, 2), (2, 2), 1), ("ternary", (6, 4, 3), (3, 2), 3), ("bipolar", (6, 6, 2), (3, 3), 2)])
def test_the_maximum_is_found_among_minima_under_long_stalls(fmt, shape, kernel, pe):
    """Most inputs are the format's minimum, so a window's maximum is one or two values somewhere
    in it (at random: the first, the last or a middle beat); the consumer stalls 70% of cycles."""
    op = MaxPoolOp(MaxPool2dLayer(fmt, "pool", in_shape=shape, kernel=kernel)).with_fold(pe)
    values = op.layer.fmt.values()
    rng = np.random.default_rng(7)
    x = np.where(rng.random((4, *shape)) < 0.85, values[0], rng.choice(values, (4, *shape)))
    golden = op.golden(x).out.reshape(4, -1)
    assert np.any(golden != values[0]) and np.any(golden == values[0])  # both kinds of window occur
    out = _run(component_for(op), op.in_stream.encode(x.reshape(4, -1)), 4 * op.out_stream.beats_per_image,
               gap=0.2, stall=0.7)
    assert np.array_equal(op.out_stream.decode([int(v) for v in out]), golden)


def test_row_buffer_sizes_of_lenets_pools():
    """lenet's pools (24x24x32 and 8x8x64, 2x2): OW·C/PE words of PE·4 bits."""
    first = MaxPoolOp(MaxPool2dLayer("u4", "pool1", in_shape=(24, 24, 32)))
    second = MaxPoolOp(MaxPool2dLayer("u4", "pool3", in_shape=(8, 8, 64)))
    assert first.with_fold(1).row_buffer_shape() == (12 * 32, 4)
    assert first.with_fold(32).row_buffer_shape() == (12, 128)
    assert second.with_fold(8).row_buffer_shape() == (4 * 8, 32)
    assert first.with_fold(1).cost("ice40")["bram"] == 1  # 384 x 4 bits: one SB_RAM40_4K (1024 x 4)
    assert first.with_fold(32).cost("xilinx")["lutram_luts"] == 128  # 12 deep: LUTRAM, one LUT per bit


def test_a_pool_feeding_a_dense_layer_in_the_network_top():
    """The pool's PE-lane output re-cut to the dense layer's SIMD by the top's width converter."""
    net = random_cnn((4, 6, 4), ["MP2", "6", "3"], "s3", "u3", seed=2)
    plan = plan_folding(net, [(2,), (2, 4), (3, 2)])
    x = np.random.default_rng(1).choice(net.layers[0].fmt.values(), (6, 4, 6, 4))
    golden = run_network(net, x)
    pool = lower(net, plan)[0]
    assert isinstance(pool, MaxPoolOp) and pool.out_stream.lanes == 2 and plan.layers[1].simd == 4
    out = _run(NetworkTop(net, plan), pool.in_stream.encode(x.reshape(6, -1)), len(x), gap=0.2, stall=0.3)
    assert [int(p.cls) for p in out] == golden.classes.tolist()
    assert [[int(v) for v in p.logits] for p in out] == golden.logits.tolist()


def test_pools_between_convolutions_in_the_network_top():
    """conv → pool → conv → pool (to 1x1) → dense: each pool takes its PE from the fold and
    passes a matrix-vector unit's output on to a sliding window or a dense layer."""
    net = random_cnn((8, 8, 2), ["4C3", "MP2", "6C2", "MP2", "10FC"], "s3", "u3", seed=1)
    plan = plan_folding(net, parse_fold("2x2,2,3x4,3,5x6", 5))
    x = np.random.default_rng(1).choice(net.layers[0].in_format.values(), (5, 8, 8, 2))
    golden = run_network(net, x)
    first = lower(net, plan)[0]
    out = _run(NetworkTop(net, plan), first.in_stream.encode(x.reshape(5, -1)), len(x), gap=0.2, stall=0.3)
    assert [[int(v) for v in p.logits] for p in out] == golden.logits.tolist()
    assert [int(p.cls) for p in out] == golden.classes.tolist()


# ---- what the unit refuses ----------------------------------------------------------------------
# (a refused component was allocated before its constructor raised: amaranth warns it went unused)
unused_refused = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@unused_refused
def test_overlapping_and_one_wide_pools_are_refused_with_the_layer_and_values():
    overlap = MaxPoolOp(MaxPool2dLayer("u4", "p", in_shape=(7, 7, 2), kernel=(3, 3), stride=(2, 2))).with_fold(2)
    assert overlap.golden(np.zeros((1, 7, 7, 2), np.int64)).out.shape == (1, 3, 3, 2)  # software still pools it
    message = (r"max-pool layer 'p' has stride \(2, 2\) with kernel \(3, 3\): the max-pool unit builds only "
               r"stride = kernel \(non-overlapping windows\), e.g. stride \(3, 3\)")
    for refuse in (overlap.check_hardware, lambda: component_for(overlap), lambda: overlap.cost("xilinx")):
        with pytest.raises(FoldError, match=message):
            refuse()
    narrow = MaxPoolOp(MaxPool2dLayer("u4", "q", in_shape=(4, 4, 2), kernel=(2, 1))).with_fold(1)
    with pytest.raises(FoldError, match=r"max-pool layer 'q' has kernel \(2, 1\): the max-pool unit needs a kernel of "
                                        r"at least 2 on both axes \(KH, KW ≥ 2\)"):
        component_for(narrow)
    gc.collect()  # the refused components go (and warn) here, under this test's filter


def test_a_pool_that_does_not_tile_its_input_never_reaches_hardware():
    """The IR refuses it, so neither the golden model nor the unit ever drops a remainder."""
    with pytest.raises(IRError, match=r"p: a 2×2 pool with stride \(2, 2\) must tile the 5×4 input exactly"):
        MaxPool2dLayer("u4", "p", in_shape=(5, 4, 3))
    with pytest.raises(IRError, match=r"q: a 3×3 pool with stride \(3, 3\) must tile the 6×7 input exactly"):
        MaxPool2dLayer("s3", "q", in_shape=(6, 7, 1), kernel=(3, 3))


def test_lowbit_build_refuses_an_overlapping_pool_before_generating(tmp_path, capsys):
    from lowbit.sw.cli import main

    base = random_cnn((6, 6, 2), ["MP2", "3"], "s3", "u3", seed=1)
    pool = MaxPool2dLayer("u3", "pool0", in_shape=(6, 6, 2), kernel=(4, 4), stride=(1, 1))  # also 3x3 out
    Network([pool, base.layers[1]], base.input).save(tmp_path / "net.npz")
    assert main(["build", str(tmp_path / "net.npz"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert ("lowbit build: error: max-pool layer 'pool0' has stride (1, 1) with kernel (4, 4): the max-pool unit "
            "builds only stride = kernel" in err)
    assert "Traceback" not in err and not (tmp_path / "out").exists()
