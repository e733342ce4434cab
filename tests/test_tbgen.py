"""The standalone Verilog testbench of every build: Icarus alone (no Python) checks the core.

``lowbit build`` writes ``tb_lowbit_net.v`` with hex stimulus and the golden model's expected
output beats; here a tiny random network is built, the testbench is run with the exact
``iverilog``/``vvp`` command lines the manifest and README give, and it must print PASS with
0 mismatches, on both netlists; one corrupted expected word must make it print FAIL and
name the image. The expected words are checked against the golden model independently of
the testbench, and the output layout's packer against its reader.
"""

import hashlib
import json
import shutil
import subprocess

import numpy as np
import pytest

from lowbit.hw.build import build_network
from lowbit.hw.tbgen import (GAP_STALL_THRESHOLD, IMAGES, SEED, decode_outputs, encode_outputs, output_layout,
                             standalone_inputs)
from lowbit.sim.netrun import read_writememh
from lowbit.sw.fold import parse_fold, plan_folding
from lowbit.sw.golden import run_network
from lowbit.sw.ops import StreamShape
from lowbit.sw.randnet import random_network

CASES = {  # name: (sizes, weight, act, fold, memories)
    "s4u4_embedded": ([64, 16, 10], "s4", "u4", "4x16,5x4", "embedded"),
    # bipolar lanes (1 bit, threshold input transform) and weights read by $readmemh beside the Verilog
    "w1a1_readmemh": ([32, 16, 10], "bipolar", "bipolar", "4x8,2x8", "readmemh"),
}


def _build(tmp_path, name, **kw):
    sizes, wf, af, fold, memories = CASES[name]
    net = random_network(sizes, wf, af, seed=5)
    out = tmp_path / name
    manifest = build_network(net, plan_folding(net, parse_fold(fold, len(net.layers))), out, formats=("hex",),
                             memories=memories, **kw)
    return out, manifest, net


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One build per case for the whole module (the tests that change files work on a copy)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _build(tmp_path_factory.mktemp("tbgen"), name)
        return cache[name]
    return get


def _run(folder, netlist="lowbit_net.v"):
    """The manifest's two commands (the netlist swapped when asked), in the build folder."""
    cmds = json.loads((folder / "manifest.json").read_text())["standalone_testbench"]["commands"]
    assert cmds == ["iverilog -g2005 -o tb_lowbit_net.vvp tb_lowbit_net.v lowbit_net.v", "vvp tb_lowbit_net.vvp"]
    outs = []
    for cmd in cmds:
        args = [netlist if a == "lowbit_net.v" else a for a in cmd.split()]
        proc = subprocess.run(args, cwd=folder, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outs.append(proc.stdout)
    return outs[-1]


@pytest.mark.hdl
@pytest.mark.parametrize("netlist", ["lowbit_net.v", "lowbit_net_sim.v"])
@pytest.mark.parametrize("name", list(CASES))
def test_standalone_testbench_passes_in_icarus(built, name, netlist):
    out, manifest, _ = built(name)
    text = _run(out, netlist)
    assert f"lowbit tb: PASS: {IMAGES} images, 0 mismatches (class + every logit)" in text, text
    assert "FAIL" not in text
    # random gaps and stalls really happened; every image went through the core
    stats = dict(kv.rsplit(" ", 1) for kv in text.split("lowbit tb: ")[-1].strip().split(", "))
    assert int(stats["stat_images"]) == IMAGES
    assert int(stats["stat_in_stalls"]) > 0 or int(stats["stat_out_stalls"]) > 0


@pytest.mark.hdl
def test_a_wrong_expected_word_makes_it_fail(tmp_path, built):
    src, manifest, _ = built("s4u4_embedded")
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    path = out / "tb_lowbit_net_expected.hex"
    lines = path.read_text().splitlines()
    lay = output_layout(manifest)
    bad = int(lines[3], 16) ^ (1 << (lay.logits_offset + 2 * lay.logit_width))  # one bit of image 3's logit 2
    lines[3] = f"{bad:0{len(lines[3])}x}"
    path.write_text("\n".join(lines) + "\n")
    text = _run(out)
    assert f"lowbit tb: FAIL: {IMAGES} images, 1 mismatches (class + every logit)" in text, text
    assert "lowbit tb: image 3: got class" in text and "PASS" not in text


def test_expected_words_are_the_golden_model_of_the_inputs(tmp_path):
    out, manifest, net = _build(tmp_path, "w1a1_readmemh", testbench_images=5)
    entry = manifest["standalone_testbench"]
    assert (entry["images"], entry["seed"], entry["module"]) == (5, SEED, "tb_lowbit_net")
    assert f"{GAP_STALL_THRESHOLD}/256" in entry["traffic"]
    for rec in (entry, entry["inputs"], entry["expected"]):
        assert hashlib.sha256((out / rec["file"]).read_bytes()).hexdigest() == rec["sha256"]
    stream = StreamShape.from_json(manifest["input_stream"])
    beats = read_writememh(out / entry["inputs"]["file"], stream.width)
    assert len(beats) == 5 * stream.beats_per_image
    x = stream.decode(beats)
    assert np.array_equal(x, standalone_inputs(manifest, 5, SEED))  # deterministic: same seed, same images
    assert set(np.unique(x)) == {-1, 1}  # valid bipolar values, both present
    golden = run_network(net, x, keep="logits")
    cls, logits = decode_outputs(read_writememh(out / entry["expected"]["file"], output_layout(manifest).width),
                                 manifest)
    assert np.array_equal(cls, golden.classes) and np.array_equal(logits, golden.logits)
    # the Verilog says what it compares, with the file names the manifest lists
    tb = (out / entry["file"]).read_text()
    assert f'$readmemh("{entry["inputs"]["file"]}", inputs);' in tb and "localparam IMAGES = 5;" in tb


def test_output_words_pack_and_unpack_with_one_layout():
    manifest = {"ports": {"o__payload": {"width": 4 + 3 * 6, "fields": {
        "cls": {"offset": 0, "width": 4, "signed": False},
        "logits": {"offset": 4, "width": 18, "length": 3, "elem": {"width": 6, "signed": True}}}}}}
    classes, logits = [2, 0, 9], [[-32, 31, 0], [-1, 5, -7], [1, -2, 3]]
    words = encode_outputs(classes, logits, manifest)
    assert words[0] == 2 | (32 << 4) | (31 << 10) | (0 << 16)  # -32 = 0b100000 in 6 bits
    assert words[1] == 0 | (63 << 4) | (5 << 10) | (57 << 16)
    cls, back = decode_outputs(words, manifest)
    assert cls.tolist() == classes and back.tolist() == logits
    with pytest.raises(ValueError, match=r"logits must fit 6-bit signed lanes \(-32\.\.31\), not -33\.\.0"):
        encode_outputs([0], [[-33, 0, 0]], manifest)
    with pytest.raises(ValueError, match="logits must have 3 columns"):
        encode_outputs([0], [[1, 2]], manifest)
    with pytest.raises(ValueError, match="classes must fit 4 unsigned bits, not 16..16"):
        encode_outputs([16], [[0, 0, 0]], manifest)
