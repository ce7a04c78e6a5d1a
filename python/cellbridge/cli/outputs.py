"""Outputs of the commands: checked before any work starts, and one input's failure reported without stopping
the others."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from cellbridge.errors import CellBridgeError

OVERLAY_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def planned_outputs(args: argparse.Namespace) -> list[tuple[str, Path, Path | None]]:
    """(input, GeoJSON output, overlay or None) per input of a command with `--out`/`--out-dir` and `--overlay`,
    every output checked before any work starts."""
    if args.out and len(args.inputs) > 1:
        raise CellBridgeError("--out takes one input; use --out-dir for several")
    result = []
    for item in args.inputs:
        stem = Path(item).stem
        out = Path(args.out) if args.out else Path(args.out_dir) / f"{stem}.geojson"
        overlay = None
        if args.overlay:
            overlay = Path(args.overlay) if args.out else Path(args.overlay) / f"{stem}.png"
        result.append((item, out, overlay))
    check_outputs([item for item, _, _ in result], [p for _, out, overlay in result for p in (out, overlay) if p])
    for _, _, overlay in result:
        if overlay is not None and overlay.suffix.lower() not in OVERLAY_SUFFIXES:
            raise CellBridgeError(f"{overlay}: the overlay must be {', '.join(OVERLAY_SUFFIXES)}")
    return result


def check_outputs(inputs: list[str], outputs: list[Path]) -> None:
    """Refuse outputs that would overwrite an input, collide with each other, or cannot be written as files."""
    sources = {same_file_key(Path(item)): item for item in inputs}
    seen: dict[tuple, Path] = {}
    for out in outputs:
        key = same_file_key(out)
        if key in sources:
            raise CellBridgeError(f"{out}: this output is the input {sources[key]}; choose another output path")
        if key in seen:
            raise CellBridgeError(f"{seen[key]} and {out}: two outputs would be written to one file (inputs with "
                                  "the same name stem); run them separately or rename one")
        seen[key] = out
        if out.is_dir():
            raise CellBridgeError(f"{out}: is a folder; give a file path")
        parent = next((p for p in out.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise CellBridgeError(f"{parent}: is a file, so {out} cannot be written under it")


def same_file_key(path: Path) -> tuple:
    """What makes two paths the same file: (device, inode) when it exists, else the absolute resolved path."""
    try:
        stat = path.stat()
        return ("inode", stat.st_dev, stat.st_ino)
    except OSError:
        return ("path", str(path.resolve()))


def run_each(command: str, outputs: list[tuple[str, Path, Path | None]],
             run_one: Callable[[str, Path, Path | None], None]) -> int:
    """Call `run_one(input, out, overlay)` per input. With several inputs a failing one is reported in one line
    on stderr and the others still run (exit status 2 at the end); a single input's error is raised."""
    failed = 0
    for source, out, overlay in outputs:
        try:
            run_one(source, out, overlay)
        except (CellBridgeError, OSError) as error:
            if len(outputs) == 1:
                raise
            failed += 1
            message = ' '.join(str(error).split())
            if str(source) not in message:
                message = f"{source}: {message}"
            print(f"cellbridge {command}: error: {message}", file=sys.stderr)
    if failed:
        print(f"cellbridge {command}: error: {failed} of {len(outputs)} inputs failed (see above)", file=sys.stderr)
    return 2 if failed else 0
