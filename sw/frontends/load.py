"""One entry point for a user's float model file: the frontend is chosen by the file's suffix.

=================  ==========================================================================
``.pt2``           a ``torch.export`` program (``torch.export.save``): the safe default
``.onnx``          a float ONNX model (a QONNX model is refused here: ``lowbit import`` reads it)
``.pt``/``.pth``   a whole pickled ``nn.Module`` (``torch.save(model)``): loading it runs code
                   from the file, so only with ``trust_pickle=True`` (``--trust-pickle``)
=================  ==========================================================================
"""

from __future__ import annotations

from pathlib import Path

from .common import Imported, ModelImportError

__all__ = ["load_float_model", "MODEL_SUFFIXES"]

MODEL_SUFFIXES = (".pt2", ".onnx", ".pt", ".pth")


def load_float_model(path, *, trust_pickle: bool = False, image_shape: tuple | None = None) -> Imported:
    """The user's float model at ``path`` converted layer by layer (see :class:`~.common.Imported`);
    ``image_shape`` (the data's ``(H, W)`` or ``(H, W, C)``) gives a pickled module its example input."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ModelImportError(f"--model must be a torch.export program (.pt2), an ONNX model (.onnx) or, with "
                               f"--trust-pickle, a pickled torch module (.pt, .pth), not {str(path)!r}")
    if not path.is_file():
        raise ModelImportError(f"--model {str(path)!r}: no such file")
    if suffix == ".onnx":
        from .onnx import convert_onnx

        return convert_onnx(path)
    from .torch_files import load_torch_file

    return load_torch_file(path, trust_pickle=trust_pickle, image_shape=image_shape)
