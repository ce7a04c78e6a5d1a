"""Single-level (flat) TIFFs: a thumbnail or tissue detection reads the full-resolution image in strips, never as
one array, and gets the same pixels as a read in one piece."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from cellbridge.io import slides
from cellbridge.io.slides import ArraySlide, open_slide
from cellbridge.tiling import detect_tissue


@pytest.mark.parametrize("x, y, w, h, downsample", [
    (0, 0, 1000, 700, 4.0),        # whole image, whole blocks
    (0, 0, 1000, 700, 3.0),        # blocks that do not divide the image: edges replicated
    (13, 7, 901, 655, 2.5),        # fractional scale: pre-shrink by 2, then an affine map
    (-50, -20, 1100, 760, 8.0),    # reaching outside the image (white)
    (101.5, 33.25, 640, 480, 5.0),  # fractional origin
])
def test_reading_in_strips_gives_the_same_pixels(monkeypatch, x, y, w, h, downsample) -> None:
    rng = np.random.default_rng(3)
    slide = ArraySlide(rng.integers(0, 256, (700, 1000, 3), dtype=np.uint8))
    whole = slide.read_region(x, y, w, h, downsample)
    monkeypatch.setattr(slides, "STRIP_PIXELS", 20_000)  # strips of a few dozen rows
    requested = []
    read_level = slide._read_level
    monkeypatch.setattr(slide, "_read_level", lambda *a: requested.append(a[3] * a[4]) or read_level(*a))
    np.testing.assert_array_equal(slide.read_region(x, y, w, h, downsample), whole)
    assert len(requested) > 5 and max(requested) <= 20_000 + 1100 * 8


def test_tissue_detection_on_a_flat_tiff_never_reads_the_whole_image_at_once(tmp_path: Path, monkeypatch) -> None:
    side, tile = 2048, 256
    image = np.full((side, side, 3), 235, np.uint8)
    image[300:1500, 200:1100] = (150, 80, 160)  # one block of "tissue"
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, image, tile=(tile, tile), compression="zlib", photometric="rgb")
    with open_slide(path) as slide:
        assert slide.level_count == 1
        in_one_piece = detect_tissue(slide, max_side=256)
        monkeypatch.setattr(slides, "STRIP_PIXELS", side * 64)
        requested = []
        read_level = slide._read_level
        monkeypatch.setattr(slide, "_read_level", lambda *a: requested.append(a[3] * a[4]) or read_level(*a))
        in_strips = detect_tissue(slide, max_side=256)
    np.testing.assert_array_equal(in_strips.mask, in_one_piece.mask)
    assert abs(in_strips.fraction - 1200 * 900 / side ** 2) < 0.02
    assert max(requested) <= side * 64 < side * side // 16
