import json

import numpy as np
import pytest

from lowbit.sw.ir import DenseLayer, InputTransform, IRError, Network, accumulator_range
from lowbit.sw.requant import RequantParams


def random_net(seed=0):
    rng = np.random.default_rng(seed)
    l0 = DenseLayer(rng.integers(-8, 8, (6, 10)), "s4", "u4", rng.integers(-20, 20, 6),
                    RequantParams("u4", shift=np.arange(6) % 4, multiplier=np.arange(1, 7), rounding="half_even",
                                  relu=True), "fc0")
    l1 = DenseLayer(rng.choice([-1, 0, 1], (3, 6)), "ternary", "u4", None, None, "fc1")
    return Network([l0, l1], InputTransform("shift", 4), "tiny", {"note": "test"})


def test_accumulator_bound_is_exact_worst_case():
    w = np.array([[3, -2], [-8, 7]])
    lo, hi = accumulator_range(w, np.array([1, -1]), DenseLayer(w, "s4", "u4").in_format)
    # The hardware holds the unbiased sum in its accumulator and adds the bias later, so
    # the bound covers both: row 1 reaches 7·15 = 105 before its bias of -1.
    assert (lo, hi) == (-121, 105)
    sums = [int(w[r] @ np.array([a, b])) + bias for r in range(2) for a in range(16) for b in range(16)
            for bias in (0, [1, -1][r])]
    assert (min(sums), max(sums)) == (lo, hi)
    assert DenseLayer(w, "s4", "u4", np.array([1, -1])).acc_bits == 8


def test_save_load_round_trip(tmp_path):
    net = random_net()
    path = net.save(tmp_path / "net.npz")
    back = Network.load(path)
    assert back.name == "tiny" and back.metadata == {"note": "test"} and back.input == net.input
    for a, b in zip(net.layers, back.layers):
        assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)
        assert a.weight_format == b.weight_format and a.in_format == b.in_format and a.requant == b.requant
    assert not list(tmp_path.glob("*.tmp"))


def test_header_is_documented_json(tmp_path):
    path = random_net().save(tmp_path / "net.npz")
    header = json.loads(bytes(np.load(path)["header"]).decode())
    assert header["format"] == "lowbit-ir" and header["version"] == 2
    assert [layer["op"] for layer in header["layers"]] == ["dense", "dense"]
    assert header["layers"][0]["requant"]["rounding"] == "half_even"
    assert header["layers"][0]["acc_bits"] == random_net().layers[0].acc_bits


def test_load_rejects_bad_files(tmp_path):
    with pytest.raises(IRError, match="does not exist"):
        Network.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(IRError, match="is not a lowbit IR file"):
        Network.load(bad)
    # weights out of their declared format
    path = random_net().save(tmp_path / "n.npz")
    arrays = dict(np.load(path))
    arrays["layer0_weights"] = arrays["layer0_weights"] * 4
    np.savez(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(ValueError, match="fc0.weights holds .* which s4 cannot represent"):
        Network.load(tmp_path / "tampered.npz")


def test_chain_validation_messages():
    a = DenseLayer(np.ones((4, 3), int), "s4", "u4", requant=RequantParams("u4", relu=True), name="a")
    b = DenseLayer(np.ones((2, 5), int), "s4", "u4", name="b")
    with pytest.raises(IRError, match=r"layer 0 \(a\) has 4 outputs but layer 1 \(b\) expects 5 inputs"):
        Network([a, b])
    c = DenseLayer(np.ones((2, 4), int), "s4", "u8", name="c")
    with pytest.raises(IRError, match=r"layer 0 \(a\) outputs u4 but layer 1 \(c\) takes u8"):
        Network([a, c])
    d = DenseLayer(np.ones((4, 3), int), "s4", "u4", name="d")
    with pytest.raises(IRError, match=r"layer 0 \(d\) has no requantization but is not the last layer"):
        Network([d, DenseLayer(np.ones((2, 4), int), "s4", "u4")])


def test_layer_validation_messages():
    with pytest.raises(IRError, match=r"x.bias must have shape \(2,\), not \(3,\)"):
        DenseLayer(np.ones((2, 2), int), "s4", "u4", np.zeros(3, int), name="x")
    with pytest.raises(ValueError, match="requantization has 3 channels, the layer has 2"):
        DenseLayer(np.ones((2, 2), int), "s4", "u4", requant=RequantParams("u4", shift=np.array([1, 2, 3])))
