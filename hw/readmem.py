"""Swap the embedded initial values of the generated memories for ``$readmemh`` of the image files.

Amaranth writes every initialised memory as ``reg [W-1:0] name [D-1:0];`` followed by an
``initial begin name[a] = W'hXXXX; ... end`` block (``'d`` for words of
at most 32 bits). Some flows prefer the memory contents outside
the Verilog (swap weights without re-running synthesis' front end, keep the Verilog small, feed
the same ``.hex`` to a vendor memory generator). :func:`use_readmemh` replaces each block whose
contents equal exactly one image of the build by ``initial $readmemh("<image>.hex", name);``.

The match is by content, checked word for word, not by name: a memory is only ever pointed at a
file holding the very words it was generated with, and a weight or parameter memory that matches
no image is an error rather than a silently embedded leftover. Memories that are not images (the
stream FIFOs, the input buffer) keep their embedded initial values.
"""

from __future__ import annotations

import re

__all__ = ["use_readmemh"]

_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)reg \[(?P<msb>\d+):0\] (?P<name>\\\S+ |[A-Za-z_][\w$]*) \[(?P<last>\d+):0\];\n"
    r"(?P=indent)initial begin\n(?P<body>(?:[ \t]*(?P=name)\[\d+\] = \d+'s?[hdb][0-9a-fA-F_xz]+;\n)*)"
    r"(?P=indent)end\n", re.MULTILINE)
_ENTRY = re.compile(r"\[(\d+)\] = \d+'s?([hdb])([0-9a-fA-F_xz]+);")
_RADIX = {"h": 16, "d": 10, "b": 2}


def _words(body: str, depth: int) -> tuple | None:
    words = [0] * depth
    for addr, radix, value in _ENTRY.findall(body):
        a = int(addr)
        try:
            v = int(value.replace("_", ""), _RADIX[radix])
        except ValueError:  # x/z bits: not an image
            return None
        if a >= depth:
            return None
        words[a] = v
    return tuple(words)


def use_readmemh(text: str, memories, *, image_names=("weights_", "params_")) -> tuple[str, list]:
    """``(verilog, [(memory name in the Verilog, hex file), ...])`` in the order of the Verilog.

    ``memories`` are :class:`lowbit.sw.memimage.Memory` objects; their ``.hex`` files are
    ``<stem>.hex``. A Verilog memory whose name starts with one of ``image_names`` must match
    an image, every image must be used at least once, else ``ValueError``.
    """
    by_content: dict[tuple, list] = {}
    for mem in memories:
        by_content.setdefault((mem.width, mem.words), []).append(mem)
    used: set[str] = set()
    mapping: list[tuple[str, str]] = []
    problems: list[str] = []

    def replace(match: re.Match) -> str:
        name, width, depth = match["name"], int(match["msb"]) + 1, int(match["last"]) + 1
        words = _words(match["body"], depth)
        candidates = by_content.get((width, words), []) if words is not None else []
        if not candidates:
            if name.lstrip("\\").startswith(image_names):
                problems.append(f"{name.strip()} ({width}x{depth})")
            return match.group(0)
        mem = candidates[0]  # equal contents: any of them is the right file
        fname = f"{mem.stem}.hex"
        for m in candidates:
            used.add(m.stem)
        mapping.append((name.strip(), fname))
        return f'{match["indent"]}reg [{match["msb"]}:0] {name} [{match["last"]}:0];\n' \
               f'{match["indent"]}initial $readmemh("{fname}", {name});\n'

    out = _BLOCK.sub(replace, text)
    if problems:
        raise ValueError(f"memories must equal one of the build's images to be loaded by $readmemh; "
                         f"these match none: {', '.join(problems)}")
    unused = sorted(m.stem for m in memories if m.stem not in used)
    if unused:
        raise ValueError(f"every image must initialise a memory of the Verilog, these initialise none: "
                         f"{', '.join(unused)}")
    return out, mapping
