"""Tile planning and tissue detection: cores partition the region; empty glass is never planned."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from cellbridge.io.slides import ArraySlide
from cellbridge.tiling import TissueMask, detect_tissue, plan_tiles, tissue_mask_from_rgb
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point, box


def he_like(size: tuple[int, int], blobs: list[tuple[int, int, int]], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """White glass with pink tissue discs (and purple specks inside); returns (rgb, true mask)."""
    h, w = size
    rng = np.random.default_rng(seed)
    rgb = np.clip(rng.normal(240, 4, (h, w, 3)), 0, 255).astype(np.uint8)
    truth = np.zeros((h, w), np.uint8)
    for cx, cy, r in blobs:
        cv2.circle(truth, (cx, cy), r, 1, -1)
    tissue = truth.astype(bool)
    rgb[tissue] = np.clip(rng.normal((225, 160, 195), 8, (tissue.sum(), 3)), 0, 255).astype(np.uint8)
    specks = tissue & (rng.random((h, w)) < 0.05)
    rgb[specks] = (90, 60, 140)
    return rgb, tissue


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_tissue_mask_finds_pink_tissue_on_glass() -> None:
    rgb, truth = he_like((400, 600), [(150, 200, 90), (430, 180, 120)])
    mask = tissue_mask_from_rgb(rgb, margin_px=0)
    assert iou(mask, truth) > 0.95


def test_pale_tissue_and_faint_glass_cast() -> None:
    rgb, truth = he_like((300, 300), [(150, 150, 80)])
    pale = rgb.astype(np.float32)
    pale[truth] = 255 - (255 - pale[truth]) * 0.4  # washed-out staining
    pale[~truth] = pale[~truth] * np.array([1.0, 0.985, 0.99])  # slight colour cast of the glass
    mask = tissue_mask_from_rgb(np.clip(pale, 0, 255).astype(np.uint8), margin_px=0)
    assert iou(mask, truth) > 0.9


def test_all_glass_and_all_tissue() -> None:
    glass, _ = he_like((256, 256), [])
    assert tissue_mask_from_rgb(glass).mean() == 0
    full, truth = he_like((256, 256), [(128, 128, 400)])
    assert truth.all() and tissue_mask_from_rgb(full).mean() > 0.99


def test_fluorescence_background_is_dark() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    cv2.circle(image, (100, 100), 50, (30, 180, 60), -1)
    truth = np.zeros((200, 200), np.uint8)
    cv2.circle(truth, (100, 100), 50, 1, -1)
    assert iou(tissue_mask_from_rgb(image, margin_px=0), truth.astype(bool)) > 0.95


def test_detect_tissue_on_a_slide_and_rectangle_queries() -> None:
    rgb, truth = he_like((2000, 3000), [(800, 900, 500)])
    tissue = detect_tissue(ArraySlide(rgb), max_side=750)
    assert tissue.downsample == 4.0
    assert tissue.fraction == pytest.approx(truth.mean(), abs=0.01)
    assert tissue.any_in(700, 800, 900, 1000)
    assert not tissue.any_in(2000, 0, 3000, 2000)
    assert tissue.any_in(1290, 890, 1400, 910) and not tissue.any_in(1340, 890, 1400, 910)  # blob edge + margin


def test_a_query_ending_part_way_into_the_only_tissue_cell_sees_it() -> None:
    mask = np.zeros((8, 8), bool)
    mask[2, 3] = True  # the one tissue cell: level-0 x in [30, 40), y in [20, 30)
    tissue = TissueMask(mask, downsample=10.0)
    assert tissue.tissue_pixels(0, 0, 33, 80) == 1 and tissue.any_in(0, 0, 33, 80)    # right edge 3 px into it
    assert tissue.tissue_pixels(0, 0, 80, 21.5) == 1 and tissue.any_in(0, 0, 80, 21.5)  # bottom edge 1.5 px in
    assert tissue.any_in(37.5, 28, 80, 80)                                               # left/top edges inside
    assert tissue.any_in(31, 21, 32, 22)                                                 # wholly inside the cell
    assert not tissue.any_in(0, 0, 30, 80) and not tissue.any_in(40, 0, 80, 80)          # ends at / starts past it
    assert not tissue.any_in(0, 0, 80, 20) and not tissue.any_in(0, 30, 80, 80)


def test_tiles_without_tissue_are_not_planned() -> None:
    mask = np.zeros((64, 64), bool)
    mask[10:20, 30:34] = True
    tissue = TissueMask(mask, downsample=32.0)  # 2048 x 2048 slide
    plan = plan_tiles(2048, 2048, tile_size=256, overlap=32, tissue=tissue)
    assert plan.grid_tiles == 81
    for tile in plan:
        assert tissue.any_in(*tile.core)
    covered = [(x, y) for y in range(320, 640, 16) for x in range(960, 1088, 16)]
    for x, y in covered:  # every tissue point is in the core of exactly one planned tile
        assert sum(t.core_contains(x, y) for t in plan) == 1
    assert plan.kept_fraction < 0.15


def test_roi_limits_the_grid_and_drops_tiles_outside_a_concave_roi() -> None:
    roi = box(1000, 1000, 3000, 3000).difference(box(1500, 1500, 3000, 3000))  # an L shape
    plan = plan_tiles(10000, 8000, tile_size=256, overlap=0, roi=roi)
    assert plan.region == (1000, 1000, 3000, 3000)
    assert (plan.rows, plan.cols) == (8, 8)
    assert all(roi.intersects(box(*t.core)) for t in plan)
    assert len(plan) < plan.grid_tiles


def test_tile_coordinates_round_trip() -> None:
    tile = plan_tiles(5000, 5000, tile_size=512, overlap=64, downsample=2.0).tiles[7]
    u, v = tile.to_tile(*tile.to_level0(123.5, 77.25))
    assert (u, v) == (123.5, 77.25)
    assert tile.to_level0(0, 0) == (tile.x, tile.y) and tile.extent == 1024


@settings(max_examples=80, deadline=None)
@given(width=st.integers(1, 5000), height=st.integers(1, 5000), tile_size=st.integers(32, 1024),
       overlap_fraction=st.floats(0, 0.9), downsample=st.sampled_from([1.0, 2.0, 4.0, 1.7]),
       seed=st.integers(0, 1000))
def test_property_cores_partition_the_region(width: int, height: int, tile_size: int, overlap_fraction: float,
                                             downsample: float, seed: int) -> None:
    overlap = int(tile_size * overlap_fraction)
    plan = plan_tiles(width, height, tile_size=tile_size, overlap=overlap, downsample=downsample)
    assert len(plan) == plan.grid_tiles
    region = box(*plan.region)
    area = sum(box(*t.core).intersection(region).area for t in plan)
    assert area == pytest.approx(region.area, rel=1e-9)
    rng = np.random.default_rng(seed)
    for x, y in zip(rng.uniform(0, width, 50), rng.uniform(0, height, 50)):
        owners = [t for t in plan if t.core_contains(x, y)]
        assert len(owners) == 1
        assert owners[0].bounds[0] <= x < owners[0].bounds[2]
    for tile in plan:  # each core lies inside its tile, at least half the overlap from inner edges
        x0, y0, x1, y1 = tile.core
        half = overlap * downsample / 2
        assert tile.x <= x0 and x1 <= tile.x + tile.extent
        if tile.col > 0:
            assert x0 - tile.x == pytest.approx(half)
        if tile.row < plan.rows - 1:
            assert tile.y + tile.extent - y1 == pytest.approx(half)


def test_point_roi() -> None:
    # the ROI's bounds (450, 450, 550, 550) are exactly one tile: one tile, its core the whole region
    plan = plan_tiles(1000, 1000, tile_size=100, overlap=10, roi=Point(500, 500).buffer(50))
    assert plan.region == (450, 450, 550, 550) and (plan.rows, plan.cols) == (1, 1)
    [tile] = plan.tiles
    assert tile.bounds == (450, 450, 550, 550) and tile.core == (450, 450, 550, 550)
    # one pixel wider: a 2 x 2 grid 90 px apart; the bottom-right core starts at (544.5, 544.5), 62.9 px from
    # the centre, outside the disc of radius 50.5, so that tile is left out
    wider = plan_tiles(1000, 1000, tile_size=100, overlap=10, roi=Point(500, 500).buffer(50.5))
    assert (wider.rows, wider.cols) == (2, 2)
    assert [(t.x, t.y) for t in wider] == [(449.5, 449.5), (539.5, 449.5), (449.5, 539.5)]
