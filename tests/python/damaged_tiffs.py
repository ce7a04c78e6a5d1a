"""Damaged slide files for tests: a tiled TIFF with one tile that no longer decodes."""

from __future__ import annotations

from pathlib import Path

import tifffile


def blank_tile(tiff: Path, tile: int, out: Path) -> Path:
    """Write `tiff` to `out` with the bytes of level 0's tile number `tile` (row by row) set to zero."""
    data = bytearray(tiff.read_bytes())
    with tifffile.TiffFile(tiff) as tif:
        offset, count = tif.pages[0].dataoffsets[tile], tif.pages[0].databytecounts[tile]
    data[offset:offset + count] = bytes(count)
    out.write_bytes(bytes(data))
    return out
