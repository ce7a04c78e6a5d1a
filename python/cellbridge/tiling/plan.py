"""Tile planning: a grid over ROI ∩ tissue at the model's downsample, each tile with its core.

A tile of `tile_size` output pixels covers `tile_size × downsample` level-0 pixels; neighbouring tiles share
`overlap` output pixels. A tile's *core* is the tile minus half the overlap on every inner side, and its
full extent on the sides that lie on the region's border. The cores of a grid partition the region (as
half-open rectangles), so every point belongs to exactly one core: an object is kept by the one tile whose
core holds its centroid. With `overlap` at least the largest object's diameter, that tile sees it whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import shapely
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from cellbridge.errors import CellBridgeError
from cellbridge.tiling.tissue import TissueMask

Rect = tuple[float, float, float, float]  # x0, y0, x1, y1 in level-0 pixels
MAX_TILES = 250_000  # a 200k × 200k px slide at the model's scale needs ~200k tiles of 512 px (448 px apart)


@dataclass(frozen=True)
class Tile:
    """One tile: level-0 origin and extent, the downsample it is read at, and its core."""

    index: int
    row: int
    col: int
    x: float
    y: float
    size: int
    downsample: float
    core: Rect

    @property
    def extent(self) -> float:
        """Side length in level-0 pixels."""
        return self.size * self.downsample

    @property
    def bounds(self) -> Rect:
        """(x0, y0, x1, y1) of the whole tile in level-0 pixels."""
        return (self.x, self.y, self.x + self.extent, self.y + self.extent)

    def core_contains(self, x: float, y: float) -> bool:
        """True when the level-0 point lies in the core (half-open: left/top edges in, right/bottom out)."""
        x0, y0, x1, y1 = self.core
        return x0 <= x < x1 and y0 <= y < y1

    def to_tile(self, x: float, y: float) -> tuple[float, float]:
        """Level-0 point → tile pixel coordinates."""
        return ((x - self.x) / self.downsample, (y - self.y) / self.downsample)

    def to_level0(self, u: float, v: float) -> tuple[float, float]:
        """Tile pixel coordinates → level-0 point."""
        return (self.x + u * self.downsample, self.y + v * self.downsample)


@dataclass(frozen=True)
class TilePlan:
    """The tiles to read over a region, with the grid they come from."""

    tiles: tuple[Tile, ...]
    region: Rect
    rows: int
    cols: int
    tile_size: int
    overlap: int
    downsample: float
    _by_cell: dict[tuple[int, int], Tile] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_cell.update({(t.row, t.col): t for t in self.tiles})

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self) -> Iterator[Tile]:
        return iter(self.tiles)

    @property
    def grid_tiles(self) -> int:
        """Tiles a full scan of the region would read (before dropping tiles without tissue or ROI)."""
        return self.rows * self.cols

    @property
    def kept_fraction(self) -> float:
        """Fraction of the full scan's tiles that will be read."""
        return len(self.tiles) / self.grid_tiles if self.grid_tiles else 0.0

    def neighbours(self, tile: Tile) -> list[Tile]:
        """The planned tiles among the 8 grid neighbours of `tile`."""
        found = []
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                if (dr or dc) and (neighbour := self._by_cell.get((tile.row + dr, tile.col + dc))):
                    found.append(neighbour)
        return found


def grid_positions(start: float, stop: float, extent: float, step: float) -> list[float]:
    """Origins of tiles of `extent`, `step` apart, covering [start, stop) (at least one tile)."""
    count = 1 + max(0, math.ceil((stop - start - extent) / step - 1e-9))
    return [start + i * step for i in range(count)]


def check_tile_count(width: int, height: int, tile_size: int, overlap: int, downsample: float,
                     roi: BaseGeometry | None = None, what: str = "the image") -> int:
    """The tiles a full scan of the image (or the ROI's bounding box) needs; raises CellBridgeError when there are
    more than MAX_TILES (e.g. an implausible pixel size would resample the image far beyond its size)."""
    if not (downsample > 0 and math.isfinite(downsample)):
        raise CellBridgeError(f"downsample must be a positive number, got {downsample}")
    x0, y0, x1, y1 = 0.0, 0.0, float(width), float(height)
    if roi is not None and not roi.is_empty:
        rx0, ry0, rx1, ry1 = roi.bounds
        x0, y0, x1, y1 = max(rx0, x0), max(ry0, y0), min(rx1, x1), min(ry1, y1)
    step = max(tile_size - overlap, 1) * downsample
    extent = tile_size * downsample
    cols = 1 + max(0, math.ceil((x1 - x0 - extent) / step - 1e-9))
    rows = 1 + max(0, math.ceil((y1 - y0 - extent) / step - 1e-9))
    if rows * cols > MAX_TILES:
        raise CellBridgeError(f"{what}: the run would need {rows * cols:,} tiles of {tile_size} px at downsample "
                              f"{downsample:.4g} (at most {MAX_TILES:,}); check the pixel size")
    return rows * cols


def plan_tiles(width: int, height: int, tile_size: int = 512, overlap: int = 64, downsample: float = 1.0,
               roi: BaseGeometry | None = None, tissue: TissueMask | None = None) -> TilePlan:
    """Plan tiles over the image (width × height level-0 pixels) ∩ `roi` ∩ `tissue`.

    `tile_size` and `overlap` are in output pixels (at `downsample`). Tiles whose core misses the ROI or
    holds no tissue are left out, since no object kept by them could lie there.
    """
    if tile_size <= 0:
        raise CellBridgeError(f"tile size must be positive, got {tile_size}")
    if not 0 <= overlap < tile_size:
        raise CellBridgeError(f"overlap must be ≥ 0 and smaller than the tile size {tile_size}, got {overlap}")
    if not downsample > 0:
        raise CellBridgeError(f"downsample must be positive, got {downsample}")
    check_tile_count(width, height, tile_size, overlap, downsample, roi)
    region: Rect = (0.0, 0.0, float(width), float(height))
    if roi is not None:
        if roi.is_empty:
            raise CellBridgeError("the region of interest is empty")
        rx0, ry0, rx1, ry1 = roi.bounds
        region = (max(rx0, 0.0), max(ry0, 0.0), min(rx1, float(width)), min(ry1, float(height)))
        if region[2] <= region[0] or region[3] <= region[1]:
            raise CellBridgeError(f"the region of interest {tuple(round(v) for v in roi.bounds)} lies outside "
                                  f"the image ({width}x{height})")
        shapely.prepare(roi)
    extent = tile_size * downsample
    step = (tile_size - overlap) * downsample
    half = overlap * downsample / 2
    xs = grid_positions(region[0], region[2], extent, step)
    ys = grid_positions(region[1], region[3], extent, step)
    tiles: list[Tile] = []
    for row, y in enumerate(ys):
        for col, x in enumerate(xs):
            core = (
                x if col == 0 else x + half,
                y if row == 0 else y + half,
                x + extent if col == len(xs) - 1 else x + extent - half,
                y + extent if row == len(ys) - 1 else y + extent - half,
            )
            if tissue is not None and not tissue.any_in(*core):
                continue
            if roi is not None and not roi.intersects(box(*core)):
                continue
            tiles.append(Tile(len(tiles), row, col, x, y, tile_size, downsample, core))
    return TilePlan(tuple(tiles), region, len(ys), len(xs), tile_size, overlap, downsample)
