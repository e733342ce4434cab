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
from lowbit.sw.ops import MatrixVectorOp, lower
from lowbit.sw.pack import params_from_banks, weights_from_banks
from lowbit.sw.randnet import random_network


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
    w = [list(m.words) for m in memories if m.kind == "weights"]
    p = [list(m.words) for m in memories if m.kind == "params"]
    assert np.array_equal(weights_from_banks(w, f.rows, f.cols, f.pe, f.simd, layer.weight_format), layer.weights)
    params = params_from_banks(p, f.rows, f.pe, op.param_layout)
    assert np.array_equal(params.bias, layer.bias)
    if layer.requant is not None:
        mult, shift = layer.requant.per_channel(f.rows)
        assert np.array_equal(params.shift, shift)
        if layer.requant.multiplier is not None:
            assert np.array_equal(params.multiplier, mult)


#: op class → (samples, memory check back to the IR's arrays)
SAMPLES = {MatrixVectorOp: (_matrix_vector_samples(), _check_matrix_vector_memories)}
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
    wider = op.with_fold(max(op.fold_options(), key=lambda f: f.lanes))
    assert wider.cost("xilinx")["lut"] >= op.cost("xilinx")["lut"]


def test_unfolded_op_refuses_what_needs_a_fold():
    net = random_network([6, 4], "s4", "u4")
    (op,) = lower(net)
    assert op.golden(np.zeros((1, 6), np.int64)).out.shape == (1, 4)
    with pytest.raises(ValueError, match=r"op 'fc0' \(matrix_vector\) needs a fold for its memories"):
        op.memories()
    with pytest.raises(ValueError, match=r"pe must be a divisor of the 4 rows .* not 3"):
        op.with_fold((3, 2))


@pytest.mark.hdl
@pytest.mark.parametrize("op", [CASES[0], CASES[1]])
def test_golden_equals_verilator(tmp_path, op):
    from lowbit.sim.verify import verify_op

    x = _inputs(op, 8, seed=2)
    res = verify_op(op, x, tmp_path, stress_images=3)
    assert res["run"].passed
    assert np.array_equal(res["outputs"], res["golden"])
    assert res["cycles_per_image"] == op.cycles()
