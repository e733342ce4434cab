"""Float32 training of the MLP presets, with checkpoints (torch, CPU).

Presets follow FINN/Brevitas's fully connected networks: three hidden layers of 64
(``tfc``), 256 (``sfc``) or 1024 (``lfc``) ReLU units, then a linear classifier. There is
no batch norm, so a trained network maps onto the integer IR layer for layer (dropout
regularises instead). A preset is a :class:`~lowbit.sw.frontends.graph.FloatGraph` builder:
layers ``fc0, relu0, drop0, fc1, …, fc3`` (the IR layers keep the names ``fc0 …``).

The model input is ``pixels / 256`` (uint8 pixels, see :mod:`lowbit.sw.datasets`): a
power-of-two scale, so ``pixel >> (8 - b)`` is exactly a b-bit quantization of it.

Public API
----------
``mlp(in_features, hidden, classes, dropout)``   a FloatGraph MLP (``MLP`` is the same builder)
``build_mlp(preset, in_features, classes)``      a fresh preset FloatGraph
``train_mlp(preset, dataset, epochs, seed, ...)``  train, returns ``(model, info)``
``evaluate(model, x_uint8, y)``                 float32 accuracy in [0, 1]
``save_checkpoint(model, path, **info)`` / ``load_checkpoint(path, preset=None, in_features=None)``
``load_or_train(preset, dataset, epochs, seed, cache_dir="build/models", ...)``
    reuse ``<cache_dir>/<preset>_<dataset>_s<seed>_e<epochs>.pt`` or train and save it.

Checkpoints (``torch.save`` of plain data, loaded with ``weights_only=True``): ``{"format":
"lowbit-mlp", "version": 2, "graph": FloatGraph.config(), "info": {...}, "state_dict": ...}``.
Version 1 files (``"arch"`` and ``linears.N.weight``/``bias`` keys) still load.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .datasets import Dataset, load_dataset
from .frontends.graph import Dropout, FloatGraph, GraphError, Linear, ReLU
from .util import atomic_path

__all__ = ["PRESETS", "MLP", "mlp", "build_mlp", "train_mlp", "evaluate", "predict", "to_input", "save_checkpoint",
           "load_checkpoint", "load_or_train", "checkpoint_path", "CheckpointError", "set_threads",
           "DEFAULT_EPOCHS", "mlp_arch"]

PRESETS = {"tfc": (64, 64, 64), "sfc": (256, 256, 256), "lfc": (1024, 1024, 1024)}
DEFAULT_EPOCHS = 10
CHECKPOINT_FORMAT = "lowbit-mlp"
CHECKPOINT_VERSION = 2
INPUT_SCALE = 1.0 / 256.0


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or of another architecture."""


def set_threads(n: int | None = None) -> None:
    """One thread unless ``n`` or ``$LOWBIT_THREADS`` says otherwise: on shared 2-core machines
    more threads spin against other jobs and run many times slower."""
    torch.set_num_threads(int(n or os.environ.get("LOWBIT_THREADS", 1)))


def to_input(pixels) -> torch.Tensor:
    """uint8 pixels → the model's float input ``pixels / 256``."""
    return torch.as_tensor(np.asarray(pixels), dtype=torch.float32) * INPUT_SCALE


def mlp(in_features: int, hidden, classes: int = 10, dropout: float = 0.2) -> FloatGraph:
    """ReLU MLP: ``fc{i}, relu{i}, drop{i}`` per hidden layer, then the linear classifier ``fc{n}``.

    The Linear layers are created in order (each draws its initial weights from torch's
    RNG), so a seed gives the same weights as the torch ``MLP`` class this replaces.
    ``dropout`` (after each hidden ReLU, training only) of 0 leaves the Dropout layers out.
    """
    sizes = [int(in_features), *map(int, hidden), int(classes)]
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append((f"fc{i}", Linear(a, b)))
        if i < len(sizes) - 2:
            layers.append((f"relu{i}", ReLU()))
            if dropout:
                layers.append((f"drop{i}", Dropout(dropout)))
    return FloatGraph((sizes[0],), layers)


MLP = mlp  # the torch class of earlier versions; now the FloatGraph builder


def mlp_arch(graph: FloatGraph) -> dict:
    """``{"in_features", "hidden", "classes"}`` of a graph's Linear layers."""
    sizes = [graph.input_shape[0], *(l.out_features for l in graph.linears)]
    return {"in_features": sizes[0], "hidden": sizes[1:-1], "classes": sizes[-1]}


def _check_preset(preset: str) -> tuple:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {preset!r}")
    return PRESETS[preset]


def describe_arch(arch: dict) -> str:
    return "-".join(str(n) for n in [arch["in_features"], *arch["hidden"], arch["classes"]])


def build_mlp(preset: str, in_features: int, classes: int = 10, dropout: float = 0.2) -> FloatGraph:
    return mlp(in_features, _check_preset(preset), classes, dropout)


@torch.no_grad()
def predict(model: nn.Module, pixels, batch: int = 2048) -> np.ndarray:
    """Class indices of the float model for uint8 pixels."""
    model.eval()
    out = [model(to_input(pixels[i:i + batch])).argmax(1).numpy() for i in range(0, len(pixels), batch)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def evaluate(model: nn.Module, pixels, labels) -> float:
    """Float32 accuracy (fraction) on uint8 ``pixels``."""
    return float(np.mean(predict(model, pixels) == np.asarray(labels)))


def _progress(iterable, **kw):
    from tqdm import tqdm

    return tqdm(iterable, disable=kw.pop("disable", None) or not sys.stderr.isatty(), leave=False, **kw)


def fit(model: nn.Module, x_train, y_train, *, epochs: int, seed: int, lr: float = 1e-3, batch_size: int = 128,
        weight_decay: float = 0.0, desc: str = "train", progress: bool = True, forward=None, params=None) -> None:
    """Adam with cosine decay over ``epochs``; a seeded generator drives the shuffling.

    ``forward`` (defaults to ``model``) lets quantization-aware training reuse this loop with
    a fake-quantized forward pass.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, not {epochs!r}")
    forward = forward or model
    gen = torch.Generator().manual_seed(int(seed))
    x = to_input(x_train)
    y = torch.as_tensor(np.asarray(y_train), dtype=torch.long)
    params = list(params if params is not None else model.parameters())
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * ((len(x) + batch_size - 1) // batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        bar = _progress(range(0, len(x), batch_size), desc=f"{desc} epoch {epoch + 1}/{epochs}",
                        disable=not progress)
        for i in bar:
            idx = perm[i:i + batch_size]
            loss = loss_fn(forward(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()


def train_mlp(preset: str, dataset: Dataset | str = "fashion-mnist", epochs: int = DEFAULT_EPOCHS, seed: int = 0, *,
              data_dir=None, lr: float = 1e-3, batch_size: int = 128, dropout: float = 0.2,
              progress: bool = True) -> tuple[FloatGraph, dict]:
    """Train a preset MLP in float32; deterministic for a given seed (single process, CPU).

    Returns
    -------
    model : FloatGraph
    info : dict
        ``preset, dataset, seed, epochs, test_accuracy``.
    """
    _check_preset(preset)
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)
    set_threads()
    torch.manual_seed(int(seed))
    model = build_mlp(preset, ds.features, ds.classes, dropout)
    fit(model, ds.x_train, ds.y_train, epochs=epochs, seed=seed, lr=lr, batch_size=batch_size,
        desc=f"{preset} {ds.name}", progress=progress)
    info = {"preset": preset, "dataset": ds.name, "seed": int(seed), "epochs": int(epochs),
            "test_accuracy": evaluate(model, ds.x_test, ds.y_test)}
    return model, info


def save_checkpoint(model: FloatGraph, path, **info) -> Path:
    """Save the graph (its layer list, so a mismatched load is refused), its weights and ``info``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "graph": model.config(), "info": info,
                    "state_dict": model.state_dict()}, tmp)
    return path


_CACHE_NAME = re.compile(r"(?P<preset>[a-z]+)_(?P<dataset>.+)_s(?P<seed>-?\d+)_e(?P<epochs>\d+)\.pt")


def _retrain_hint(path: Path) -> str:
    """How to make a readable checkpoint at ``path`` (the cache name says preset, dataset, seed, epochs)."""
    import shlex

    m = _CACHE_NAME.fullmatch(path.name)
    if m and m["preset"] in PRESETS:
        args = f"--preset {m['preset']} --dataset {m['dataset']} --seed {m['seed']} --epochs {m['epochs']}"
    else:
        args = f"--preset {'|'.join(PRESETS)} --dataset <name>"
    return f"; retrain it: lowbit train {args} --out {shlex.quote(str(path))}"


def _v1_graph(ck: dict) -> tuple[FloatGraph, dict]:
    """A version-1 checkpoint (the torch MLP class: ``arch``, ``linears.N.*`` keys) as a FloatGraph."""
    arch = ck["arch"]
    graph = mlp(arch["in_features"], arch["hidden"], arch["classes"])
    state = {re.sub(r"^linears\.(\d+)\.", r"fc\1.", k): v for k, v in ck["state_dict"].items()}
    return graph, state


def load_checkpoint(path, *, preset: str | None = None, in_features: int | None = None) -> tuple[FloatGraph, dict]:
    """Load a checkpoint; ``preset``/``in_features`` state the architecture the caller expects.

    Raises :class:`CheckpointError` naming both architectures when they differ, and saying
    how to retrain when the file cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    hint = _retrain_hint(path)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - anything unreadable is "not a checkpoint"
        raise CheckpointError(f"{str(path)!r} is not a lowbit checkpoint ({type(e).__name__}: {e}){hint}") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a lowbit checkpoint (no {CHECKPOINT_FORMAT!r} header){hint}")
    version = ck.get("version")
    try:
        if version == 1:
            model, state = _v1_graph(ck)
        elif version == CHECKPOINT_VERSION:
            model, state = FloatGraph.from_config(ck["graph"]), ck["state_dict"]
        else:
            raise CheckpointError(f"{str(path)!r} is a lowbit checkpoint of version {version!r}; this lowbit reads "
                                  f"versions 1 and {CHECKPOINT_VERSION}{hint}")
        arch = mlp_arch(model)
    except (KeyError, TypeError, IndexError, GraphError) as e:
        raise CheckpointError(f"{str(path)!r} is a damaged lowbit checkpoint of version {version!r} "
                              f"({type(e).__name__}: {e}){hint}") from None
    if preset is not None:
        want = list(_check_preset(preset))
        if list(arch["hidden"]) != want:
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds a {describe_arch(arch)} MLP, but preset {preset!r} has hidden "
                f"layers {want}")
    if in_features is not None and arch["in_features"] != in_features:
        raise CheckpointError(f"checkpoint {str(path)!r} takes {arch['in_features']} inputs, the dataset has "
                              f"{in_features} features")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(str(e).split())  # torch's message spans lines
        raise CheckpointError(f"{str(path)!r}: its weights do not fit its layer list ({detail}){hint}") from None
    model.eval()
    info = dict(ck.get("info", {}))
    info.setdefault("preset", next((p for p, h in PRESETS.items() if list(h) == list(arch["hidden"])), "custom"))
    return model, info


def checkpoint_path(preset: str, dataset: str, seed: int, epochs: int, cache_dir="build/models") -> Path:
    return Path(cache_dir) / f"{preset}_{dataset}_s{seed}_e{epochs}.pt"


def load_or_train(preset: str, dataset: Dataset | str = "fashion-mnist", epochs: int = DEFAULT_EPOCHS, seed: int = 0, *,
                  cache_dir="build/models", data_dir=None, progress: bool = True, log=print) -> tuple[FloatGraph, dict]:
    """Reuse the cached checkpoint for (preset, dataset, seed, epochs), or train and save it."""
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)
    path = checkpoint_path(preset, ds.name, seed, epochs, cache_dir)
    if path.is_file():
        model, info = load_checkpoint(path, preset=preset, in_features=ds.features)
        if log:
            log(f"reusing {path} ({preset} on {ds.name}, float32 test accuracy "
                f"{100 * info.get('test_accuracy', float('nan')):.2f}%)")
        return model, info
    if log:
        log(f"training {preset} on {ds.name} for {epochs} epochs (seed {seed}) → {path}")
    model, info = train_mlp(preset, ds, epochs, seed, progress=progress)
    save_checkpoint(model, path, **info)
    if log:
        log(f"float32 test accuracy {100 * info['test_accuracy']:.2f}%")
    return model, info
