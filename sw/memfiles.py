"""Memory image files: one memory per file, address 0 first, written and read back exactly.

Formats
-------
``hex`` / ``mem``  ``$readmemh``: one word per line in exactly ``ceil(width/4)`` lower-case hex
                   digits, no address lines, ``\\n`` line ends.
``coe``            Xilinx: ``memory_initialization_radix=16;``, then
                   ``memory_initialization_vector=`` and one word per line, separated by ``,``
                   and ended by ``;``.
``mif``            Intel: ``WIDTH=…;``, ``DEPTH=…;``, ``ADDRESS_RADIX=HEX;``, ``DATA_RADIX=HEX;``,
                   ``CONTENT BEGIN``, one ``addr : data;`` line per word, ``END;``.
``bin``            raw: each word little-endian in ``ceil(width/8)`` bytes, words consecutive.

Readers validate everything (width, depth, digits, values wider than the width) and name
the file and line (byte offset for ``bin``) in a :class:`MemImageError`. Sets of memories
with their manifest are :mod:`lowbit.sw.memimage`.
"""

from __future__ import annotations

import re
from pathlib import Path

from .pack import _words_list
from .util import write_atomic

__all__ = ["FORMATS", "MemImageError", "dumps", "loads", "write_memory", "read_memory"]

#: Format name → file suffix.
FORMATS = {"hex": ".hex", "mem": ".mem", "coe": ".coe", "mif": ".mif", "bin": ".bin"}


class MemImageError(ValueError):
    """A memory image file that does not parse or does not match its description."""


# ---- helpers -----------------------------------------------------------------------------
def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        return _check_format(fmt)
    for name, suffix in FORMATS.items():
        if path.suffix.lower() == suffix:
            return name
    raise ValueError(f"format must be given or implied by the suffix ({', '.join(FORMATS.values())}) "
                     f"of {str(path)!r}, not {path.suffix!r}")


def _check_width(width) -> int:
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width must be a positive integer, not {width!r}")
    return width


_HEX = re.compile(r"[0-9a-fA-F]+")


def _parse_hex_value(token: str, width: int, where: str) -> int:
    if not _HEX.fullmatch(token):
        raise MemImageError(f"{where}: {token!r} is not a hexadecimal number")
    value = int(token, 16)
    if value >> width:
        raise MemImageError(f"{where}: value 0x{token} is wider than the {width}-bit word width")
    return value


def _check_depth(words: list[int], depth: int | None, name: str) -> list[int]:
    if not words:
        raise MemImageError(f"{name}: holds no words")
    if depth is not None and len(words) != depth:
        raise MemImageError(f"{name}: holds {len(words)} words, expected depth {depth}")
    return words


# ---- writers -----------------------------------------------------------------------------
def dumps(words, width: int, fmt: str) -> bytes:
    """The file content of one memory in format ``fmt``.

    Parameters
    ----------
    words : sequence of int
        The memory, address 0 first; at least one word, each in ``0..2^width-1``.
    width : int
        Word width in bits.
    fmt : str
        ``hex``, ``mem``, ``coe``, ``mif`` or ``bin``.
    """
    width = _check_width(width)
    fmt = _check_format(fmt)
    words = _words_list(words, width)
    if not words:
        raise ValueError("words must hold at least one word, not 0")
    if fmt == "bin":
        nb = (width + 7) // 8
        return b"".join(w.to_bytes(nb, "little") for w in words)
    digits = (width + 3) // 4
    data = [f"{w:0{digits}x}" for w in words]
    if fmt in ("hex", "mem"):
        lines = data
    elif fmt == "coe":
        lines = ["memory_initialization_radix=16;", "memory_initialization_vector="]
        lines += [d + "," for d in data[:-1]] + [data[-1] + ";"]
    else:  # mif
        adigits = max(1, (len(words) - 1).bit_length() + 3 >> 2)
        lines = [f"WIDTH={width};", f"DEPTH={len(words)};", "", "ADDRESS_RADIX=HEX;", "DATA_RADIX=HEX;", "",
                 "CONTENT BEGIN"]
        lines += [f"    {a:0{adigits}x} : {d};" for a, d in enumerate(data)]
        lines.append("END;")
    return ("\n".join(lines) + "\n").encode("ascii")


def write_memory(path, words, width: int, fmt: str | None = None) -> Path:
    """Write one memory to ``path`` (format from ``fmt`` or the suffix); returns the path."""
    path = Path(path)
    return write_atomic(path, dumps(words, width, _format_of(path, fmt)))


# ---- readers -----------------------------------------------------------------------------
def _lines(text: str, comment: str | None):
    """(line number, stripped content) of non-blank lines, ``comment`` to line end removed."""
    for n, line in enumerate(text.splitlines(), 1):
        line = (line.split(comment, 1)[0] if comment else line).strip()
        if line:
            yield n, line


def _loads_hex(text: str, width: int, name: str) -> list[int]:
    digits = (width + 3) // 4
    words = []
    for n, line in _lines(text, "//"):
        where = f"{name}:{n}"
        if line.startswith("@"):
            raise MemImageError(f"{where}: address lines ({line!r}) are not supported; "
                                f"a hex image holds one word per line from address 0")
        if len(line.split()) != 1:
            raise MemImageError(f"{where}: must hold one word per line, not {line!r}")
        if _HEX.fullmatch(line) and len(line) != digits:
            raise MemImageError(f"{where}: {line!r} has {len(line)} hex digits, a {width}-bit word "
                                f"takes exactly {digits}")
        words.append(_parse_hex_value(line, width, where))
    return words


def _loads_coe(text: str, width: int, name: str) -> list[int]:
    state = "radix"  # → "vector" → "values" → "done"
    words = []
    last = 0
    # A COE comment is a line starting with ';' (a ';' elsewhere ends a statement).
    for n, line in _lines(text, None):
        last = n
        where = f"{name}:{n}"
        if line.startswith(";"):
            continue
        if state == "radix":
            m = re.fullmatch(r"memory_initialization_radix\s*=\s*(\w+)\s*;", line, re.I)
            if not m:
                raise MemImageError(f"{where}: expected 'memory_initialization_radix=16;', not {line!r}")
            if m.group(1) != "16":
                raise MemImageError(f"{where}: memory_initialization_radix must be 16, not {m.group(1)!r}")
            state = "vector"
            continue
        if state == "vector":
            m = re.fullmatch(r"memory_initialization_vector\s*=(.*)", line, re.I)
            if not m:
                raise MemImageError(f"{where}: expected 'memory_initialization_vector=', not {line!r}")
            state = "values"
            line = m.group(1).strip()
            if not line:
                continue
        if state == "done":
            raise MemImageError(f"{where}: unexpected text after the closing ';': {line!r}")
        body, end, rest = line.partition(";")
        if rest.strip():
            raise MemImageError(f"{where}: unexpected text after the closing ';': {rest.strip()!r}")
        for token in re.split(r"[\s,]+", body.strip()):
            if token:
                words.append(_parse_hex_value(token, width, where))
        if end:
            state = "done"
    if state != "done":
        raise MemImageError(f"{name}:{last}: memory_initialization_vector is not closed by ';'")
    return words


def _loads_mif(text: str, width: int | None, depth: int | None, name: str) -> tuple[list[int], int]:
    header: dict[str, tuple[str, int]] = {}
    lines = iter(_lines(text, "--"))
    last = 0
    for n, line in lines:
        last = n
        if re.fullmatch(r"CONTENT\s+BEGIN", line, re.I):
            break
        m = re.fullmatch(r"(\w+)\s*=\s*(\w+)\s*;", line)
        if not m:
            raise MemImageError(f"{name}:{n}: expected 'KEY=VALUE;' or 'CONTENT BEGIN', not {line!r}")
        header[m.group(1).upper()] = (m.group(2), n)
    else:
        raise MemImageError(f"{name}:{last}: no 'CONTENT BEGIN' line")
    for key in ("WIDTH", "DEPTH", "ADDRESS_RADIX", "DATA_RADIX"):
        if key not in header:
            raise MemImageError(f"{name}: header lacks {key}")
    for key in ("ADDRESS_RADIX", "DATA_RADIX"):
        value, n = header[key]
        if value.upper() != "HEX":
            raise MemImageError(f"{name}:{n}: {key} must be HEX, not {value!r}")
    sizes = {}
    for key, given in (("WIDTH", width), ("DEPTH", depth)):
        value, n = header[key]
        if not value.isdigit() or int(value) < 1:
            raise MemImageError(f"{name}:{n}: {key} must be a positive decimal integer, not {value!r}")
        if given is not None and int(value) != given:
            raise MemImageError(f"{name}:{n}: {key} is {value}, expected {given}")
        sizes[key] = int(value)
    width, mdepth = sizes["WIDTH"], sizes["DEPTH"]
    words: list[int | None] = [None] * mdepth
    ended = False
    for n, line in lines:
        where, last = f"{name}:{n}", n
        if ended:
            raise MemImageError(f"{where}: unexpected text after 'END;': {line!r}")
        if re.fullmatch(r"END\s*;", line, re.I):
            ended = True
            continue
        m = re.fullmatch(r"(\[\s*(\w+)\s*\.\.\s*(\w+)\s*\]|\w+)\s*:\s*(\w+)\s*;", line)
        if not m:
            raise MemImageError(f"{where}: expected 'address : data;', not {line!r}")
        if m.group(2) is not None:  # a range [a..b] : value (Quartus compresses runs like this)
            lo = _parse_hex_value(m.group(2), 64, where)
            hi = _parse_hex_value(m.group(3), 64, where)
        else:
            lo = hi = _parse_hex_value(m.group(1), 64, where)
        value = _parse_hex_value(m.group(4), width, where)
        if not lo <= hi < mdepth:
            raise MemImageError(f"{where}: address {m.group(1)} must be within 0..{mdepth - 1:x} (DEPTH={mdepth})")
        for a in range(lo, hi + 1):
            if words[a] is not None:
                raise MemImageError(f"{where}: address {a:x} is written twice")
            words[a] = value
    if not ended:
        raise MemImageError(f"{name}:{last}: no 'END;' line")
    missing = [a for a, w in enumerate(words) if w is None]
    if missing:
        raise MemImageError(f"{name}: {len(missing)} of {mdepth} addresses have no data "
                            f"(first: {missing[0]:x})")
    return words, width


def _loads_bin(data: bytes, width: int, name: str) -> list[int]:
    nb = (width + 7) // 8
    if len(data) % nb:
        raise MemImageError(f"{name}: {len(data)} bytes is not a whole number of {nb}-byte words "
                            f"(width {width})")
    words = [int.from_bytes(data[i:i + nb], "little") for i in range(0, len(data), nb)]
    for i, w in enumerate(words):
        if w >> width:
            raise MemImageError(f"{name}: word {i} (byte offset {i * nb}) = {w:#x} is wider than "
                                f"the {width}-bit word width")
    return words


def loads(data: bytes | str, fmt: str, width: int | None = None, depth: int | None = None,
          *, name: str = "<memory>") -> list[int]:
    """Parse one memory from file content; inverse of :func:`dumps`.

    Parameters
    ----------
    data : bytes or str
    fmt : str
        ``hex``, ``mem``, ``coe``, ``mif`` or ``bin``.
    width : int, optional
        Word width; required except for ``mif`` (which states it; given, it must agree).
    depth : int, optional
        Expected number of words.
    name : str
        File name for error messages.

    Raises
    ------
    MemImageError
        Naming ``name`` and the line (byte offset for ``bin``) of the problem.
    """
    fmt = _check_format(fmt)
    if width is not None:
        _check_width(width)
    elif fmt != "mif":
        raise ValueError(f"width must be given to read a {fmt} image (only mif states it), not None")
    if fmt == "bin":
        if isinstance(data, str):
            raise TypeError("bin data must be bytes, not str")
        return _check_depth(_loads_bin(data, width, name), depth, name)
    if isinstance(data, bytes):
        try:
            data = data.decode("ascii")
        except UnicodeDecodeError as e:
            raise MemImageError(f"{name}: not an ASCII text file (byte {e.start})") from None
    if fmt in ("hex", "mem"):
        words = _loads_hex(data, width, name)
    elif fmt == "coe":
        words = _loads_coe(data, width, name)
    else:
        words, _ = _loads_mif(data, width, depth, name)
    return _check_depth(words, depth, name)


def read_memory(path, width: int | None = None, depth: int | None = None, fmt: str | None = None) -> list[int]:
    """Read one memory file (format from ``fmt`` or the suffix); see :func:`loads`."""
    path = Path(path)
    fmt = _format_of(path, fmt)
    if not path.is_file():
        raise MemImageError(f"memory image {str(path)!r} does not exist")
    return loads(path.read_bytes(), fmt, width, depth, name=str(path))
