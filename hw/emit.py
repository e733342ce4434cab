"""Verilog emission with a machine-readable port map.

Amaranth's Verilog has no parameters and flattens every stream payload into one vector;
the port map (``ports`` in the JSON written next to the Verilog) says where each field
and lane sits, so testbenches and users never guess offsets.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import data, wiring

from lowbit.sw.util import write_files

__all__ = ["layout_json", "port_map", "emit"]


def layout_json(shape) -> dict:
    """A shape or layout as JSON: width, signedness, struct fields (offset, width), array lanes."""
    if isinstance(shape, data.StructLayout):
        return {"width": shape.size, "fields": {
            name: {"offset": field.offset, **layout_json(field.shape)} for name, field in shape}}
    if isinstance(shape, data.ArrayLayout):
        elem = layout_json(shape.elem_shape)
        return {"width": shape.size, "length": shape.length, "elem": elem}
    s = Shape.cast(shape)
    return {"width": s.width, "signed": s.signed}


def port_map(component: wiring.Component) -> dict:
    """Verilog port name → direction and layout, from the component's signature."""
    ports = {}
    for path, member, value in component.signature.flatten(component):
        name = "__".join(str(p) for p in path)
        shape = value.shape() if isinstance(value, data.View) else Shape.cast(member.shape)
        ports[name] = {"dir": "input" if member.flow == wiring.In else "output", **layout_json(shape)}
    return {"clock": "clk", "reset": "rst (synchronous, active high)", "ports": ports}


def emit(component: wiring.Component, name: str, out_dir: str | os.PathLike, spec: dict) -> tuple[Path, Path]:
    """Write ``<name>.v`` and ``<name>.json`` (spec + port map) into ``out_dir``.

    Files appear only when both are complete: each is written to a temporary file first.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name must be a Verilog identifier, not {name!r}")
    text = verilog.convert(component, name=name, emit_src=False)
    meta = {"top": name, "spec": spec, **port_map(component)}
    # the folder may hold other blocks: only these two files are replaced
    paths = write_files(out_dir, {f"{name}.v": text, f"{name}.json": json.dumps(meta, indent=2) + "\n"})
    return paths[f"{name}.v"], paths[f"{name}.json"]
