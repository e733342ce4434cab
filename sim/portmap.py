"""Pack and unpack flat Verilog port vectors using the port map written by ``lowbit.hw.emit``."""

from __future__ import annotations

from lowbit.sw.formats import signed_range, to_twos_complement

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
    lo, hi = signed_range(port["width"]) if port.get("signed") else (0, _mask(port["width"]))
    if not lo <= v <= hi:
        raise ValueError(f"value {v} does not fit a {'signed' if port.get('signed') else 'unsigned'} "
                         f"{port['width']}-bit field")
    return to_twos_complement(v, port["width"])


def unpack_array(port: dict, word: int) -> list[int]:
    """Lane codes (unsigned) of an array port."""
    w = port["elem"]["width"]
    return [(word >> (k * w)) & _mask(w) for k in range(port["length"])]
