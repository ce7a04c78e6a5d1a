"""Entry point of the `cellbridge` console script.

Each command lives in its own module with `register(subparsers)`; that function adds the parser and sets
`func` to the callable that runs it. Errors caused by input print one line and exit non-zero; `--debug`
shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from cellbridge import __version__
from cellbridge.errors import CellBridgeError
from cellbridge.process_settings import apply_process_settings

COMMAND_MODULES: tuple[str, ...] = (
    "cellbridge.cli.sample",
    "cellbridge.cli.synth_slide",
    "cellbridge.cli.tiles",
    "cellbridge.cli.export_coco",
    "cellbridge.cli.convert",
    "cellbridge.cli.train",
    "cellbridge.cli.evaluate",
    "cellbridge.cli.detect",
    "cellbridge.cli.nuclei",
    "cellbridge.cli.segment",
    "cellbridge.cli.models",
    "cellbridge.cli.serve",
    "cellbridge.cli.batch",
    "cellbridge.cli.classify",
)

EXIT_INPUT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141   # 128 + SIGPIPE, what a shell reports for a reader that stopped early
DEBUG_HELP = "show full tracebacks and debug logging"


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (the problem and where to find help), exit status 2.

    Subcommand parsers inherit the class, so `cellbridge nuclei --tile 0` reports like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered command."""
    parser = OneLineParser(
        prog="cellbridge",
        description="Deep-learning cell detection and nucleus segmentation for QuPath.",
    )
    parser.add_argument("--version", action="version", version=f"cellbridge {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    for command in subparsers.choices.values():   # `cellbridge nuclei … --debug` works as well as before the command
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
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
    if not args.debug:
        _quiet_opencv()  # decoding failures are reported as our one-line errors, not OpenCV's log lines
    apply_process_settings()  # a whole slide's peak memory stays flat (pipeline/memory.py)
    try:
        result = args.func(args)
        sys.stdout.flush()   # a closed pipe shows here, not in the interpreter's exit
    except KeyboardInterrupt:
        print("cellbridge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:   # `cellbridge tiles … | head`: the reader left; say nothing more
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (CellBridgeError, OSError) as error:  # OSError: a file or folder that cannot be used
        if args.debug:
            raise
        message = " ".join(_message(error).split())  # one line, whatever the message holds
        print(f"cellbridge {args.command}: error: {message}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    return int(result or 0)


def _message(error: Exception) -> str:
    """The error in words: an OSError as "PATH: reason" instead of "[Errno 2] No such file or directory: 'PATH'"."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        return f"{os.fsdecode(error.filename)}: {error.strerror.lower()}"
    return str(error)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _quiet_opencv() -> None:
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
