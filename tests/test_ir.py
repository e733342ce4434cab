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
