"""Seam-free merge: objects across tile borders and 4-tile corners come out exactly once, whole."""

from __future__ import annotations

import random

import pytest
import shapely
from cellbridge.merge import SeamMerger, merge_tiles
from cellbridge.objects import PathObject
from cellbridge.tiling import Tile, TilePlan, plan_tiles
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely import affinity
from shapely.geometry import Point, box


def ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0) -> shapely.Polygon:
    return affinity.rotate(affinity.scale(Point(cx, cy).buffer(1.0, 16), rx, ry), angle)


def seen_by_tile(tile: Tile, truth: list[shapely.Polygon]) -> list[PathObject]:
    """What a model sees in a tile: each object clipped to the tile (cut at its edges)."""
    frame = box(*tile.bounds)
    objects = []
    for i, polygon in enumerate(truth):
        clipped = polygon.intersection(frame)
        if clipped.area > 0:
            objects.append(PathObject(clipped, measurements={"truth": i}))
    return objects


def run_merge(plan: TilePlan, truth: list[shapely.Polygon], order: list[Tile] | None = None) -> list[PathObject]:
    tiles = order if order is not None else list(plan)
    return merge_tiles(plan, ((t, seen_by_tile(t, truth)) for t in tiles))


def assert_exact(merged: list[PathObject], truth: list[shapely.Polygon]) -> None:
    ids = [int(o.measurements["truth"]) for o in merged]
    assert len(ids) == len(set(ids)), "duplicates across seams"
    assert sorted(ids) == list(range(len(truth))), "objects lost"
    for obj in merged:
        original = truth[int(obj.measurements["truth"])]
        assert obj.geometry.symmetric_difference(original).area < 1e-6 * original.area, "cut object"


def seam_truth(plan: TilePlan, radius: float) -> list[shapely.Polygon]:
    """Nuclei centred on every core seam, every 4-tile corner, and on tile edges (where tiles cut them)."""
    truth = []
    xs = sorted({t.core[0] for t in plan if t.col > 0})
    ys = sorted({t.core[1] for t in plan if t.row > 0})
    for x in xs:
        for y in ys:
            truth.append(ellipse(x, y, radius, radius * 0.7, 30))  # 4-tile corner of the cores
            truth.append(ellipse(x + 0.3, y + 3 * radius, radius * 0.8, radius * 0.6))  # on a vertical seam
            truth.append(ellipse(x + 3 * radius, y - 0.4, radius * 0.9, radius * 0.5, 80))  # horizontal seam
    edges_x = sorted({t.x for t in plan if t.col > 0})
    edges_y = sorted({t.y for t in plan if t.row > 0})
    for x in edges_x:
        for y in edges_y:
            truth.append(ellipse(x + 0.5 * radius, y - 4 * radius, radius, radius * 0.8))  # cut by a tile edge
            truth.append(ellipse(x - 4 * radius, y + 0.2 * radius, radius * 0.7, radius))  # cut by a tile edge
    return [p for i, p in enumerate(truth) if not any(p.intersects(q) for q in truth[:i])]


def test_objects_on_seams_and_corners_come_out_once_and_whole() -> None:
    plan = plan_tiles(2048, 2048, tile_size=512, overlap=64)
    assert (plan.rows, plan.cols) == (5, 5)
    truth = seam_truth(plan, radius=14)
    assert len(truth) == 80
    merged = run_merge(plan, truth)
    assert_exact(merged, truth)


def test_scenario_has_cut_pieces_and_naive_stitching_duplicates() -> None:
    """Guard that the merge has real work: tiles see cut pieces, and keeping everything duplicates."""
    plan = plan_tiles(2048, 2048, tile_size=512, overlap=64)
    truth = seam_truth(plan, radius=14)
    seen = [(tile, obj) for tile in plan for obj in seen_by_tile(tile, truth)]
    cut = [obj for _, obj in seen if obj.geometry.area < truth[int(obj.measurements["truth"])].area - 1e-6]
    assert len(cut) >= 32
    assert len(seen) > 2 * len(truth)


def test_merge_at_downsample_and_with_region_offset() -> None:
    roi = box(300, 200, 3900, 3100)
    plan = plan_tiles(4000, 3300, tile_size=256, overlap=40, downsample=2.0, roi=roi)
    truth = [p for p in seam_truth(plan, radius=30) if roi.contains(p.centroid)]
    assert len(truth) > 20
    assert_exact(merge_tiles(plan, ((t, seen_by_tile(t, truth)) for t in plan), roi=roi), truth)


def test_result_does_not_depend_on_tile_order() -> None:
    plan = plan_tiles(1500, 1300, tile_size=300, overlap=50)
    truth = seam_truth(plan, radius=10)
    order = list(plan)
    random.Random(3).shuffle(order)
    assert_exact(run_merge(plan, truth, order), truth)


def jittered(tile: Tile, truth: list[shapely.Polygon]) -> list[PathObject]:
    """Every tile predicts each object slightly differently (shifted by a tile-dependent offset)."""
    rng = random.Random(tile.index)
    frame = box(*tile.bounds)
    objects = []
    for i, polygon in enumerate(truth):
        moved = affinity.translate(polygon, rng.uniform(-2, 2), rng.uniform(-2, 2))
        if moved.within(frame) and not moved.touches(frame.exterior):
            objects.append(PathObject(moved, measurements={"truth": i, "Detection probability": rng.random()}))
    return objects


def widened_core_contains(tile: Tile, plan: TilePlan, x: float, y: float, tolerance: float = 4.0) -> bool:
    x0, y0, x1, y1 = tile.core
    t = tolerance * tile.downsample
    return (x0 - (t if tile.col > 0 else 0) <= x < x1 + (t if tile.col < plan.cols - 1 else 0)
            and y0 - (t if tile.row > 0 else 0) <= y < y1 + (t if tile.row < plan.rows - 1 else 0))


def test_jittered_predictions_on_a_seam_come_out_once_keeping_the_most_confident() -> None:
    plan = plan_tiles(1024, 1024, tile_size=512, overlap=96)
    seam = plan.tiles[1].core[0]
    # centred within 1 px of the seam: the tiles' jittered copies land on both sides of it
    truth = [ellipse(seam + dx, 100 + 60 * k, 12, 9) for k, dx in enumerate([-1, -0.5, 0.0, 0.5, 1.0] * 2)]
    per_tile = {t.index: jittered(t, truth) for t in plan}

    def owned_strictly(i: int) -> bool:
        return any(t.core_contains(o.geometry.centroid.x, o.geometry.centroid.y)
                   for t in plan for o in per_tile[t.index] if o.measurements["truth"] == i)

    assert not all(owned_strictly(i) for i in range(len(truth))), "scenario must lose objects to a strict rule"
    merged = merge_tiles(plan, ((t, per_tile[t.index]) for t in plan))
    assert sorted(int(o.measurements["truth"]) for o in merged) == list(range(len(truth)))
    for obj in merged:
        copies = [o for t in plan for o in per_tile[t.index] if o.measurements["truth"] == obj.measurements["truth"]
                  and widened_core_contains(t, plan, o.geometry.centroid.x, o.geometry.centroid.y)]
        assert obj.measurements["Detection probability"] == max(c.measurements["Detection probability"]
                                                                for c in copies)


def test_streaming_emits_early_and_holds_a_bounded_number_of_objects() -> None:
    plan = plan_tiles(4096, 4096, tile_size=256, overlap=32)
    rng = random.Random(0)
    truth = []
    for _ in range(3000):
        candidate = ellipse(rng.uniform(8, 4088), rng.uniform(8, 4088), 6, 5)
        truth.append(candidate)
    truth = [p for i, p in enumerate(truth) if not any(p.intersects(q) for q in truth[:i])]
    merger = SeamMerger(plan)
    emitted, held_max = [], 0
    for tile in plan:  # row-major order
        emitted.extend(merger.add(tile, seen_by_tile(tile, truth)))
        held_max = max(held_max, merger.waiting)
    assert not merger.finish()
    assert merger.waiting == 0
    assert_exact(emitted, truth)
    # waiting objects are limited to about two rows of tiles' border bands, not the slide
    assert held_max < len(truth) * 3 / plan.rows


def test_roi_filters_by_centroid() -> None:
    plan = plan_tiles(1000, 1000, tile_size=400, overlap=40)
    truth = [ellipse(100, 100, 10, 10), ellipse(500, 500, 10, 10), ellipse(900, 900, 10, 10)]
    roi = box(400, 400, 1000, 1000).difference(box(850, 850, 1000, 1000))
    merged = merge_tiles(plan, ((t, seen_by_tile(t, truth)) for t in plan), roi=roi)
    assert [int(o.measurements["truth"]) for o in merged] == [1]


@settings(max_examples=60, deadline=None)
@given(
    tile_size=st.integers(96, 400),
    overlap_fraction=st.floats(0.1, 0.5),
    downsample=st.sampled_from([1.0, 2.0, 1.5]),
    width=st.integers(200, 1600),
    height=st.integers(200, 1600),
    seed=st.integers(0, 10_000),
)
def test_property_every_object_exactly_once_and_whole(tile_size: int, overlap_fraction: float, downsample: float,
                                                      width: int, height: int, seed: int) -> None:
    overlap = max(16, int(tile_size * overlap_fraction))
    plan = plan_tiles(width, height, tile_size=tile_size, overlap=overlap, downsample=downsample)
    rng = random.Random(seed)
    # diameter below the overlap minus twice the seam tolerance: each kept object lies whole in its tile
    max_radius = (overlap - 2 * 4 - 2) * downsample / 2
    truth: list[shapely.Polygon] = []
    for _ in range(120):
        r = rng.uniform(1.5, max_radius)
        p = ellipse(rng.uniform(0, width), rng.uniform(0, height), r, r * rng.uniform(0.5, 1), rng.uniform(0, 180))
        if p.within(box(0, 0, width, height)) and not any(p.intersects(q) for q in truth):
            truth.append(p)
    # nuclei on seams and corners too, where random placement rarely lands
    seam = [p for p in seam_truth(plan, radius=max(1.5, max_radius * 0.6))
            if p.within(box(0, 0, width, height)) and not any(p.intersects(q) for q in truth)]
    truth.extend(seam)
    order = list(plan)
    rng.shuffle(order)
    assert_exact(run_merge(plan, truth, order), truth)


def test_plan_rejects_bad_parameters() -> None:
    from cellbridge.errors import CellBridgeError

    with pytest.raises(CellBridgeError, match="overlap"):
        plan_tiles(100, 100, tile_size=64, overlap=64)
    with pytest.raises(CellBridgeError, match="outside"):
        plan_tiles(100, 100, roi=box(200, 200, 300, 300))


def test_edge_touch_tolerance_scales_with_the_downsample() -> None:
    """A detector box cut by an inner edge ends 0.3 output pixels short of it at downsample 2: still cut.

    0.3 output pixels are 0.6 level-0 pixels, inside the 0.5-output-pixel tolerance (1 level-0 pixel here). The
    cut box is more confident than the whole box of the neighbouring tile, and its centroid lies in its own
    tile's widened core: only the edge rule keeps the cut copy out.
    """
    plan = plan_tiles(224, 128, tile_size=64, overlap=16, downsample=2.0)
    left, right = plan.tiles
    assert (left.bounds, right.bounds) == ((0, 0, 128, 128), (96, 0, 224, 128))
    whole = box(98, 40, 138, 70)
    cut = box(98, 40, left.bounds[2] - 0.3 * left.downsample, 70)
    per_tile = [(left, [PathObject(cut, measurements={"truth": 0, "Detection probability": 0.9})]),
                (right, [PathObject(whole, measurements={"truth": 1, "Detection probability": 0.8})])]
    merged = merge_tiles(plan, per_tile)
    assert [o.measurements["truth"] for o in merged] == [1]
    assert merged[0].geometry.equals(whole)
