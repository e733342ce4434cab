"""IDX reader and dataset registry."""

import gzip
import struct

import numpy as np
import pytest

from lowbit.sw import datasets
from lowbit.sw.datasets import DatasetError, default_dataset, load_dataset, read_idx


def idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_set(folder, n_train=12, n_test=5, gz=True, n_train_labels=None):
    rng = np.random.default_rng(0)
    parts = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 4, 4), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train_labels or n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 4, 4), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in parts.items():
        data = idx_bytes(arr)
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as f:
                f.write(data)
        else:
            (folder / name).write_bytes(data)
    return parts


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    arr = np.arange(2 * 3 * 5, dtype=np.int32).reshape(2, 3, 5) - 7
    p = tmp_path / ("a.idx.gz" if gz else "a.idx")
    if gz:
        with gzip.open(p, "wb") as f:
            f.write(idx_bytes(arr))
    else:
        p.write_bytes(idx_bytes(arr))
    out = read_idx(p)
    assert out.dtype == np.int32 and np.array_equal(out, arr)


def test_bad_magic(tmp_path):
    p = tmp_path / "bad.idx"
    p.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(DatasetError, match="bad magic number 01020801"):
        read_idx(p)


def test_truncated_raw(tmp_path):
    data = idx_bytes(np.zeros((3, 4, 4), np.uint8))
    p = tmp_path / "t.idx"
    p.write_bytes(data[:-5])
    with pytest.raises(DatasetError, match=r"is truncated: dimensions \(3, 4, 4\) need 48 bytes of data, it holds 43"):
        read_idx(p)
    p.write_bytes(data + b"x")
    with pytest.raises(DatasetError, match="longer than its header says"):
        read_idx(p)
    p.write_bytes(data[:6])
    with pytest.raises(DatasetError, match="truncated inside its 3 dimension sizes"):
        read_idx(p)


def test_truncated_gzip(tmp_path):
    raw = gzip.compress(idx_bytes(np.zeros((30, 4, 4), np.uint8)))
    p = tmp_path / "t.idx.gz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="corrupt or truncated"):
        read_idx(p)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_idx(tmp_path / "nope.gz")


def test_fashion_from_data_dir(tmp_path):
    parts = write_set(tmp_path / "fm")
    ds = load_dataset("fashion-mnist", tmp_path / "fm")
    assert ds.x_train.shape == (12, 16) and ds.x_train.dtype == np.uint8
    assert np.array_equal(ds.y_test, parts["t10k-labels-idx1-ubyte"].astype(np.int64))
    assert ds.image_shape == (4, 4) and ds.source == str(tmp_path / "fm")


def test_mnist_from_env_subfolder(tmp_path, monkeypatch):
    write_set(tmp_path / "mnist", gz=False)
    monkeypatch.setenv("LOWBIT_DATA", str(tmp_path))
    assert load_dataset("mnist").x_test.shape == (5, 16)


def test_count_mismatch(tmp_path):
    write_set(tmp_path, n_train_labels=11)
    with pytest.raises(DatasetError, match="train set has 12 images but 11 labels"):
        load_dataset("mnist", tmp_path)


def test_not_found_and_unknown(tmp_path, monkeypatch):
    monkeypatch.delenv("LOWBIT_DATA", raising=False)
    with pytest.raises(DatasetError, match="dataset 'mnist' not found.*nothing is downloaded"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DatasetError, match="dataset must be one of fashion-mnist, mnist, digits or a .npz file, not 'cifar'"):
        load_dataset("cifar")


def test_digits_are_uint8():
    ds = load_dataset("digits")
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape[1] == 64
    assert ds.x_train.max() == 255 and len(ds.x_train) + len(ds.x_test) == 1797
    again = load_dataset("digits")
    assert np.array_equal(ds.y_test, again.y_test)


def test_default_dataset_fallback(tmp_path, monkeypatch):
    monkeypatch.delenv("LOWBIT_DATA", raising=False)
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_DIR", tmp_path / "none")
    name, why = default_dataset()
    assert name == "digits" and "falling back to scikit-learn's 8×8 digits" in why
    write_set(tmp_path / "fm")
    assert default_dataset(tmp_path / "fm") == ("fashion-mnist", None)
