"""Float32 training of the MLP and CNN presets, determinism and checkpoints (on scikit-learn's digits)."""

import math

import numpy as np
import pytest
import torch

from lowbit.sw.cli import main
from lowbit.sw.datasets import load_dataset
from lowbit.sw.frontends.graph import BatchNorm, Conv2d, Linear
from lowbit.sw.train import (CNN_PRESETS, PRESET_NAMES, CheckpointError, PRESETS, arch_string, build_mlp,
                             build_preset, checkpoint_path, load_checkpoint, load_or_train, mlp, save_checkpoint,
                             recipe, train_mlp, train_preset, validation_split)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_presets():
    assert PRESETS == {"tfc": (64, 64, 64), "sfc": (256, 256, 256), "lfc": (1024, 1024, 1024)}
    m = build_mlp("sfc", 784)
    assert [l.out_features for l in m.linears] == [256, 256, 256, 10]
    with pytest.raises(ValueError, match="preset must be one of tfc, sfc, lfc, not 'xfc'"):
        build_mlp("xfc", 784)


def test_deterministic_and_learns(digits):
    m1, i1 = train_mlp("tfc", digits, epochs=8, seed=3, batch_size=32, progress=False)
    m2, i2 = train_mlp("tfc", digits, epochs=8, seed=3, batch_size=32, progress=False)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert i1 == i2 and i1["test_accuracy"] > 0.85
    m3, _ = train_mlp("tfc", digits, epochs=1, seed=4, progress=False)
    assert not torch.equal(m1.linears[0].weight, m3.linears[0].weight)


def test_checkpoint_round_trip_and_architecture(tmp_path, digits):
    m, info = train_mlp("tfc", digits, epochs=1, seed=0, progress=False)
    p = save_checkpoint(m, tmp_path / "c.pt", **info)
    m2, info2 = load_checkpoint(p, preset="tfc", in_features=64)
    assert info2["test_accuracy"] == info["test_accuracy"]
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    with pytest.raises(CheckpointError, match=r"holds a 64-64-64-64-10 MLP, but preset 'sfc' has hidden layers "
                                              r"\[256, 256, 256\]"):
        load_checkpoint(p, preset="sfc")
    with pytest.raises(CheckpointError, match="takes 64 inputs, the dataset has 784 features"):
        load_checkpoint(p, in_features=784)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a lowbit checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")


def test_load_or_train_reuses(tmp_path, digits):
    logs = []
    m1, _ = load_or_train("tfc", digits, 1, 0, cache_dir=tmp_path, progress=False, log=logs.append)
    m2, _ = load_or_train("tfc", digits, 1, 0, cache_dir=tmp_path, progress=False, log=logs.append)
    assert logs[0].startswith("training tfc on digits") and logs[-1].startswith("reusing")
    assert (tmp_path / "tfc_digits_s0_e1.pt").is_file()
    assert torch.equal(m1.linears[0].weight, m2.linears[0].weight)


def macs(graph) -> int:
    total = 0
    for name, layer in graph.layers.items():
        if isinstance(layer, Conv2d):
            oh, ow, oc = graph.shapes[name]
            total += oh * ow * oc * layer.in_channels * math.prod(layer.kernel_size)
        elif isinstance(layer, Linear):
            total += layer.in_features * layer.out_features
    return total


def test_cnn_presets():
    assert PRESET_NAMES == ("tfc", "sfc", "lfc", "lenet", "cnn_digits") and set(CNN_PRESETS) == {"lenet", "cnn_digits"}
    lenet = build_preset("lenet", (28, 28))
    assert lenet.input_shape == (28, 28, 1)
    assert arch_string(lenet) == "28x28x1-32C5-BN-MP2-64C5-BN-MP2-512FC-BN-10FC"
    assert [lenet.shapes[n] for n in ("conv0", "pool0", "conv1", "pool1", "flatten")] == [
        (24, 24, 32), (12, 12, 32), (8, 8, 64), (4, 4, 64), (1024,)]
    assert list(lenet.layers) == ["conv0", "bn0", "relu0", "pool0", "conv1", "bn1", "relu1", "pool1", "flatten",
                                  "fc2", "bn2", "relu2", "fc3"]
    assert macs(lenet) == 4_267_008  # ≈ 4.3 M per image
    # the weighted layers before a batch norm have no bias (its shift is the bias); the classifier has one
    assert [l.bias is None for l in lenet.layers.values() if l.weighted] == [True, True, True, False]
    assert [(s.name, s.bn, s.act, s.pool) for s in lenet.stages()] == [
        ("conv0", "bn0", "relu0", "pool0"), ("conv1", "bn1", "relu1", "pool1"), ("fc2", "bn2", "relu2", None),
        ("fc3", None, None, None)]
    small = build_preset("cnn_digits", (8, 8))
    assert arch_string(small) == "8x8x1-16C3p1-BN-MP2-32C3p1-BN-MP2-64FC-BN-10FC" and macs(small) == 91_776
    assert arch_string(build_preset("cnn_digits", (8, 8), batchnorm=False)) == "8x8x1-16C3p1-MP2-32C3p1-MP2-64FC-10FC"
    with pytest.raises(ValueError, match=r"preset 'lenet' takes images: input_shape must be \(height, width\[, "
                                         r"channels\]\), not \(784,\)"):
        build_preset("lenet", 784)
    with pytest.raises(ValueError, match="preset must be one of tfc, sfc, lfc, lenet, cnn_digits, not 'vgg'"):
        build_preset("vgg", (28, 28))


def test_mlp_batchnorm_option():
    torch.manual_seed(0)
    plain = mlp(64, [8, 8], 10)
    torch.manual_seed(0)
    same = build_preset("tfc", (8, 8), batchnorm=False)  # an image shape gives an MLP its pixel count
    assert same.input_shape == (64,) and list(same.layers) == ["fc0", "relu0", "drop0", "fc1", "relu1", "drop1",
                                                                 "fc2", "relu2", "drop2", "fc3"]
    assert torch.equal(plain.fc0.weight, same.fc0.weight[:8])  # the same draws from torch's RNG
    g = mlp(64, [8, 8], 10, batchnorm=True)
    assert list(g.layers) == ["fc0", "bn0", "relu0", "drop0", "fc1", "bn1", "relu1", "drop1", "fc2"]
    assert [l.bias is None for l in g.linears] == [True, True, False]
    assert arch_string(g) == "64-8FC-BN-8FC-BN-10FC"


def test_cnn_deterministic_and_learns(digits):
    m1, i1 = train_preset("cnn_digits", digits, epochs=3, seed=2, batch_size=32, progress=False)
    m2, i2 = train_preset("cnn_digits", digits, epochs=3, seed=2, batch_size=32, progress=False)
    assert list(m1.state_dict()) == list(m2.state_dict()) and "bn0.running_mean" in m1.state_dict()
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert i1 == i2 and i1["test_accuracy"] > 0.85 and i1["batchnorm"] is True and not m1.training
    assert i1 == {"preset": "cnn_digits", "dataset": "digits", "seed": 2, "epochs": 3, "batchnorm": True, "lr": 1e-3,
                  "weight_decay": 0.0, "batch_size": 32, "dropout": 0.0, "test_accuracy": i1["test_accuracy"]}
    m3, _ = train_preset("cnn_digits", digits, epochs=1, seed=3, progress=False)
    assert not torch.equal(m1.conv0.weight, m3.conv0.weight)


def test_validation_split(digits):
    tr, va = validation_split(1000, 200)
    assert len(tr) == 800 and len(va) == 200 and not set(tr) & set(va)
    assert np.array_equal(va, validation_split(1000, 200)[1])  # one fixed split
    _, info = train_preset("tfc", digits, 1, 0, validation=300, progress=False)
    assert info["validation"] == 300 and 0 < info["val_accuracy"] <= 1
    with pytest.raises(ValueError, match=r"validation must be an integer in \[0, 1000\), not 1000"):
        validation_split(1000, 1000)


def test_cnn_and_batchnorm_checkpoints_and_cache(tmp_path, digits):
    logs = []
    m1, info = load_or_train("cnn_digits", digits, 1, 0, cache_dir=tmp_path, progress=False, log=logs.append)
    m2, _ = load_or_train("cnn_digits", digits, 1, 0, cache_dir=tmp_path, progress=False, log=logs.append)
    assert logs[0].startswith("training cnn_digits on digits") and logs[-1].startswith("reusing")
    path = tmp_path / "cnn_digits_digits_s0_e1.pt"
    assert path.is_file() and checkpoint_path("cnn_digits", "digits", 0, 1, tmp_path) == path
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    x = torch.rand(5, 64)
    assert torch.equal(m1(x), m2(x)) and not m2.training
    with pytest.raises(CheckpointError, match=r"holds a 8x8x1-16C3p1-BN-MP2-32C3p1-BN-MP2-64FC-BN-10FC network, but "
                                              r"preset 'lenet' does not take its inputs \(layer 'conv1' .* takes images "
                                              r"of at least 5×5 pixels, but layer 'pool0' gives \(2, 2, 32\)\)"):
        load_checkpoint(path, preset="lenet")
    other = tmp_path / "other.pt"
    torch.manual_seed(0)
    save_checkpoint(build_preset("cnn_digits", (8, 8), batchnorm=False), other)
    with pytest.raises(CheckpointError, match=r"holds a 8x8x1-16C3p1-MP2-32C3p1-MP2-64FC-10FC network, but preset "
                                              r"'cnn_digits' on its inputs is 8x8x1-16C3p1-BN-MP2"):
        load_checkpoint(other, preset="cnn_digits", batchnorm=True)
    assert load_checkpoint(other, preset="cnn_digits")[1] == {}  # batch norm not stated: either is the preset
    with pytest.raises(CheckpointError, match=r"holds a 8x8x1-16C3p1-BN-.*10FC network, but preset 'tfc' has hidden "
                                              r"layers \[64, 64, 64\]"):
        load_checkpoint(path, preset="tfc")
    with pytest.raises(CheckpointError, match="takes 64 inputs, the dataset has 784 features"):
        load_checkpoint(path, preset="cnn_digits", in_features=784)
    # an MLP has batch norm by default (its cache name is the preset's); without, it has its own name
    logs.clear()
    mb, ib = load_or_train("tfc", digits, 1, 0, cache_dir=tmp_path, progress=False, log=logs.append)
    bn_path = tmp_path / "tfc_digits_s0_e1.pt"
    assert bn_path.is_file() and ib["batchnorm"] is True and isinstance(mb.bn0, BatchNorm)
    assert (ib["lr"], ib["dropout"], ib["label_smoothing"], ib["batch_size"]) == (4e-3, 0.0, 0.1, 64)
    assert tuple(recipe("tfc")) == (4e-3, 0.0, 0.1, 64) and tuple(recipe("sfc")) == (2e-3, 0.0, 0.1, 128)
    assert checkpoint_path("tfc", "digits", 0, 1, tmp_path, batchnorm=True) == bn_path
    assert checkpoint_path("tfc", "digits", 0, 1, tmp_path, batchnorm=False).name == "tfc-nobn_digits_s0_e1.pt"
    assert checkpoint_path("lenet", "digits", 0, 1, tmp_path, batchnorm=False).name == "lenet-nobn_digits_s0_e1.pt"
    with pytest.raises(CheckpointError, match=r"holds a 64-64FC-BN-64FC-BN-64FC-BN-10FC MLP, but preset 'tfc' without "
                                              r"batch norm was asked for"):
        load_checkpoint(bn_path, preset="tfc", batchnorm=False)
    # a checkpoint of an earlier version (an MLP without batch norm under the preset's own name) is refused with the way out
    torch.manual_seed(0)
    save_checkpoint(build_preset("tfc", 64, batchnorm=False), bn_path)
    with pytest.raises(CheckpointError, match=r"MLP presets have batch norm by default now: delete .*tfc_digits_s0_e1.pt "
                                              r"to retrain it, or ask for the MLP without batch norm \(--no-batchnorm"):
        load_or_train("tfc", digits, 1, 0, cache_dir=tmp_path, progress=False, log=logs.append)
    mn, inn = load_or_train("tfc", digits, 1, 0, cache_dir=tmp_path, batchnorm=False, progress=False, log=logs.append)
    assert (inn["lr"], inn["dropout"], "label_smoothing" in inn) == (1e-3, 0.2, False) and "bn0" not in mn.layers
    # a damaged file says how to retrain it, batch norm and underscores in the preset name included
    for name, args in (("cnn_digits_digits_s0_e1.pt", "--preset cnn_digits --dataset digits --seed 0 --epochs 1"),
                       ("tfc-nobn_digits_s3_e2.pt", "--preset tfc --no-batchnorm --dataset digits --seed 3 --epochs 2")):
        (tmp_path / name).write_bytes(b"junk")
        with pytest.raises(CheckpointError, match=f"retrain it: lowbit train {args} --out "):
            load_checkpoint(tmp_path / name)


def test_train_command(tmp_path, capsys):
    out = tmp_path / "c.pt"
    assert main(["train", "--preset", "cnn_digits", "--dataset", "digits", "--epochs", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cnn_digits float32 test accuracy" in text and "s per epoch) → " in text
    model, info = load_checkpoint(out, preset="cnn_digits")
    assert info["epochs"] == 1 and arch_string(model).startswith("8x8x1-16C3p1")
    assert main(["train", "--preset", "vgg", "--dataset", "digits"]) == 2
    assert "--preset must be one of tfc, sfc, lfc, lenet, cnn_digits, not 'vgg'" in capsys.readouterr().err


def test_lenet_recipe_and_a_checkpoint_of_another_recipe_is_named(tmp_path):
    """LeNet's recipe was chosen on the validation split (lr 2e-3, label smoothing 0.1); a cached
    checkpoint trained otherwise is reused with a note that says how it differs."""
    from lowbit.sw.train import load_or_train, recipe, save_checkpoint

    assert tuple(recipe("lenet")) == (2e-3, 0.0, 0.1, 128) and tuple(recipe("cnn_digits")) == (1e-3, 0.0, 0.0, 128)
    digits = load_dataset("digits")
    model, info = load_or_train("cnn_digits", digits, 1, 0, cache_dir=tmp_path, progress=False, log=lambda s: None)
    logs = []
    load_or_train("cnn_digits", digits, 1, 0, cache_dir=tmp_path, progress=False, log=logs.append)
    assert len(logs) == 1 and logs[0].startswith("reusing ")
    save_checkpoint(model, tmp_path / "cnn_digits_digits_s0_e1.pt", **{**info, "lr": 3e-3, "label_smoothing": 0.2})
    logs.clear()
    load_or_train("cnn_digits", digits, 1, 0, cache_dir=tmp_path, progress=False, log=logs.append)
    assert logs[1] == ("note: it was trained with lr 0.003, label smoothing 0.2, batch 128; cnn_digits's recipe is now "
                       "lr 0.001, label smoothing 0, batch 128: delete it to retrain with that")
