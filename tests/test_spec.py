"""docs/spec.md tells the truth: every example block marked ``<!-- spec-test: NAME -->`` is
parsed here and checked against the code, so a doc edit (or a code change) that makes an
example untrue fails."""

import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from lowbit.sw.cli import main
from lowbit.sw.datasets import find_idx_dir, load_dataset
from lowbit.sw.formats import parse_format
from lowbit.sw.golden import argmax_lowest, run_network
from lowbit.sw.ir import DenseLayer, InputTransform, Network
from lowbit.sw.pack import pack_words
from lowbit.sw.requant import MAX_MULTIPLIER_BITS, MAX_SHIFT, RequantParams, requantize, round_shift

DOC = Path(__file__).resolve().parents[1] / "docs" / "spec.md"
TEXT = DOC.read_text(encoding="utf-8")
MARKER = re.compile(r"<!-- spec-test: ([\w-]+) -->")
#: every marked block, each read by a test below
BLOCKS = {"formats", "codes", "top-fields", "input-fields", "dense-fields", "requant-fields", "requant-examples",
          "rounding", "argmax", "transforms", "input-spec", "datasets", "digits-scaling", "example-header", "example-arrays",
          "example-trace", "example-memories", "example-streams", "conv2d-fields", "maxpool2d-fields", "pad-values",
          "conv-example-header", "conv-example-arrays", "conv-example-trace", "conv-example-cycles"}


def clean(cell: str) -> str:
    """A cell as the code would spell it: no backticks, ASCII minus."""
    return cell.replace("`", "").replace("−", "-").strip()


def marked(name: str) -> list[str]:
    """The lines of the fenced block or table right after the marker ``name``."""
    assert name in BLOCKS
    starts = [m.end() for m in MARKER.finditer(TEXT) if m.group(1) == name]
    assert len(starts) == 1, f"docs/spec.md must mark {name!r} exactly once"
    lines = TEXT[starts[0]:].lstrip("\n").splitlines()
    if lines[0].startswith("```"):
        end = next(i for i in range(1, len(lines)) if lines[i].startswith("```"))
        return lines[1:end]
    assert lines[0].startswith("|"), f"the marker {name!r} must precede a fenced block or a table"
    return [line for line in lines[:next((i for i, l in enumerate(lines) if not l.startswith("|")), len(lines))]]


def table(name: str) -> list[dict]:
    rows = [[clean(c) for c in line.strip().strip("|").split("|")] for line in marked(name)]
    head, body = rows[0], rows[2:]  # rows[1] is the |---| separator
    return [dict(zip(head, r, strict=True)) for r in body]


def ints(text: str) -> list[int]:
    return [int(v) for v in clean(text).split()]


# ---- 2. number formats -----------------------------------------------------------------------
def test_format_table():
    rows = table("formats")
    assert len(rows) == 8
    for row in rows:
        fmt = parse_format(row["name"])
        assert str(fmt) == row["name"] and fmt.kind.value == row["kind"].split()[0]
        assert fmt.bits == int(row["bits"]) and len(fmt.values()) == int(row["count"])
        values = row["values"]
        if m := re.fullmatch(r"(-?\d+)\.\.(-?\d+)", values):
            expected = list(range(int(m[1]), int(m[2]) + 1))
        elif m := re.fullmatch(r"0, ±2\^0\.\.±2\^(\d+)", values):
            expected = sorted([0] + [s * (1 << k) for k in range(int(m[1]) + 1) for s in (1, -1)])
        else:
            expected = sorted(int(v.replace("+", "")) for v in values.strip("{}").split(","))
        assert fmt.values().tolist() == expected, row


def test_code_table():
    rows = table("codes")
    for row in rows:
        fmt = parse_format(row["format"])
        value, code = int(row["value"].replace("+", "")), row["code"]
        assert len(code) == fmt.bits
        assert int(fmt.encode([value])[0]) == int(code, 2), row
        assert int(fmt.decode([int(code, 2)])[0]) == value, row
    assert {r["format"] for r in rows} == {"s4", "u4", "bipolar", "ternary", "pow2_4"}


# ---- 3. the header's fields ------------------------------------------------------------------
def example_net() -> Network:
    header, arrays = example_header(), example_arrays()
    return Network([DenseLayer(arrays["layer0_weights"], "s4", "u4", arrays["layer0_bias"],
                               RequantParams.from_json(header["layers"][0]["requant"]), "fc0"),
                    DenseLayer(arrays["layer1_weights"], "ternary", "u4", arrays["layer1_bias"], None, "fc1")],
                   InputTransform("shift", 4), "example")


def test_top_level_fields_are_the_written_ones():
    assert [r["field"] for r in table("top-fields")] == list(Network.TOP_FIELDS) == list(example_net().to_header())


def test_input_fields_and_ranges():
    rows = {r["field"]: r for r in table("input-fields")}
    assert list(rows) == list(InputTransform().to_json())
    assert rows["kind"]["allowed"].split(", ") == list(InputTransform.KINDS)
    amounts = dict(re.findall(r"(\w+): (-?\d+\.\.-?\d+)", rows["amount"]["allowed"]))
    assert {k: tuple(map(int, v.split(".."))) for k, v in amounts.items()} == InputTransform.AMOUNTS
    assert "offset: 0..8" in rows["shift_amount"]["allowed"] and InputTransform.SHIFT_AMOUNTS == (0, 8)


def test_dense_fields_are_the_written_ones():
    names = [r["field"] for r in table("dense-fields")]
    assert names == ["op", *DenseLayer.FIELDS] == list(example_net().to_header()["layers"][0])


def test_requant_fields_and_ranges():
    rows = {r["field"]: r for r in table("requant-fields")}
    assert list(rows) == list(example_net().layers[0].requant.to_json())
    assert f"0..{MAX_SHIFT};" in rows["shift"]["allowed"]
    assert f"0..{(1 << MAX_MULTIPLIER_BITS) - 1}," in rows["multiplier"]["allowed"]
    assert rows["rounding"]["allowed"].split(", ") == ["floor", "half_up", "half_even"]


# ---- 4. numerics -----------------------------------------------------------------------------
def test_requantization_examples():
    rows = table("requant-examples")
    assert len(rows) >= 20
    for row in rows:
        a, s = int(row["a"]), int(row["s"])
        m = None if row["m"] == "—" else int(row["m"])
        assert Fraction(a * (1 if m is None else m), 1 << s) == Fraction(row["a·m/2^s"]), row
        for mode in ("floor", "half_up", "half_even"):
            p = RequantParams(row["out_format"], shift=s, multiplier=m, rounding=mode, relu=row["relu"] == "yes")
            assert int(requantize(np.array([a]), p)[0]) == int(row[mode]), (row, mode)


def test_rounding_ties_stated_in_prose():
    """The 'ties' column of the rounding table: each ``v → r`` is round_shift(2v, 1)."""
    checked = 0
    for row in table("rounding"):
        mode, _, ties = row.values()
        for v, r in re.findall(r"(-?\d+\.5) → (-?\d+)", ties):
            assert int(round_shift(int(float(v) * 2), 1, mode)) == int(r), (mode, v, r)
            checked += 1
    assert checked == 9
    for mode in ("floor", "half_up", "half_even"):  # "at s = 0 every mode returns t unchanged"
        t = np.arange(-40, 41)
        assert np.array_equal(round_shift(t, 0, mode), t)


def test_argmax_examples():
    for row in table("argmax"):
        assert int(argmax_lowest([ints(row["logits"])])[0]) == int(row["class"])


# ---- 5. inputs and datasets ------------------------------------------------------------------
def test_input_transform_examples():
    for row in table("transforms"):
        t = InputTransform(row["kind"], int(row["amount"]), int(row["shift_amount"]))
        assert t.apply(ints(row["pixels"])).tolist() == ints(row["x"]), row


def test_quantizers_input_transforms():
    from lowbit.sw.quant.core import input_spec

    for row in table("input-spec"):
        bipolar = row["activations"] == "bipolar"
        act, transform = input_spec(1 if bipolar else int(row["activations"].split("-")[0]), bipolar=bipolar)
        kind, amount = row["transform"].split()
        assert str(act.fmt) == row["first layer input"] and transform == InputTransform(kind, int(amount)), row


def test_dataset_table():
    rows = {r["dataset"]: r for r in table("datasets")}
    assert list(rows) == ["fashion-mnist", "mnist", "digits"]
    for name, row in rows.items():
        if name != "digits" and find_idx_dir(name) is None:
            continue  # the IDX files are not installed here
        ds = load_dataset(name)
        h, w = map(int, row["image"].split("×"))
        assert ds.image_shape == (h, w) and ds.features == int(row["features"]) == h * w
        assert (len(ds.x_train), len(ds.x_test)) == (int(row["train"]), int(row["test"]))
        assert ds.x_train.dtype == np.uint8 and set(np.unique(ds.y_test)) <= set(range(10))


def test_digits_scaling_and_split_as_written():
    from sklearn.datasets import load_digits

    v_row, p_row = marked("digits-scaling")[0], marked("digits-scaling")[2]
    scale = dict(zip(ints(v_row.replace("|", " ").replace("v", "")), ints(p_row.replace("|", " ").replace("p", ""))))
    assert sorted(scale) == list(range(17))
    raw = load_digits()
    pixels = np.vectorize(scale.get)(raw.data.astype(int))
    perm = np.random.default_rng(0).permutation(1797)  # the split rule of section 5.2
    ds = load_dataset("digits")
    assert len(raw.data) == 1797 and 1797 // 5 == 359
    assert np.array_equal(ds.x_test, pixels[perm[:359]]) and np.array_equal(ds.x_train, pixels[perm[359:]])
    assert np.array_equal(ds.y_test, raw.target[perm[:359]])


# ---- 8. the worked example -------------------------------------------------------------------
def example_header() -> dict:
    return json.loads("\n".join(marked("example-header")))


def example_arrays() -> dict:
    out = {}
    for line in marked("example-arrays"):
        key, value = line.split(None, 1)
        out[key] = np.array(json.loads(value), np.int64)
    return out


@pytest.fixture(scope="module")
def example_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "example.npz"
    header = json.dumps(example_header()).encode()
    np.savez(path, header=np.frombuffer(header, np.uint8), **example_arrays())
    return path


def test_example_file_loads_and_is_what_lowbit_writes(example_file, tmp_path):
    net = Network.load(example_file)
    # the same header, field for field and in the same order (acc_bits included)
    assert json.dumps(net.to_header()) == json.dumps(example_header())
    back = dict(np.load(net.save(tmp_path / "again.npz")))
    assert sorted(back) == ["header", *sorted(example_arrays())]
    for key, a in example_arrays().items():
        assert np.array_equal(back[key], a) and back[key].dtype == np.int64
    # the bound of section 8.1
    text = clean(TEXT)
    (lo0, hi0), (lo1, hi1) = (l.acc_range for l in net.layers)
    assert f"lo..hi = {lo0}..{hi0}, {net.layers[0].acc_bits} bits" in text
    assert f"fc1: {lo1}..{hi1}" in text and f"{net.layers[1].acc_bits} bits" in text


def trace() -> dict[str, list[list[int]]]:
    rows = {}
    for line in marked("example-trace"):
        label, rest = re.match(r"(\w+(?: \w+)?)\s{2,}(.*)", line).groups()
        rows[label] = [ints(part) for part in rest.split("|")]
    return rows


def test_example_trace(example_file):
    net, rows = Network.load(example_file), trace()
    pixels = np.array(rows["pixels"])
    res = run_network(net, pixels, raw_pixels=True)
    assert net.input.apply(pixels).tolist() == rows["x"]
    for k, layer in enumerate(net.layers):
        assert (res.accumulators[k] - layer.bias).tolist() == rows[f"{layer.name} S"]
    assert res.accumulators[0].tolist() == rows["fc0 a"]
    assert res.activations[0].tolist() == rows["fc0 y"]
    assert res.logits.tolist() == rows["logits"]
    assert [[c] for c in res.classes.tolist()] == rows["class"]


@pytest.fixture(scope="module")
def example_build(example_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("spec") / "build"
    assert main(["build", str(example_file), "-o", str(out), "--fold", "2x2,1x2", "--no-sim-model"]) == 0
    return out, json.loads((out / "manifest.json").read_text())


def test_example_memories(example_build):
    out, manifest = example_build
    lines = [line.split() for line in marked("example-memories")]
    assert {name for name, *_ in lines} == {p.name for p in out.glob("layer*.hex")}  # not the testbench's
    for name, *words in lines:
        assert (out / name).read_text().split("\n")[:-1] == words, name


def test_example_streams_and_ports(example_build, example_file):
    out, manifest = example_build
    rows = {line.split()[0]: line.split()[1:] for line in marked("example-streams")}
    net, x = Network.load(example_file), np.array(trace()["x"][0])
    fmt = net.layers[0].in_format
    assert [f"{w:02x}" for w in pack_words(fmt.encode(x).reshape(-1, 2), fmt.bits)] == rows["i__payload"]
    o = manifest["ports"]["o__payload"]["fields"]
    cls, logits = o["cls"], o["logits"]
    assert rows["cls"] == ["offset", str(cls["offset"]), "width", str(cls["width"])] and not cls["signed"]
    assert rows["logits"] == ["offset", str(logits["offset"]), "width", str(logits["elem"]["width"]),
                              "lanes", str(logits["length"])] and logits["elem"]["signed"]
    assert cls["width"] == max(1, (net.out_features - 1).bit_length())
    assert logits["elem"]["width"] == net.layers[-1].acc_bits
    res = run_network(net, x[None])
    lw = logits["elem"]["width"]
    word = int(res.classes[0]) << cls["offset"]
    for j, v in enumerate(res.logits[0].tolist()):
        word |= (v % (1 << lw)) << (logits["offset"] + j * lw)
    assert f"{word:x}" == rows["o__payload"][0]
    assert manifest["expected_cycles_per_image"] == int(rows["cycles"][0])
    # the ports table of section 7
    section = TEXT[TEXT.index("| port | direction | content |"):TEXT.index("**Input**")]
    ports = {p for p in re.findall(r"`(\w+)`", section)}
    assert ports == set(manifest["ports"]) | {manifest["clock"], "rst"}


# ---- 4.5-4.7 and 9: convolutional networks -------------------------------------------------
def conv_example_header() -> dict:
    return json.loads("\n".join(marked("conv-example-header")))


def conv_example_arrays() -> dict:
    out = {}
    for line in marked("conv-example-arrays"):
        key, value = line.split(None, 1)
        out[key] = np.array(json.loads(value), np.int64)
    return out


@pytest.fixture(scope="module")
def conv_example_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "conv-example.npz"
    header = json.dumps(conv_example_header()).encode()
    np.savez(path, header=np.frombuffer(header, np.uint8), **conv_example_arrays())
    return path


def test_conv_and_pool_fields_are_the_written_ones(conv_example_file):
    from lowbit.sw.ir import Conv2dLayer, MaxPool2dLayer

    layers = Network.load(conv_example_file).to_header()["layers"]
    assert [r["field"] for r in table("conv2d-fields")] == ["op", *Conv2dLayer.FIELDS] == list(layers[0])
    assert [r["field"] for r in table("maxpool2d-fields")] == ["op", *MaxPool2dLayer.FIELDS] == list(layers[1])


def test_pad_values():
    from lowbit.sw.ir import pad_value

    rows = table("pad-values")
    assert [r["in_format"] for r in rows] == ["uN", "sN", "ternary", "bipolar"]
    for row in rows:
        for text in ([row["in_format"].replace("N", str(n)) for n in (2, 4, 8)] if "N" in row["in_format"]
                     else [row["in_format"]]):
            assert pad_value(parse_format(text)) == int(row["pad value"]), text


def test_conv_example_file_loads_and_is_what_lowbit_writes(conv_example_file, tmp_path):
    net = Network.load(conv_example_file)
    assert json.dumps(net.to_header()) == json.dumps(conv_example_header())
    back = dict(np.load(net.save(tmp_path / "again.npz")))
    assert sorted(back) == ["header", *sorted(conv_example_arrays())]
    for key, a in conv_example_arrays().items():
        assert np.array_equal(back[key], a) and back[key].dtype == np.int64
    conv0, _, fc2 = net.layers
    text = clean(TEXT)
    assert f"lo..hi = {conv0.acc_range[0]}..{conv0.acc_range[1]}, {conv0.acc_bits} bits" in text
    assert f"fc2: {fc2.acc_range[0]}..{fc2.acc_range[1]}, {fc2.acc_bits} bits" in text
    rows = re.search(r"as rows of `Wd`.*?: `(\[.*?\])` and `(\[.*?\])`", TEXT, re.S)
    assert [json.loads(clean(r)) for r in rows.groups()] == conv0.as_dense().weights.tolist()


def test_conv_example_trace(conv_example_file):
    from lowbit.sw.golden import im2col

    net = Network.load(conv_example_file)
    rows = {}
    for line in marked("conv-example-trace"):
        label, value = re.match(r"(\w+(?: \w+)*?)\s{2,}(.*)", line).groups()
        rows[label] = json.loads(value)
    pixels = np.array(rows["pixels"])
    res = run_network(net, pixels.reshape(1, -1), raw_pixels=True)
    x = net.input.apply(pixels)
    assert x.tolist() == rows["x"]
    cols = im2col(x.reshape(1, 4, 4, 1), (3, 3), (1, 1), (1, 1), pad_value=-1)
    assert cols[0, 0, 0].tolist() == rows["im2col 0 0"] and cols[0, 1, 2].tolist() == rows["im2col 1 2"]
    assert res.accumulators[0][0].tolist() == rows["conv0 a"] and res.activations[0][0].tolist() == rows["conv0 y"]
    assert res.activations[1][0].tolist() == rows["pool1 y"]
    assert res.activations[1][0].reshape(-1).tolist() == rows["fc2 x"]
    assert res.logits[0].tolist() == rows["logits"] and int(res.classes[0]) == rows["class"]
    # "twice the real plus-shaped sum": the 0/1 image zero-padded, by the formula
    real = np.pad((x + 1) // 2, 1)
    plus = net.layers[0].weights[0, :, :, 0]
    assert rows["conv0 a"][0][0][0] == 2 * int((real[0:3, 0:3] * plus).sum())


def test_conv_example_folds_and_cycles(conv_example_file):
    from lowbit.sw.fold import parse_fold, plan_folding
    from lowbit.sw.ops import lower

    net = Network.load(conv_example_file)
    fold = re.search(r"Folded `--fold ([\dx,]+)`", TEXT).group(1)
    plan = plan_folding(net, parse_fold(fold, len(net.layers)))
    ops = lower(net, plan)
    rows = table("conv-example-cycles")
    spelled = {"sliding_window": "sliding window", "matrix_vector": "matrix-vector", "max_pool": "max-pool"}
    assert [r["unit"] for r in rows] == [f"{op.name} {spelled[op.kind]}" for op in ops]
    for row, op in zip(rows, ops, strict=True):
        expression = row["cycles"].replace("·", "*").replace("/", "//")
        assert eval(expression, {"max": max}) == int(row["per image"]) == op.cycles(), row  # noqa: S307
    assert f"max({', '.join(r['per image'] for r in rows)}) = {plan.initiation_interval}" in TEXT
    assert ops[0].fold.in_lanes == 1 and ops[0].fold.simd == 3


def test_every_marked_block_is_tested():
    """A marked block that no test reads would be an unchecked example."""
    assert sorted(m.group(1) for m in MARKER.finditer(TEXT)) == sorted(BLOCKS)
