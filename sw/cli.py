"""The ``lowbit`` console command.

Each subcommand lives in its own module under :mod:`lowbit.sw.commands` with
``HELP``, ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``; heavy imports
(torch, amaranth, cocotb) happen inside ``run`` so ``lowbit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .util import ToolRunError

# Order is the order shown in --help, following the flow.
COMMANDS = [
    "train", "quantize", "import", "export",  # software: float32 (or QONNX) → integer IR (→ QONNX)
    "eval", "report",                          # accuracy
    "gen", "build", "sim",                    # hardware: blocks and whole networks
    "synth", "explore",                        # cost
    "demo", "bench",                           # the main job and the benchmarks
]


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the line breaks of a subcommand's description and shows every meaningful default.

    A default of ``None`` (the help already says what happens) and the implicit value of an
    on/off flag (``store_true``/``store_false``) would only print ``(default: None)`` or a
    misleading ``(default: True)``, so they are left out.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return text
        if "(default" in text:
            return text
        return super()._get_help_string(action)


class UserError(Exception):
    """A bad input from the user: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lowbit",
        description="Generate low-bit integer neural-network accelerators for FPGAs: quantize a "
                    "float32 network to an integer IR, generate Amaranth/Verilog hardware with packed "
                    "weight memories, prove it bit-exact against the numpy golden model in "
                    "Verilator, and report accuracy, throughput and FPGA cost.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from lowbit import __version__
    parser.add_argument("--version", action="version", version=f"lowbit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"lowbit.sw.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"lowbit.sw.commands.{name}":
                continue  # not built yet
            raise
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=HelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        return int(args._run(args) or 0)
    except (UserError, ValueError, FileNotFoundError) as e:
        print(f"lowbit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ToolRunError as e:  # a simulation or synthesis that did not run: what failed and where its log is
        print(f"lowbit {args.command}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a full disk, a permission, a folder on another mount: say so, no traceback
        where = f" ({e.filename})" if e.filename else ""
        print(f"lowbit {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lowbit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
