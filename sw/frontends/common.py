"""What every importer of a user's model shares: its error, the input preprocessing it folds,
the NCHW → NHWC weight permutations, and the check against the source framework.

A user's model takes images in *its* layout (torch and ONNX: NCHW ``[batch, C, H, W]``, or flat
``[batch, features]`` for an MLP) and *its* preprocessing of the uint8 pixels (``pixel / 255``,
optionally ``Normalize(mean, std)`` per channel). A lowbit :class:`~.graph.FloatGraph` takes NHWC
images and ``pixel / 256`` (:data:`lowbit.sw.train.INPUT_SCALE`). An importer therefore

1. converts the source's layers one by one into FloatGraph layers (conv weights stay in torch's
   ``[OC, IC, KH, KW]``, which is the FloatGraph's own parameter order), permuting a dense layer's
   input columns once where the source flattens an NCHW tensor (:func:`nchw_columns`),
2. folds the preprocessing into the first weighted layer (:func:`fold_preprocessing`), and
3. runs :func:`check_against` — the graph on lowbit's input against the framework's own forward
   pass on the source's input, on real images — before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .graph import Conv2d, Dropout, Flatten, FloatGraph, GraphError, Linear

__all__ = ["ModelImportError", "Preprocessing", "Imported", "finish_import", "nchw_columns", "fold_preprocessing", "source_input",
           "check_against", "CHECK_TOLERANCE", "DEFAULT_CHECK_IMAGES"]

#: a float import must agree with its source within this fraction of the largest |logit|
CHECK_TOLERANCE = 1e-4
DEFAULT_CHECK_IMAGES = 1000


class ModelImportError(ValueError):
    """A user's model that lowbit cannot import: says which node/module, its type and what is supported."""


@dataclass(frozen=True)
class Preprocessing:
    """How the source model's float input comes from uint8 pixels:
    ``x = (pixel / divisor − mean[c]) / std[c]`` (``mean``/``std`` per channel, one value for all
    channels, or empty for none)."""

    divisor: float = 255.0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self):
        if not (isinstance(self.divisor, (int, float)) and math.isfinite(self.divisor) and self.divisor > 0):
            raise ModelImportError(f"the pixel divisor must be a positive number, not {self.divisor!r}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != len(self.std):
            raise ModelImportError(f"normalize needs as many means as standard deviations, not "
                                   f"{len(self.mean)} means and {len(self.std)} deviations")
        if not all(math.isfinite(v) for v in self.mean) or not all(math.isfinite(v) and v > 0 for v in self.std):
            raise ModelImportError(f"normalize needs finite means and positive finite deviations, not "
                                   f"mean {self.mean} std {self.std}")

    @classmethod
    def parse(cls, divisor: float = 255.0, normalize: str | None = None) -> "Preprocessing":
        """From the command line: ``--pixel-divisor D`` and ``--normalize MEAN[,MEAN…]/STD[,STD…]``."""
        if not normalize:
            return cls(divisor)
        try:
            mean, std = normalize.split("/")
            return cls(divisor, tuple(float(v) for v in mean.split(",")), tuple(float(v) for v in std.split(",")))
        except ValueError:
            raise ModelImportError(f"--normalize must be MEAN[,MEAN...]/STD[,STD...] (e.g. 0.2860/0.3530), not "
                                   f"{normalize!r}") from None

    def per_channel(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` as float64 arrays of length ``channels``."""
        if not self.mean:
            return np.zeros(channels), np.ones(channels)
        if len(self.mean) not in (1, channels):
            raise ModelImportError(f"normalize gives {len(self.mean)} channel values but the model's input has "
                                   f"{channels} channels")
        return (np.broadcast_to(np.array(self.mean), channels).copy(),
                np.broadcast_to(np.array(self.std), channels).copy())

    def describe(self) -> str:
        base = f"pixel/{self.divisor:g}"
        return base if not self.mean else f"({base} - {list(self.mean)}) / {list(self.std)}"


def nchw_columns(weight, chw: tuple[int, int, int]):
    """A dense weight ``[out, C·H·W]`` reading an NCHW-flattened tensor, as ``[out, H·W·C]`` reading the
    NHWC-flattened one (lowbit's order): the same function of the same tensor."""
    c, h, w = chw
    wt = torch.as_tensor(weight) if not isinstance(weight, np.ndarray) else weight
    if wt.shape[1] != c * h * w:
        raise ModelImportError(f"a dense layer after a flatten of a {c}x{h}x{w} (CxHxW) tensor must have {c * h * w} "
                               f"inputs, not {wt.shape[1]}")
    out = wt.reshape(wt.shape[0], c, h, w)
    out = out.permute(0, 2, 3, 1) if isinstance(out, torch.Tensor) else out.transpose(0, 2, 3, 1)
    return out.reshape(wt.shape[0], c * h * w)


def _first_weighted(graph: FloatGraph):
    for name, layer in graph.layers.items():
        if layer.weighted:
            return name, layer
        if not isinstance(layer, (Flatten, Dropout)):
            raise ModelImportError(f"the preprocessing can only be folded into a first layer with weights; layer "
                                   f"{name!r} ({layer.kind}) comes before it")
    raise ModelImportError("the model has no layer with weights")


@torch.no_grad()
def fold_preprocessing(graph: FloatGraph, pre: Preprocessing) -> FloatGraph:
    """``graph`` (which takes the source's ``x = (pixel/divisor − mean)/std``) rewritten in place to take
    lowbit's ``pixel / 256``: the first weighted layer's weights times ``(256/divisor)/std[c]`` per input
    channel ``c``, its bias minus ``Σ w·mean[c]/std[c]``. Exact in real arithmetic; a padded first
    convolution with a nonzero mean is refused (its zero padding would stop being the mean's pixel)."""
    from ..train import INPUT_SCALE

    name, layer = _first_weighted(graph)
    shape = graph.input_shape
    channels = shape[2] if len(shape) == 3 else 1
    mean, std = pre.per_channel(channels)
    gain = (1.0 / INPUT_SCALE / pre.divisor) / std  # per input channel
    offset = mean / std  # x_src = gain·x_lowbit − offset
    w = layer.weight.detach().double()
    if isinstance(layer, Conv2d):
        if any(layer.padding) and np.any(offset != 0):
            raise ModelImportError(f"normalize with a nonzero mean cannot be folded into layer {name!r}: it pads its "
                                   f"input with zeros ({layer.describe()}), which would no longer be the "
                                   "normalized zero; use a model without that padding or without the mean")
        g = torch.as_tensor(gain).reshape(1, -1, 1, 1)
        o = torch.as_tensor(offset).reshape(1, -1, 1, 1)
        shift = (w * o).sum(dim=(1, 2, 3))
    else:
        per_feature = np.resize(np.arange(channels), w.shape[1])  # NHWC flat: channel = index mod C
        g = torch.as_tensor(gain[per_feature]).reshape(1, -1)
        shift = (w * torch.as_tensor(offset[per_feature]).reshape(1, -1)).sum(dim=1)
    new_w = w * g
    bias = (layer.bias.detach().double() if layer.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64))
    layer.weight.copy_(new_w.to(layer.weight.dtype))
    new_b = (bias - shift).to(layer.weight.dtype)
    if layer.bias is None:
        if not np.any(offset != 0):
            return graph
        layer.bias = torch.nn.Parameter(new_b)
    else:
        layer.bias.copy_(new_b)
    return graph


def source_input(pixels, image_shape: tuple[int, ...], source_shape: tuple[int, ...], pre: Preprocessing) -> np.ndarray:
    """The source model's float32 input for uint8 ``pixels`` (rows ``[n, features]`` in NHWC order, as
    lowbit's datasets hold them): ``image_shape`` is the NHWC image ``(H, W, C)`` (or ``(F,)``),
    ``source_shape`` one input of the source without the batch axis (``(C, H, W)`` or ``(F,)``)."""
    p = np.asarray(pixels, dtype=np.float64)
    n = len(p)
    channels = image_shape[2] if len(image_shape) == 3 else 1
    mean, std = pre.per_channel(channels)
    x = p.reshape(n, -1, channels) / pre.divisor
    x = ((x - mean) / std).reshape(n, *image_shape) if len(image_shape) == 3 else ((x - mean) / std).reshape(n, -1)
    if len(source_shape) == 3:  # NCHW
        if len(image_shape) != 3:
            raise ModelImportError(f"the model takes images {source_shape} (CxHxW) but the data are flat")
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x.reshape(n, *source_shape), dtype=np.float32)


@torch.no_grad()
def check_against(graph: FloatGraph, reference, pixels, source_shape, pre: Preprocessing, *, what: str,
                  tolerance: float = CHECK_TOLERANCE, batch: int = 1000) -> float:
    """Run ``graph`` on lowbit's input and ``reference`` (the framework's own execution: float32
    ``[n, *source_shape]`` → logits ``[n, classes]``) on the source's input for the uint8 ``pixels``;
    return ``max|Δ| / max|logit|``, or raise :class:`ModelImportError` naming ``what`` when it is above
    ``tolerance``. Nothing is written before this passes."""
    from ..train import to_input

    pixels = np.asarray(pixels)
    if len(pixels) == 0:
        raise ModelImportError("the import check needs at least one image (--check-images)")
    graph = graph.eval()
    worst, peak = 0.0, 0.0
    for i in range(0, len(pixels), batch):
        chunk = pixels[i:i + batch]
        ours = graph(to_input(chunk)).double().numpy()
        theirs = np.asarray(reference(source_input(chunk, graph.input_shape, tuple(source_shape), pre)),
                            dtype=np.float64)
        if theirs.shape != ours.shape:
            raise ModelImportError(f"{what} gives outputs of shape {theirs.shape[1:]} but the imported graph "
                                   f"{ours.shape[1:]}")
        worst = max(worst, float(np.abs(ours - theirs).max()))
        peak = max(peak, float(np.abs(theirs).max()))
    rel = worst / peak if peak > 0 else worst
    if not rel <= tolerance:
        raise ModelImportError(f"the imported graph disagrees with {what} on {len(pixels)} images: max|Δ| = "
                               f"{worst:.3g} = {rel:.2e} · max|logit| ({peak:.3g}), more than the {tolerance:g} "
                               "allowed; nothing was written")
    return rel


@dataclass
class Imported:
    """A source model converted layer by layer, before its preprocessing is folded.

    ``graph`` takes NHWC images (or flat features) in the *source's* float scale; ``source_shape``
    is one source input without the batch axis (``(C, H, W)`` or ``(F,)``); ``reference`` the
    framework's own execution, float32 ``[n, *source_shape]`` → logits (torch forward,
    onnxruntime); ``source`` names it in messages ("torch.export program net.pt2"); ``ops`` lists
    the source ops/modules met, in order (printed by the importer)."""

    graph: FloatGraph
    source_shape: tuple[int, ...]
    reference: Callable[[np.ndarray], np.ndarray]
    source: str
    ops: list[str] = field(default_factory=list)


def finish_import(imported: Imported, pixels, pre: Preprocessing = Preprocessing(), *,
                  tolerance: float = CHECK_TOLERANCE) -> tuple[FloatGraph, float]:
    """Fold ``pre`` into the imported graph and check it against the source on ``pixels`` (uint8 rows,
    NHWC order): ``(graph taking lowbit's pixel/256, max|Δ|/max|logit|)``; ModelImportError if it
    disagrees (the check runs on a copy of the source's parameters: the source is never modified)."""
    graph = fold_preprocessing(imported.graph, pre)
    rel = check_against(graph, imported.reference, pixels, imported.source_shape, pre, what=imported.source,
                        tolerance=tolerance)
    return graph, rel
