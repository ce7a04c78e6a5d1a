"""Slides: level choice, exact pixels, resizing, padding, thread safety and clear errors, per backend."""

from __future__ import annotations

import concurrent.futures
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from cellbridge.errors import SlideError
from cellbridge.io.slides import ArraySlide, OpenSlideSlide, TiffSlideSlide, open_slide, openslide_available

WIDTH, HEIGHT = 1536, 1024


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(7)
    low = rng.integers(0, 255, (HEIGHT // 32, WIDTH // 32, 3), dtype=np.uint8)
    smooth = cv2.resize(low, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    noise = rng.integers(-20, 20, (HEIGHT, WIDTH, 3))
    return np.clip(smooth.astype(int) + noise, 0, 255).astype(np.uint8)


def pyramid(image: np.ndarray) -> list[np.ndarray]:
    levels = [image]
    while min(levels[-1].shape[:2]) > 256:
        prev = levels[-1]
        levels.append(cv2.resize(prev, (prev.shape[1] // 2, prev.shape[0] // 2), interpolation=cv2.INTER_AREA))
    return levels


@pytest.fixture(scope="module")
def tiff_path(tmp_path_factory: pytest.TempPathFactory, image: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("slides") / "pyramid.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for level, data in enumerate(pyramid(image)):
            mpp = 0.25 * 2**level
            tw.write(data, tile=(256, 256), compression="zlib", photometric="rgb", subfiletype=1 if level else 0,
                     resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER")
    return path


def backends(tiff_path: Path) -> list:
    found = [TiffSlideSlide(tiff_path)]
    if openslide_available():
        found.append(OpenSlideSlide(tiff_path))
    return found


def test_opens_pyramid_with_levels_and_pixel_size(tiff_path: Path) -> None:
    slide = open_slide(tiff_path)
    assert slide.backend == "tiffslide"
    assert slide.dimensions == (WIDTH, HEIGHT)
    assert slide.level_dimensions == ((1536, 1024), (768, 512), (384, 256))
    assert slide.level_downsamples == (1.0, 2.0, 4.0)
    assert slide.mpp == pytest.approx(0.25)
    assert slide.best_level(1.0) == 0 and slide.best_level(3.0) == 1 and slide.best_level(64) == 2


@pytest.mark.parametrize(("unit", "pixels_per_unit", "expected"),
                         [("micron", 2.0, 0.5), ("\\u00B5m", 4.0, 0.25), ("nm", 0.004, 0.25), ("pixel", 2.0, None)])
def test_imagej_tiff_pixel_size_is_read_as_qupath_reads_it(tmp_path: Path, unit: str, pixels_per_unit: float,
                                                          expected: float | None) -> None:
    path = tmp_path / "fiji.tif"   # ImageJ/Fiji: resolution unit "none", the length unit in the image description
    tifffile.imwrite(path, np.full((64, 80, 3), 200, np.uint8), imagej=True,
                     resolution=(pixels_per_unit, pixels_per_unit), metadata={"unit": unit})
    slide = open_slide(path)
    assert slide.mpp == (pytest.approx(expected) if expected else None)


@pytest.mark.parametrize("backend_index", [0, 1])
def test_exact_pixels_at_pyramid_downsamples(tiff_path: Path, image: np.ndarray, backend_index: int) -> None:
    slides = backends(tiff_path)
    if backend_index >= len(slides):
        pytest.skip("OpenSlide is not installed")
    slide = slides[backend_index]
    levels = pyramid(image)
    np.testing.assert_array_equal(slide.read_region(100, 60, 300, 200), image[60:260, 100:400])
    np.testing.assert_array_equal(slide.read_region(200, 120, 400, 256, 2.0), levels[1][60:188, 100:300])
    np.testing.assert_array_equal(slide.read_region(0, 0, WIDTH, HEIGHT, 4.0), levels[2])
    # downsample 8 from level 2 by exact 2x2 block averaging
    expected = cv2.resize(levels[2], (192, 128), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(slide.read_region(0, 0, WIDTH, HEIGHT, 8.0), expected)
    slide.close()


def test_non_pyramid_downsample_is_resized_in_the_right_place(tiff_path: Path, image: np.ndarray) -> None:
    slide = open_slide(tiff_path)
    region = slide.read_region(300, 200, 600, 450, 3.0)
    assert region.shape == (150, 200, 3)
    reference = cv2.resize(image[200:650, 300:900].astype(np.float32), (200, 150), interpolation=cv2.INTER_AREA)
    assert np.abs(region.astype(np.float32) - reference).mean() < 6
    # shifting the request by 3 level-0 pixels shifts the output by one pixel
    shifted = slide.read_region(303, 200, 600, 450, 3.0)
    assert np.abs(shifted[:, :-1].astype(int) - region[:, 1:].astype(int)).mean() < 6
    assert np.abs(shifted.astype(int) - region.astype(int)).mean() > 2 * np.abs(
        shifted[:, :-1].astype(int) - region[:, 1:].astype(int)).mean()


def test_upsampling_below_level_zero(tiff_path: Path, image: np.ndarray) -> None:
    region = open_slide(tiff_path).read_region(10, 20, 50, 40, 0.5)
    assert region.shape == (80, 100, 3)
    np.testing.assert_allclose(region[1::2, 1::2].astype(float), image[20:60, 10:60].astype(float), atol=40)


RAMP = 64  # side of the ramp slide in level-0 pixels
SLOPE = 4  # grey levels per level-0 pixel


@pytest.fixture(scope="module")
def ramp_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Red = 4 × the x of the pixel centre, green = 4 × its y: a 3-level pyramid whose every level is exact.

    Pixel i holds 4 (i + 0.5); the 2 × 2 mean of a level is again 4 × the centre of the coarser pixel, so every
    level and every resampling maps a level-0 position p to the value 4 p, whatever the path it takes.
    """
    centre = SLOPE * (np.arange(RAMP) + 0.5)
    image = np.zeros((RAMP, RAMP, 3), np.uint8)
    image[:, :, 0], image[:, :, 1], image[:, :, 2] = centre[None, :], centre[:, None], 128
    path = tmp_path_factory.mktemp("ramp") / "ramp.tif"
    with tifffile.TiffWriter(path) as tw:
        for level in range(3):
            data = cv2.resize(image, (RAMP >> level, RAMP >> level), interpolation=cv2.INTER_AREA)
            tw.write(data, tile=(16, 16), photometric="rgb", subfiletype=1 if level else 0)
    return path


@pytest.mark.parametrize("x, y, w, h, downsample", [
    (6, 9, 42, 36, 3.0),        # between pyramid levels 1 and 2: level 1 at 1.5 level pixels per output pixel
    (4.5, 7.5, 45, 39, 1.5),    # from level 0, at a fractional origin
    (10, 12, 20, 16, 0.5),      # upsampling
    (20, 16, 10, 8, 0.25),
    (5, 10, 45, 40, 2.5),       # pre-shrunk by 2 x 2 averaging, then 1.25 level pixels per output pixel
])
def test_resampled_pixel_centres_land_exactly(ramp_path: Path, x: float, y: float, w: float, h: float,
                                              downsample: float) -> None:
    """Output pixel (u, v) shows level-0 position (x + (u + ½) d, y + (v + ½) d): red 4× that x, green 4× that y."""
    slide = open_slide(ramp_path)
    assert slide.level_downsamples == (1.0, 2.0, 4.0)
    region = slide.read_region(x, y, w, h, downsample).astype(float)
    out_h, out_w = round(h / downsample), round(w / downsample)
    assert region.shape == (out_h, out_w, 3)
    expected_red = SLOPE * (x + (np.arange(out_w) + 0.5) * downsample)
    expected_green = SLOPE * (y + (np.arange(out_h) + 0.5) * downsample)
    # a shift of a quarter output pixel would move values by at least 1 grey level
    np.testing.assert_allclose(region[:, :, 0], np.broadcast_to(expected_red, (out_h, out_w)), atol=0.5)
    np.testing.assert_allclose(region[:, :, 1], np.broadcast_to(expected_green[:, None], (out_h, out_w)), atol=0.5)
    assert (region[:, :, 2] == 128).all()


@pytest.mark.parametrize("downsample", [0.5, 0.25, 1.5, 3.0])
def test_a_tile_holds_the_same_pixels_as_the_larger_read_it_is_part_of(tiff_path: Path, downsample: float) -> None:
    """Neighbouring tiles agree in their overlap: a region's border pixels are interpolated from the pixels
    just outside it, as they are when read inside a larger region."""
    slide = open_slide(tiff_path)
    whole = slide.read_region(96, 48, 96 * 3, 96 * 2, downsample)
    ox, oy, size = 24, 12, 48  # a tile of 48 x 48 level-0 pixels at offset (24, 12) inside the larger read
    tile = slide.read_region(96 + ox, 48 + oy, size, size, downsample)
    u, v, n = round(ox / downsample), round(oy / downsample), round(size / downsample)
    np.testing.assert_array_equal(tile, whole[v:v + n, u:u + n])


def test_outside_the_image_is_white_and_shapes_are_exact(tiff_path: Path, image: np.ndarray) -> None:
    slide = open_slide(tiff_path)
    region = slide.read_region(-50, -30, 200, 100)
    assert region.shape == (100, 200, 3)
    assert (region[:30] == 255).all() and (region[:, :50] == 255).all()
    np.testing.assert_array_equal(region[30:, 50:], image[:70, :150])
    far = slide.read_region(WIDTH + 10, 0, 64, 64, 2.0)
    assert far.shape == (32, 32, 3) and (far == 255).all()
    edge = slide.read_region(WIDTH - 100, HEIGHT - 100, 512, 512, 2.0)
    assert edge.shape == (256, 256, 3) and (edge[60:, 60:] == 255).all() and (edge[:40, :40] != 255).any()


def test_reader_threads_get_the_same_pixels_as_one_thread(tiff_path: Path) -> None:
    slide = open_slide(tiff_path)
    rng = random.Random(1)
    requests = [(rng.randrange(-100, WIDTH), rng.randrange(-100, HEIGHT), rng.choice([64, 256, 300]),
                 rng.choice([1.0, 2.0, 4.0, 3.0])) for _ in range(64)]
    serial = [slide.read_region(x, y, s * d, s * d, d) for x, y, s, d in requests]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda r: slide.read_region(r[0], r[1], r[2] * r[3], r[2] * r[3], r[3]), requests))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
    slide.close()


def test_plain_images_through_opencv(tmp_path: Path, image: np.ndarray) -> None:
    png = tmp_path / "tile.png"
    cv2.imwrite(str(png), cv2.cvtColor(image[:200, :300], cv2.COLOR_RGB2BGR))
    slide = open_slide(png)
    assert (slide.backend, slide.dimensions, slide.mpp, slide.level_count) == ("opencv", (300, 200), None, 1)
    np.testing.assert_array_equal(slide.read_region(0, 0, 300, 200), image[:200, :300])
    assert open_slide(png, mpp=0.5).mpp == 0.5

    gray16 = tmp_path / "gray16.png"
    cv2.imwrite(str(gray16), np.full((10, 20), 65535, np.uint16))
    assert (open_slide(gray16).read_region(0, 0, 20, 10) == 255).all()

    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[:, :5] = (0, 0, 255, 255)  # opaque red in BGRA, transparent elsewhere
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    pixels = open_slide(tmp_path / "alpha.png").read_region(0, 0, 10, 10)
    assert tuple(pixels[0, 0]) == (255, 0, 0) and tuple(pixels[0, 9]) == (255, 255, 255)

    jpeg = tmp_path / "photo.jpg"
    cv2.imwrite(str(jpeg), cv2.cvtColor(image[:64, :64], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert np.abs(open_slide(jpeg).read_region(0, 0, 64, 64).astype(int) - image[:64, :64]).mean() < 8


def test_array_slide_reads_like_a_file() -> None:
    array = np.arange(30 * 40 * 3, dtype=np.uint8).reshape(30, 40, 3)
    slide = ArraySlide(array, mpp=0.5)
    np.testing.assert_array_equal(slide.read_region(5, 6, 10, 8), array[6:14, 5:15])


@pytest.mark.parametrize("name, content, reason", [
    ("missing.svs", None, "no such file"),
    ("broken.tif", b"II*\x00garbage" * 10, "unreadable"),
    ("broken.png", b"\x89PNG not really", "OpenCV cannot decode"),
    ("notes.txt", b"hello", "unsupported or unreadable format"),
    ("slide.mrxs", b"[GENERAL]\n", "unreadable (openslide"),
])
def test_bad_files_give_one_slide_error_naming_the_file(tmp_path: Path, name: str, content: bytes | None,
                                                        reason: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SlideError) as error:
        open_slide(path)
    message = str(error.value)
    assert str(path) in message and reason in message and "\n" not in message


def test_folder_and_bad_requests(tmp_path: Path, tiff_path: Path) -> None:
    with pytest.raises(SlideError, match="is a folder"):
        open_slide(tmp_path)
    slide = open_slide(tiff_path)
    with pytest.raises(SlideError, match="region size must be positive"):
        slide.read_region(0, 0, 0, 10)
    with pytest.raises(SlideError, match="downsample must be a positive"):
        slide.read_region(0, 0, 10, 10, 0)
    with pytest.raises(SlideError, match="pixel size"):
        open_slide(tiff_path, mpp=-1)
