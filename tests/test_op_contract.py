"""The op contract, for every op with a registered component (``lowbit.hw.registry``).

For each op: golden == Amaranth simulation (random data, random valid gaps and ready
stalls) == Verilator (cocotb), ``cycles()`` == the cycles measured at full rate, its
memories round-trip through every image format and back to the IR's arrays, its cost is
sane. A new op is tested by registering it and adding its samples to ``SAMPLES`` (a test
below fails until it has some).
"""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from amaranth.sim import Simulator

from lowbit.hw.registry import COMPONENTS, component_for
from lowbit.sim.streams import put_all
from lowbit.sw.fold import plan_folding
from lowbit.sw.memimage import FORMATS, dumps, loads
from lowbit.sw.ir import MaxPool2dLayer
from lowbit.sw.ops import MatrixVectorOp, MaxPoolOp, SlidingWindowOp, lower
from lowbit.sw.pack import params_from_banks, weights_from_image
from lowbit.sw.randnet import random_cnn, random_network


def _matrix_vector_samples():
    """A hidden (requantizing) and a last (logits) op for each kind of lane, at uneven folds."""
    cases = [("s4", "u4", True, [(4, 3), (3, 2)]), ("bipolar", "bipolar", False, [(2, 12), (1, 4)]),
             ("ternary", "u3", False, [(8, 1), (2, 8)]), ("pow2_3", "u3", True, [(1, 6), (3, 1)]),
             ("s2", "s2", False, [(4, 4), (6, 8)])]
    out = []
    for wf, af, mult, folds in cases:
        net = random_network([12, 8, 6], wf, af, seed=3, multiplier=mult)
        for op in lower(net, plan_folding(net, folds)):
            out.append((f"{wf}-{af}-{op.name}-{op.fold}", op))
    # several vectors per image through one matrix (a convolution's im2col vectors)
    net = random_network([12, 8, 6], "s3", "u2", seed=4)
    hidden, last = lower(net, plan_folding(net, [(2, 4), (3, 2)]))
    out += [(f"s3-u2-{op.name}-{op.fold}-3vectors", replace(op, vectors=3)) for op in (hidden, last)]
    return out


def _check_matrix_vector_memories(op: MatrixVectorOp, memories) -> None:
    f, layer = op.fold, op.layer
    (w,) = [list(m.words) for m in memories if m.kind == "weights"]  # one weight memory per layer
    p = [list(m.words) for m in memories if m.kind == "params"]
    assert np.array_equal(weights_from_image(w, f.rows, f.cols, f.pe, f.simd, layer.weight_format), layer.weights)
    params = params_from_banks(p, f.rows, f.pe, op.param_layout)
    assert np.array_equal(params.bias, layer.bias)
    if layer.requant is not None:
        mult, shift = layer.requant.per_channel(f.rows)
        assert np.array_equal(params.shift, shift)
        if layer.requant.multiplier is not None:
            assert np.array_equal(params.multiplier, mult)


def _sliding_window_samples():
    """Every mode of the window: SIMD dividing C (one and several channel beats), parallel
    window (SIMD a multiple of C over kernel columns), zero padding (unsigned and bipolar,
    whose padding code stands for -1), strides in both axes, non-square images and kernels."""
    cases = [((6, 6, 2), "4C3", 2, "u4"), ((6, 6, 2), "4C3", 1, "u4"), ((6, 6, 2), "4C3p1", 2, "u4"),
             ((7, 5, 1), "4C3s2p1", 3, "u4"), ((6, 6, 1), "4C3p1", 1, "bipolar"), ((8, 8, 1), "4C3", 3, "u2"),
             ((5, 7, 4), "4C2s2", 2, "s3"), ((6, 9, 2), "3C3p1", 6, "u3")]
    out = []
    for shape, conv, simd, af in cases:
        net = random_cnn(shape, [conv, "3"], "bipolar" if af == "bipolar" else "s3", af, seed=5)
        op = next(op for op in lower(net) if isinstance(op, SlidingWindowOp)).with_fold(simd)
        out.append((f"{af}-{'x'.join(map(str, shape))}-{conv}-simd{simd}", op))
    return out


def _check_no_memories(op, memories) -> None:
    assert memories == ()


def _max_pool_samples():
    """Each kind of lane compare (unsigned, signed, ternary, bipolar), 2x2, 3x3 and 2x3 kernels,
    PE 1 (many channel beats per pixel), PE = C (one beat, consecutive beats of a window at the
    same row-buffer word) and in between; a one-word row buffer (OW = 1, PE = C)."""
    cases = [("u4", (4, 6, 4), (2, 2), 1), ("u4", (4, 6, 4), (2, 2), 4), ("s3", (4, 6, 4), (2, 2), 2),
             ("s3", (6, 9, 3), (3, 3), 3), ("bipolar", (4, 6, 4), (2, 2), 4), ("bipolar", (6, 6, 4), (3, 3), 1),
             ("ternary", (4, 6, 2), (2, 3), 1), ("s2", (2, 2, 2), (2, 2), 2)]
    out = []
    for fmt, shape, kernel, pe in cases:
        op = MaxPoolOp(MaxPool2dLayer(fmt, "pool", in_shape=shape, kernel=kernel)).with_fold(pe)
        out.append((f"pool-{fmt}-{'x'.join(map(str, shape))}-k{kernel[0]}x{kernel[1]}-pe{pe}", op))
    return out


#: op class → (samples, memory check back to the IR's arrays)
SAMPLES = {MatrixVectorOp: (_matrix_vector_samples(), _check_matrix_vector_memories),
           SlidingWindowOp: (_sliding_window_samples(), _check_no_memories),
           MaxPoolOp: (_max_pool_samples(), _check_no_memories)}
CASES = [pytest.param(op, id=name) for cls in SAMPLES for name, op in SAMPLES[cls][0]]


def _inputs(op, images: int, seed: int = 0) -> np.ndarray:
    fmt = op.in_stream.format
    return np.random.default_rng(seed).choice(fmt.values(), (images, op.in_stream.elements))


def _simulate(op, beats, n_out, *, gap: float, stall: float):
    """Amaranth simulation: every output beat and the cycle of each output transfer."""
    dut = component_for(op)
    got, cycles = [], []

    async def producer(ctx):
        await put_all(ctx, dut.i, beats, gap_prob=gap, rng=random.Random(3))

    async def consumer(ctx):
        rng, cycle = random.Random(4), 0
        while len(got) < n_out:
            ready = not (stall and rng.random() < stall)
            ctx.set(dut.o.ready, ready)
            *_, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            cycle += 1
            if ready and valid:
                got.append(int(payload))
                cycles.append(cycle)
        ctx.set(dut.o.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return got, cycles


def test_every_registered_op_has_samples():
    assert set(COMPONENTS) == set(SAMPLES)
    assert all(SAMPLES[cls][0] for cls in SAMPLES)


@pytest.mark.parametrize("op", CASES)
def test_golden_equals_amaranth_simulation_with_gaps_and_stalls(op):
    x = _inputs(op, 5)
    got, _ = _simulate(op, op.in_stream.encode(x), 5 * op.out_stream.beats_per_image, gap=0.3, stall=0.3)
    assert np.array_equal(op.out_stream.decode(got), op.golden(x).out.reshape(len(x), -1))


@pytest.mark.parametrize("op", CASES)
def test_cycles_equal_the_measured_steady_state(op):
    x = _inputs(op, 6, seed=1)
    per_image = op.out_stream.beats_per_image
    got, cycles = _simulate(op, op.in_stream.encode(x), 6 * per_image, gap=0.0, stall=0.0)
    ends = np.asarray(cycles)[per_image - 1::per_image]  # each image's last output beat
    assert np.all(np.diff(ends[1:]) == op.cycles())
    assert np.array_equal(op.out_stream.decode(got), op.golden(x).out.reshape(len(x), -1))


@pytest.mark.parametrize("op", CASES)
def test_memories_round_trip(op):
    mems = op.memories()
    assert mems is op.memories()  # packed once per op
    for mem in mems:
        for fmt in FORMATS:
            assert loads(dumps(mem.words, mem.width, fmt), fmt, mem.width, mem.depth) == list(mem.words), fmt
    SAMPLES[type(op)][1](op, mems)


@pytest.mark.parametrize("op", CASES)
def test_cost_is_sane(op):
    for family in ("xilinx", "ice40"):
        c = op.cost(family)
        assert c["lut"] >= op.lanes() and c["ff"] > 0 and c["bram"] >= 0 and c["dsp"] == 0
    # a follower (the window) has no fold options of its own: the widest SIMD it can follow
    options = op.fold_options() or op.allowed_simd()
    wider = op.with_fold(max(options, key=lambda f: (getattr(f, "lanes", f), getattr(f, "in_lanes", 0))))
    assert wider.cost("xilinx")["lut"] >= op.cost("xilinx")["lut"]


def test_unfolded_op_refuses_what_needs_a_fold():
    net = random_network([6, 4], "s4", "u4")
    (op,) = lower(net)
    assert op.golden(np.zeros((1, 6), np.int64)).out.shape == (1, 4)
    with pytest.raises(ValueError, match=r"op 'fc0' \(matrix_vector\) needs a fold for its memories"):
        op.memories()
    with pytest.raises(ValueError, match=r"pe must be a divisor of the 4 rows .* not 3"):
        op.with_fold((3, 2))


def _case(name):
    return next(case for case in CASES if case.id == name)


@pytest.mark.hdl
@pytest.mark.parametrize("op", [CASES[0], CASES[1], _case("u4-7x5x1-4C3s2p1-simd3"), _case("bipolar-6x6x1-4C3p1-simd1"),
                                _case("pool-s3-4x6x4-k2x2-pe2")])
def test_golden_equals_verilator(tmp_path, op):
    from lowbit.sim.verify import verify_op

    x = _inputs(op, 8, seed=2)
    res = verify_op(op, x, tmp_path, stress_images=3)
    assert res["run"].passed
    assert np.array_equal(res["outputs"], res["golden"])
    assert res["cycles_per_image"] == op.cycles()
