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


class _OutputAction(argparse.Action):
    """Stores the folder and the spelling used, so errors name the option the user typed."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, "output_option", option_string if option_string.startswith("--") else "--output")


def add_output_argument(p, default: str | None, help: str, *aliases: str) -> None:
    """The output folder of a subcommand: ``-o/--output`` everywhere, plus older spellings."""
    p.add_argument("-o", "--output", *aliases, dest="output", default=default, action=_OutputAction,
                   metavar="FOLDER", help=help + (f" ({', '.join(aliases)}: older spelling)" if aliases else ""))


def output_option(args) -> str:
    """How the user spelled the output option (``--output`` when it was not given)."""
    return getattr(args, "output_option", "--output")


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {v}")
    return v
