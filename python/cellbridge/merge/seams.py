"""Seam-free merging of per-tile objects into one set for the region.

Rules, in order:
1. An object touching an inner edge of its tile is cut by that edge: it is dropped, because the neighbouring
   tile sees it whole (given an overlap of at least the largest object's diameter).
2. An object is kept by the tile whose core holds its centroid (cores partition the region), and only when
   the centroid lies in the ROI, if there is one. Cores are widened by `seam_tolerance` output pixels on
   inner sides: two tiles predict an object on their seam slightly differently, and without the tolerance
   each copy's centroid could fall in the other tile's core, so that neither tile keeps it.
3. Duplicates (near-seam objects kept by two tiles) are resolved by IoU: of two objects from different
   tiles with IoU above the threshold, the one with the higher score (then the larger area) is kept. The
   rule is applied pairwise and does not depend on the order in which tiles arrive.

Objects come out whole when the overlap exceeds the largest object's diameter plus twice the tolerance.

`SeamMerger` streams: objects far from every neighbouring tile are final at once; the others wait only
until all tiles around theirs have arrived, so memory stays bounded by a few rows of tiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import shapely
from shapely.geometry.base import BaseGeometry
from shapely.strtree import STRtree

from cellbridge.objects import SCORE_MEASUREMENT, PathObject
from cellbridge.tiling.plan import Rect, Tile, TilePlan

EDGE_TOLERANCE = 0.5  # output pixels: an object this close to an inner tile edge counts as touching it
SEAM_TOLERANCE = 4.0  # output pixels by which cores are widened on inner sides


@dataclass
class _Candidate:
    obj: PathObject
    geometry: BaseGeometry
    score: float
    area: float
    order: tuple[int, int]  # (tile index, index in tile): the final tie-break, independent of arrival order

    def beats(self, other: _Candidate) -> bool:
        return (self.score, self.area, -self.order[0], -self.order[1]) > (
            other.score, other.area, -other.order[0], -other.order[1])


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def iou(a: BaseGeometry, b: BaseGeometry) -> float:
    """Intersection over union of two areal geometries (0 when either has no area)."""
    union = a.union(b).area
    return a.intersection(b).area / union if union > 0 else 0.0


class SeamMerger:
    """Merge objects tile by tile, in any order, emitting each object as soon as it is final."""

    def __init__(self, plan: TilePlan, iou_threshold: float = 0.5, roi: BaseGeometry | None = None,
                 score_measurement: str = SCORE_MEASUREMENT, seam_tolerance: float = SEAM_TOLERANCE) -> None:
        if not 0 <= 2 * seam_tolerance < plan.overlap or plan.overlap == 0:
            seam_tolerance = 0.0
        self.plan = plan
        self.iou_threshold = iou_threshold
        self.seam_tolerance = seam_tolerance
        self.roi = roi
        if roi is not None:
            shapely.prepare(roi)
        self.score_measurement = score_measurement
        self._neighbours = {t.index: plan.neighbours(t) for t in plan}
        self._added: set[int] = set()
        self._finalized: set[int] = set()
        self._candidates: dict[int, list[_Candidate]] = {}
        self._trees: dict[int, STRtree] = {}

    @property
    def waiting(self) -> int:
        """Objects held back until the tiles around theirs arrive."""
        return sum(len(c) for c in self._candidates.values())

    def _inner_edges(self, tile: Tile) -> Rect:
        """The tile's bounds where a neighbour exists in the grid, ±inf on the region's border sides."""
        x0, y0, x1, y1 = tile.bounds
        inf = float("inf")
        return (x0 if tile.col > 0 else -inf, y0 if tile.row > 0 else -inf,
                x1 if tile.col < self.plan.cols - 1 else inf, y1 if tile.row < self.plan.rows - 1 else inf)

    def _keeps(self, tile: Tile, obj: PathObject, inner: Rect) -> bool:
        geometry = obj.locating_geometry
        if geometry.is_empty:
            return False
        gx0, gy0, gx1, gy1 = geometry.bounds
        tolerance = EDGE_TOLERANCE * tile.downsample
        if gx0 <= inner[0] + tolerance or gy0 <= inner[1] + tolerance or \
                gx1 >= inner[2] - tolerance or gy1 >= inner[3] - tolerance:
            return False
        centroid = geometry.centroid
        x0, y0, x1, y1 = tile.core
        widen = self.seam_tolerance * tile.downsample
        if not (x0 - (widen if tile.col > 0 else 0) <= centroid.x < x1 + (widen if tile.col < self.plan.cols - 1 else 0)
                and y0 - (widen if tile.row > 0 else 0) <= centroid.y < y1 + (widen if tile.row < self.plan.rows - 1 else 0)):
            return False
        return self.roi is None or self.roi.contains(centroid)

    def add(self, tile: Tile, objects: Iterable[PathObject]) -> list[PathObject]:
        """Take one tile's objects (level-0 geometry); return those that are now final."""
        if tile.index in self._added:
            raise ValueError(f"tile {tile.index} was already added")
        self._added.add(tile.index)
        inner = self._inner_edges(tile)
        neighbour_boxes = [n.bounds for n in self._neighbours[tile.index]]
        final: list[PathObject] = []
        waiting: list[_Candidate] = []
        for i, obj in enumerate(objects):
            if not self._keeps(tile, obj, inner):
                continue
            bounds = obj.locating_geometry.bounds
            if any(_overlaps(bounds, b) for b in neighbour_boxes):
                geometry = obj.locating_geometry
                score = float(obj.measurements.get(self.score_measurement, 0.0))
                score = score if math.isfinite(score) else 0.0
                waiting.append(_Candidate(obj, geometry, score, geometry.area, (tile.index, i)))
            else:
                final.append(obj)  # no object of another tile can reach it
        self._candidates[tile.index] = waiting
        for t in [tile, *self._neighbours[tile.index]]:
            if t.index not in self._finalized and self._ready(t):
                final.extend(self._finalize(t))
        return final

    def _ready(self, tile: Tile) -> bool:
        return tile.index in self._added and all(n.index in self._added for n in self._neighbours[tile.index])

    def _tree(self, index: int) -> STRtree:
        tree = self._trees.get(index)
        if tree is None:
            tree = STRtree([c.geometry for c in self._candidates[index]])
            self._trees[index] = tree
        return tree

    def _finalize(self, tile: Tile) -> Iterator[PathObject]:
        neighbours = self._neighbours[tile.index]
        kept = []
        for candidate in self._candidates[tile.index]:
            if not any(self._beaten_by(candidate, n.index) for n in neighbours):
                kept.append(candidate.obj)
        self._finalized.add(tile.index)
        for t in [tile, *neighbours]:  # free candidate sets nobody will query again
            if t.index in self._finalized and all(n.index in self._finalized for n in self._neighbours[t.index]):
                self._candidates[t.index] = []
                self._trees.pop(t.index, None)
        return iter(kept)

    def _beaten_by(self, candidate: _Candidate, other_tile: int) -> bool:
        others = self._candidates.get(other_tile)
        if not others:
            return False
        for j in self._tree(other_tile).query(candidate.geometry):
            other = others[int(j)]
            if other.beats(candidate) and iou(candidate.geometry, other.geometry) > self.iou_threshold:
                return True
        return False

    def finish(self) -> list[PathObject]:
        """Objects still waiting because some tiles never arrived (e.g. a cancelled run)."""
        final: list[PathObject] = []
        for tile in self.plan:
            if tile.index in self._added and tile.index not in self._finalized:
                final.extend(self._finalize(tile))
        return final


def merge_tiles(plan: TilePlan, tile_objects: Iterable[tuple[Tile, Iterable[PathObject]]],
                iou_threshold: float = 0.5, roi: BaseGeometry | None = None,
                seam_tolerance: float = SEAM_TOLERANCE) -> list[PathObject]:
    """Merge all tiles' objects (level-0 geometry) into one seam-free list."""
    merger = SeamMerger(plan, iou_threshold=iou_threshold, roi=roi, seam_tolerance=seam_tolerance)
    merged: list[PathObject] = []
    for tile, objects in tile_objects:
        merged.extend(merger.add(tile, objects))
    merged.extend(merger.finish())
    return merged
