"""Torch model files: a ``torch.export`` program (``.pt2``, the safe default) or, only when the user
trusts it, a whole pickled ``nn.Module`` — both handed to the one ATen-graph walker of :mod:`.torch`."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .common import Imported, ModelImportError
from .torch import _batched, _export, _first_line, convert_program

__all__ = ["load_torch_file"]


def _image_chw(image_shape) -> tuple[int, int, int]:
    shape = tuple(image_shape) + ((1,) if len(image_shape) == 2 else ())
    if len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
        raise ModelImportError(f"image_shape must be (H, W) or (H, W, C) of positive integers, not {image_shape!r}")
    return int(shape[2]), int(shape[0]), int(shape[1])


def _load_program(path: Path, where: str):
    try:
        program = torch.export.load(str(path))
    except Exception as e:  # noqa: BLE001 - a truncated/corrupted archive fails in many ways inside torch
        raise ModelImportError(f"{where} is not a readable torch.export program (.pt2): {type(e).__name__}: "
                               f"{_first_line(e)}") from None
    if not isinstance(program, torch.export.ExportedProgram):
        raise ModelImportError(f"{where} holds a {type(program).__name__}, not a torch.export ExportedProgram")
    return program


def _load_pickled_module(path: Path, where: str, image_shape) -> Imported:
    try:
        obj = torch.load(str(path), weights_only=False, map_location="cpu")
    except Exception as e:  # noqa: BLE001
        raise ModelImportError(f"{where} could not be loaded with torch.load: {type(e).__name__}: "
                               f"{_first_line(e)}") from None
    if isinstance(obj, dict):
        raise ModelImportError(f"{where} holds a dict (a state_dict or a checkpoint), not a module: lowbit needs the "
                               "whole module (torch.save(model)) or, better, a torch.export program: "
                               "torch.export.save(torch.export.export(model.eval(), (example,)), 'model.pt2')")
    if not isinstance(obj, nn.Module):
        raise ModelImportError(f"{where} holds a {type(obj).__module__}.{type(obj).__qualname__}, not a "
                               "torch.nn.Module")
    if image_shape is None:
        raise ModelImportError(f"{where} is a pickled module: tracing it needs the data's image shape "
                               "(image_shape=(H, W) or (H, W, C))")
    c, h, w = _image_chw(image_shape)
    model = copy.deepcopy(obj).float().eval()
    what = f"torch module {path.name} ({type(obj).__module__}.{type(obj).__qualname__})"
    failures = []
    for example in (torch.zeros(1, c, h, w), torch.zeros(1, c * h * w)):  # NCHW images first, then flat rows
        try:
            with torch.no_grad():
                model(example)
            program = _export(model, example, what)
        except Exception as e:  # noqa: BLE001 - the module refuses this layout (to run or to trace): try the next
            failures.append(f"{tuple(example.shape)}: {type(e).__name__}: {_first_line(e)}")
            continue
        return convert_program(program, source=what, reference=_batched(model))
    raise ModelImportError(f"{where}: the module runs neither on NCHW images nor on flat rows of the data's "
                           f"{h}x{w}x{c} images ({'; '.join(failures)})")


def load_torch_file(path, *, trust_pickle: bool = False, image_shape: tuple | None = None) -> Imported:
    """A user's torch model file as an :class:`~.common.Imported` (then :func:`~.common.finish_import`).

    ``.pt2``: a ``torch.export.save``-d program, loaded with ``torch.export.load`` (the safe default);
    its input shape is the program's. Any other file is taken for a whole module pickled with
    ``torch.save(model)``: refused unless ``trust_pickle`` (loading it runs code from the file), then
    ``torch.load(weights_only=False)`` and traced on an example built from ``image_shape`` (the data's
    ``(H, W)`` or ``(H, W, C)``): NCHW ``(1, C, H, W)`` first, flat ``(1, H·W·C)`` if the module refuses
    that. ModelImportError naming the path for a missing, truncated or corrupted file.
    """
    path = Path(path)
    where = f"torch model file {str(path)!r}"
    if not path.is_file():
        raise ModelImportError(f"{where}: no such file")
    if path.suffix.lower() == ".pt2":
        imported = convert_program(_load_program(path, where), source=f"torch.export program {path.name}")
        if image_shape is not None:
            c, h, w = _image_chw(image_shape)
            expected = (h, w, c) if len(imported.graph.input_shape) == 3 else (h * w * c,)
            if imported.graph.input_shape != expected:
                raise ModelImportError(f"{where} takes inputs of shape {imported.source_shape} (NHWC "
                                       f"{imported.graph.input_shape}) but the data's images are {h}x{w}x{c}")
        return imported
    if not trust_pickle:
        raise ModelImportError(f"{where} is not a torch.export program (.pt2): it would be loaded as a pickled "
                               "module, and loading it runs code from the file. Pass --trust-pickle "
                               "(trust_pickle=True) only for a file you trust, or save the model with "
                               "torch.export.save(torch.export.export(model.eval(), (example,)), 'model.pt2')")
    return _load_pickled_module(path, where, image_shape)
