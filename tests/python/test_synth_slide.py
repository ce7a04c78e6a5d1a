"""Synthetic slides: deterministic, seamless, H&E-like, with exact non-overlapping ground truth."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import shapely
from cellbridge.errors import CellBridgeError
from cellbridge.io.qupath_geojson import read_objects
from cellbridge.io.slides import open_slide
from cellbridge.synth import HE_VESICULAR_CLASSES, SynthConfig, build_scene, generate_slide, render_region
from cellbridge.tiling import detect_tissue, plan_tiles
from shapely.geometry import box

SMALL = SynthConfig(width=1536, height=1280, tissue_fraction=0.35, seed=3)


@pytest.fixture(scope="module")
def scene():
    return build_scene(SMALL)


def test_same_seed_same_scene_other_seed_differs(scene) -> None:
    again = build_scene(SMALL)
    assert np.array_equal(scene.centres, again.centres) and np.array_equal(scene.labels, again.labels)
    assert np.array_equal(render_region(scene, 300, 200, 256, 256), render_region(again, 300, 200, 256, 256))
    other = build_scene(SynthConfig(width=1536, height=1280, tissue_fraction=0.35, seed=4))
    assert not np.array_equal(scene.centres[:10], other.centres[:10])


def test_rendering_is_seamless_wherever_the_region_is_cut(scene) -> None:
    whole = render_region(scene, 0, 0, 1536, 1280)
    cuts_x, cuts_y = [0, 301, 517, 1100, 1536], [0, 233, 640, 1280]
    stitched = np.zeros_like(whole)
    for x0, x1 in zip(cuts_x, cuts_x[1:]):
        for y0, y1 in zip(cuts_y, cuts_y[1:]):
            stitched[y0:y1, x0:x1] = render_region(scene, x0, y0, x1 - x0, y1 - y0)
    assert np.array_equal(whole, stitched)


def test_tissue_fraction_is_hit(scene) -> None:
    assert abs(scene.tissue_fraction - 0.35) < 0.02
    for fraction in (0.0, 0.05, 1.0):
        built = build_scene(SynthConfig(width=1024, height=1024, tissue_fraction=fraction, seed=1))
        assert abs(built.tissue_fraction - fraction) < 0.02
    assert len(build_scene(SynthConfig(width=512, height=512, tissue_fraction=0.0))) == 0


def test_nuclei_are_disjoint_inside_tissue_and_sized_by_class(scene) -> None:
    polygons = [scene.polygon(i) for i in range(len(scene))]
    assert len(polygons) > 300
    tree = shapely.STRtree(polygons)
    left, right = tree.query(polygons, predicate="intersects")
    assert np.all(left == right), "two nuclei overlap"
    bounds = shapely.bounds(polygons)
    assert bounds[:, :2].min() >= 0 and bounds[:, 2].max() <= SMALL.width and bounds[:, 3].max() <= SMALL.height
    assert np.all(scene.tissue_at(scene.centres[:, 0], scene.centres[:, 1]) >= scene.threshold)
    areas = shapely.area(polygons)
    names = np.array([scene.class_name(i) for i in range(len(scene))])
    assert set(names) == {"Tumor", "Immune cells", "Stroma"}
    assert np.median(areas[names == "Immune cells"]) < 0.5 * np.median(areas[names == "Tumor"])
    elongation = scene.axes[:, 0] / scene.axes[:, 1]
    assert np.median(elongation[names == "Stroma"]) > 2 * np.median(elongation[names == "Immune cells"])
    # clusters: many nuclei have a neighbour within 3 px (touching), which a detector must split
    near = tree.query(polygons, predicate="dwithin", distance=3.0)
    touching = np.unique(near[0][near[0] != near[1]])
    assert len(touching) > 0.2 * len(polygons)


def test_nuclei_render_dark_purple_on_pink_tissue_and_glass_is_white(scene) -> None:
    rgb = render_region(scene, 0, 0, SMALL.width, SMALL.height).astype(float)
    nucleus = np.zeros(rgb.shape[:2], bool)
    for i in range(len(scene)):
        x, y = np.round(scene.centres[i]).astype(int)
        nucleus[y - 1:y + 1, x - 1:x + 1] = True
    ys, xs = np.nonzero(~nucleus)
    tissue = scene.tissue_at(xs + 0.5, ys + 0.5) >= scene.threshold + 0.1
    far_glass = scene.tissue_at(xs + 0.5, ys + 0.5) < scene.threshold - 0.1
    stroma, glass, nuclei = rgb[ys[tissue], xs[tissue]], rgb[ys[far_glass], xs[far_glass]], rgb[nucleus]
    assert glass.mean() > 235 and np.ptp(glass.mean(0)) < 6                  # near-white, neutral
    assert stroma[:, 0].mean() > stroma[:, 1].mean() + 40                      # pink: red ≫ green
    assert nuclei.mean() < stroma.mean() - 60                                   # nuclei much darker
    assert nuclei[:, 2].mean() > nuclei[:, 1].mean() + 30                       # purple: blue ≫ green


def test_vesicular_tumour_nuclei_are_pale_inside_a_dark_rim_and_solid_ones_are_not() -> None:
    def darkness_by_ring(classes):
        config = SynthConfig(width=768, height=768, tissue_fraction=0.9, seed=5, classes=classes)
        built = build_scene(config)
        grey = render_region(built, 0, 0, 768, 768).astype(float).mean(axis=2)
        ys, xs = np.mgrid[0:768, 0:768] + 0.5
        inner, rim = [], []
        for i in np.flatnonzero(built.labels == 0)[:60]:   # the tumour class
            (cx, cy), (a, b), angle = built.centres[i], built.axes[i], built.angles[i]
            u = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
            v = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
            q = np.hypot(u / a, v / b)
            inner.append(np.median(grey[q < 0.45]))
            rim.append(np.median(grey[(q > 0.8) & (q < 0.95)]))
        return 255 - np.median(inner), 255 - np.median(rim)

    solid_inner, solid_rim = darkness_by_ring(SMALL.classes)
    vesicular_inner, vesicular_rim = darkness_by_ring(HE_VESICULAR_CLASSES)
    assert vesicular_rim > vesicular_inner + 25          # open chromatin: the membrane is the darkest part
    assert solid_inner > solid_rim - 25                  # solid: dark all through
    assert vesicular_inner < solid_inner - 40            # and much paler inside than solid nuclei


def test_written_slide_is_a_pyramid_with_pixel_size_and_exact_pixels(tmp_path, scene) -> None:
    result = generate_slide(tmp_path / "s.tif", SMALL, tmp_path / "truth.geojson", tile=256, compression="deflate")
    assert result.levels == [(1536, 1280), (384, 320), (96, 80)]
    with open_slide(result.path) as slide:
        assert slide.backend == "tiffslide" and slide.mpp == pytest.approx(0.5)
        assert slide.level_dimensions == ((1536, 1280), (384, 320), (96, 80))
        assert slide.level_downsamples == pytest.approx((1.0, 4.0, 16.0))
        assert np.array_equal(slide.read_region(100, 900, 700, 380, 1), render_region(scene, 100, 900, 700, 380))
        low = slide.read_region(0, 0, 1536, 1280, 4).astype(float)
        expected = render_region(scene, 0, 0, 1536, 1280).reshape(320, 4, 384, 4, 3).mean((1, 3))
        assert np.abs(low - expected).max() <= 1.0
        lowest = slide.read_region(0, 0, 1536, 1280, 16).astype(float)
        assert np.abs(lowest - expected.reshape(80, 4, 96, 4, 3).mean((1, 3))).max() <= 1.5
    truth = read_objects(result.truth_path)
    assert len(truth) == len(scene) and {o.object_type for o in truth} == {"detection"}
    first = truth[0]
    assert first.class_name == scene.class_name(0)
    assert first.geometry.equals_exact(scene.polygon(0), 1e-3)
    assert first.measurements["Centre X px"] == pytest.approx(scene.centres[0, 0], abs=1e-3)


def test_jpeg_slide_stays_close_to_the_rendering(tmp_path, scene) -> None:
    result = generate_slide(tmp_path / "j.tif", SMALL, tile=256)
    with open_slide(result.path) as slide:
        got = slide.read_region(256, 256, 512, 512, 1).astype(float)
    assert np.abs(got - render_region(scene, 256, 256, 512, 512)).mean() < 3.0


def test_tile_planning_on_20_percent_tissue_reads_under_30_percent_of_tiles(tmp_path) -> None:
    config = SynthConfig(width=8192, height=8192, tissue_fraction=0.2, seed=0, nuclei_per_mm2=500)
    result = generate_slide(tmp_path / "big.tif", config)
    with open_slide(result.path) as slide:
        tissue = detect_tissue(slide)
        plan = plan_tiles(8192, 8192, tile_size=512, overlap=64, tissue=tissue)
    assert abs(tissue.fraction - 0.2) < 0.04
    assert plan.kept_fraction <= 0.30, f"{len(plan)} of {plan.grid_tiles} tiles kept"
    # every true nucleus lies in some planned tile core: skipping glass loses nothing
    cores = shapely.STRtree([box(*t.core) for t in plan])
    centres = shapely.points(result.scene.centres)
    assert len(np.unique(cores.query(centres, predicate="within")[0])) == len(centres)


def test_cancel_leaves_no_file(tmp_path) -> None:
    with pytest.raises(CellBridgeError, match="cancelled"):
        generate_slide(tmp_path / "c.tif", SMALL, tile=256, cancelled=lambda: True)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_slide_and_truth_and_reports_bad_input_in_one_line(tmp_path) -> None:
    out, truth = tmp_path / "cli.tif", tmp_path / "cli.geojson"
    done = subprocess.run([sys.executable, "-m", "cellbridge", "synth-slide", str(out), "--size", "1024x768",
                           "--tissue-fraction", "0.3", "--seed", "2", "--truth", str(truth)],
                          capture_output=True, text=True, check=True)
    summary = json.loads(done.stdout)
    assert summary["levels"] == [[1024, 768], [256, 192]] and summary["nuclei"] == len(read_objects(truth))
    bad = subprocess.run([sys.executable, "-m", "cellbridge", "synth-slide", str(tmp_path / "x.tif"),
                          "--tissue-fraction", "1.5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "tissue fraction" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x.tif").exists()
