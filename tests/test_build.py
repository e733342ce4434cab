"""lowbit build / sim: files written, and every bad input refused with a clear message."""

import json

import numpy as np
import pytest

from lowbit.hw.build import build_network, load_build
from lowbit.sw.cli import main
from lowbit.sw.fold import plan_folding
from lowbit.sw.memimage import load_bank
from lowbit.sw.pack import weight_banks, weight_image
from lowbit.sw.randnet import random_network


@pytest.fixture()
def built(tmp_path):
    net = random_network([12, 8, 4], "s4", "u4", seed=5)
    plan = plan_folding(net, [(4, 3), (2, 4)])
    out = tmp_path / "net"
    build_network(net, plan, out)
    return net, plan, out


def test_build_writes_verilog_images_and_manifest(built):
    net, plan, out = built
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["top"] == "lowbit_net" and (out / "lowbit_net.v").is_file()
    assert manifest["expected_cycles_per_image"] == plan.initiation_interval == 8
    assert [l["pe"] for l in manifest["folding"]] == [4, 2]
    assert set(manifest["ports"]) >= {"i__payload", "o__payload", "stat_cycles"}
    # 2 layers x (one weight memory + PE param banks), each in 5 formats
    assert len(manifest["memories"]) == (1 + 4) + (1 + 2)
    banks = weight_banks(net.layers[0], 4, 3)  # the PE banks side by side, bank 0 in the low bits (12 bits each)
    assert weight_image(net.layers[0], 4, 3) == [sum(b[a] << (12 * p) for p, b in enumerate(banks)) for a in range(8)]
    for fmt in ("hex", "mem", "coe", "mif", "bin"):
        assert load_bank(out, 0, "weights", 0, fmt) == weight_image(net.layers[0], 4, 3)
    m, back = load_build(out)
    assert np.array_equal(back.layers[0].weights, net.layers[0].weights)


def test_altered_or_missing_image_is_refused(built):
    _, _, out = built
    f = out / "layer0_params_bank2.hex"
    f.write_text(f.read_text().replace("0", "1", 1))
    with pytest.raises(ValueError, match=r"layer0_params_bank2.hex' has been modified: sha256 must be"):
        load_build(out)
    f.unlink()
    with pytest.raises(ValueError, match=r"layer0_params_bank2.hex' is missing"):
        load_build(out)


def test_altered_ir_is_refused(built):
    _, _, out = built
    (out / "net.npz").write_bytes((out / "net.npz").read_bytes() + b"x")
    with pytest.raises(ValueError, match=r"net.npz' has been modified"):
        load_build(out)


def test_cli_build_errors(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    assert main(["build", str(bad), "-o", str(tmp_path / "o1")]) == 2
    assert "is not a lowbit IR file" in capsys.readouterr().err
    assert main(["build", "--random", "12,8,4", "--fold", "5x3,2x4", "-o", str(tmp_path / "o2")]) == 2
    assert "pe must be a divisor of the 8 rows" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()  # nothing half-written
    assert main(["sim", str(tmp_path / "nothing")]) == 2
    assert "is not a lowbit build folder" in capsys.readouterr().err


def test_cli_build_random_network(tmp_path, capsys):
    assert main(["build", "--random", "64,32,10", "--max-lanes", "64", "-o", str(tmp_path / "n")]) == 0
    out = capsys.readouterr().out
    assert "expected:" in out and "cycles per image" in out
    manifest = json.loads((tmp_path / "n" / "manifest.json").read_text())
    assert sum(l["pe"] * l["simd"] for l in manifest["folding"]) <= 64


def test_readmemh_build_points_every_memory_at_its_image(tmp_path):
    import re

    net = random_network([12, 8, 4], "s4", "u4", seed=5)
    plan = plan_folding(net, [(4, 3), (2, 4)])
    manifest = build_network(net, plan, tmp_path / "net", memories="readmemh")
    text = (tmp_path / "net" / "lowbit_net.v").read_text()
    loads = re.findall(r'initial \$readmemh\("([^"]+)", (\w+)\);', text)
    hex_files = sorted(m["files"]["hex"]["file"] for m in manifest["memories"])
    assert sorted(f for f, _ in loads) == hex_files == manifest["readmemh_files"]
    # weights of bank b go to weights_b, params of bank b to params_b
    for fname, mem in loads:
        kind, bank = re.match(r"layer\d+_(weights|params)_bank(\d+)\.hex", fname).groups()
        assert mem == f"{kind}_{bank}"
    # no weight or parameter word is left embedded
    assert not re.search(r"^\s*(weights|params)_\d+\[\d+\] = ", text, re.M)
    assert manifest["memory_style"].startswith("readmemh")
    m, back = load_build(tmp_path / "net")
    assert np.array_equal(back.layers[1].weights, net.layers[1].weights)


def test_readmemh_refuses_a_memory_that_matches_no_image(tmp_path):
    from dataclasses import replace

    from lowbit.hw.readmem import use_readmemh
    from lowbit.hw.network import NetworkTop
    from lowbit.hw.mvu import layer_specs
    from lowbit.sw.memimage import ImageSet
    from amaranth.back import verilog

    net = random_network([12, 8, 4], "s4", "u4", seed=5)
    plan = plan_folding(net, [(4, 3), (2, 4)])
    text = verilog.convert(NetworkTop(net, plan), name="lowbit_net", emit_src=False)
    images = ImageSet()
    for k, (layer, fold) in enumerate(zip(net.layers, plan.layers)):
        images.add_layer(k, layer, fold.pe, fold.simd, layer_specs(layer, fold)[2])
    mems = images.memories
    out, mapping = use_readmemh(text, mems)
    assert len(mapping) == len(mems)
    altered = [replace(m, words=(m.words[0] ^ 1,) + m.words[1:]) if i == 0 else m for i, m in enumerate(mems)]
    with pytest.raises(ValueError, match=r"memories must equal one of the build's images.*weights_0"):
        use_readmemh(text, altered)
    with pytest.raises(ValueError, match=r"every image must initialise a memory.*layer9_weights_bank0"):
        use_readmemh(text, mems + [replace(altered[0], layer=9)])
    with pytest.raises(ValueError, match=r"memories must be one of embedded, readmemh, not 'rom'"):
        build_network(net, plan, tmp_path / "x", memories="rom")
    with pytest.raises(ValueError, match=r"formats must include 'hex' when memories is 'readmemh'"):
        build_network(net, plan, tmp_path / "x", memories="readmemh", formats=("coe",))
    assert not (tmp_path / "x").exists()


def test_a_folder_that_is_not_a_build_is_refused_before_any_work(tmp_path, monkeypatch):
    import lowbit.hw.build as hb

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    net = random_network([12, 8, 4], "s4", "u4", seed=2)
    plan = plan_folding(net, [(4, 3), (2, 4)])
    monkeypatch.setattr(hb, "NetworkTop", lambda *a, **k: pytest.fail("generation started"))
    with pytest.raises(ValueError, match=r"output folder must be empty or hold a previous lowbit build; refusing"):
        build_network(net, plan, tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_a_failed_rebuild_keeps_the_previous_build(tmp_path, monkeypatch):
    from pathlib import Path

    net = random_network([12, 8, 4], "s4", "u4", seed=2)
    plan = plan_folding(net, [(4, 3), (2, 4)])
    build_network(net, plan, tmp_path / "net", simulation_model=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "net").iterdir()}

    real, calls = Path.write_bytes, []

    def full_disk(self, data):  # the fifth file of the new build cannot be written
        calls.append(self)
        if len(calls) == 5:
            raise OSError("disk full")
        return real(self, data)
    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OSError, match="disk full"):
        build_network(random_network([12, 8, 4], "s4", "u4", seed=3), plan, tmp_path / "net",
                      simulation_model=False)
    monkeypatch.undo()
    assert len(calls) == 5
    assert {p.name: p.read_bytes() for p in (tmp_path / "net").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net"]  # no staging folder left


def test_a_layer_kind_without_hardware_is_refused_before_generation(tmp_path, capsys, monkeypatch):
    """Every IR kind has a component today; an op whose component is missing from the registry
    (as a new layer kind's would be) is refused before anything is generated or written."""
    from lowbit.hw import registry
    from lowbit.sw.cli import main
    from lowbit.sw.ops import MaxPoolOp
    from lowbit.sw.randnet import random_cnn

    monkeypatch.delitem(registry.COMPONENTS, MaxPoolOp)
    cnn = random_cnn((8, 8, 1), ["4C3", "MP2", "10FC"], seed=1)
    cnn.save(tmp_path / "cnn.npz")
    assert main(["build", str(tmp_path / "cnn.npz"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert ("lowbit build: error: layer 1 ('pool1') lowers to a max_pool op, which has no hardware component: "
            "ops with hardware are matrix_vector, sliding_window" in err)
    assert "Traceback" not in err and not (tmp_path / "out").exists()
