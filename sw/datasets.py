"""Datasets: an IDX (MNIST-format) reader and a small registry, all offline.

Every dataset is returned as :class:`Dataset` with **uint8 pixels** flattened to
``[samples, features]`` and int64 labels, so that quantizers and the hardware input
stream see one pixel type whatever the source:

``fashion-mnist``  Zalando's Fashion-MNIST (28×28, 10 classes). Looked up in ``data_dir``,
                   then ``$LOWBIT_DATA`` (the folder itself or its ``fashion-mnist``
                   subfolder), then Debian's ``dataset-fashion-mnist`` package folder
                   ``/usr/share/datasets/fashion-mnist``.
``mnist``          MNIST IDX files the user provides (``data_dir``, ``$LOWBIT_DATA`` or its
                   ``mnist`` subfolder); nothing is downloaded.
``digits``         scikit-learn's 8×8 digits (offline, 1,797 images). Its pixel values
                   0..16 are scaled to 0..255 (``round(v * 255 / 16)``) so they are uint8
                   like the others; a fixed, seeded 80/20 split gives train and test.
``FILE.npz``       the user's own data (``--data FILE.npz``; :func:`load_npz`): arrays
                   ``x_train``, ``y_train``, ``x_test``, ``y_test``; images uint8 0..255 of shape
                   ``[n, H, W]``, ``[n, H, W, C]`` (NHWC) or flat ``[n, features]``; labels integers
                   0..K−1 (K ≥ 2 classes, every test label among them). Nothing is converted:
                   float images or other dtypes are refused with what to do. Its name is the
                   file's stem and the first 8 hex digits of the arrays' SHA-256 (so checkpoints
                   and caches never mix two files of the same name).

Public API
----------
``read_idx(path)``                   an IDX array (``.gz`` or raw), validated
``load_dataset(name, data_dir=None)`` a :class:`Dataset` (``name`` may be a ``.npz`` path)
``load_npz(path)``                   the user's data from a ``.npz`` file, validated
``default_dataset(data_dir=None)``    ``("fashion-mnist", None)`` when present, otherwise
                                     ``("digits", "<plain message saying why>")``
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DatasetError", "Dataset", "read_idx", "load_dataset", "load_npz", "find_idx_dir", "default_dataset",
           "DATASETS", "DEBIAN_FASHION_DIR"]

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("fashion-mnist", "mnist", "digits")

# IDX type codes → numpy big-endian dtypes (from the format's definition by LeCun et al.).
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


class DatasetError(ValueError):
    """A dataset that cannot be found or does not validate."""


@dataclass
class Dataset:
    """Flattened uint8 images and int64 labels.

    Attributes
    ----------
    name : str
    x_train, x_test : ndarray of uint8, shape (n, features)
    y_train, y_test : ndarray of int64, shape (n,)
    image_shape : tuple of int
    classes : int
    source : str
        Where the data came from (a folder, or ``scikit-learn``).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple
    classes: int
    source: str

    @property
    def features(self) -> int:
        return int(self.x_train.shape[1])

    def describe(self) -> str:
        return (f"{self.name}: {len(self.x_train)} train / {len(self.x_test)} test images of "
                f"{'×'.join(map(str, self.image_shape))} uint8 pixels, {self.classes} classes (from {self.source})")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed when the name ends in ``.gz``).

    Checks the magic number (two zero bytes, a known type code, 1..4 dimensions), that
    every dimension is positive, and that the payload holds exactly the product of the
    dimensions; a corrupt or truncated file raises :class:`DatasetError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"IDX file {str(path)!r} does not exist")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetError(f"IDX file {str(path)!r} is corrupt or truncated (gzip: {e})") from None
    if len(data) < 4:
        raise DatasetError(f"IDX file {str(path)!r} is truncated: {len(data)} bytes, the header alone needs 4")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES or not 1 <= data[3] <= 4:
        raise DatasetError(
            f"IDX file {str(path)!r} has a bad magic number {data[:4].hex()} (expected 0000 then a type code "
            f"in {', '.join(f'{t:02x}' for t in _IDX_TYPES)} and 1..4 dimensions)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DatasetError(f"IDX file {str(path)!r} is truncated inside its {ndim} dimension sizes")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    if any(d == 0 for d in dims):
        raise DatasetError(f"IDX file {str(path)!r} has a zero dimension in {dims}")
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    payload = len(data) - 4 - 4 * ndim
    if payload != expected:
        what = "truncated" if payload < expected else "longer than its header says"
        raise DatasetError(f"IDX file {str(path)!r} is {what}: dimensions {dims} need {expected} bytes of data, "
                           f"it holds {payload}")
    arr = np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def _find_file(folder: Path, stems: tuple) -> Path | None:
    for stem in stems:
        for suffix in (".gz", ""):
            p = folder / (stem + suffix)
            if p.is_file():
                return p
    return None


def _candidate_dirs(name: str, data_dir) -> list[Path]:
    dirs = []
    for base in (data_dir, os.environ.get("LOWBIT_DATA")):
        if base:
            dirs += [Path(base), Path(base) / name]
    if name == "fashion-mnist":
        dirs.append(DEBIAN_FASHION_DIR)
    return dirs


def find_idx_dir(name: str, data_dir=None) -> Path | None:
    """The first candidate folder holding all four IDX files of ``name``, or None."""
    for d in _candidate_dirs(name, data_dir):
        if d.is_dir() and all(_find_file(d, stems) for stems in _IDX_FILES.values()):
            return d
    return None


def _load_idx_dataset(name: str, data_dir) -> Dataset:
    folder = find_idx_dir(name, data_dir)
    if folder is None:
        tried = ", ".join(repr(str(d)) for d in _candidate_dirs(name, data_dir)) or "no folder"
        hint = (" (install Debian's dataset-fashion-mnist package, or pass --data-dir)" if name == "fashion-mnist"
                else " (point --data-dir or LOWBIT_DATA at a folder of MNIST IDX files; nothing is downloaded)")
        raise DatasetError(f"dataset {name!r} not found: no folder with its four IDX files among {tried}{hint}")
    arrays = {key: read_idx(_find_file(folder, stems)) for key, stems in _IDX_FILES.items()}
    out = {}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DatasetError(f"{name} {split} images must be a 3-D uint8 IDX array, not {x.ndim}-D {x.dtype}")
        if y.ndim != 1:
            raise DatasetError(f"{name} {split} labels must be a 1-D IDX array, not {y.ndim}-D")
        if len(x) != len(y):
            raise DatasetError(f"{name} {split} set has {len(x)} images but {len(y)} labels (in {str(folder)!r})")
        if y.max() > 9:
            raise DatasetError(f"{name} {split} labels must be in 0..9, found {int(y.max())}")
        out[split] = (x.reshape(len(x), -1), y.astype(np.int64))
        shape = x.shape[1:]
    return Dataset(name, *out["train"], *out["test"], tuple(shape), 10, str(folder))


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    # 0..16 → 0..255 so every dataset hands out uint8 pixels (the hardware's input type).
    x = np.round(d.data * 255.0 / 16.0).astype(np.uint8)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(x))
    n_test = len(x) // 5
    te, tr = perm[:n_test], perm[n_test:]
    return Dataset("digits", x[tr], y[tr], x[te], y[te], (8, 8), 10, "scikit-learn")


NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: str | os.PathLike, *, param: str = "--data") -> Dataset:
    """The user's data set from a ``.npz`` file (see the module docstring); :class:`DatasetError`
    naming ``param``, the file and what is wrong for anything else."""
    import hashlib
    import zipfile

    path = Path(path)
    where = f"{param} {str(path)!r}"
    if not path.is_file():
        raise DatasetError(f"{where}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_ARRAYS if k not in f.files]
            if missing:
                raise DatasetError(f"{where} must hold the arrays {', '.join(NPZ_ARRAYS)}; missing "
                                   f"{', '.join(missing)} (it holds {', '.join(f.files) or 'nothing'})")
            arrays = {k: f[k] for k in NPZ_ARRAYS}
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{where} is not a readable .npz file ({type(e).__name__}: {e}); write it with "
                           "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)") from None
    shape = None
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8:
            raise DatasetError(f"{where}: x_{split} must hold uint8 pixels 0..255, not {x.dtype} (convert it, e.g. "
                               "np.clip(np.round(x * 255), 0, 255).astype(np.uint8) for images in [0, 1])")
        if x.ndim not in (2, 3, 4) or len(x) == 0 or 0 in x.shape:
            raise DatasetError(f"{where}: x_{split} must have shape [n, H, W], [n, H, W, C] or [n, features] with "
                               f"n > 0, not {list(x.shape)}")
        if shape is not None and x.shape[1:] != shape:
            raise DatasetError(f"{where}: x_test images have shape {list(x.shape[1:])} but x_train images "
                               f"{list(shape)}")
        shape = x.shape[1:]
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise DatasetError(f"{where}: y_{split} must be a 1-D array of integer labels, not {y.ndim}-D {y.dtype}")
        if len(y) != len(x):
            raise DatasetError(f"{where}: x_{split} has {len(x)} images but y_{split} {len(y)} labels")
        if y.min() < 0:
            raise DatasetError(f"{where}: y_{split} labels must be 0..K-1, found {int(y.min())}")
    classes = int(arrays["y_train"].max()) + 1
    if classes < 2:
        raise DatasetError(f"{where}: y_train must hold at least 2 classes (labels 0..K-1), found only label 0")
    if int(arrays["y_test"].max()) >= classes:
        raise DatasetError(f"{where}: y_test has label {int(arrays['y_test'].max())} but y_train only 0..{classes - 1}")
    digest = hashlib.sha256()
    for k in NPZ_ARRAYS:
        digest.update(f"{k}{arrays[k].shape}{arrays[k].dtype}".encode())
        digest.update(np.ascontiguousarray(arrays[k]).tobytes())
    flat = {k: (arrays[k].reshape(len(arrays[k]), -1) if k.startswith("x") else arrays[k].astype(np.int64))
            for k in NPZ_ARRAYS}
    image_shape = tuple(int(d) for d in (shape if len(shape) != 3 or shape[2] != 1 else shape[:2]))
    return Dataset(f"{path.stem}-{digest.hexdigest()[:8]}", flat["x_train"], flat["y_train"], flat["x_test"],
                   flat["y_test"], image_shape, classes, str(path))


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a registered dataset by name, or the user's ``.npz`` file (see the module docstring)."""
    if isinstance(name, (str, os.PathLike)) and str(name).endswith(".npz"):
        return load_npz(name)
    if name not in DATASETS:
        raise DatasetError(f"dataset must be one of {', '.join(DATASETS)} or a .npz file, not {name!r}")
    if name == "digits":
        return _load_digits()
    return _load_idx_dataset(name, data_dir)


def default_dataset(data_dir=None) -> tuple[str, str | None]:
    """``("fashion-mnist", None)`` when its files are found, else ``("digits", reason)``."""
    if find_idx_dir("fashion-mnist", data_dir) is not None:
        return "fashion-mnist", None
    return "digits", ("Fashion-MNIST not found (no IDX files in --data-dir, $LOWBIT_DATA or "
                      f"{DEBIAN_FASHION_DIR}); falling back to scikit-learn's 8×8 digits")
