"""Float32 training of the presets (MLPs and CNNs), with checkpoints (torch, CPU).

MLP presets follow FINN/Brevitas's fully connected networks: three hidden layers of 64
(``tfc``), 256 (``sfc``) or 1024 (``lfc``) ReLU units, then a linear classifier, with a batch
norm after each hidden layer (folded away before quantization; ``batchnorm=False`` leaves it
out and trains with dropout, the earlier recipe). Each preset's training defaults are its
:func:`recipe`. CNN presets (:data:`CNN_PRESETS`) stack stages of
Conv → BatchNorm → ReLU → MaxPool, then dense layers with batch norm: ``lenet`` is WAGE's
LeNet-5 variant 32C5-MP2-64C5-MP2-512FC-10 (valid padding, 28→24→12→8→4), ``cnn_digits`` a
small CNN for the 8×8 digits that CI can afford. A preset is a
:class:`~lowbit.sw.frontends.graph.FloatGraph` builder; layers are named per stage ``i``:
``conv{i}``/``fc{i}``, ``bn{i}``, ``relu{i}``, ``pool{i}``, ``drop{i}`` (the IR layers keep
the weighted layers' and pools' names), and ``flatten``.

The model input is ``pixels / 256`` (uint8 pixels, see :mod:`lowbit.sw.datasets`): a
power-of-two scale, so ``pixel >> (8 - b)`` is exactly a b-bit quantization of it. A CNN's
input is the image ``[H, W, 1]``; it also takes the dataset's flat pixel rows (the same
order, see :meth:`FloatGraph.run`).

Public API
----------
``mlp(in_features, hidden, classes, dropout, *, batchnorm=False)``  a FloatGraph MLP (``MLP`` is the same)
``cnn(input_shape, convs, hidden, classes, *, batchnorm=True, dropout=0)``  a FloatGraph CNN
``build_preset(preset, input_shape, classes, *, batchnorm=None, dropout=None)``  a fresh preset graph
``build_mlp(preset, in_features, classes)``      a fresh MLP preset graph
``train_preset(preset, dataset, epochs, seed, ...)``  train, returns ``(model, info)`` (``train_mlp``: the same)
``evaluate(model, x_uint8, y)``                 float32 accuracy in [0, 1]
``save_checkpoint(model, path, **info)`` / ``load_checkpoint(path, preset=None, in_features=None)``
``load_or_train(preset, dataset, epochs, seed, cache_dir="build/models", ...)``
    reuse ``<cache_dir>/<model_name>_<dataset>_s<seed>_e<epochs>.pt`` or train and save it
    (``model_name``: the preset, ``-bn``/``-nobn`` when its batch norm is not the preset's default).

Checkpoints (``torch.save`` of plain data, loaded with ``weights_only=True``): ``{"format":
"lowbit-mlp", "version": 2, "graph": FloatGraph.config(), "info": {...}, "state_dict": ...}``.
Version 1 files (``"arch"`` and ``linears.N.weight``/``bias`` keys) still load.
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .datasets import Dataset, load_dataset
from .frontends.graph import (BatchNorm, Conv2d, Dropout, Flatten, FloatGraph, GraphError, Linear, MaxPool2d,
                              ReLU)
from .util import atomic_path

__all__ = ["PRESETS", "CNN_PRESETS", "PRESET_NAMES", "ConvStage", "CnnPreset", "MLP", "mlp", "cnn", "build_mlp",
           "build_preset", "train_preset", "train_mlp", "evaluate", "predict", "to_input", "save_checkpoint",
           "load_checkpoint", "load_or_train", "checkpoint_path", "model_name", "CheckpointError", "set_threads",
           "DEFAULT_EPOCHS", "mlp_arch", "arch_string", "validation_split"]

PRESETS = {"tfc": (64, 64, 64), "sfc": (256, 256, 256), "lfc": (1024, 1024, 1024)}  # the MLPs' hidden layers


class ConvStage(NamedTuple):
    """One CNN stage: Conv2d(``channels``, ``kernel``×``kernel``, zero ``padding``) → BN → ReLU → MaxPool(``pool``)
    (``pool`` 1: none)."""

    channels: int
    kernel: int
    padding: int = 0
    pool: int = 2


class CnnPreset(NamedTuple):
    """A CNN preset: its conv stages, then hidden dense layers (BN → ReLU → dropout ``dropout``), then
    the classifier. ``image`` is the (height, width) it is made for."""

    convs: tuple[ConvStage, ...]
    hidden: tuple[int, ...]
    image: tuple[int, int]
    dropout: float = 0.0


CNN_PRESETS = {
    # WAGE's LeNet-5 variant 32C5-MP2-64C5-MP2-512FC-10, valid padding: 28→24→12→8→4 (≈ 4.3 M MACs per image)
    "lenet": CnnPreset((ConvStage(32, 5), ConvStage(64, 5)), (512,), (28, 28)),
    # 8×8 digits: 8→8→4→4→2 (same padding), 128 features into 64 hidden units (≈ 0.09 M MACs per image)
    "cnn_digits": CnnPreset((ConvStage(16, 3, 1), ConvStage(32, 3, 1)), (64,), (8, 8)),
}
PRESET_NAMES = (*PRESETS, *CNN_PRESETS)


class TrainRecipe(NamedTuple):
    """A preset's float32 training defaults (Adam with cosine decay, 10 epochs)."""

    lr: float
    dropout: float
    label_smoothing: float
    batch_size: int = 128


#: the MLPs with batch norm (their default), per preset: chosen on a 5,000-image validation split carved from
#: Fashion-MNIST's training set (10 epochs, seed 0; the test set never looked at). SFC, 13 runs over lr
#: 1e-3..4e-3, dropout 0..0.3, label smoothing 0/0.1, batch 64..256: the earlier recipe with batch norm
#: (lr 1e-3, dropout 0.2) 90.14%, lr 2e-3 without dropout 90.82%, and with label smoothing 0.1 90.98%.
#: TFC, 5 runs: 88.38%, 89.98% and 89.66% for the same three; then 56 runs over lr 1e-3/2e-3/4e-3 x dropout
#: 0/0.1/0.2 x label smoothing 0/0.1 x batch 64/128/256 (and weight decay 1e-5, 1e-4), the 4 best repeated for
#: seeds 1 and 2: lr 4e-3, label smoothing 0.1, batch 64 90.05% mean of 3 seeds (90.04-90.06) against 89.66%
#: (89.40-89.98) for the earlier lr 2e-3 at batch 128. LFC was not searched (each run costs ~4 SFC runs): it
#: takes SFC's.
MLP_RECIPES = {"tfc": TrainRecipe(4e-3, 0.0, 0.1, 64), "sfc": TrainRecipe(2e-3, 0.0, 0.1), "lfc": TrainRecipe(2e-3, 0.0, 0.1)}
#: the MLPs without batch norm: the earlier default, kept so that their checkpoints stay the same
MLP_RECIPE_NO_BN = TrainRecipe(1e-3, 0.2, 0.0)
#: the CNNs with batch norm, where searched (the same way): LeNet at lr 1e-3 without label smoothing
#: 92.56% on the validation split, at lr 2e-3 with label smoothing 0.1 (SFC's recipe) 93.10%. Others: lr 1e-3.
CNN_RECIPES = {"lenet": TrainRecipe(2e-3, CNN_PRESETS["lenet"].dropout, 0.1)}
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


def mlp(in_features: int, hidden, classes: int = 10, dropout: float = 0.2, *, batchnorm: bool = False) -> FloatGraph:
    """ReLU MLP: ``fc{i}, relu{i}, drop{i}`` per hidden layer, then the linear classifier ``fc{n}``.

    The Linear layers are created in order (each draws its initial weights from torch's
    RNG), so a seed gives the same weights as the torch ``MLP`` class this replaces.
    ``dropout`` (after each hidden ReLU, training only) of 0 leaves the Dropout layers out.
    ``batchnorm`` puts ``bn{i}`` between each hidden ``fc{i}`` (then without bias: the batch
    norm's shift is its bias) and ``relu{i}``.
    """
    sizes = [int(in_features), *map(int, hidden), int(classes)]
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        hidden_layer = i < len(sizes) - 2
        layers.append((f"fc{i}", Linear(a, b, bias=not (batchnorm and hidden_layer))))
        if hidden_layer:
            layers += _activation(i, b, batchnorm, dropout)
    return FloatGraph((sizes[0],), layers)


MLP = mlp  # the torch class of earlier versions; now the FloatGraph builder


def _activation(i: int, channels: int, batchnorm: bool, dropout: float, pool: int = 1) -> list:
    """Stage ``i``'s layers after its weighted layer: ``bn{i}``, ``relu{i}``, ``pool{i}``, ``drop{i}`` as asked."""
    return ([(f"bn{i}", BatchNorm(channels))] if batchnorm else []) + [(f"relu{i}", ReLU())] + (
        [(f"pool{i}", MaxPool2d(pool))] if pool > 1 else []) + ([(f"drop{i}", Dropout(dropout))] if dropout else [])


def cnn(input_shape, convs, hidden=(), classes: int = 10, *, batchnorm: bool = True, dropout: float = 0.0) -> FloatGraph:
    """A CNN on NHWC images: per :class:`ConvStage` ``conv{i}`` (no bias with batch norm), ``bn{i}``,
    ``relu{i}``, ``pool{i}``; ``flatten``; per hidden size ``fc{i}``, ``bn{i}``, ``relu{i}``,
    ``drop{i}`` (``dropout`` > 0); the classifier ``fc{n}``. Layers are created in order (torch's RNG)."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 2:
        shape += (1,)
    layers, channels = [], shape[2]
    for i, st in enumerate(ConvStage(*c) for c in convs):
        layers.append((f"conv{i}", Conv2d(channels, st.channels, st.kernel, padding=st.padding, bias=not batchnorm)))
        layers += _activation(i, st.channels, batchnorm, 0.0, st.pool)
        channels = st.channels
    layers.append(("flatten", Flatten()))
    features = FloatGraph(shape, layers).output_shape[0]  # a shape check too, before any dense weights are drawn
    sizes = [features, *map(int, hidden), int(classes)]
    for j, (a, b) in enumerate(zip(sizes, sizes[1:]), start=len(convs)):
        last = j == len(convs) + len(sizes) - 2
        layers.append((f"fc{j}", Linear(a, b, bias=last or not batchnorm)))
        if not last:
            layers += _activation(j, b, batchnorm, dropout)
    return FloatGraph(shape, layers)


def mlp_arch(graph: FloatGraph) -> dict:
    """``{"in_features", "hidden", "classes"}`` of a graph's Linear layers."""
    sizes = [math.prod(graph.input_shape), *(l.out_features for l in graph.linears)]
    return {"in_features": sizes[0], "hidden": sizes[1:-1], "classes": sizes[-1]}


def _is_mlp(graph: FloatGraph) -> bool:
    return all(isinstance(l, (Linear, BatchNorm, ReLU, Dropout)) for l in graph.layers.values())


def _has_batchnorm(graph: FloatGraph) -> bool:
    return any(isinstance(l, BatchNorm) for l in graph.layers.values())


def arch_string(graph: FloatGraph) -> str:
    """A graph's architecture in the papers' notation: ``28x28x1-32C5-BN-MP2-…-512FC-BN-10FC``
    (padding ``p1``, stride ``s2``; ReLU, flatten and dropout left out)."""
    parts = ["x".join(map(str, graph.input_shape))]
    for layer in graph.layers.values():
        if isinstance(layer, Conv2d):
            (kh, kw), (sh, _), (ph, _) = layer.kernel_size, layer.stride, layer.padding
            parts.append(f"{layer.out_channels}C{kh if kh == kw else f'{kh}x{kw}'}" + (f"p{ph}" if ph else "") +
                         (f"s{sh}" if sh > 1 else ""))
        elif isinstance(layer, BatchNorm):
            parts.append("BN")
        elif isinstance(layer, MaxPool2d):
            parts.append(f"MP{layer.kernel_size[0]}")
        elif isinstance(layer, Linear):
            parts.append(f"{layer.out_features}FC")
    return "-".join(parts)


def _check_preset(preset: str) -> tuple:
    if preset not in PRESET_NAMES:
        raise ValueError(f"preset must be one of {', '.join(PRESET_NAMES)}, not {preset!r}")
    return PRESETS.get(preset) or CNN_PRESETS[preset]


def _batchnorm(preset: str, batchnorm: bool | None) -> bool:
    """The batch-norm choice for ``preset``: its default (every preset has it) unless stated."""
    _check_preset(preset)
    return True if batchnorm is None else bool(batchnorm)


def describe_arch(arch: dict) -> str:
    return "-".join(str(n) for n in [arch["in_features"], *arch["hidden"], arch["classes"]])


def build_mlp(preset: str, in_features: int, classes: int = 10, dropout: float = 0.2, *,
              batchnorm: bool = False) -> FloatGraph:
    if preset not in PRESETS:
        raise ValueError(f"MLP preset must be one of {', '.join(PRESETS)}, not {preset!r}")
    return mlp(in_features, PRESETS[preset], classes, dropout, batchnorm=batchnorm)


def build_preset(preset: str, input_shape, classes: int = 10, *, batchnorm: bool | None = None,
                 dropout: float | None = None) -> FloatGraph:
    """A fresh preset graph for inputs of ``input_shape`` (an image ``(H, W)``/``(H, W, C)`` or, for an
    MLP, a feature count); ``batchnorm``/``dropout`` ``None``: the preset's defaults."""
    spec = _check_preset(preset)
    bn = _batchnorm(preset, batchnorm)
    shape = (int(input_shape),) if isinstance(input_shape, (int, np.integer)) else tuple(map(int, input_shape))
    if preset in PRESETS:
        return build_mlp(preset, math.prod(shape), classes, recipe(preset, bn).dropout if dropout is None else dropout,
                         batchnorm=bn)
    if len(shape) not in (2, 3):
        raise ValueError(f"preset {preset!r} takes images: input_shape must be (height, width[, channels]), "
                         f"not {shape}")
    return cnn(shape, spec.convs, spec.hidden, classes, batchnorm=bn, dropout=spec.dropout if dropout is None else dropout)


def model_name(preset: str, batchnorm: bool | None = None) -> str:
    """The preset's name, with ``-bn``/``-nobn`` when ``batchnorm`` is not the preset's default (cache names)."""
    bn = _batchnorm(preset, batchnorm)
    return preset if bn == _batchnorm(preset, None) else f"{preset}-{'bn' if bn else 'nobn'}"


def dataset_input_shape(ds: Dataset, preset: str) -> tuple[int, ...]:
    """What a preset graph takes from ``ds``: its flat pixel rows (MLPs) or its images ``(H, W, C)`` (CNNs;
    a data set of flat feature rows has no image shape and is refused for them)."""
    if preset in PRESETS:
        return (ds.features,)
    if len(ds.image_shape) == 1:
        raise ValueError(f"preset {preset!r} is a CNN and takes images, but data set {ds.name} holds flat rows of "
                         f"{ds.features} features; give images of shape [n, H, W] or [n, H, W, C]")
    return tuple(ds.image_shape) if len(ds.image_shape) == 3 else (*ds.image_shape, 1)


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
        weight_decay: float = 0.0, desc: str = "train", progress: bool = True, forward=None, params=None,
        label_smoothing: float = 0.0) -> None:
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
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
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


def validation_split(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` index arrays carving ``size`` of ``n`` training images out for validation
    (one fixed permutation, the same for every seed, so runs compare on the same images)."""
    if not isinstance(size, (int, np.integer)) or not 0 <= size < n:
        raise ValueError(f"validation must be an integer in [0, {n}), not {size!r}")
    perm = np.random.default_rng(12345).permutation(n)
    return np.sort(perm[size:]), np.sort(perm[:size])


def recipe(preset: str, batchnorm: bool | None = None) -> TrainRecipe:
    """The training defaults of ``preset`` with (or without) batch norm (see :data:`MLP_RECIPES`)."""
    bn = _batchnorm(preset, batchnorm)
    if preset in PRESETS:
        return MLP_RECIPES[preset] if bn else MLP_RECIPE_NO_BN
    if bn and preset in CNN_RECIPES:
        return CNN_RECIPES[preset]
    return TrainRecipe(1e-3, CNN_PRESETS[preset].dropout, 0.0)


def train_preset(preset: str, dataset: Dataset | str = "fashion-mnist", epochs: int = DEFAULT_EPOCHS, seed: int = 0, *,
                 data_dir=None, lr: float | None = None, batch_size: int | None = None, dropout: float | None = None,
                 batchnorm: bool | None = None, weight_decay: float = 0.0, validation: int = 0,
                 label_smoothing: float | None = None, progress: bool = True) -> tuple[FloatGraph, dict]:
    """Train a preset in float32; deterministic for a given seed (single process, CPU).

    ``lr``, ``batch_size``, ``dropout`` and ``label_smoothing`` left ``None`` take the preset's :func:`recipe`.
    ``validation`` > 0 holds that many training images out (:func:`validation_split`) and
    reports the accuracy on them, for choosing hyperparameters without the test set.

    Returns
    -------
    model : FloatGraph
    info : dict
        ``preset, dataset, seed, epochs, batchnorm, lr, weight_decay, batch_size, dropout,
        label_smoothing, test_accuracy`` (and ``validation, val_accuracy``).
    """
    _check_preset(preset)
    bn = _batchnorm(preset, batchnorm)
    defaults = recipe(preset, bn)
    lr = defaults.lr if lr is None else lr
    batch_size = defaults.batch_size if batch_size is None else batch_size
    dropout = defaults.dropout if dropout is None else dropout
    label_smoothing = defaults.label_smoothing if label_smoothing is None else label_smoothing
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)
    x_train, y_train = ds.x_train, ds.y_train
    if validation:
        tr, va = validation_split(len(x_train), validation)
        x_train, y_train, x_val, y_val = x_train[tr], y_train[tr], x_train[va], y_train[va]
    set_threads()
    torch.manual_seed(int(seed))
    model = build_preset(preset, dataset_input_shape(ds, preset), ds.classes, batchnorm=bn, dropout=dropout)
    fit(model, x_train, y_train, epochs=epochs, seed=seed, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
        desc=f"{model_name(preset, bn)} {ds.name}", progress=progress, label_smoothing=label_smoothing)
    info = {"preset": preset, "dataset": ds.name, "seed": int(seed), "epochs": int(epochs), "batchnorm": bn,
            "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size, "dropout": dropout}
    if label_smoothing:  # only when used: the info of a checkpoint trained without it stays what it was
        info["label_smoothing"] = label_smoothing
    if validation:
        info.update(validation=int(validation), val_accuracy=evaluate(model, x_val, y_val))
    info["test_accuracy"] = evaluate(model, ds.x_test, ds.y_test)
    return model, info


train_mlp = train_preset  # the name of earlier versions


def save_checkpoint(model: FloatGraph, path, **info) -> Path:
    """Save the graph (its layer list, so a mismatched load is refused), its weights and ``info``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "graph": model.config(), "info": info,
                    "state_dict": model.state_dict()}, tmp)
    return path


def _cache_name() -> re.Pattern:
    presets = "|".join(sorted(map(re.escape, PRESET_NAMES), key=len, reverse=True))  # longest first: cnn_digits
    return re.compile(rf"(?P<preset>{presets})(?P<bn>-bn|-nobn)?_(?P<dataset>.+)_s(?P<seed>-?\d+)_e(?P<epochs>\d+)\.pt")


def _retrain_hint(path: Path) -> str:
    """How to make a readable checkpoint at ``path`` (the cache name says preset, dataset, seed, epochs)."""
    import shlex

    m = _cache_name().fullmatch(path.name)
    if m:
        bn = {"-bn": " --batchnorm", "-nobn": " --no-batchnorm"}.get(m["bn"], "")
        args = f"--preset {m['preset']}{bn} --dataset {m['dataset']} --seed {m['seed']} --epochs {m['epochs']}"
    else:
        args = f"--preset {'|'.join(PRESET_NAMES)} --dataset <name>"
    return f"; retrain it: lowbit train {args} --out {shlex.quote(str(path))}"


def _v1_graph(ck: dict) -> tuple[FloatGraph, dict]:
    """A version-1 checkpoint (the torch MLP class: ``arch``, ``linears.N.*`` keys) as a FloatGraph."""
    arch = ck["arch"]
    graph = mlp(arch["in_features"], arch["hidden"], arch["classes"])
    state = {re.sub(r"^linears\.(\d+)\.", r"fc\1.", k): v for k, v in ck["state_dict"].items()}
    return graph, state


def _check_architecture(path: Path, model: FloatGraph, preset: str, batchnorm: bool | None) -> None:
    """CheckpointError unless ``model`` has the layers of ``preset`` (with batch norm or without, when stated)."""
    _check_preset(preset)
    where = f"checkpoint {str(path)!r}"
    has_bn = _has_batchnorm(model)
    if preset in PRESETS:
        arch, want = mlp_arch(model), list(PRESETS[preset])
        if not _is_mlp(model) or list(arch["hidden"]) != want:
            held = f"a {describe_arch(arch)} MLP" if _is_mlp(model) else f"a {arch_string(model)} network"
            raise CheckpointError(f"{where} holds {held}, but preset {preset!r} has hidden layers {want}")
        if batchnorm is not None and has_bn != bool(batchnorm):
            raise CheckpointError(f"{where} holds a {arch_string(model)} MLP, but preset {preset!r} "
                                  f"{'with' if batchnorm else 'without'} batch norm was asked for")
        return
    try:
        with torch.device("meta"):  # the preset's layer list without drawing weights (nor random numbers)
            want = build_preset(preset, model.input_shape, model.output_shape[0],
                                batchnorm=has_bn if batchnorm is None else batchnorm)
    except (GraphError, ValueError) as e:
        raise CheckpointError(f"{where} holds a {arch_string(model)} network, but preset {preset!r} does not take "
                              f"its inputs ({e})") from None

    def layers(graph):  # any dropout rate is the same architecture
        return [{k: v for k, v in layer.items() if k != "p"} for layer in graph.config()["layers"]]

    if layers(model) != layers(want):
        raise CheckpointError(f"{where} holds a {arch_string(model)} network, but preset {preset!r} on its inputs "
                              f"is {arch_string(want)}")


def load_checkpoint(path, *, preset: str | None = None, in_features: int | None = None,
                    batchnorm: bool | None = None) -> tuple[FloatGraph, dict]:
    """Load a checkpoint; ``preset``/``in_features``/``batchnorm`` state the architecture the caller
    expects (``in_features``: the flat input size, a CNN's H·W·C).

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
        _check_architecture(path, model, preset, batchnorm)
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
    if _is_mlp(model):
        info.setdefault("preset", next((p for p, h in PRESETS.items() if list(h) == list(arch["hidden"])), "custom"))
    return model, info


def checkpoint_path(preset: str, dataset: str, seed: int, epochs: int, cache_dir="build/models", *,
                    batchnorm: bool | None = None) -> Path:
    return Path(cache_dir) / f"{model_name(preset, batchnorm)}_{dataset}_s{seed}_e{epochs}.pt"


def load_or_train(preset: str, dataset: Dataset | str = "fashion-mnist", epochs: int = DEFAULT_EPOCHS, seed: int = 0, *,
                  cache_dir="build/models", data_dir=None, batchnorm: bool | None = None, progress: bool = True,
                  log=print) -> tuple[FloatGraph, dict]:
    """Reuse the cached checkpoint for (preset and its batch norm, dataset, seed, epochs), or train and save it."""
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)
    bn = _batchnorm(preset, batchnorm)
    path = checkpoint_path(preset, ds.name, seed, epochs, cache_dir, batchnorm=bn)
    name = model_name(preset, bn)
    if path.is_file():
        try:
            model, info = load_checkpoint(path, preset=preset, in_features=ds.features, batchnorm=bn)
        except CheckpointError as e:
            if not (preset in PRESETS and batchnorm is None):
                raise
            # most likely an earlier version's default MLP, which had no batch norm
            other = checkpoint_path(preset, ds.name, seed, epochs, cache_dir, batchnorm=False).name
            raise CheckpointError(f"{e}. MLP presets have batch norm by default now: delete {path} to retrain it, "
                                  f"or ask for the MLP without batch norm (--no-batchnorm, batchnorm=False), cached "
                                  f"as {other}") from None
        if log:
            log(f"reusing {path} ({name} on {ds.name}, float32 test accuracy "
                f"{100 * info.get('test_accuracy', float('nan')):.2f}%)")
            want = recipe(preset, bn) if preset in PRESET_NAMES else None
            had = (info.get("lr"), info.get("label_smoothing", 0.0), info.get("batch_size", 128))
            if want is not None and had[0] is not None and had != (want.lr, want.label_smoothing, want.batch_size):
                # an earlier version's recipe: say so rather than pass it off as today's default
                log(f"note: it was trained with lr {had[0]:g}, label smoothing {had[1]:g}, batch {had[2]}; {preset}'s "
                    f"recipe is now lr {want.lr:g}, label smoothing {want.label_smoothing:g}, batch {want.batch_size}: "
                    f"delete it to retrain with that")
        return model, info
    if log:
        log(f"training {name} on {ds.name} for {epochs} epochs (seed {seed}) → {path}")
    model, info = train_preset(preset, ds, epochs, seed, batchnorm=bn, progress=progress)
    save_checkpoint(model, path, **info)
    if log:
        log(f"float32 test accuracy {100 * info['test_accuracy']:.2f}%")
    return model, info
