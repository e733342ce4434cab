import json
import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from lowbit.sw.ir import (LAYER_KINDS, DenseLayer, InputTransform, IRError, IRLayer, Network, accumulator_range,
                          layer_kind, register_layer)
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


# ---- IR version 2: files, versions, layer kinds --------------------------------------------
def read_ir(path):
    arrays = dict(np.load(path))
    return json.loads(bytes(arrays.pop("header")).decode()), arrays


def write_ir(path, header, arrays):
    np.savez(path, header=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    return path


def tampered(tmp_path, edit, name="t.npz"):
    """The random network's file after ``edit(header, arrays)`` changed it in place."""
    header, arrays = read_ir(random_net().save(tmp_path / "good.npz"))
    edit(header, arrays)
    return write_ir(tmp_path / name, header, arrays)


def same_network(a, b):
    assert a.to_header() == b.to_header() and a.input == b.input
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert np.array_equal(la.weights, lb.weights) and np.array_equal(la.bias, lb.bias)


def test_layers_and_network_have_shapes():
    net = random_net()
    assert [(l.in_shape, l.out_shape) for l in net.layers] == [((10,), (6,)), ((6,), (3,))]
    assert (net.in_shape, net.out_shape, net.in_features, net.out_features) == ((10,), (3,), 10, 3)


def test_version_1_file_loads_to_the_same_network(tmp_path):
    """A file written with the version-1 layout (no "op"; acc_bits optional) reads as today's network."""
    rng = np.random.default_rng(1)
    w0, b0, w1 = rng.integers(-8, 8, (6, 10)), rng.integers(-20, 20, 6), rng.choice([-1, 0, 1], (3, 6))
    header = {
        "format": "lowbit-ir", "version": 1, "name": "old", "input": {"kind": "shift", "amount": 4, "shift_amount": 0},
        "metadata": {"method": "pow2"},
        "layers": [
            {"name": "fc0", "in_features": 10, "out_features": 6, "weight_format": "s4", "in_format": "u4",
             "acc_bits": 10, "requant": {"out_format": "u4", "rounding": "half_up", "relu": True,
                                         "shift": [0, 1, 2, 3, 4, 5], "multiplier": None}},
            {"name": "fc1", "in_features": 6, "out_features": 3, "weight_format": "ternary", "in_format": "u4",
             "requant": None},  # no acc_bits: the documented version-1 header did not list it
        ],
    }
    path = write_ir(tmp_path / "v1.npz", header, {"layer0_weights": w0, "layer0_bias": b0,
                                                  "layer1_weights": w1, "layer1_bias": np.zeros(3, np.int64)})
    expected = Network([
        DenseLayer(w0, "s4", "u4", b0, RequantParams("u4", shift=np.arange(6), rounding="half_up", relu=True), "fc0"),
        DenseLayer(w1, "ternary", "u4", None, None, "fc1")], InputTransform("shift", 4), "old", {"method": "pow2"})
    same_network(Network.load(path), expected)
    # and it is written back as version 2
    back = read_ir(Network.load(path).save(tmp_path / "v2.npz"))[0]
    assert back["version"] == 2 and [l["op"] for l in back["layers"]] == ["dense", "dense"]


def test_version_1_loader_defaults_still_apply(tmp_path):
    """Version 1 read a requant without rounding/relu/shift/multiplier and a header without input/name."""
    def edit(h, a):
        h["version"] = 1
        for key in ("input", "name", "metadata"):
            del h[key]
        for layer in h["layers"]:
            del layer["op"], layer["acc_bits"]
        h["layers"][0]["requant"] = {"out_format": "u4"}
        h["layers"][0]["out_features"] = 6
    net = Network.load(tampered(tmp_path, edit))
    assert net.name == "net" and net.metadata == {} and net.input == InputTransform()
    assert net.layers[0].requant == RequantParams("u4")


@pytest.mark.parametrize("version", [0, 3, "2", True, None])
def test_unknown_version_is_refused(tmp_path, version):
    path = tampered(tmp_path, lambda h, a: h.update(version=version))
    with pytest.raises(IRError, match=rf"version must be one of 1, 2 \(the IR versions this lowbit reads\), "
                                      rf"not {re.escape(repr(version))}$"):
        Network.load(path)


@pytest.mark.parametrize("edit, message", [
    (lambda h, a: h["layers"][1].update(op="conv3d"), r"layer 1 \(fc1\): op must be one of conv2d, dense, maxpool2d, not 'conv3d'"),
    (lambda h, a: h["layers"][0].pop("op"), r"layer 0 \(fc0\): op must be one of conv2d, dense, maxpool2d, not missing"),
    (lambda h, a: h["layers"][1].update(op=7), r"layer 1 \(fc1\): op must be one of conv2d, dense, maxpool2d, not 7"),
    (lambda h, a: h.update(version=1), r"layer 0 \(fc0\): op must be absent in an IR version 1 file .*not 'dense'"),
])
def test_unknown_or_misplaced_op_is_refused(tmp_path, edit, message):
    with pytest.raises(IRError, match=message):
        Network.load(tampered(tmp_path, edit))


def drop(key, layer=0):
    return lambda h, a: h["layers"][layer].pop(key)


def setl(layer=0, **kw):
    return lambda h, a: h["layers"][layer].update(**kw)


def setrq(**kw):
    return lambda h, a: h["layers"][0]["requant"].update(**kw)


def seta(key, value):
    return lambda h, a: a.__setitem__(key, value)


FORMATS = r"a format string: sN \(signed, N=2..16\), uN \(unsigned, N=1..16\), bipolar, ternary"


@pytest.mark.parametrize("edit, message", [
    # missing header keys (version 2 requires every field it writes)
    (drop("in_format", 1), rf"layer 1 \(fc1\): in_format must be {FORMATS}, not missing"),
    (drop("acc_bits"), r"layer 0 \(fc0\): acc_bits must be an integer ≥ 1, not missing"),
    (drop("requant", 1), r"layer 1 \(fc1\): requant must be null or an object \{out_format, rounding, relu, "
                         r"shift, multiplier\}, not missing"),
    (lambda h, a: h["layers"][0]["requant"].pop("rounding"),
     r"layer 0 \(fc0\): requant.rounding must be one of floor, half_up, half_even, not missing"),
    (drop("name"), r"layer 0 \(unnamed\): name must be a non-empty string, not missing"),
    (lambda h, a: h.pop("input"), r"'[^']*t.npz': input must be an object \{kind, amount, shift_amount\}, "
                                  r"not missing"),
    (lambda h, a: h["input"].pop("shift_amount"), r"input.shift_amount must be given .*not missing"),
    (lambda h, a: h.pop("layers"), r"layers must be a non-empty list of objects, not missing"),
    # wrong types
    (setl(in_features="10"), r"layer 0 \(fc0\): in_features must be an integer ≥ 1, not '10'"),
    (setl(out_features=0), r"layer 0 \(fc0\): out_features must be an integer ≥ 1, not 0"),
    (setl(1, acc_bits=9.5), r"layer 1 \(fc1\): acc_bits must be an integer ≥ 1, not 9.5"),
    (setl(name=5), r"layer 0 \(unnamed\): name must be a non-empty string, not 5"),
    (setl(requant=[1]), r"layer 0 \(fc0\): requant must be null or an object .*, not \[1\]"),
    (setrq(relu=1), r"layer 0 \(fc0\): requant.relu must be true or false, not 1"),
    (setrq(shift=1.0), r"requant.shift must be an integer or a list of 6 integers \(one per output\), not 1.0"),
    (setrq(rounding="nearest"), r"layer 0 \(fc0\): requant.rounding must be one of floor, half_up, half_even, "
                                r"not 'nearest'"),
    (setrq(shift=60), r"layer 0 \(fc0\): requant.shift must be in 0..48, not 60"),
    (setrq(multiplier=[1, 2, 3, 4, 5, -6]), r"layer 0 \(fc0\): requant.multiplier must be in 0..65535, not -6"),
    (lambda h, a: h.update(metadata=[]), r"metadata must be an object, not \[\]"),
    (lambda h, a: h.update(layers=[]), r"layers must be a non-empty list of objects, not \[\]"),
    # unknown fields
    (setl(acc_bit=9), r"layer 0 \(fc0\): the layer has an unknown field 'acc_bit'; allowed fields: name, "
                      r"in_features, out_features, weight_format, in_format, acc_bits, requant"),
    (lambda h, a: h.update(comment="x"), r"the header has an unknown field 'comment'"),
    (setrq(clip=True), r"layer 0 \(fc0\): requant has an unknown field 'clip'"),
    # unknown formats
    (setl(weight_format="s17"), rf"layer 0 \(fc0\): weight_format must be {FORMATS}, pow2_N \(N=2..6\), "
                                r"not 's17'"),
    (setl(1, weight_format="int"), r"layer 1 \(fc1\): weight_format must be .*, not 'int'"),
    (setl(in_format="pow2_4"), rf"layer 0 \(fc0\): in_format must be {FORMATS} \(pow2 is a weight "
                               r"format\), not 'pow2_4'"),
    (setl(in_format=4), rf"layer 0 \(fc0\): in_format must be {FORMATS}, not 4"),
    (setrq(out_format="pow2_3"), r"layer 0 \(fc0\): requant.out_format must be signed, unsigned, ternary or "
                                 r"bipolar, not pow2"),
    (setrq(out_format="q8"), r"layer 0 \(fc0\): requant.out_format must be one of sN .*, not 'q8'"),
    # arrays: shape, dtype, presence, stray ones
    (seta("layer0_weights", np.zeros((6, 9), np.int64)),
     r"layer 0 \(fc0\): array weights must have shape \(out_features, in_features\) = \(6, 10\), not \(6, 9\)"),
    (seta("layer1_weights", np.zeros((3, 6))),
     r"layer 1 \(fc1\): array weights must hold integers \(lowbit writes int64\), not float64"),
    (seta("layer1_bias", np.zeros(3, bool)), r"layer 1 \(fc1\): array bias must hold integers .*, not bool"),
    (seta("layer0_bias", np.zeros(5, np.int64)),
     r"layer 0 \(fc0\): array bias must have shape \(out_features,\) = \(6,\), not \(5,\)"),
    (lambda h, a: a.pop("layer1_bias"), r"layer 1 \(fc1\): array layer1_bias must be in the file \(a dense "
                                        r"layer stores weights, bias\), not missing"),
    (seta("layer2_weights", np.zeros((2, 3), np.int64)),
     r"holds arrays no layer owns: layer2_weights \(the header lists 2 layers\)"),
    (lambda h, a: a.__setitem__("layer1_weights", a["layer1_weights"] * 2),
     r"layer 1 \(fc1\): fc1.weights holds -?2, which ternary cannot represent \(allowed -1..1\)"),
    # per-channel shift / multiplier list lengths
    (setrq(shift=[1, 2, 3]), r"layer 0 \(fc0\): requant.shift must be an integer or a list of 6 integers "
                             r"\(one per output\), not \[1, 2, 3\]"),
    (setrq(multiplier=[1] * 7), r"layer 0 \(fc0\): requant.multiplier must be null or an integer or a list of 6 "
                                r"integers \(one per output\), not \[1, 1, 1, 1, 1, 1, 1\]"),
    (setrq(shift=[1, 2, 3, 4, 5, True]), r"requant.shift must be an integer or a list of 6 integers"),
    # bad input transforms
    (lambda h, a: h["input"].update(kind="scale"), r"input transform kind must be one of shift, threshold, "
                                                   r"offset, not 'scale'"),
    (lambda h, a: h["input"].update(amount=9), r"input transform amount must be an integer in 0..8 for kind "
                                               r"'shift', not 9"),
    (lambda h, a: h["input"].update(amount="4"), r"input transform amount must be an integer .*, not '4'"),
    (lambda h, a: h["input"].update(shift_amount=2), r"input transform shift_amount must be an integer in 0..0 "
                                                     r"for kind 'shift', not 2"),
    (lambda h, a: h["input"].update(scale=2), r"input has an unknown field 'scale'"),
    (lambda h, a: h["input"].update(kind="threshold", amount=128),
     r"a threshold input transform needs a bipolar first layer, not u4"),
    # chaining, as the network checks it
    (setl(requant=None), r"layer 0 \(fc0\) has no requantization but is not the last layer"),
])
def test_bad_files_name_the_layer_field_value_and_what_is_allowed(tmp_path, edit, message):
    with pytest.raises(IRError, match=message):
        Network.load(tampered(tmp_path, edit))


def test_acc_bits_narrower_than_the_bound_is_refused_wider_is_accepted(tmp_path):
    net = random_net()
    bound, (lo, hi) = net.layers[0].acc_bits, net.layers[0].acc_range
    path = tampered(tmp_path, setl(acc_bits=bound - 1))
    with pytest.raises(IRError, match=rf"layer 0 \(fc0\): acc_bits must be at least {bound}, the worst-case bound "
                                      rf"of these weights over the u4 input range \(accumulators {lo}..{hi}\), "
                                      rf"not {bound - 1}$"):
        Network.load(path)
    # wider: accepted; lowbit sizes accumulators from the bound and writes the bound back
    wide = Network.load(tampered(tmp_path, setl(acc_bits=bound + 20), "wide.npz"))
    assert wide.layers[0].acc_bits == bound
    assert read_ir(wide.save(tmp_path / "again.npz"))[0]["layers"][0]["acc_bits"] == bound


def test_an_exactly_sized_acc_bits_loads(tmp_path):
    net = random_net()
    same_network(Network.load(tampered(tmp_path, setl(acc_bits=net.layers[0].acc_bits))), net)


def test_input_transform_validates_its_amounts():
    assert InputTransform("offset", 8, 4).apply([255, 0]).tolist() == [7, -8]
    with pytest.raises(IRError, match=r"input transform amount must be an integer in 0..256 for kind 'threshold', "
                                      r"not -1"):
        InputTransform("threshold", -1)
    with pytest.raises(IRError, match=r"shift_amount must be an integer in 0..8 for kind 'offset', not 9"):
        InputTransform("offset", 8, 9)


# ---- the registry: a new kind is a class and a registration ------------------------------
def test_registry_knows_dense_and_refuses_clashes():
    assert LAYER_KINDS["dense"] is DenseLayer and layer_kind("dense") is DenseLayer
    with pytest.raises(IRError, match="op must be one of conv2d, dense, maxpool2d, not 'conv3d'"):
        layer_kind("conv3d")

    class Other(DenseLayer):
        op = "dense"
    with pytest.raises(ValueError, match="op 'dense' is already registered to DenseLayer"):
        register_layer(Other)
    assert LAYER_KINDS["dense"] is DenseLayer


@dataclass(frozen=True, eq=False)
class _Negate(IRLayer):
    """A weightless test kind over a 2-D shape: y = -x (keeps the format)."""

    op: ClassVar[str] = "test_negate"
    ARRAYS: ClassVar[tuple] = ("mask",)
    shape: tuple
    in_format: object
    name: str = "neg"
    requant = None

    @property
    def in_shape(self):
        return tuple(self.shape)

    @property
    def out_shape(self):
        return tuple(self.shape)

    @property
    def out_format(self):
        return self.in_format

    def header_fields(self):
        return {"name": self.name, "shape": list(self.shape), "in_format": str(self.in_format)}

    def arrays(self):
        return {"mask": np.ones(self.shape, np.int64)}

    @classmethod
    def from_header(cls, fields, arrays, *, version):
        assert arrays["mask"].shape == tuple(fields["shape"])
        return cls(tuple(fields["shape"]), DenseLayer(np.ones((1, 1), int), "s2", fields["in_format"]).in_format,
                   fields["name"])

    def macs(self):
        return 0

    def describe(self):
        return f"{self.name} negate {self.shape}"


@pytest.fixture
def negate_kind():
    register_layer(_Negate)
    yield _Negate
    del LAYER_KINDS[_Negate.op]


def test_a_registered_kind_saves_loads_and_chains_by_shape(tmp_path, negate_kind):
    fmt = DenseLayer(np.ones((1, 1), int), "s2", "u4").in_format
    neg = _Negate((2, 3), fmt, "neg")
    dense = DenseLayer(np.ones((4, 5), int), "s4", "u4", name="fc")
    with pytest.raises(IRError, match=r"layer 0 \(neg\) outputs shape \(2, 3\), 6 values flattened in \(h, w, c\) "
                                      r"order, but layer 1 \(fc\) expects 5 inputs"):
        Network([neg, dense])
    with pytest.raises(IRError, match=r"layer 0 \(neg\) outputs shape \(2, 3\) but layer 1 \(neg2\) takes shape "
                                      r"\(3, 2\)"):
        Network([neg, _Negate((3, 2), fmt, "neg2")])
    # a vector layer takes the flattened tensor
    assert Network([neg, DenseLayer(np.ones((4, 6), int), "s4", "u4", name="fc")]).layers[1].in_shape == (6,)
    net = Network([neg], InputTransform("shift", 4))
    header, arrays = read_ir(net.save(tmp_path / "n.npz"))
    assert header["layers"] == [{"op": "test_negate", "name": "neg", "shape": [2, 3], "in_format": "u4"}]
    assert sorted(arrays) == ["layer0_mask"]
    back = Network.load(tmp_path / "n.npz")
    assert back.layers[0].in_shape == (2, 3) and back.in_features == 6 and "negate (2, 3)" in back.describe()


def test_a_layer_the_golden_model_cannot_compute_exactly_is_refused():
    """Accumulators and (acc + bias)·m are int64 in the golden model: refuse, never wrap."""
    from lowbit.sw.ir import MAX_ACC_BITS

    with pytest.raises(IRError, match=r"big: the accumulator range .* must fit 63-bit signed integers .* not about "
                                      r"±2\^62\.0"):
        DenseLayer(np.ones((2, 4), np.int64), "s2", "u8", bias=np.array([2 ** 62, 0]), name="big")
    rq = RequantParams("u4", 4, np.array([65535, 1]), "floor", True)
    w = np.full((2, 2 ** 14), 7, np.int64)  # 7·255·2^14 ≈ 2^24.8 per row; ·65535 ≈ 2^40.8: fits
    assert DenseLayer(w, "s4", "u8", None, rq, "ok").acc_bits == 26
    with pytest.raises(IRError, match=r"wide: \(acc \+ bias\)·multiplier must fit 63-bit signed integers .* not 65 "
                                      r"bits \(accumulators 0\.\.281474976710656, multiplier up to 65535\)"):
        DenseLayer(np.ones((2, 4), np.int64), "s2", "u8", np.array([2 ** 48 - 1020, 0]), rq, "wide")
    assert MAX_ACC_BITS == 62


def test_pow2_formats_stop_where_int64_sums_would_overflow():
    from lowbit.sw.formats import IntFormat, parse_format

    assert IntFormat.pow2(6).max == 2 ** 30
    with pytest.raises(ValueError, match=r"pow2 format bits must be in 2\.\.6, not 7"):
        parse_format("pow2_7")


def test_uint64_arrays_that_would_wrap_are_refused(tmp_path):
    net = Network([DenseLayer(np.array([[1, -1]]), "s2", "u2", name="fc0")])
    path = net.save(tmp_path / "n.npz")
    data = dict(np.load(path))
    data["layer0_bias"] = np.array([2 ** 64 - 6], np.uint64)
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(IRError, match=r"layer 0 \(fc0\): array bias must hold values that fit int64, "
                                      r"not 18446744073709551610"):
        Network.load(tmp_path / "bad.npz")


# ---- convolution and max-pool kinds ------------------------------------------------------
from lowbit.sw.ir import Conv2dLayer, MaxPool2dLayer, pad_value  # noqa: E402


def conv_net(seed=0, in_fmt="u4", transform=InputTransform("shift", 4)):
    """conv 3x3 pad 1 → pool 2x2 → conv 2x1 stride (1, 2) → pool 2x1 stride 1 → dense, on a 6x6x2 input."""
    rng = np.random.default_rng(seed)
    c0 = Conv2dLayer(rng.integers(-8, 8, (4, 3, 3, 2)), "s4", in_fmt, rng.integers(-20, 20, 4),
                     RequantParams("u3", shift=np.arange(4) % 3, multiplier=np.arange(1, 5), rounding="half_up",
                                   relu=True), "conv0", in_shape=(6, 6, 2), padding=(1, 1))
    p0 = MaxPool2dLayer("u3", "pool0", in_shape=(6, 6, 4))
    c1 = Conv2dLayer(rng.choice([-1, 0, 1], (5, 2, 1, 4)), "ternary", "u3", None,
                     RequantParams("u3", shift=1, relu=True), "conv1", in_shape=(3, 3, 4), stride=(1, 2))
    p1 = MaxPool2dLayer("u3", "pool1", in_shape=(2, 2, 5), kernel=(2, 1), stride=(1, 1))
    fc = DenseLayer(rng.integers(-2, 2, (3, 10)), "s2", "u3", rng.integers(-3, 3, 3), None, "fc")
    return Network([c0, p0, c1, p1, fc], transform, "cnn", {"note": "conv"})


def test_conv_and_pool_shapes_macs_and_accumulator_range():
    net = conv_net()
    assert [(l.in_shape, l.out_shape) for l in net.layers] == [
        ((6, 6, 2), (6, 6, 4)), ((6, 6, 4), (3, 3, 4)), ((3, 3, 4), (2, 2, 5)), ((2, 2, 5), (1, 2, 5)), ((10,), (3,))]
    c0 = net.layers[0]
    assert c0.macs() == 36 * 4 * 18 and net.layers[1].macs() == 0 and c0.kernel == (3, 3)
    dense = c0.as_dense()
    assert dense.weights.shape == (4, 18) and np.array_equal(dense.weights, c0.weights.reshape(4, 18))
    # the (ky, kx, c) column order: column (ky·KW + kx)·IC + c
    assert dense.weights[2, (1 * 3 + 2) * 2 + 1] == c0.weights[2, 1, 2, 1]
    assert c0.acc_range == accumulator_range(dense.weights, c0.bias, c0.in_format) and c0.acc_bits == dense.acc_bits
    assert (net.in_shape, net.in_features, net.out_features) == ((6, 6, 2), 72, 3)
    assert net.layers[1].out_format == net.layers[1].in_format == c0.requant.out_format
    assert "conv 3x3 stride 1x1 pad 1x1" in net.describe() and "maxpool 2x1 stride 1x1 u3" in net.describe()


def test_pad_value_is_the_value_of_real_zero():
    from lowbit.sw.formats import parse_format

    assert [pad_value(parse_format(f)) for f in ("u4", "s4", "ternary", "bipolar")] == [0, 0, 0, -1]
    net = conv_net()
    assert net.layers[0].pads_with == 0 and net.layers[2].pads_with is None and net.layers[1].pads_with is None


def test_conv_net_round_trip(tmp_path):
    net = conv_net()
    header, arrays = read_ir(net.save(tmp_path / "cnn.npz"))
    assert [l["op"] for l in header["layers"]] == ["conv2d", "maxpool2d", "conv2d", "maxpool2d", "dense"]
    assert header["layers"][0] == {
        "op": "conv2d", "name": "conv0", "in_shape": [6, 6, 2], "out_channels": 4, "kernel": [3, 3], "stride": [1, 1],
        "padding": [1, 1], "weight_format": "s4", "in_format": "u4", "acc_bits": net.layers[0].acc_bits,
        "requant": net.layers[0].requant.to_json()}
    assert header["layers"][3] == {"op": "maxpool2d", "name": "pool1", "in_shape": [2, 2, 5], "kernel": [2, 1],
                                   "stride": [1, 1], "format": "u3"}
    assert sorted(arrays) == ["layer0_bias", "layer0_weights", "layer2_bias", "layer2_weights", "layer4_bias",
                              "layer4_weights"]
    assert arrays["layer0_weights"].shape == (4, 3, 3, 2)
    back = Network.load(tmp_path / "cnn.npz")
    assert back.to_header() == net.to_header() and back.metadata == {"note": "conv"}
    for a, b in zip(net.layers, back.layers, strict=True):
        assert type(a) is type(b)
        for key, arr in a.arrays().items():
            assert np.array_equal(arr, b.arrays()[key]) and b.arrays()[key].dtype == np.int64
    assert back.layers[0].requant == net.layers[0].requant and back.layers[2].stride == (1, 2)


def conv(**kw):
    args = dict(weights=np.ones((2, 3, 3, 1), int), weight_format="s4", in_format="u4", name="c", in_shape=(5, 5, 1))
    args.update(kw)
    return Conv2dLayer(**args)


@pytest.mark.parametrize("kw, message", [
    (dict(in_shape=(5, 5)), r"c.in_shape must be 3 integers ≥ 1 \(H, W, C\), not \(5, 5\)"),
    (dict(in_shape=(5, 0, 1)), r"c.in_shape must be 3 integers ≥ 1 \(H, W, C\), not \(5, 0, 1\)"),
    (dict(in_shape=None), r"c.in_shape must be 3 integers ≥ 1 \(H, W, C\), not None"),
    (dict(stride=(0, 1)), r"c.stride must be 2 integers ≥ 1 \(sh, sw\), not \(0, 1\)"),
    (dict(stride=2), r"c.stride must be 2 integers ≥ 1 \(sh, sw\), not 2"),
    (dict(padding=(-1, 0)), r"c.padding must be 2 integers ≥ 0 \(ph, pw\), not \(-1, 0\)"),
    (dict(padding=(3, 0)), r"c.padding must be below the 3×3 kernel on each axis .*not \(3, 0\)"),
    (dict(weights=np.ones((2, 9), int)), r"c.weights must be a non-empty 4-D array \[OC, KH, KW, IC\], not shape \(2, 9\)"),
    (dict(weights=np.ones((2, 3, 3, 2), int)), r"c.weights must have IC = 1 \(the channels of in_shape \(5, 5, 1\)\) "
                                               r"in \[OC, KH, KW, IC\], not shape \(2, 3, 3, 2\)"),
    (dict(in_shape=(2, 5, 1)), r"c: the 3×3 kernel must fit the 2×5 padded input \(in_shape \(2, 5, 1\), padding "
                               r"\(0, 0\)\)"),
    (dict(weights=np.full((2, 3, 3, 1), 9)), r"c.weights holds 9, which s4 cannot represent"),
    (dict(in_format="pow2_3"), r"c.in_format must not be pow2"),
    (dict(bias=np.zeros(3, int)), r"c.bias must have shape \(2,\), not \(3,\)"),
    (dict(requant=RequantParams("u4", shift=np.array([1, 2, 3]))), r"requantization has 3 channels, the layer has 2"),
])
def test_conv_layer_validation_messages(kw, message):
    with pytest.raises((IRError, ValueError), match=message):
        conv(**kw)


@pytest.mark.parametrize("kw, message", [
    (dict(in_shape=(5, 4, 3)), r"p: a 2×2 pool with stride \(2, 2\) must tile the 5×4 input exactly: H − KH = 3 must "
                               r"be a multiple of sh and W − KW = 2 of sw \(with stride = kernel: KH divides H"),
    (dict(kernel=(3, 3), stride=(2, 2), in_shape=(6, 5, 1)), r"must tile the 6×5 input exactly: H − KH = 3"),
    (dict(kernel=(2, 2), stride=(3, 1)), r"p.stride must be at most the kernel \(2, 2\) on each axis \(every input "
                                         r"is read\), not \(3, 1\)"),
    (dict(kernel=(5, 1)), r"p.kernel must fit the 4×4 input, not \(5, 1\)"),
    (dict(kernel=(0, 2)), r"p.kernel must be 2 integers ≥ 1 \(KH, KW\), not \(0, 2\)"),
    (dict(fmt="pow2_4"), r"p.fmt must not be pow2"),
    (dict(fmt="q3"), r"p.fmt must be one of"),
])
def test_maxpool_layer_validation_messages(kw, message):
    args = dict(fmt="u4", name="p", in_shape=(4, 4, 3))
    args.update(kw)
    with pytest.raises((IRError, ValueError), match=message):
        MaxPool2dLayer(**args)


def test_maxpool_overlapping_windows_that_tile_are_allowed():
    assert MaxPool2dLayer("s4", in_shape=(7, 7, 2), kernel=(3, 3), stride=(2, 2)).out_shape == (3, 3, 2)
    assert MaxPool2dLayer("s4", in_shape=(6, 4, 2)).stride == (2, 2)


def test_conv_chain_validation_messages():
    net = conv_net()
    c0, p0, c1, p1, fc = net.layers
    with pytest.raises(IRError, match=r"layer 1 \(pool1\) outputs shape \(1, 2, 5\), 10 values flattened in \(h, w, c\) "
                                      r"order, but layer 2 \(fc\) expects 9 inputs"):
        Network([c1, p1, DenseLayer(np.ones((3, 9), int), "s2", "u3", name="fc")])
    with pytest.raises(IRError, match=r"layer 0 \(conv0\) outputs shape \(6, 6, 4\) but layer 1 \(conv1\) takes shape "
                                      r"\(3, 3, 4\)"):
        Network([c0, c1])
    # a vector does not become an image: a dense layer cannot feed a convolution
    d = DenseLayer(np.ones((36, 5), int), "s2", "u3", requant=RequantParams("u3"), name="d")
    with pytest.raises(IRError, match=r"layer 0 \(d\) outputs shape \(36,\) but layer 1 \(conv1\) takes shape "
                                      r"\(3, 3, 4\)"):
        Network([d, c1])
    with pytest.raises(IRError, match=r"layer 0 \(conv0\) outputs u3 but layer 1 \(p\) takes u4"):
        Network([c0, MaxPool2dLayer("u4", "p", in_shape=(6, 6, 4))])
    last = Conv2dLayer(np.ones((2, 1, 1, 4), int), "s2", "u3", name="last", in_shape=(6, 6, 4))
    with pytest.raises(IRError, match=r"layer 0 \(last\) has no requantization but is not the last layer"):
        Network([last, MaxPool2dLayer("u3", in_shape=(6, 6, 2))])
    assert Network([c0, p0]).layers[-1].out_format == c0.requant.out_format  # a pool may end a network


def test_padding_with_an_offset_input_transform_is_refused():
    """An offset transform maps pixel 0 (real zero) to -amount, so padding with 0 would not be zero."""
    with pytest.raises(IRError, match=r"layer 0 \(conv0\) pads its input with 0, which an offset input transform of "
                                      r"amount 8 gives pixel 128, not pixel 0 \(real zero\): padding must be \(0, 0\)"):
        conv_net(in_fmt="s4", transform=InputTransform("offset", 8, 4))
    assert conv_net(in_fmt="s4", transform=InputTransform("offset", 0, 4)).layers[0].pads_with == 0
    # bipolar inputs pad with -1, which a threshold transform gives pixel 0
    rng = np.random.default_rng(0)
    c = Conv2dLayer(rng.choice([-1, 1], (2, 3, 3, 1)), "bipolar", "bipolar", name="b", in_shape=(4, 4, 1),
                    padding=(1, 1))
    assert Network([c], InputTransform("threshold", 128)).layers[0].pads_with == -1


def conv_tampered(tmp_path, edit, name="c.npz"):
    header, arrays = read_ir(conv_net().save(tmp_path / "good.npz"))
    edit(header, arrays)
    return write_ir(tmp_path / name, header, arrays)


@pytest.mark.parametrize("edit, message", [
    (drop("kernel"), r"layer 0 \(conv0\): kernel must be a list of 2 integers ≥ 1 \(KH, KW\), not missing"),
    (setl(stride=[1, 0]), r"layer 0 \(conv0\): stride must be a list of 2 integers ≥ 1 \(sh, sw\), not \[1, 0\]"),
    (setl(padding=[1]), r"layer 0 \(conv0\): padding must be a list of 2 integers ≥ 0 \(ph, pw\), not \[1\]"),
    (setl(in_shape=[6, 6, 2.0]), r"layer 0 \(conv0\): in_shape must be a list of 3 integers ≥ 1 \(H, W, C\), "
                                 r"not \[6, 6, 2.0\]"),
    (setl(out_channels=0), r"layer 0 \(conv0\): out_channels must be an integer ≥ 1, not 0"),
    (setl(kernel=[3, 2]), r"layer 0 \(conv0\): array weights must have shape \(out_channels, \*kernel, in_shape\[2\]\) "
                          r"= \(4, 3, 2, 2\), not \(4, 3, 3, 2\)"),
    (setl(in_shape=[6, 6, 3]), r"array weights must have shape .* = \(4, 3, 3, 3\), not \(4, 3, 3, 2\)"),
    (setl(padding=[3, 0]), r"layer 0 \(conv0\): conv0.padding must be below the 3×3 kernel"),
    (setl(acc_bits=2), r"layer 0 \(conv0\): acc_bits must be at least \d+, the worst-case bound of these weights over "
                       r"the u4 input range"),
    (setl(dilation=[1, 1]), r"layer 0 \(conv0\): the layer has an unknown field 'dilation'; allowed fields: name, "
                            r"in_shape, out_channels, kernel, stride, padding, weight_format, in_format, acc_bits, "
                            r"requant"),
    (setrq(shift=[1, 2]), r"layer 0 \(conv0\): requant.shift must be an integer or a list of 4 integers"),
    (seta("layer0_bias", np.zeros(5, np.int64)), r"array bias must have shape \(out_channels,\) = \(4,\), not \(5,\)"),
    (lambda h, a: a.pop("layer2_weights"), r"layer 2 \(conv1\): array layer2_weights must be in the file \(a conv2d "
                                           r"layer stores weights, bias\), not missing"),
    (seta("layer1_weights", np.zeros((2, 2), np.int64)), r"holds arrays no layer owns: layer1_weights"),
    (setl(1, format="pow2_3"), r"layer 1 \(pool0\): format must be .*\(pow2 is a weight format\), not 'pow2_3'"),
    (drop("format", 1), r"layer 1 \(pool0\): format must be a format string: .*, not missing"),
    (setl(1, kernel=[3, 3]), r"layer 1 \(pool0\): pool0: a 3×3 pool with stride \(2, 2\) must tile the 6×6 input"),
    (setl(1, stride=None), r"layer 1 \(pool0\): stride must be a list of 2 integers ≥ 1 \(sh, sw\), not None"),
    (setl(1, out_format="u3"), r"layer 1 \(pool0\): the layer has an unknown field 'out_format'; allowed fields: "
                               r"name, in_shape, kernel, stride, format"),
    (setl(1, format="u4"), r"layer 0 \(conv0\) outputs u3 but layer 1 \(pool0\) takes u4"),
    (setl(4, in_features=9), r"array weights must have shape \(out_features, in_features\) = \(3, 9\)"),
])
def test_bad_conv_files_name_the_layer_field_value_and_what_is_allowed(tmp_path, edit, message):
    with pytest.raises(IRError, match=message):
        Network.load(conv_tampered(tmp_path, edit))
