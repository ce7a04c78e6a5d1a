"""Outputs of the commands: checked before any work starts, and one input's failure reported without stopping
the others."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from cellbridge.errors import CellBridgeError


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
