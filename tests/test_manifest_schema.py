"""docs/manifest.schema.json describes every key ``lowbit build`` writes, and no other.

Real builds (several number formats, both memory styles, with and without the simulation
model, a subset of image formats) validate against it; a key the schema does not know, at
any level, makes validation fail, so a new manifest key without its schema entry fails here.
A small CNN build (window, pool, dense) validates as a whole; the ops of more lowered
random CNNs (padding, stride, parallel window, bipolar, two pools) are validated against the
schema's op definitions without building them, and every op kind lowbit has must have one.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest

from lowbit.hw.build import build_network
from lowbit.sw.fold import plan_folding
from lowbit.sw.ops import HardwareOp, lower
from lowbit.sw.ops.lower import LOWERINGS  # noqa: F401  (imports every op kind)
from lowbit.sw.randnet import random_cnn, random_network

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "docs" / "manifest.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validator(schema, ref: str | None = None) -> jsonschema.Draft202012Validator:
    """A validator of the whole manifest, or (``ref``) of one of the schema's ``$defs``."""
    s = schema if ref is None else {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{ref}"}
    return jsonschema.Draft202012Validator(s)


def errors(v, instance) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(instance)]


def test_schema_is_a_valid_draft_2020_12_schema(schema):
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


BUILDS = [  # sizes, weight, act, folds, build options, random_network options
    ([12, 8, 4], "s4", "u4", [(4, 3), (2, 4)], {}, {}),
    ([16, 8, 6], "bipolar", "bipolar", [(8, 16), (6, 8)],
     {"memories": "readmemh", "simulation_model": False, "formats": ("hex", "mif")}, {}),
    ([12, 6, 4], "pow2_3", "u3", [(2, 4), (4, 2)], {"formats": ("coe", "bin")},
     {"multiplier": True, "per_channel": False, "rounding": "floor"}),
    ([8, 6, 4], "ternary", "s8", [(3, 2), (1, 6)], {}, {"multiplier": True, "rounding": "half_up"}),
]


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    out = []
    for k, (sizes, wf, af, folds, opts, net_opts) in enumerate(BUILDS):
        net = random_network(sizes, wf, af, seed=k, **net_opts)
        folder = tmp_path_factory.mktemp("build") / "net"
        build_network(net, plan_folding(net, folds), folder, **opts)
        out.append(json.loads((folder / "manifest.json").read_text()))  # what is on disk
    return out


@pytest.mark.parametrize("k", range(len(BUILDS)), ids=[f"{b[1]}-{b[2]}" for b in BUILDS])
def test_build_manifest_matches_the_schema(schema, manifests, k):
    m = manifests[k]
    assert errors(validator(schema), m) == []
    # the variants this case stands for really are in the manifest
    if BUILDS[k][4].get("memories") == "readmemh":
        assert m["readmemh_files"] and m["simulation_model"] is None and m["formats"] == ["hex", "mif"]
    if BUILDS[k][5].get("multiplier"):
        assert any(f["name"] == "multiplier" for mem in m["memories"] if mem["kind"] == "params"
                   for f in mem["fields"])


# (a path into the manifest, or a callable giving the object) where an unknown key must be refused
PLACES = {
    "top level": lambda m: m,
    "memory": lambda m: m["memories"][0],
    "params memory": lambda m: next(mem for mem in m["memories"] if mem["kind"] == "params"),
    "memory fold": lambda m: m["memories"][0]["fold"],
    "memory file record": lambda m: m["memories"][0]["files"]["hex"],
    "param field": lambda m: next(mem for mem in m["memories"] if mem["kind"] == "params")["fields"][0],
    "requant": lambda m: next(mem for mem in m["memories"] if mem["kind"] == "params")["requant"],
    "folding entry": lambda m: m["folding"][0],
    "op stream": lambda m: m["folding"][0]["out_stream"],
    "input_stream": lambda m: m["input_stream"],
    "port": lambda m: m["ports"]["i__payload"],
    "output struct field": lambda m: m["ports"]["o__payload"]["fields"]["logits"],
    "array element": lambda m: m["ports"]["o__payload"]["fields"]["logits"]["elem"],
    "ir": lambda m: m["ir"],
    "input transform": lambda m: m["ir"]["input_transform"],
    "io": lambda m: m["io"],
    "simulation model": lambda m: m["simulation_model"],
    "lane check": lambda m: m["simulation_model"]["lane_multiplier_check"][0],
    "axis wrapper": lambda m: m["axis_wrapper"],
    "axis port": lambda m: m["axis_wrapper"]["ports"]["s_axis_tdata"],
    "standalone testbench": lambda m: m["standalone_testbench"],
    "testbench file record": lambda m: m["standalone_testbench"]["inputs"],
}


@pytest.mark.parametrize("place", list(PLACES))
def test_an_unknown_key_anywhere_is_refused(schema, manifests, place):
    m = copy.deepcopy(manifests[0])
    PLACES[place](m)["surprise"] = 1
    assert any("surprise" in e for e in errors(validator(schema), m)), place


def test_missing_keys_and_wrong_values_are_refused(schema, manifests):
    v = validator(schema)
    for mutate in (lambda m: m.pop("axis_wrapper"), lambda m: m["folding"][0].pop("acc_bits"),
                   lambda m: m["memories"][0].pop("value_format"), lambda m: m["ports"].pop("stat_cycles"),
                   lambda m: m["folding"][0].update(op="convolution"),
                   lambda m: m["folding"][0].update(weight_format="s17"),
                   lambda m: m["memories"][0].update(fields=[]),  # a weights memory has no fields
                   lambda m: m["memories"][0]["files"].update(vhd={"file": "x.vhd", "sha256": "0" * 64}),
                   lambda m: m["input_stream"].update(lanes=0), lambda m: m.update(verilog_sha256="abc")):
        m = copy.deepcopy(manifests[0])
        mutate(m)
        assert errors(v, m), mutate


CNNS = [  # in_shape, layers, weight, act, folds
    ((8, 8, 1), ("4C3", "MP2", "10"), "s4", "u4", [(2, 3), (2,), (5, 4)]),          # parallel window
    ((8, 8, 2), ("4C3s2p1", "6C3", "10"), "s2", "bipolar", [(4, 2), (3, 4), (2, 6)]),  # stride, bipolar padding
    ((6, 6, 4), ("8C3p1", "MP3", "MP2", "10"), "ternary", "u2", [(8, 12), (4,), (8,), (10, 8)]),
]


def test_cnn_build_manifest_matches_the_schema(schema, tmp_path):
    in_shape, layers, wf, af, folds = CNNS[0]
    net = random_cnn(in_shape, layers, wf, af, seed=3)
    build_network(net, plan_folding(net, folds), tmp_path / "cnn")
    m = json.loads((tmp_path / "cnn" / "manifest.json").read_text())
    assert errors(validator(schema), m) == []
    assert [op["op"] for op in m["folding"]] == ["sliding_window", "matrix_vector", "max_pool", "matrix_vector"]
    assert m["input_stream"] == m["folding"][0]["in_stream"] and m["input_stream"]["vectors"] == 64  # H·W pixels
    m["folding"][2]["surprise"] = 1
    assert any("surprise" in e for e in errors(validator(schema), m))


@pytest.mark.parametrize("in_shape, layers, wf, af, folds", CNNS, ids=["parallel-window", "stride-pad", "pools"])
def test_cnn_op_entries_match_the_schema(schema, in_shape, layers, wf, af, folds):
    net = random_cnn(in_shape, layers, wf, af, seed=3)
    ops = lower(net, plan_folding(net, folds))
    op_v, stream_v = validator(schema, "op"), validator(schema, "stream")
    kinds = set()
    for op in ops:
        entry = json.loads(json.dumps(op.manifest_entry()))  # as it would be written
        assert errors(op_v, entry) == [], entry
        kinds.add(entry["op"])
        entry["surprise"] = 1
        assert any("surprise" in e for e in errors(op_v, entry))
    assert errors(stream_v, ops[0].in_stream.to_json()) == []  # the manifest's input_stream
    assert {"sliding_window", "matrix_vector"} <= kinds


def test_every_op_kind_has_a_schema(schema):
    def leaves(cls):
        for sub in cls.__subclasses__():
            yield from ([sub] if getattr(sub, "kind", None) else []) + list(leaves(sub))

    kinds = {c.kind for c in leaves(HardwareOp)}
    defined = {schema["$defs"][b["$ref"].rsplit("/", 1)[1]]["properties"]["op"]["const"]
               for b in schema["$defs"]["op"]["oneOf"]}
    assert kinds == defined == {"matrix_vector", "sliding_window", "max_pool"}


# ---- which Verilog array is which manifest memory (docs/integration.md, section 6) -------------------
_MODULE = re.compile(r"^module (\\\S+|\w+) ?\(", re.MULTILINE)
_ARRAY = re.compile(r"^  reg \[(\d+):0\] (\w+) \[(\d+):0\];\n  initial begin\n((?:    \2\[\d+\] = \d+'[hd][0-9a-f]+;\n)*)  end\n",
                    re.MULTILINE)
_WORD = re.compile(r"\[(\d+)\] = \d+'([hd])([0-9a-f]+);")


def verilog_arrays(text: str) -> dict:
    """(module name, array name) → (width, words) of every initialised array of Amaranth's Verilog."""
    starts = [(m.start(), m.group(1)) for m in _MODULE.finditer(text)] + [(len(text), None)]
    out = {}
    for (a, name), (b, _) in zip(starts, starts[1:]):
        for arr in _ARRAY.finditer(text, a, b):
            words = [0] * (int(arr.group(3)) + 1)
            for addr, radix, value in _WORD.findall(arr.group(4)):
                words[int(addr)] = int(value, 16 if radix == "h" else 10)
            out[(name, arr.group(2))] = (int(arr.group(1)) + 1, words)
    return out


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_each_manifest_memory_is_the_array_the_integration_doc_names(tmp_path, kind):
    """Memory {layer L, kind K, bank p} is array K_p of module \\lowbit_net.layer<k>, k the position in
    folding of the matrix_vector op of layer L, and holds exactly the words of its image files."""
    from lowbit.sw.memimage import load_bank

    if kind == "mlp":
        net = random_network([12, 8, 6, 4], "s4", "u4", seed=1, multiplier=True)
        folds = [(4, 3), (2, 4), (2, 2)]
    else:
        in_shape, layers, wf, af, folds = CNNS[0]
        net = random_cnn(in_shape, layers, wf, af, seed=3)
    out = tmp_path / "net"
    m = build_network(net, plan_folding(net, folds), out, simulation_model=False)
    arrays = verilog_arrays((out / "lowbit_net.v").read_text())
    position = {op["index"]: k for k, op in enumerate(m["folding"]) if op["op"] == "matrix_vector"}
    if kind == "cnn":
        assert position == {0: 1, 2: 3}  # a convolution is two ops, a pool one: k is not the layer index
    image_arrays = {key for key in arrays if key[1].startswith(("weights_", "params_"))}
    assert len(image_arrays) == len(m["memories"])
    for mem in m["memories"]:
        key = (f"\\lowbit_net.layer{position[mem['layer']]}", f"{mem['kind']}_{mem['bank']}")
        width, words = arrays[key]
        assert width == mem["width"] and len(words) == mem["depth"]
        assert words == load_bank(out, mem["layer"], mem["kind"], mem["bank"], "hex")
