"""Entry point of the `cellbridge` console script.

Each command lives in its own module with `register(subparsers)`; that function adds the parser and sets
`func` to the callable that runs it. Errors caused by input print one line and exit non-zero; `--debug`
shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from cellbridge import __version__
from cellbridge.errors import CellBridgeError

COMMAND_MODULES: tuple[str, ...] = (
    "cellbridge.cli.sample",
    "cellbridge.cli.synth_slide",
    "cellbridge.cli.tiles",
    "cellbridge.cli.export_coco",
    "cellbridge.cli.convert",
    "cellbridge.cli.train",
    "cellbridge.cli.evaluate",
    "cellbridge.cli.detect",
    "cellbridge.cli.segment",
    "cellbridge.cli.models",
    "cellbridge.cli.serve",
    "cellbridge.cli.batch",
)

EXIT_INPUT_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered command."""
    parser = argparse.ArgumentParser(
        prog="cellbridge",
        description="Deep-learning cell detection and nucleus segmentation for QuPath.",
    )
    parser.add_argument("--version", action="version", version=f"cellbridge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_INPUT_ERROR
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("cellbridge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CellBridgeError, FileNotFoundError, PermissionError, IsADirectoryError) as error:
        if args.debug:
            raise
        print(f"cellbridge {args.command}: error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    return int(result or 0)
