"""Region merging: tiles' class probabilities blended across their overlaps into one polygon per connected region
and class (the semantic engine's merger).

Blending (`RegionMerger`): every tile's softmax probabilities are weighted by a window that is 1 in the tile's
interior and rises as sin² over the `overlap` pixels at each inner edge, so that two overlapping tiles' weights
sum to 1 across their shared band (`blend_window`). A pixel's class is the argmax of the weighted sum over the
tiles that cover it; dividing by the weight sum would not change the argmax, so it is skipped. Tiles are blended as
probabilities (softmax), not raw logits, so that one over-confident tile cannot outvote the others by scale.
The region is partitioned into integer-pixel *cores* on the model's pixel grid (tile minus half the overlap on
inner sides); a core's class map is computed once the core's tile and all its planned neighbours have arrived, and
polygonised at once. Core polygons trace pixel edges exactly (`mask_polygons`), so pieces of one region from
neighbouring cores share exact edges: they are dissolved (unioned) per class at the end; pieces that touch no inner
core edge are final at once and stream out.

Memory bound: probabilities are kept as float16 only for tiles not yet released; a tile is released once it and
all its neighbours have been polygonised. With tiles arriving in plan order (row-major, as the pipeline feeds
them) at most about two rows of tiles plus one are held: ≈ (2·cols + 3) · n_outputs · tile² · 2 bytes (e.g. 100
columns of 512² tiles with 4 outputs: ≈ 420 MB; batch order does not change this). Region polygons waiting to be
dissolved are vector data, held until the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import shapely
import shapely.affinity
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry

from cellbridge.features.measure import shape_name
from cellbridge.geometry import polygons_of, rasterize
from cellbridge.objects import REGION_OBJECT_TYPES, PathClass, PathObject
from cellbridge.tiling.plan import Tile, TilePlan


def blend_window(size: int, overlap: int, sides: tuple[bool, bool, bool, bool] = (True, True, True, True)
                 ) -> np.ndarray:
    """(size, size) float32 weights: 1 inside, sin² ramps over `overlap` pixels at the edges named in `sides`
    (left, top, right, bottom; the sides a neighbouring tile overlaps). Never 0.

    Two tiles overlapping by `overlap` pixels have weights summing to 1 across the shared band.
    """
    ramps = []
    for first, last in ((sides[1], sides[3]), (sides[0], sides[2])):   # rows (top, bottom), columns (left, right)
        ramp = np.ones(size, np.float64)
        if overlap > 0:
            n = min(overlap, size)
            rise = np.sin(np.pi / 2 * (np.arange(n) + 0.5) / overlap) ** 2
            if first:
                ramp[:n] = rise
            if last:
                ramp[size - n:] = np.minimum(ramp[size - n:], rise[::-1])
        ramps.append(ramp)
    return np.outer(ramps[0], ramps[1]).astype(np.float32)


def mask_polygons(mask: np.ndarray) -> list[Polygon]:
    """Polygons (holes kept) of the true pixels of a mask, exactly on pixel edges: pixel (i, j) = [j, j+1)×[i, i+1).

    Runs of true pixels in each row, merged down the rows while they keep the same span, become rectangles whose
    union (GEOS) is the mask's exact outline. Pieces touching only at a corner are separate polygons
    (4-connectivity), so that two regions never share a point of area. Outlines are staircases: simplify them
    for display (`RegionMerger` does).
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return []
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, stops = np.nonzero(edges == -1)          # row-major order: the k-th stop closes the k-th start
    order = np.lexsort((rows, stops, starts))   # group equal spans, rows ascending within a group
    rows, starts, stops = rows[order], starts[order], stops[order]
    new = np.ones(len(rows), bool)
    new[1:] = (starts[1:] != starts[:-1]) | (stops[1:] != stops[:-1]) | (rows[1:] != rows[:-1] + 1)
    group = np.cumsum(new) - 1
    first = np.nonzero(new)[0]
    last_row = np.zeros(len(first), np.int64)
    np.maximum.at(last_row, group, rows)
    rectangles = shapely.box(starts[first], rows[first], stops[first], last_row + 1)
    return polygons_of(shapely.union_all(rectangles))


@dataclass
class TileProbabilities:
    """One tile's class probabilities (C, H, W), background first: what `RegionMerger.add` takes."""

    probabilities: np.ndarray


@dataclass
class _Piece:
    class_index: int
    geometry: BaseGeometry   # global model-pixel coordinates


@dataclass
class RegionMerger:
    """Blend tiles' probabilities, polygonise each core's class map, dissolve regions across cores.

    `classes`: the QuPath class of each output channel 1…C-1 (channel 0 is background). Geometry is built in the
    plan's model-pixel grid (origin at the region's top-left) and mapped to level 0 on output; regions are clipped
    to the planned region and to `roi`. Same interface as `SeamMerger`: `add(tile, item)` returns the objects that
    are final, `finish()` the rest.
    """

    plan: TilePlan
    classes: list[PathClass]
    roi: BaseGeometry | None = None
    mpp: float | None = None
    min_area: float = 16.0         # model pixels²: smaller region pieces are dropped
    min_hole_area: float = 16.0    # model pixels²: smaller holes are filled
    simplify: float = 0.5          # model pixels: Douglas-Peucker tolerance (0: exact pixel edges)
    object_type: str = "annotation"  # or "detection"
    _tiles: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _arrived: set[int] = field(default_factory=set, repr=False)
    _finalized: set[int] = field(default_factory=set, repr=False)
    _waiting: list[_Piece] = field(default_factory=list, repr=False)
    peak_tiles: int = 0   # the most tiles' probabilities held at once (the memory bound, measured)
    _window_cache: dict[tuple, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.object_type not in REGION_OBJECT_TYPES:
            raise ValueError(f"object_type must be one of {REGION_OBJECT_TYPES}, got {self.object_type!r}")
        self.step = self.plan.tile_size - self.plan.overlap
        self._neighbours = {t.index: self.plan.neighbours(t) for t in self.plan}
        x0, y0, x1, y1 = self.plan.region
        ds = self.plan.downsample
        self._origin = (x0, y0)
        clip = box(0, 0, (x1 - x0) / ds, (y1 - y0) / ds)   # the region in model pixels
        if self.roi is not None:
            clip = clip.intersection(shapely.transform(self.roi, lambda c: (c - np.array([x0, y0])) / ds))
        self._clip = clip
        shapely.prepare(self._clip)

    def _window(self, tile: Tile, shape: tuple[int, ...]) -> np.ndarray:
        """The tile's blending window: ramps on the sides that have a grid neighbour (cached per kind)."""
        sides = (tile.col > 0, tile.row > 0, tile.col < self.plan.cols - 1, tile.row < self.plan.rows - 1)
        key = (*sides, *shape)
        if key not in self._window_cache:
            self._window_cache[key] = blend_window(max(shape), self.plan.overlap, sides)[:shape[0], :shape[1]]
        return self._window_cache[key]

    # ---- geometry of the grid -------------------------------------------------------------------------------
    def _origin_px(self, tile: Tile) -> tuple[int, int]:
        return tile.col * self.step, tile.row * self.step

    def _core_px(self, tile: Tile) -> tuple[int, int, int, int]:
        """The tile's core in model pixels; cores of the grid partition it on integer pixel edges."""
        half = self.plan.overlap // 2
        x, y = self._origin_px(tile)
        size = self.plan.tile_size
        return (x + half if tile.col > 0 else x, y + half if tile.row > 0 else y,
                x + self.step + half if tile.col < self.plan.cols - 1 else x + size,
                y + self.step + half if tile.row < self.plan.rows - 1 else y + size)

    # ---- streaming -------------------------------------------------------------------------------------------
    def add(self, tile: Tile, item: TileProbabilities) -> list[PathObject]:
        """Take one tile's class probabilities; return the region objects that are now final."""
        if tile.index in self._arrived:
            raise ValueError(f"tile {tile.index} was added twice")
        probabilities = np.asarray(item.probabilities)
        if probabilities.ndim != 3 or probabilities.shape[0] != len(self.classes) + 1:
            raise ValueError(f"expected ({len(self.classes) + 1}, H, W) probabilities, got {probabilities.shape}")
        window = self._window(tile, probabilities.shape[1:])
        self._tiles[tile.index] = (probabilities.astype(np.float32) * window).astype(np.float16)
        self._arrived.add(tile.index)
        self.peak_tiles = max(self.peak_tiles, len(self._tiles))
        final: list[PathObject] = []
        for t in [tile, *self._neighbours[tile.index]]:
            if t.index not in self._finalized and t.index in self._arrived and \
                    all(n.index in self._arrived for n in self._neighbours[t.index]):
                final.extend(self._finalize(t))
        return final

    def finish(self) -> list[PathObject]:
        """Finalize tiles still waiting (e.g. a cancelled run), then dissolve the regions that span cores."""
        final: list[PathObject] = []
        for tile in self.plan:
            if tile.index in self._arrived and tile.index not in self._finalized:
                final.extend(self._finalize(tile))
        self._tiles.clear()
        by_class: dict[int, list[BaseGeometry]] = {}
        for piece in self._waiting:
            by_class.setdefault(piece.class_index, []).append(piece.geometry)
        self._waiting = []
        for class_index in sorted(by_class):
            merged = shapely.union_all(by_class[class_index])
            for polygon in polygons_of(merged):
                final.extend(self._emit(class_index, polygon))
        return final

    def class_map(self, tile: Tile) -> np.ndarray:
        """The blended class map (uint8) of a tile's core, from the tiles held now."""
        x0, y0, x1, y1 = self._core_px(tile)
        total = np.zeros((len(self.classes) + 1, y1 - y0, x1 - x0), np.float32)
        for other in [tile, *self._neighbours[tile.index]]:
            weighted = self._tiles.get(other.index)
            if weighted is None:
                continue
            ox, oy = self._origin_px(other)
            ix0, iy0 = max(x0, ox), max(y0, oy)
            ix1, iy1 = min(x1, ox + weighted.shape[2]), min(y1, oy + weighted.shape[1])
            if ix0 < ix1 and iy0 < iy1:
                total[:, iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] += weighted[:, iy0 - oy:iy1 - oy, ix0 - ox:ix1 - ox]
        return np.argmax(total, axis=0).astype(np.uint8)

    def _finalize(self, tile: Tile) -> list[PathObject]:
        classes = self.class_map(tile)
        x0, y0, x1, y1 = self._core_px(tile)
        inner = (tile.col > 0, tile.row > 0, tile.col < self.plan.cols - 1, tile.row < self.plan.rows - 1)
        final: list[PathObject] = []
        for class_index in range(1, len(self.classes) + 1):
            mask = self._drop_specks(classes == class_index, inner)
            if not mask.any():
                continue
            for polygon in mask_polygons(mask):
                piece = shapely.transform(polygon, lambda c: c + np.array([x0, y0], np.float64))
                bx0, by0, bx1, by1 = piece.bounds
                touches = (inner[0] and bx0 <= x0) or (inner[1] and by0 <= y0) or \
                          (inner[2] and bx1 >= x1) or (inner[3] and by1 >= y1)
                if touches:
                    self._waiting.append(_Piece(class_index, piece))
                else:
                    final.extend(self._emit(class_index, piece))
        self._finalized.add(tile.index)
        for t in [tile, *self._neighbours[tile.index]]:   # free what no core will read again
            if t.index in self._finalized and all(n.index in self._finalized for n in self._neighbours[t.index]):
                self._tiles.pop(t.index, None)
        return final

    def _drop_specks(self, mask: np.ndarray, inner: tuple[bool, bool, bool, bool]) -> np.ndarray:
        """The mask without components smaller than `min_area` that lie inside the core (they would be dropped
        on output anyway; removing them first keeps polygonising fast on noisy maps)."""
        if self.min_area <= 1 or not mask.any():
            return mask
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
        x, y, w, h, area = (stats[:, k] for k in range(5))
        height, width = mask.shape
        reaches = (inner[0] & (x == 0)) | (inner[1] & (y == 0)) | (inner[2] & (x + w == width)) | \
                  (inner[3] & (y + h == height))
        small = (area < self.min_area) & ~reaches
        small[0] = False   # the background
        return mask & ~small[labels] if small.any() else mask

    def _emit(self, class_index: int, polygon: BaseGeometry) -> list[PathObject]:
        """Clip, fill small holes, simplify, drop small pieces, map to level 0 and measure."""
        if not self._clip.contains(polygon):
            polygon = polygon.intersection(self._clip)
        objects = []
        ds, origin = self.plan.downsample, np.array(self._origin, np.float64)
        scale = 1.0 if self.mpp is None else self.mpp
        for part in polygons_of(polygon):
            holes = [ring for ring in part.interiors if Polygon(ring).area >= self.min_hole_area]
            part = Polygon(part.exterior, holes)
            if self.simplify > 0:
                part = part.simplify(self.simplify, preserve_topology=True)
            for piece in polygons_of(part if part.is_valid else shapely.make_valid(part)):
                if piece.area < self.min_area:
                    continue
                geometry = shapely.affinity.affine_transform(piece, [ds, 0, 0, ds, origin[0], origin[1]])
                measurements = {shape_name("Area", self.mpp): float(geometry.area * scale * scale),
                                shape_name("Length", self.mpp): float(geometry.length * scale)}
                objects.append(PathObject(geometry, self.object_type, self.classes[class_index - 1], measurements))
        return objects


def class_map_of(objects: list[PathObject], class_names: list[str], shape: tuple[int, int],
                 origin: tuple[float, float] = (0.0, 0.0), downsample: float = 1.0) -> np.ndarray:
    """Rasterise region objects back into a class map (0 background, k + 1 for `class_names[k]`); larger objects
    first, so that a region inside another's hole keeps its class."""
    out = np.zeros(shape, np.uint8)
    index = {name: k + 1 for k, name in enumerate(class_names)}
    for obj in sorted(objects, key=lambda o: -o.geometry.area):
        if obj.class_name in index:
            out[rasterize(obj.geometry, shape, origin, downsample)] = index[obj.class_name]
    return out
