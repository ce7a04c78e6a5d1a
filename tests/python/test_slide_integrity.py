"""Slides cut short or with tiles that fail to decode are errors naming the file and the tile, never blank
pixels that a model would read as tissue."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from cellbridge.errors import CorruptSlideError
from cellbridge.io.slides import open_slide
from cellbridge.synth import SynthConfig, build_scene, render_region
from damaged_tiffs import blank_tile


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return render_region(build_scene(SynthConfig(width=512, height=512, tissue_fraction=0.9, seed=4)), 0, 0, 512, 512)


def _pyramid(path: Path, rgb: np.ndarray) -> None:
    """A two-level tiled JPEG TIFF, level 0 first, then the half-size level."""
    with tifffile.TiffWriter(path) as tif:
        tif.write(rgb, tile=(256, 256), compression="jpeg", photometric="rgb", subifds=1)
        tif.write(cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_AREA), tile=(256, 256), compression="jpeg",
                  photometric="rgb", subfiletype=1)


def test_a_tiff_cut_short_is_refused_naming_the_tile(tmp_path: Path, rgb: np.ndarray) -> None:
    whole = tmp_path / "whole.tif"
    _pyramid(whole, rgb)
    with open_slide(whole) as slide:
        assert slide.level_count == 2
        np.testing.assert_array_equal(slide.read_region(0, 0, 512, 512).shape, (512, 512, 3))
    data = whole.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[:len(data) - 2000])  # the last tile loses its end: libjpeg would pad it with grey
    with pytest.raises(CorruptSlideError, match=r"cut\.tif: the file is cut short: level 1 tile \(column 0, row 0\)"):
        open_slide(cut)


def test_a_corrupt_jpeg_tile_fails_the_read_naming_it(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "corrupt.tif"
    tifffile.imwrite(path, rgb, tile=(256, 256), compression="jpeg", photometric="rgb")
    blank_tile(path, 3, path)
    with open_slide(path) as slide:
        good = slide.read_region(0, 0, 256, 256)  # the intact tiles still read
        assert good.shape == (256, 256, 3) and good.std() > 10
        with pytest.raises(CorruptSlideError, match=r"corrupt\.tif: level 0 tile \(column 1, row 1\) at x=256, "
                                                    r"y=256 cannot be decoded"):
            slide.read_region(200, 200, 200, 200)
        with pytest.raises(CorruptSlideError, match="column 1, row 1"):
            slide.thumbnail(128)

