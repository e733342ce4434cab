"""Convolution and max-pool in software: im2col order, golden model, the window and pool ops
(streams, folds, cycles), lowering and folding of convolutional networks.

The op-contract test (tests/test_op_contract.py) covers ops with a registered component;
these ops get theirs with the hardware issue, so their software half is tested here.
"""

from __future__ import annotations

import numpy as np
import pytest

from lowbit.sw import golden
from lowbit.sw.fold import auto_fold, parse_fold, plan_folding
from lowbit.sw.golden import conv2d_accumulate, im2col, maxpool2d, run_network
from lowbit.sw.ir import Conv2dLayer, DenseLayer, InputTransform, MaxPool2dLayer, Network
from lowbit.sw.ops import (FoldError, LayerFold, MatrixVectorOp, MaxPoolOp, SlidingWindowOp, foldable_ops, lower,
                           run_ops)
from lowbit.sw.pack import pack_words
from lowbit.sw.randnet import LENET, random_cnn
from lowbit.sw.requant import RequantParams, requantize


def naive_conv(x, w, bias, stride, padding, pad):
    """The convolution formula of Conv2dLayer's docstring, one output at a time."""
    b, h, wd, c = x.shape
    oc, kh, kw, _ = w.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = np.full((b, h + 2 * ph, wd + 2 * pw, c), pad, np.int64)
    xp[:, ph:ph + h, pw:pw + wd] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((b, oh, ow, oc), np.int64)
    for n in range(b):
        for oy in range(oh):
            for ox in range(ow):
                for o in range(oc):
                    win = xp[n, oy * sh:oy * sh + kh, ox * sw:ox * sw + kw]
                    out[n, oy, ox, o] = int((win * w[o]).sum()) + int(bias[o])
    return out


def naive_pool(x, kernel, stride):
    b, h, w, c = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    return np.array([[[[x[n, oy * sh:oy * sh + kh, ox * sw:ox * sw + kw, ch].max() for ch in range(c)]
                       for ox in range(ow)] for oy in range(oh)] for n in range(b)])


# ---- im2col and the golden model ---------------------------------------------------------
def test_im2col_order_is_ky_kx_c_with_channels_innermost():
    x = np.arange(2 * 4 * 5 * 3).reshape(2, 4, 5, 3)
    cols = im2col(x, (2, 3), (1, 2), (1, 0), pad_value=-7)
    assert cols.shape == (2, 5, 2, 2 * 3 * 3)  # OH = (4 + 2 − 2) + 1, OW = (5 − 3) // 2 + 1
    for n, oy, ox, ky, kx, c in np.ndindex(2, 5, 2, 2, 3, 3):
        y, xx = oy + ky - 1, ox * 2 + kx
        expected = x[n, y, xx, c] if 0 <= y < 4 else -7
        assert cols[n, oy, ox, (ky * 3 + kx) * 3 + c] == expected


@pytest.mark.parametrize("wf, af, stride, padding", [
    ("s4", "u4", (1, 1), (0, 0)), ("ternary", "s3", (2, 1), (1, 2)), ("bipolar", "bipolar", (1, 2), (2, 1)),
    ("pow2_3", "u2", (3, 3), (1, 1))])
def test_conv_golden_equals_the_formula(wf, af, stride, padding):
    rng = np.random.default_rng(0)
    from lowbit.sw.formats import parse_format

    w = rng.choice(parse_format(wf).values(), (5, 3, 3, 2))
    bias = rng.integers(-9, 9, 5)
    layer = Conv2dLayer(w, wf, af, bias, name="c", in_shape=(7, 6, 2), stride=stride, padding=padding)
    x = rng.choice(parse_format(af).values(), (3, 7, 6, 2))
    expected = naive_conv(x, w, bias, stride, padding, layer.pad_value)
    assert np.array_equal(conv2d_accumulate(x, layer), expected)
    assert expected.shape[1:] == layer.out_shape
    # the ops: window then matrix-vector over OH·OW vectors
    window, mvu = lower(Network([layer]))
    r = run_ops((window, mvu), x)
    assert np.array_equal(r[0].out, im2col(x, layer.kernel, stride, padding, layer.pad_value))
    assert np.array_equal(r[1].acc.reshape(expected.shape), expected)


def test_bipolar_padding_with_minus_one_is_exact_zero_padding():
    """A bipolar input v stands for the real x = (v + 1)/2 ∈ {0, 1}; with the offset ΣW/2 of every
    kernel position folded into the bias, padding with v = -1 is padding the real input with 0."""
    rng = np.random.default_rng(1)
    w = rng.integers(-4, 4, (3, 3, 3, 2))
    real = rng.integers(0, 2, (4, 5, 5, 2))
    zero_padded = naive_conv(real, w, np.zeros(3, int), (1, 1), (1, 1), pad=0)  # Σ W·x over real zeros
    # integer layer: 2·Σ W·x = Σ W·v + Σ W  (v = 2x − 1), the ΣW in the bias
    layer = Conv2dLayer(w, "s3", "bipolar", w.reshape(3, -1).sum(axis=1), name="b", in_shape=(5, 5, 2), padding=(1, 1))
    assert layer.pad_value == -1
    assert np.array_equal(conv2d_accumulate(2 * real - 1, layer), 2 * zero_padded)


@pytest.mark.parametrize("kernel, stride, shape", [((2, 2), None, (6, 4, 3)), ((3, 3), (2, 2), (7, 5, 2)),
                                                   ((2, 1), (1, 1), (3, 3, 4))])
def test_maxpool_golden_and_op(kernel, stride, shape):
    rng = np.random.default_rng(2)
    layer = MaxPool2dLayer("s4", "p", in_shape=shape, kernel=kernel, stride=stride)
    x = rng.integers(-8, 8, (3, *shape))
    expected = naive_pool(x, layer.kernel, layer.stride)
    assert np.array_equal(maxpool2d(x, layer), expected) and expected.shape[1:] == layer.out_shape
    (op,) = lower(Network([layer]))
    assert isinstance(op, MaxPoolOp) and np.array_equal(op.golden(x.reshape(3, -1)).out, expected)
    assert op.golden(x).acc is None
    with pytest.raises(ValueError, match="input of p holds 9, which s4 cannot represent"):
        maxpool2d(np.full((1, *shape), 9), layer)


def test_pooling_after_requantization_equals_requantizing_the_pooled_accumulators():
    rng = np.random.default_rng(3)
    acc = rng.integers(-300, 300, (5, 6, 6, 4))
    layer = MaxPool2dLayer("u3", in_shape=(6, 6, 4))
    for rq in (RequantParams("u3", shift=np.array([2, 3, 4, 5]), multiplier=np.array([3, 1, 0, 7]),
                             rounding="half_even", relu=True),
               RequantParams("bipolar", shift=3, rounding="half_up")):
        pooled = MaxPool2dLayer(rq.out_format, in_shape=(6, 6, 4))
        assert np.array_equal(maxpool2d(requantize(acc, rq), pooled), requantize(naive_pool(acc, (2, 2), (2, 2)), rq))
    assert layer.out_shape == (3, 3, 4)


# ---- networks: lowering, golden run ----------------------------------------------------------
@pytest.fixture(scope="module")
def small_cnn():
    return random_cnn((8, 8, 2), ["6C3p1", "MP2", "8C3s2p1", "MP2", "5"], "s4", "u4", seed=5, multiplier=True)


def reference_run(net, x):
    """The network by the formulas alone (no im2col, no ops)."""
    x = x.reshape(len(x), *net.in_shape)
    for layer in net.layers:
        if isinstance(layer, Conv2dLayer):
            acc = naive_conv(x, layer.weights, layer.bias, layer.stride, layer.padding, layer.pad_value)
            x = acc if layer.requant is None else requantize(acc, layer.requant)
        elif isinstance(layer, MaxPool2dLayer):
            x = naive_pool(x, layer.kernel, layer.stride)
        else:
            acc = x.reshape(len(x), -1) @ layer.weights.T + layer.bias
            x = acc if layer.requant is None else requantize(acc, layer.requant)
    return x


def test_lowering_a_conv_net(small_cnn):
    ops = lower(small_cnn)
    assert [(op.index, op.kind) for op in ops] == [
        (0, "sliding_window"), (0, "matrix_vector"), (1, "max_pool"), (2, "sliding_window"), (2, "matrix_vector"),
        (3, "max_pool"), (4, "matrix_vector")]
    conv0, conv2 = small_cnn.layers[0], small_cnn.layers[2]
    assert ops[1].vectors == 8 * 8 and ops[4].vectors == 2 * 2 and ops[6].vectors == 1
    assert ops[1].layer is conv0.as_dense() and ops[1].layer.weights.shape == (6, 3 * 3 * 2)
    assert conv2.out_shape == (2, 2, 8)
    assert [op.kind for op in foldable_ops(ops)] == ["matrix_vector", "max_pool", "matrix_vector", "max_pool",
                                                     "matrix_vector"]


def test_run_network_equals_the_ops_and_the_formulas(small_cnn, monkeypatch):
    rng = np.random.default_rng(6)
    pixels = rng.integers(0, 256, (11, 8 * 8 * 2))
    monkeypatch.setattr(golden, "GOLDEN_CHUNK", 4)  # several chunks: results do not depend on it
    res = run_network(small_cnn, pixels, raw_pixels=True)
    x = small_cnn.input.apply(pixels)
    ops_out = run_ops(lower(small_cnn), x.reshape(11, 8, 8, 2))
    assert np.array_equal(res.logits, ops_out[-1].out) and np.array_equal(res.logits, reference_run(small_cnn, x))
    assert [a.shape[1:] for a in res.activations] == [l.out_shape for l in small_cnn.layers]
    assert res.accumulators[1] is None and res.accumulators[0].shape == (11, 8, 8, 6)
    assert np.array_equal(res.activations[0], requantize(res.accumulators[0], small_cnn.layers[0].requant))
    assert res.saturation(small_cnn)[1] != res.saturation(small_cnn)[1]  # NaN: a max-pool does not clip
    lean = run_network(small_cnn, pixels, raw_pixels=True, keep="logits")
    assert np.array_equal(lean.logits, res.logits) and np.array_equal(lean.classes, res.classes)
    assert lean.activations[:-1] == [None] * 4 and lean.accumulators[:-1] == [None] * 4
    # images given NHWC work too
    assert np.array_equal(run_network(small_cnn, x.reshape(11, 8, 8, 2)).logits, res.logits)
    with pytest.raises(ValueError, match="keep must be 'all' or 'logits', not 'some'"):
        run_network(small_cnn, pixels, keep="some")


def test_random_cnn_lenet_shape():
    net = random_cnn((28, 28, 1), LENET, "s2", "u2", seed=0)
    assert [l.out_shape for l in net.layers] == [(24, 24, 32), (12, 12, 32), (8, 8, 64), (4, 4, 64), (512,), (10,)]
    assert sum(l.macs() for l in net.layers) == 4_267_008
    with pytest.raises(ValueError, match=r"layers must be like 32C5, 32C3s2p1, MP2 or 512FC, not 'C5'"):
        random_cnn((8, 8, 1), ["C5"])


# ---- the sliding window op: streams, folds, cycles -------------------------------------------
def conv_layer(in_shape=(6, 5, 4), oc=3, kernel=(3, 2), stride=(1, 1), padding=(1, 0), af="u3"):
    rng = np.random.default_rng(7)
    return Conv2dLayer(rng.integers(-2, 2, (oc, *kernel, in_shape[2])), "s2", af, name="c", in_shape=in_shape,
                       stride=stride, padding=padding)


@pytest.mark.parametrize("simd", [1, 2, 4, 8])
def test_window_output_stream_is_the_im2col_vectors_in_simd_beats(simd):
    layer = conv_layer()  # C = 4, KW = 2: SIMD 8 is the parallel window (2 kernel columns per beat)
    op = SlidingWindowOp(layer).with_fold(LayerFold(3, simd, 3, 3 * 2 * 4))
    rng = np.random.default_rng(8)
    x = rng.integers(0, 8, (2, *layer.in_shape))
    cols = im2col(x, layer.kernel, layer.stride, layer.padding, layer.pad_value)  # [2, OH, OW, K]
    assert np.array_equal(op.golden(x).out, cols)
    oh, ow, _ = layer.out_shape
    k = 3 * 2 * 4
    s = op.out_stream
    assert (s.lanes, s.beats_per_vector, s.vectors, s.lane_bits) == (simd, k // simd, oh * ow, 3)
    # beat t of vector (oy, ox) holds elements t·SIMD .. t·SIMD + SIMD − 1, lane j in bits [3j, 3j + 3)
    expected = [sum(int(cols[n, oy, ox, t * simd + j]) << (3 * j) for j in range(simd))
                for n in range(2) for oy in range(oh) for ox in range(ow) for t in range(k // simd)]
    assert s.encode(cols.reshape(2, -1)) == expected
    assert np.array_equal(s.decode(expected), cols.reshape(2, -1))
    # input: H·W pixels of C/L beats, L = SIMD, or C in parallel-window mode
    lanes = min(simd, 4)
    i = op.in_stream
    assert (i.lanes, i.beats_per_vector, i.vectors) == (lanes, 4 // lanes, 6 * 5)
    assert i.encode(x.reshape(2, -1)) == pack_words(x.reshape(-1, lanes), 3)


def test_window_cycles_and_buffer_formulas():
    layer = conv_layer(in_shape=(9, 7, 4), kernel=(3, 3), stride=(2, 2), padding=(1, 1))  # OH = 5, OW = 4
    assert layer.out_shape == (5, 4, 3)
    for simd, lanes in ((1, 1), (2, 2), (4, 4), (12, 4)):
        f = SlidingWindowOp(layer).with_fold(simd).fold
        in_beats, out_beats = 9 * 7 * 4 // lanes, 5 * 4 * 36 // simd
        assert (f.in_lanes, f.in_beats, f.out_beats, f.lanes) == (lanes, in_beats, out_beats, 0)
        # the schedule never beats either side (the op-contract test measures it exactly)
        assert f.cycles >= max(in_beats, out_beats + f.stall_beats)
        op = SlidingWindowOp(layer).with_fold(simd)
        # the span: from a window's release point to its last pixel, (KH-1)·W + KW inside the image
        assert op.span_pixels == (3 - 1) * 7 + 3
        assert op.min_buffer_words == op.span_pixels * 4 // lanes
        assert op.banks == simd // lanes and op.buffer_pixels % op.banks == 0
        assert op.span_pixels <= op.buffer_pixels <= -(-op.span_pixels * 5 // 4 // op.banks) * op.banks
        assert op.buffer_words == op.buffer_pixels * 4 // lanes
        entry = op.manifest_entry()
        assert entry["buffer_words"] == op.buffer_words and entry["expected_cycles_per_image"] == op.cycles()
        assert entry["pad_value"] == 0 and entry["op"] == "sliding_window"
    # stride 1: the output side bounds, and the cycles are its beats plus the stalls at changes of window
    dense = conv_layer(in_shape=(9, 7, 4), kernel=(3, 3), stride=(1, 1), padding=(0, 0))
    f = SlidingWindowOp(dense).with_fold(2).fold
    assert f.cycles == f.out_beats + f.stall_beats == 7 * 5 * 36 // 2 + f.stall_beats
    # a stride-4 1x1 convolution: the window's input is the layer's bottleneck
    sparse = conv_layer(in_shape=(8, 8, 4), kernel=(1, 1), stride=(4, 4), padding=(0, 0))
    plan = plan_folding(Network([sparse]), [(3, 4)])
    mvu_cycles = 2 * 2 * 1 * 1
    assert plan.cycles == (max(8 * 8 * 4 // 4, mvu_cycles),) == (64,)
    assert lower(Network([sparse]), plan)[1].cycles() == mvu_cycles


def test_window_fold_errors_and_options():
    layer = conv_layer(in_shape=(6, 5, 6), kernel=(3, 2))  # C = 6, KW = 2: SIMD | 6 or 12
    op = SlidingWindowOp(layer)
    assert op.allowed_simd() == [1, 2, 3, 6, 12] and op.fold_options() == []
    with pytest.raises(FoldError, match=r"simd must divide the 6 input channels of layer 'c', or \(parallel window\) "
                                        r"be a multiple of them dividing KW·C = 12 \(allowed simd: 1, 2, 3, 6, 12\), "
                                        r"not 4"):
        op.with_fold(4)
    with pytest.raises(FoldError, match=r"fold of the sliding window of layer 'c' must be the layer's fold"):
        op.with_fold("4")
    with pytest.raises(FoldError, match=r"needs a fold for its output stream"):
        op.out_stream
    cost = op.with_fold(3).cost("xilinx")
    assert cost["lut"] > 0 and cost["ff"] > 0 and cost["dsp"] == 0
    # the layer's fold options are the matrix-vector ones the window can follow (SIMD | 36 and allowed)
    net = Network([layer])
    plan = plan_folding(net, [(3, 12)])
    assert str(plan) == "3x12" and lower(net, plan)[0].fold.in_lanes == 6
    with pytest.raises(ValueError, match=r"simd must divide the 6 input channels"):
        plan_folding(net, [(3, 4)])  # 4 divides K = 36, but the window cannot take it
    with pytest.raises(ValueError, match=r"simd must be a divisor of the 36 columns"):
        plan_folding(net, [(3, 5)])


# ---- max-pool folds, cycles ------------------------------------------------------------------
def test_maxpool_fold_streams_and_cycles():
    layer = MaxPool2dLayer("u4", "p", in_shape=(6, 4, 12))
    op = MaxPoolOp(layer)
    assert [f.pe for f in op.fold_options()] == [1, 2, 3, 4, 6, 12]
    for fold in (4, (4,)):
        f = op.with_fold(fold)
        assert f.cycles() == 6 * 4 * 12 // 4 and f.lanes() == 0
        assert (f.in_stream.lanes, f.in_stream.beats_per_vector, f.in_stream.vectors) == (4, 3, 24)
        assert (f.out_stream.lanes, f.out_stream.beats_per_vector, f.out_stream.vectors) == (4, 3, 6)
        assert f.out_stream.format == layer.fmt and f.memories() == ()
    with pytest.raises(FoldError, match=r"pe must be a divisor of the 12 channels of max-pool layer 'p' \(allowed pe: "
                                        r"1, 2, 3, 4, 6, 12\), not 5"):
        op.with_fold(5)
    with pytest.raises(FoldError, match=r"fold of max-pool layer 'p' must be its PE alone \(channels per beat, one "
                                        r"number such as 12\), not \(4, 4\)"):
        op.with_fold((4, 4))
    # the row buffer: OW·C/PE = 2·3 words of PE·4 bits, LUTRAM on Xilinx, one block RAM on iCE40
    assert op.with_fold(4).row_buffer_shape() == (6, 16)
    assert (op.with_fold(4).cost("xilinx")["lutram_luts"], op.with_fold(4).cost("xilinx")["bram"]) == (16, 0)
    assert (op.with_fold(4).cost("ice40")["lutram_luts"], op.with_fold(4).cost("ice40")["bram"]) == (0, 1)


# ---- folding whole networks ------------------------------------------------------------------
def test_parse_and_plan_a_conv_fold(small_cnn):
    folds = parse_fold("6x2,3,4x6,8,5x4", 5)
    assert folds == [(6, 2), (3,), (4, 6), (8,), (5, 4)]
    plan = plan_folding(small_cnn, folds)
    assert str(plan) == "6x2,3,4x6,8,5x4" and plan.lanes == (12, 0, 24, 0, 20)
    # conv0: 64 vectors · NF 6/6 · SF 18/2 (its window: max(64·2/2, 64·18/2) = 576); pool1: 8·8·6/3;
    # conv2: 4 vectors · NF 8/4 · SF 54/6 (window: max(4·4·6/6, 4·54/6) = 36); pool3: 2·2·8/8; fc4: NF 1 · SF 8/4
    assert plan.cycles == (64 * 1 * 9, 8 * 8 * 6 // 3, 4 * 2 * 9, 2 * 2 * 8 // 8, 1 * 2)
    ops = lower(small_cnn, plan)
    assert max(op.cycles() for op in ops) == plan.initiation_interval
    with pytest.raises(ValueError, match=r"fold of max-pool layer 'pool1' must be its PE alone"):
        plan_folding(small_cnn, parse_fold("6x2,3x1,4x6,8,5x4", 5))
    with pytest.raises(ValueError, match=r"fold of layer 'conv2' must be \(pe, simd\), not \(4,\)"):
        plan_folding(small_cnn, parse_fold("6x2,3,4,8,5x4", 5))
    with pytest.raises(ValueError, match=r"must divide one another"):
        plan_folding(small_cnn, parse_fold("6x2,3,4x2,8,5x4", 5))  # pool PE 3 → window lanes 2
    with pytest.raises(ValueError, match=r"fold must be PExSIMD per layer \(a max-pool: its PE alone\)"):
        parse_fold("6x2x1", 5)


@pytest.fixture(scope="module")
def lenet():
    return random_cnn((28, 28, 1), LENET, "s4", "u4", seed=0)


@pytest.mark.parametrize("budget", [8, 64, 512, 4096])
def test_auto_fold_on_lenet(lenet, budget):
    plan = auto_fold(lenet, max_lanes=budget)
    assert plan.mac_lanes <= budget
    again = plan_folding(lenet, parse_fold(str(plan), len(lenet.layers)))  # the text form reads back
    assert again == plan
    assert all(isinstance(f.pe, int) for f in plan.layers)
    bigger = auto_fold(lenet, max_lanes=budget * 2)
    assert bigger.initiation_interval <= plan.initiation_interval
    # every layer meets the II with its own slowest op
    ops = lower(lenet, plan)
    assert max(op.cycles() for op in ops) == plan.initiation_interval


def test_auto_fold_uses_the_parallel_window_for_a_one_channel_first_layer(lenet):
    """With SIMD ≤ C = 1 the first convolution needs ≥ 24·24·25 cycles; the parallel window (SIMD 5) goes below."""
    plan = auto_fold(lenet, target_cycles=24 * 24 * 25 // 2)
    assert plan.initiation_interval <= 24 * 24 * 25 // 2
    assert plan.layers[0].simd == 5 and lower(lenet, plan)[0].fold.in_lanes == 1
    # the max-pools take the narrowest PE that meets the II
    for k in (1, 3):
        pool = lenet.layers[k]
        h, w, c = pool.in_shape
        pe = plan.layers[k].pe
        assert h * w * c // pe <= plan.initiation_interval
        assert all(h * w * c // p > plan.initiation_interval for p in range(1, pe) if c % p == 0)
