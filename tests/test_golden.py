import numpy as np
import pytest

from lowbit.sw.golden import argmax_lowest, dense_accumulate, mac_array_golden, run_network
from lowbit.sw.ir import DenseLayer, InputTransform, Network
from lowbit.sw.requant import RequantParams
from lowbit.sw.specs import MacArraySpec


def test_network_matches_a_plain_python_loop():
    rng = np.random.default_rng(3)
    w0, b0 = rng.integers(-8, 8, (5, 7)), rng.integers(-30, 30, 5)
    w1 = rng.integers(-2, 2, (3, 5))
    rq = RequantParams("u3", shift=2, rounding="half_up", relu=True)
    net = Network([DenseLayer(w0, "s4", "u4", b0, rq), DenseLayer(w1, "s2", "u3")], InputTransform("shift", 4))
    pixels = rng.integers(0, 256, (9, 7))
    res = run_network(net, pixels, raw_pixels=True)
    for n in range(9):
        x = [int(p) >> 4 for p in pixels[n]]
        h = []
        for r in range(5):
            acc = sum(int(w0[r, c]) * x[c] for c in range(7)) + int(b0[r])
            h.append(min(max((acc + 2) >> 2, 0), 7))
        logits = [sum(int(w1[r, c]) * h[c] for c in range(5)) for r in range(3)]
        assert res.logits[n].tolist() == logits
        assert res.classes[n] == logits.index(max(logits))


def test_argmax_lowest_index_wins_ties():
    assert argmax_lowest([[3, 7, 7, 1], [0, 0, 0, 0]]).tolist() == [1, 0]


def test_saturation_rate_counts_clipped_outputs():
    layer = DenseLayer(np.array([[1], [1]]), "s2", "u4", requant=RequantParams("u2", relu=True))
    net = Network([layer, DenseLayer(np.ones((1, 2), int), "s2", "u2")])
    res = run_network(net, np.array([[-1], [2], [3], [5]]).clip(0))
    # accumulators 0, 2, 3, 5 → only 5 exceeds hi = 3
    assert res.saturation(net)[0] == pytest.approx(0.25)


def test_dense_rejects_inputs_outside_the_format():
    layer = DenseLayer(np.ones((1, 2), int), "s2", "u2")
    with pytest.raises(ValueError, match="input of dense holds 4, which u2 cannot represent"):
        dense_accumulate(np.array([[1, 4]]), layer)


def test_mac_array_golden_equals_spec_golden():
    spec = MacArraySpec(pe=3, simd=4, weight_format="ternary", act_format="s3", beats=5)
    rng = np.random.default_rng(0)
    x, w = rng.integers(-4, 4, (5, 4)), rng.integers(-1, 2, (5, 3, 4))
    assert np.array_equal(spec.golden(x, w), mac_array_golden(x, w))
    assert spec.golden(x, w).tolist() == [sum(int(w[b, p] @ x[b]) for b in range(5)) for p in range(3)]



@pytest.mark.parametrize("declared", [None, 2 ** 40, 2 ** 60])
def test_exact_matmul_is_exact_on_every_path(declared):
    """The bound picks float32 (below 2^24: these weights' own), float64 (below 2^52) or int64:
    each gives the exact product, here with the bound's extreme row reached."""
    from lowbit.sw.golden import exact_matmul
    from lowbit.sw.ir import accumulator_range

    rng = np.random.default_rng(0)
    layer = DenseLayer(rng.integers(-2 ** 15, 2 ** 15, (3, 2)), "s16", "u8", name="d")
    w = layer.weights.copy()
    w[0] = -2 ** 15
    x = rng.integers(0, 256, (5, 2))
    x[0] = 255
    lo, hi = accumulator_range(w, np.zeros(3, int), layer.in_format)
    assert lo == -2 ** 16 * 255 and max(-lo, hi) < 2 ** 24  # 2^24 - 2^16: float32's exact integers
    bound = (lo, hi) if declared is None else (-declared, declared)
    got = exact_matmul(x, w, bound)
    assert got.dtype == np.int64 and np.array_equal(got, x @ w.T) and got[0].min() == lo
