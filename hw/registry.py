"""Which Amaranth component builds each hardware op (``lowbit.sw.ops``).

``sw`` describes ops without Amaranth; this is the one table that maps an op class to the
component that implements it. A new layer kind adds its op in ``sw/ops`` and one line here.
Every component is made as ``Component(op, model=...)`` and has streams ``i`` and ``o`` whose
payload widths are the op's ``in_stream.width`` and ``out_stream.width``.
"""

from __future__ import annotations

from lowbit.sw.ops import HardwareOp, MatrixVectorOp, MaxPoolOp, SlidingWindowOp

from .mvu import MatrixVectorUnit
from .pool import MaxPoolUnit
from .simmodel import check_model
from .window import SlidingWindowUnit

__all__ = ["COMPONENTS", "component_for", "MissingComponent", "check_components"]


class MissingComponent(ValueError):
    """An op that has no hardware component (yet)."""

    def __init__(self, op: HardwareOp):
        kinds = ", ".join(c.kind for c in COMPONENTS)
        super().__init__(f"layer {op.index} ({op.name!r}) lowers to a {op.kind} op, which has no hardware component: "
                         f"ops with hardware are {kinds} (a new layer kind registers its component here)")


def check_components(ops) -> None:
    """Refuse, before any generation, a network with an op that has no component, or one its
    component cannot build (an op's ``check_hardware``, e.g. an overlapping max-pool)."""
    for op in ops:
        if type(op) not in COMPONENTS:
            raise MissingComponent(op)
        getattr(op, "check_hardware", lambda: None)()

COMPONENTS: dict[type, type] = {
    MatrixVectorOp: MatrixVectorUnit,
    MaxPoolOp: MaxPoolUnit,
    SlidingWindowOp: SlidingWindowUnit,
}


def component_for(op: HardwareOp, *, model: str = "synthesis"):
    """The component of a folded ``op`` (``model``: see :data:`lowbit.hw.simmodel.MODELS`)."""
    cls = COMPONENTS.get(type(op))
    if cls is None:
        raise MissingComponent(op)
    if not op.folded:
        raise ValueError(f"op {op.name!r} must be folded (op.with_fold(...)) before it becomes hardware")
    return cls(op, model=check_model(model))
