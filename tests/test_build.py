"""lowbit build / sim: files written, and every bad input refused with a clear message."""

import json

import numpy as np
import pytest

from lowbit.hw.build import build_network, load_build
from lowbit.sw.cli import main
from lowbit.sw.fold import plan_folding
from lowbit.sw.memimage import load_bank
from lowbit.sw.pack import weight_banks
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
    # 2 layers x (PE weight banks + PE param banks), each in 5 formats
    assert len(manifest["memories"]) == 2 * 4 + 2 * 2
    for fmt in ("hex", "mem", "coe", "mif", "bin"):
        assert load_bank(out, 0, "weights", 1, fmt) == weight_banks(net.layers[0], 4, 3)[1]
    m, back = load_build(out)
    assert np.array_equal(back.layers[0].weights, net.layers[0].weights)


def test_altered_or_missing_image_is_refused(built):
    _, _, out = built
    f = out / "layer0_weights_bank2.hex"
    f.write_text(f.read_text().replace("0", "1", 1))
    with pytest.raises(ValueError, match=r"layer0_weights_bank2.hex' has been modified: sha256 must be"):
        load_build(out)
    f.unlink()
    with pytest.raises(ValueError, match=r"layer0_weights_bank2.hex' is missing"):
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
