"""Float32 MLP training, determinism and checkpoints (on scikit-learn's digits)."""

import pytest
import torch

from lowbit.sw.datasets import load_dataset
from lowbit.sw.train import (CheckpointError, PRESETS, build_mlp, load_checkpoint, load_or_train, save_checkpoint,
                             train_mlp)


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
