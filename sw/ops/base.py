"""What every hardware op owns, and the streams between ops.

A hardware op is one kind of hardware layer (FINN's custom-op idea, without string
attributes): a frozen dataclass that owns, in one place,

* its golden function (:meth:`HardwareOp.golden`, exact integers),
* its fold options and the cycles of a fold (:meth:`fold_options`, :meth:`cycles`),
* its input and output stream shapes (:attr:`in_stream`, :attr:`out_stream`),
* its packed memories, built once (:meth:`memories`),
* its cost estimate (:meth:`cost`) and its manifest entry (:meth:`manifest_entry`).

Whole-network cycles, cost, golden runs and manifests are loops over ops
(:mod:`lowbit.sw.ops.lower`); the Amaranth component of an op is found through
``lowbit.hw.registry`` (``sw`` never imports ``hw``).

An op is first made *unfolded* by :func:`lowbit.sw.ops.lower` (enough for the golden model
and for listing fold options); :meth:`HardwareOp.with_fold` returns the folded op that
streams, memories, cost and the manifest need.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from ..formats import IntFormat, from_twos_complement, signed_range, to_twos_complement
from ..pack import divisors, pack_words, unpack_words

__all__ = ["StreamShape", "HardwareOp", "OpResult", "FoldError", "divisors"]


class FoldError(ValueError):
    """An op used without a fold where it needs one, or with a fold it cannot take."""


@dataclass(frozen=True)
class StreamShape:
    """A valid/ready stream of an op: how one image's values travel, beat by beat.

    Each beat carries ``lanes`` lanes of ``lane_bits`` bits (lane k at bits
    ``[k·b, (k+1)·b)``, :mod:`lowbit.sw.pack`'s bit order); ``beats_per_vector`` beats form
    one vector (its elements in order, ``lanes`` per beat) and an image is ``vectors``
    vectors. Lanes hold the codes of ``format``, or, with ``format=None``, raw signed
    two's-complement integers of ``lane_bits`` bits (a last layer's logits).
    """

    lanes: int
    lane_bits: int
    beats_per_vector: int
    vectors: int = 1
    format: IntFormat | None = None

    def __post_init__(self):
        for name in ("lanes", "lane_bits", "beats_per_vector", "vectors"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if self.format is not None and self.format.bits != self.lane_bits:
            raise ValueError(f"lane_bits must be {self.format.bits} for {self.format} lanes, not {self.lane_bits}")

    @property
    def width(self) -> int:
        """Bits of one beat (the stream's payload width)."""
        return self.lanes * self.lane_bits

    @property
    def elements(self) -> int:
        """Values per image."""
        return self.lanes * self.beats_per_vector * self.vectors

    @property
    def beats_per_image(self) -> int:
        return self.beats_per_vector * self.vectors

    def encode(self, values) -> list[int]:
        """Beats of a batch of images, ``values`` of shape ``[images, elements]``, image after image."""
        v = np.asarray(values, np.int64).reshape(-1, self.elements)
        if self.format is not None:
            codes = self.format.encode(v)
        else:
            lo, hi = signed_range(self.lane_bits)
            if v.size and (v.min() < lo or v.max() > hi):
                raise ValueError(f"values must fit {self.lane_bits}-bit signed lanes ({lo}..{hi}), "
                                 f"not {int(v.min())}..{int(v.max())}")
            codes = to_twos_complement(v, self.lane_bits)
        return pack_words(codes.reshape(-1, self.lanes), self.lane_bits)

    def decode(self, beats) -> np.ndarray:
        """Inverse of :meth:`encode`: int64 values of shape ``[images, elements]``."""
        codes = unpack_words(list(beats), self.lanes, self.lane_bits).astype(np.int64)
        if self.format is not None:
            vals = self.format.decode(codes)
        else:
            vals = from_twos_complement(codes, self.lane_bits)
        return np.asarray(vals, np.int64).reshape(-1, self.elements)

    def to_json(self) -> dict:
        return {"lanes": self.lanes, "lane_bits": self.lane_bits, "beats_per_vector": self.beats_per_vector,
                "vectors": self.vectors, "beats_per_image": self.beats_per_image,
                "format": None if self.format is None else str(self.format)}

    @classmethod
    def from_json(cls, d: dict) -> "StreamShape":
        from ..formats import parse_format

        fmt = d.get("format")
        return cls(int(d["lanes"]), int(d["lane_bits"]), int(d["beats_per_vector"]), int(d.get("vectors", 1)),
                   None if fmt is None else parse_format(fmt, name="stream format"))


@dataclass(frozen=True)
class OpResult:
    """The golden model's view of one op over a batch: its output values and, where the op
    accumulates, the accumulators they came from (for saturation reports)."""

    out: np.ndarray
    acc: np.ndarray | None = None


class HardwareOp(abc.ABC):
    """Base of every hardware op (subclasses are frozen dataclasses with ``index`` and ``fold``).

    Subclasses set :attr:`kind` (the name the manifest and the registry use) and implement
    the abstract members. ``index`` is the position of the IR layer the op came from.
    """

    kind: ClassVar[str]

    # ---- identity -------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The IR layer's name."""

    @property
    def folded(self) -> bool:
        return getattr(self, "fold") is not None

    def with_fold(self, fold) -> "HardwareOp":
        """This op folded by ``fold`` (validated by :meth:`check_fold`)."""
        return replace(self, fold=self.check_fold(fold))

    def _need_fold(self, what: str):
        if getattr(self, "fold") is None:
            raise FoldError(f"op {self.name!r} ({self.kind}) needs a fold for its {what}; use with_fold() first")
        return getattr(self, "fold")

    # ---- golden ---------------------------------------------------------------------------
    @abc.abstractmethod
    def golden(self, x) -> OpResult:
        """Exact outputs for ``x`` of shape ``[batch, *in_shape]`` (values, not codes)."""

    # ---- folding and cycles ----------------------------------------------------------------
    @abc.abstractmethod
    def check_fold(self, fold):
        """``fold`` validated for this op (errors name the value and what is allowed)."""

    @abc.abstractmethod
    def fold_options(self) -> list:
        """Every fold this op can take, each with ``.lanes`` and ``.cycles``."""

    def cycles(self, fold=None) -> int:
        """Cycles per image of ``fold`` (default: this op's fold) at full rate."""
        return (fold if fold is not None else self._need_fold("cycles")).cycles

    def lanes(self, fold=None) -> int:
        """MAC lanes of ``fold`` (default: this op's fold)."""
        return (fold if fold is not None else self._need_fold("lanes")).lanes

    @property
    def macs(self) -> int:
        """Multiply-accumulates per image, whatever the fold (none by default: an op that only
        moves or compares values); Σ MACs / (II · lanes) is a fold's lane utilisation."""
        return 0

    def mac_format_pairs(self) -> tuple:
        """The ``(weight, activation)`` formats of the op's MAC arrays (none by default); the
        simulation model's lane check covers the general multipliers among them."""
        return ()

    # ---- streams, memories, cost, manifest ---------------------------------------------------
    @property
    @abc.abstractmethod
    def in_stream(self) -> StreamShape:
        ...

    @property
    @abc.abstractmethod
    def out_stream(self) -> StreamShape:
        ...

    @property
    def input_fifo_beats(self) -> int:
        """Depth of the FIFO before this op in a network (:class:`lowbit.hw.network.NetworkTop`):
        a whole input vector and two beats, so the op never waits on a neighbour that is busy
        replaying its previous vector."""
        return self.in_stream.beats_per_vector + 2

    def memories(self) -> tuple:
        """The op's memories (:class:`lowbit.sw.memimage.Memory`), packed once per op object; none by default."""
        return ()

    @abc.abstractmethod
    def cost(self, family: str, mem_family: str | None = None) -> dict:
        """Cost-model estimate: ``lut, ff, bram, dsp, lutram_luts``."""

    @abc.abstractmethod
    def manifest_entry(self) -> dict:
        """This op's entry in ``manifest.json`` (JSON-serialisable)."""
