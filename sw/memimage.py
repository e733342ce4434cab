"""Memory image sets: the memories of a network, written with their manifest and verified.

:class:`ImageSet` collects the memories of a network (weights and per-channel
parameters of each layer, packed by :mod:`lowbit.sw.pack`), and
:meth:`ImageSet.write` puts them and ``manifest.json`` into a directory in one step: the
files are staged in a sibling directory which then replaces ``out_dir``
(:func:`lowbit.sw.util.replace_folder`), so a failure leaves no half-written output.
Callers add their own top-level manifest keys (folding, stream protocol, cycle counts)
through ``extra``. :func:`verify_images` re-hashes every file; :func:`load_bank` reads one
memory back. The file formats themselves are :mod:`lowbit.sw.memfiles` (re-exported here).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .ir import DenseLayer
from .memfiles import FORMATS, MemImageError, _check_format, _check_width, dumps, loads, read_memory, write_memory
from .pack import LANE_ORDER, ParamLayout, _words_list
from .specs import RequantSpec
from .util import replace_folder

__all__ = [
    "FORMATS", "DEFAULT_FORMATS", "MANIFEST_NAME", "MemImageError",
    "dumps", "loads", "write_memory", "read_memory",
    "Memory", "ImageSet", "LayerBanks", "write_images", "verify_images", "check_file", "load_bank",
]

DEFAULT_FORMATS = ("hex", "coe", "mif", "bin")
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "lowbit-memimage"
MANIFEST_VERSION = 1
KINDS = ("weights", "params")


# ---- image sets --------------------------------------------------------------------------
@dataclass(frozen=True)
class Memory:
    """One memory of an image set.

    Parameters
    ----------
    layer : int
        Layer index in the network.
    layer_name : str
    kind : str
        ``weights`` or ``params``.
    bank : int
        Bank (PE) index.
    width : int
        Word width in bits.
    words : tuple of int
        Contents, address 0 first.
    info : dict
        Further manifest keys describing the words (lanes, encoding, fields, addressing).
    """

    layer: int
    layer_name: str
    kind: str
    bank: int
    width: int
    words: tuple
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        for pname in ("layer", "bank"):
            v = getattr(self, pname)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{pname} must be a non-negative integer, not {v!r}")
        _check_width(self.width)
        words = tuple(_words_list(self.words, self.width, name=f"{self.stem} words"))
        if not words:
            raise ValueError(f"{self.stem} must hold at least one word, not 0")
        object.__setattr__(self, "words", words)

    @property
    def depth(self) -> int:
        return len(self.words)

    @property
    def stem(self) -> str:
        """File name without suffix."""
        return f"layer{self.layer}_{self.kind}_bank{self.bank}"


@dataclass
class LayerBanks:
    """The packed memories of one dense layer, ready for an :class:`ImageSet`.

    Its :class:`~lowbit.sw.ops.MatrixVectorOp` packs them (one place knows the layout);
    this keeps the older per-layer entry point. Build it with :meth:`from_layer`.
    """

    index: int
    layer: DenseLayer
    pe: int
    simd: int
    weights: list[list[int]]
    params: list[list[int]] | None
    layout: ParamLayout | None
    packed: tuple = field(default=(), repr=False)

    @classmethod
    def from_layer(cls, index: int, layer: DenseLayer, pe: int, simd: int,
                   spec: "RequantSpec | ParamLayout | None" = None, *, params: bool = True) -> "LayerBanks":
        """Pack ``layer`` folded at ``pe``×``simd``.

        ``spec`` sets the parameter word layout; ``None`` takes the narrowest layout for
        the layer (:meth:`ParamLayout.for_layer`). ``params=False`` leaves the parameter
        memories out (a top that ties them to constants).
        """
        from .ops import MatrixVectorOp  # the op imports this module for Memory

        op = MatrixVectorOp(layer, index).with_fold((pe, simd))
        packed = op.pack_memories(spec, params=params)
        words = lambda kind: [list(m.words) for m in packed if m.kind == kind]  # noqa: E731
        layout = (op.param_layout if spec is None else ParamLayout.from_spec(spec)) if params else None
        return cls(index, layer, int(pe), int(simd), words("weights"), words("params") if params else None, layout,
                   packed)

    def memories(self) -> list[Memory]:
        return list(self.packed)


_RESERVED = ("format", "version", "formats", "lane_order", "memories")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ImageSet:
    """The memories of a network, written together with their ``manifest.json``.

    Examples
    --------
    >>> images = ImageSet()
    >>> images.add_layer(0, layer, pe=16, simd=16, spec=spec)      # doctest: +SKIP
    >>> images.write("build/net/images", extra={"folding": ...})   # doctest: +SKIP
    """

    def __init__(self):
        self._memories: dict[tuple[int, str, int], Memory] = {}

    @property
    def memories(self) -> list[Memory]:
        """Memories in (layer, kind, bank) order."""
        return [self._memories[k] for k in sorted(self._memories, key=lambda k: (k[0], KINDS.index(k[1]), k[2]))]

    def add(self, memory: Memory) -> Memory:
        """Add one memory; a second memory for the same (layer, kind, bank) is refused."""
        if not isinstance(memory, Memory):
            raise TypeError(f"memory must be a Memory, not {memory!r}")
        key = (memory.layer, memory.kind, memory.bank)
        if key in self._memories:
            raise ValueError(f"memory (layer {key[0]}, {key[1]}, bank {key[2]}) must be added once, not twice")
        self._memories[key] = memory
        return memory

    def add_banks(self, banks: LayerBanks) -> list[Memory]:
        return [self.add(m) for m in banks.memories()]

    def add_layer(self, index: int, layer: DenseLayer, pe: int, simd: int,
                  spec: "RequantSpec | ParamLayout | None" = None, *, params: bool = True) -> list[Memory]:
        """Pack ``layer`` (see :meth:`LayerBanks.from_layer`) and add its memories."""
        return self.add_banks(LayerBanks.from_layer(index, layer, pe, simd, spec, params=params))

    def manifest(self, formats: Sequence[str] = DEFAULT_FORMATS, extra: dict | None = None) -> tuple[dict, dict]:
        """``(manifest, {file name: bytes})`` without touching the disk."""
        formats = tuple(_check_format(f) for f in formats)
        if not formats or len(set(formats)) != len(formats):
            raise ValueError(f"formats must be a non-empty list of distinct formats, not {formats!r}")
        if not self._memories:
            raise ValueError("an image set must hold at least one memory to be written, not 0")
        extra = dict(extra or {})
        clash = sorted(set(extra) & set(_RESERVED))
        if clash:
            raise ValueError(f"extra manifest keys must not replace {', '.join(_RESERVED)}, not {clash!r}")
        files: dict[str, bytes] = {}
        entries = []
        for mem in self.memories:
            entry = {"layer": mem.layer, "layer_name": mem.layer_name, "kind": mem.kind, "bank": mem.bank,
                     "width": mem.width, "depth": mem.depth, **mem.info, "files": {}}
            for fmt in formats:
                fname = mem.stem + FORMATS[fmt]
                data = dumps(mem.words, mem.width, fmt)
                files[fname] = data
                entry["files"][fmt] = {"file": fname, "sha256": _sha256(data)}
            entries.append(entry)
        manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "formats": list(formats),
                    "lane_order": LANE_ORDER, "memories": entries, **extra}
        return manifest, files

    def write(self, out_dir, extra: dict | None = None, formats: Sequence[str] = DEFAULT_FORMATS) -> dict:
        """Write every memory in every format plus ``manifest.json`` into ``out_dir``.

        ``out_dir`` belongs to the image set: it is replaced as a whole. An existing
        directory is only replaced when it is empty or holds a previous image set
        (a ``manifest.json`` of this format), so unrelated files are never deleted.

        Parameters
        ----------
        out_dir : path
        extra : dict, optional
            Additional top-level manifest keys (JSON-serialisable), e.g. folding, stream
            protocol, cycle counts. They may not replace the keys written here.
        formats : sequence of str
            Any of ``hex``, ``mem``, ``coe``, ``mif``, ``bin``.

        Returns
        -------
        dict
            The manifest as written.
        """
        out_dir = Path(out_dir)
        manifest, files = self.manifest(formats, extra)
        # Serialise before creating anything, so a non-JSON extra fails with nothing on disk.
        try:
            text = json.dumps(manifest, indent=2) + "\n"
        except TypeError as e:
            raise ValueError(f"extra manifest keys must be JSON-serialisable ({e})") from None
        replace_folder(out_dir, {**files, MANIFEST_NAME: text}, is_previous=holds_manifest,
                       what=f"a previous image set (a lowbit {MANIFEST_NAME})")
        return manifest


def holds_manifest(folder: Path) -> bool:
    """Whether ``folder`` holds a lowbit image-set manifest (a previous image set or build),
    i.e. may be replaced by a new one."""
    try:
        return json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8")).get("format") == MANIFEST_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_images(layers_banks: Iterable[LayerBanks], out_dir, formats: Sequence[str] = DEFAULT_FORMATS,
                 extra: dict | None = None) -> dict:
    """Write the memories of ``layers_banks`` (see :meth:`LayerBanks.from_layer`); returns the manifest."""
    images = ImageSet()
    for lb in layers_banks:
        if not isinstance(lb, LayerBanks):
            raise TypeError(f"layers_banks must hold LayerBanks (LayerBanks.from_layer), not {lb!r}")
        images.add_banks(lb)
    return images.write(out_dir, extra, formats)


# ---- reading back ------------------------------------------------------------------------
def _load_manifest(out_dir: Path) -> dict:
    path = out_dir / MANIFEST_NAME
    if not path.is_file():
        raise ValueError(f"{str(path)!r} does not exist")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{str(path)!r} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{str(path)!r} is not a lowbit memory image manifest")
    if manifest.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{str(path)!r} has manifest version {manifest.get('version')!r}, "
                         f"this lowbit reads {MANIFEST_VERSION}")
    return manifest


def check_file(out_dir: Path, rec: dict, what: str = "memory image") -> bytes:
    """The bytes of ``out_dir / rec["file"]`` if its sha256 is ``rec["sha256"]``, else a ValueError."""
    path = Path(out_dir) / rec["file"]
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} is missing (expected sha256 {rec['sha256']})")
    data = path.read_bytes()
    actual = _sha256(data)
    if actual != rec["sha256"]:
        raise ValueError(f"{what} {str(path)!r} has been modified: sha256 must be "
                         f"{rec['sha256']}, not {actual}")
    return data


def verify_images(out_dir) -> dict:
    """Re-hash every file listed in ``out_dir/manifest.json``; return the manifest.

    Raises
    ------
    ValueError
        For a missing file or a sha256 mismatch, naming the file and both hashes.
    """
    out_dir = Path(out_dir)
    manifest = _load_manifest(out_dir)
    for mem in manifest["memories"]:
        for rec in mem["files"].values():
            check_file(out_dir, rec)
    return manifest


def load_bank(out_dir, layer: int | str, kind: str, bank: int, fmt: str = "hex") -> list[int]:
    """Read one memory of an image set back (hash-checked and parsed).

    Parameters
    ----------
    out_dir : path
    layer : int or str
        Layer index or name.
    kind : str
        ``weights`` or ``params``.
    bank : int
    fmt : str
        Which of the written formats to read.
    """
    out_dir = Path(out_dir)
    manifest = _load_manifest(out_dir)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    key = "layer_name" if isinstance(layer, str) else "layer"
    found = [m for m in manifest["memories"] if m[key] == layer and m["kind"] == kind and m["bank"] == bank]
    if not found:
        raise ValueError(f"{str(out_dir)!r} holds no {kind} memory for layer {layer!r}, bank {bank!r}")
    mem = found[0]
    if fmt not in mem["files"]:
        raise ValueError(f"fmt must be one of the written formats {', '.join(mem['files'])}, not {fmt!r}")
    rec = mem["files"][fmt]
    data = check_file(out_dir, rec)
    return loads(data, fmt, mem["width"], mem["depth"], name=str(out_dir / rec["file"]))
