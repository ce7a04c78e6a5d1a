"""Real vendor slide files (../shared/data/slides): an Aperio SVS (H&E) and two Hamamatsu NDPI (fluorescence).

Levels, pixel size, regions at several downsamples against the file's own levels, associated images, and a
brightfield model refusing a fluorescence slide in one line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cellbridge.errors import SlideError
from cellbridge.models import DEFAULT_NUCLEI_MODEL
from cellbridge.io.slides import OpenSlideSlide, TiffSlideSlide, fluorescence_evidence, open_slide, openslide_available

SLIDES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "slides"
SVS = SLIDES / "CMU-1-Small-Region.svs"
NDPI = [SLIDES / "fluorescence-DAPI.ndpi", SLIDES / "fluorescence-TRITC.ndpi"]

pytestmark = pytest.mark.skipif(not SLIDES.is_dir(), reason="../shared/data/slides (real vendor slides) is absent")
needs_openslide = pytest.mark.skipif(not openslide_available(), reason="OpenSlide (openslide-python + library) "
                                     "is not installed")


def _mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_aperio_svs_through_tiffslide() -> None:
    with open_slide(SVS) as slide:
        assert isinstance(slide, TiffSlideSlide)
        assert slide.dimensions == (2220, 2967) and slide.level_count == 1
        assert slide.mpp == pytest.approx(0.499)
        full = slide.read_region(0, 0, 2220, 2967)
        assert full.shape == (2967, 2220, 3) and full.dtype == np.uint8
        assert 150 < full.mean() < 230  # H&E: pale pink tissue and white glass
        # regions at several downsamples: the level-0 pixels averaged (one level only: resampled from it)
        for downsample in (2.0, 4.0, 8.0):
            region = slide.read_region(512, 768, 1024, 1024, downsample)
            side = round(1024 / downsample)
            assert region.shape == (side, side, 3)
            expected = cv2.resize(full[768:1792, 512:1536], (side, side), interpolation=cv2.INTER_AREA)
            assert _mean_difference(region, expected) < 2.0
        outside = slide.read_region(2000, 2900, 400, 200, 2.0)  # past the right and bottom edges: white glass
        assert outside.shape == (100, 200, 3) and (outside[60:, :] == 255).all() and (outside[:, 120:] == 255).all()
        assert set(slide.associated_image_names) == {"label", "macro", "thumbnail"}
        macro = slide.read_associated("macro")
        assert macro.ndim == 3 and macro.shape[2] == 3 and macro.shape[1] > macro.shape[0]  # the glass slide
        with pytest.raises(SlideError, match="no associated image 'overview'; it has"):
            slide.read_associated("overview")
        assert fluorescence_evidence(slide) is None


@needs_openslide
def test_aperio_svs_reads_the_same_through_openslide() -> None:
    with TiffSlideSlide(SVS) as tiff, OpenSlideSlide(SVS) as native:
        assert native.dimensions == tiff.dimensions and native.mpp == pytest.approx(tiff.mpp)
        assert set(native.associated_image_names) == set(tiff.associated_image_names)
        for downsample in (1.0, 3.0):
            a = tiff.read_region(700, 900, 600, 480, downsample)
            b = native.read_region(700, 900, 600, 480, downsample)
            assert a.shape == b.shape and _mean_difference(a, b) < 1.5  # the same JPEG tiles, two decoders


@needs_openslide
@pytest.mark.parametrize("path", NDPI, ids=lambda p: p.stem)
def test_hamamatsu_ndpi_levels_regions_and_macro(path: Path) -> None:
    with open_slide(path) as slide:
        assert isinstance(slide, OpenSlideSlide)
        assert slide.dimensions == (3968, 4864) and slide.level_count == 7
        assert slide.level_downsamples == (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
        assert slide.mpp == pytest.approx(0.2282, abs=1e-4)
        # a region at a level's own downsample is that level's pixels; between levels, resampled from the finer
        level2 = slide.read_region(1024, 2048, 1024, 1024, 4.0)
        assert level2.shape == (256, 256, 3)
        direct = slide._read_level(2, 256, 512, 256, 256)
        assert np.array_equal(level2, direct)
        for downsample in (2.0, 8.0):
            region = slide.read_region(1024, 2048, 1024, 1024, downsample)
            side = round(1024 / downsample)
            expected = cv2.resize(slide.read_region(1024, 2048, 1024, 1024, 1.0), (side, side),
                                  interpolation=cv2.INTER_AREA)
            assert region.shape == (side, side, 3) and _mean_difference(region, expected) < 3.0
        assert slide.associated_image_names == ("macro",)
        assert slide.read_associated("macro").shape[2] == 3
        assert "fluorescence image" in (fluorescence_evidence(slide) or "")


@needs_openslide
def test_a_brightfield_model_refuses_a_fluorescence_slide_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "nuclei.geojson"
    done = subprocess.run([sys.executable, "-m", "cellbridge", "nuclei", str(NDPI[0]), "--out", str(out),
                           "--device", "cpu"], capture_output=True, text=True)
    assert done.returncode == 2 and not out.exists()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "fluorescence image" in lines[0]
    assert f"model '{DEFAULT_NUCLEI_MODEL}' is for brightfield" in lines[0]


def test_dab_scoring_on_the_real_he_slide_is_warned_about(caplog) -> None:
    from cellbridge.ihc import StainVectors, stains_for_slide

    with open_slide(SVS) as slide, caplog.at_level("WARNING"):
        stains, note = stains_for_slide("estimate", slide)
    assert stains == StainVectors.default("ihc-dab") and "looks like an H&E image" in note
    assert any("CMU-1-Small-Region.svs" in r.getMessage() for r in caplog.records)
