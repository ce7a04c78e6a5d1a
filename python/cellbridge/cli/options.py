"""Options and argument parsing shared by several commands (one definition each)."""

from __future__ import annotations

import argparse

import shapely
from shapely.geometry.base import BaseGeometry

from cellbridge.errors import CellBridgeError
from cellbridge.geometry import polygons_of


def add_tiling_options(parser: argparse.ArgumentParser, tile: int, overlap: int) -> None:
    """--tile, --overlap, --downsample."""
    from cellbridge.cli.argtypes import non_negative_int, positive_float, positive_int

    parser.add_argument("--tile", type=positive_int, default=tile, help=f"tile size in output pixels (default {tile})")
    parser.add_argument("--overlap", type=non_negative_int, default=overlap,
                        help=f"overlap between tiles in output pixels (default {overlap})")
    parser.add_argument("--downsample", type=positive_float, default=1.0,
                        help="read tiles at this downsample of level 0 (default 1)")


def parse_size(text: str) -> tuple[int, int]:
    """`"8192x4096"` → (8192, 4096); `"4096"` → (4096, 4096)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (e.g. 8192x8192), got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT with positive numbers, got {text!r}")
    return values[0], values[1]


def load_roi(path: str) -> BaseGeometry:
    """The union of the areal objects in a QuPath GeoJSON file, as one region of interest."""
    from cellbridge.io.qupath_geojson import read_objects

    polygons = [p for obj in read_objects(path) for p in polygons_of(obj.geometry)]
    if not polygons:
        raise CellBridgeError(f"{path}: no polygon annotations to use as a region of interest")
    return shapely.union_all(polygons)
