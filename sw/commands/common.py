"""Helpers shared by subcommands: output folders, argument types."""

from __future__ import annotations

import argparse
from pathlib import Path

from lowbit.sw.cli import UserError

SOURCE_DIRS = ("hw", "sw", "sim", "tests", "lowbit", ".ci")


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def output_dir(path: str | Path, *, param: str = "--output") -> Path:
    """Resolve an output folder, refusing the source tree (build products go under build/)."""
    out = Path(path).resolve()
    root = project_root()
    for d in SOURCE_DIRS:
        src = root / d
        if out == src or src in out.parents:
            raise UserError(f"{param} must not be inside the source tree ({src}), not {str(path)!r}; "
                            f"use a folder under build/")
    if out == root:
        raise UserError(f"{param} must not be the project folder itself; use a folder under build/")
    return out


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {v}")
    return v
