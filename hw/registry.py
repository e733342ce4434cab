"""Which Amaranth component builds each hardware op (``lowbit.sw.ops``).

``sw`` describes ops without Amaranth; this is the one table that maps an op class to the
component that implements it. A new layer kind adds its op in ``sw/ops`` and one line here.
Every component is made as ``Component(op, model=...)`` and has streams ``i`` and ``o`` whose
payload widths are the op's ``in_stream.width`` and ``out_stream.width``.
"""

from __future__ import annotations

from lowbit.sw.ops import HardwareOp, MatrixVectorOp

from .mvu import MatrixVectorUnit
from .simmodel import check_model

__all__ = ["COMPONENTS", "component_for"]

COMPONENTS: dict[type, type] = {
    MatrixVectorOp: MatrixVectorUnit,
}


def component_for(op: HardwareOp, *, model: str = "synthesis"):
    """The component of a folded ``op`` (``model``: see :data:`lowbit.hw.simmodel.MODELS`)."""
    cls = COMPONENTS.get(type(op))
    if cls is None:
        kinds = ", ".join(c.__name__ for c in COMPONENTS)
        raise TypeError(f"op must be one of {kinds} (the ops with a registered component), not {type(op).__name__}")
    if not op.folded:
        raise ValueError(f"op {op.name!r} must be folded (op.with_fold(...)) before it becomes hardware")
    return cls(op, model=check_model(model))
