"""Pack and unpack flat Verilog port vectors using the port map written by ``lowbit.hw.emit``."""

from __future__ import annotations

__all__ = ["pack_port", "unpack_array"]


def _mask(width: int) -> int:
    return (1 << width) - 1


def pack_port(port: dict, value) -> int:
    """A struct (dict of field values), an array (sequence of lane values) or a scalar → int."""
    if "fields" in port:
        word = 0
        for name, field in port["fields"].items():
            word |= pack_port(field, value[name]) << field["offset"]
        return word
    if "length" in port:
        elem = port["elem"]
        if len(value) != port["length"]:
            raise ValueError(f"port needs {port['length']} lanes, got {len(value)}")
        word = 0
        for k, v in enumerate(value):
            word |= pack_port(elem, v) << (k * elem["width"])
        return word
    v = int(value)
    lo = -(1 << (port["width"] - 1)) if port.get("signed") else 0
    hi = _mask(port["width"] - (1 if port.get("signed") else 0))
    if not lo <= v <= hi:
        raise ValueError(f"value {v} does not fit a {'signed' if port.get('signed') else 'unsigned'} "
                         f"{port['width']}-bit field")
    return v & _mask(port["width"])


def unpack_array(port: dict, word: int) -> list[int]:
    """Lane codes (unsigned) of an array port."""
    w = port["elem"]["width"]
    return [(word >> (k * w)) & _mask(w) for k in range(port["length"])]
