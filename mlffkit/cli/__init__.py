"""The ``mlffkit`` command line: ``info``, ``data ...``, ``md``, ``train``, ``evaluate``, ``quickstart``.

Each subcommand lives in its own module with a ``register(subparsers)`` function that
adds its parser and sets ``func`` to the function that runs it (returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

_SUBCOMMANDS = ("info", "data", "md", "train", "evaluate", "quickstart")


def build_parser() -> argparse.ArgumentParser:
    from mlffkit import __version__

    parser = argparse.ArgumentParser(
        prog="mlffkit",
        description="Machine-learned force fields: data, reference methods, MD and models.",
    )
    parser.add_argument("--version", action="version", version=f"mlffkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMANDS:
        importlib.import_module(f"mlffkit.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        # Errors the user can fix: one clear line, no traceback.
        print(f"mlffkit {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
